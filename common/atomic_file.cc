#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace yolo {
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status FsyncPath(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoError("cannot fsync", path);
  return absl::OkStatus();
}

}  // namespace

std::string TempPathFor(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return absl::StrCat(path, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
}

absl::Status CommitTempFile(const std::string& temp_path, const std::string& path) {
  absl::Status status = FsyncPath(temp_path, O_RDONLY);
  if (status.ok() && ::rename(temp_path.c_str(), path.c_str()) != 0) {
    status = ErrnoError("cannot rename to", path);
  }
  if (!status.ok()) {
    ::unlink(temp_path.c_str());
    return status;
  }
  return FsyncPath(DirName(path), O_RDONLY | O_DIRECTORY);
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& contents) {
  const std::string temp = TempPathFor(path);
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", temp);
  const char* data = contents.data();
  size_t left = contents.size();
  while (left > 0) {
    ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status status = ErrnoError("cannot write", temp);
      ::close(fd);
      ::unlink(temp.c_str());
      return status;
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    ::unlink(temp.c_str());
    return ErrnoError("cannot close", temp);
  }
  return CommitTempFile(temp, path);
}

absl::Status ReadFile(const std::string& path, std::string* contents, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  struct stat st {};
  absl::Status status;
  if (::fstat(fd, &st) != 0) {
    status = ErrnoError("cannot stat", path);
  } else if (!S_ISREG(st.st_mode)) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "cannot read ", path, ": ", S_ISDIR(st.st_mode) ? "a directory" : "not a regular file"));
  } else if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "cannot read ", path, ": ", st.st_size, " bytes, more than the ", max_bytes, " accepted"));
  }
  std::string text;
  // The size can change under us: read until EOF, but never past the bound.
  char buffer[1 << 16];
  while (status.ok()) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = ErrnoError("cannot read", path);
    } else if (n == 0) {
      break;
    } else if (text.size() + static_cast<size_t>(n) > max_bytes) {
      status = absl::InvalidArgumentError(
          absl::StrCat("cannot read ", path, ": more than the ", max_bytes, " bytes accepted"));
    } else {
      text.append(buffer, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  if (status.ok()) *contents = std::move(text);
  return status;
}

}  // namespace yolo
