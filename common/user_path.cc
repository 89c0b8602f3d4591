#include "common/user_path.h"

#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace yolo {
namespace fs = std::filesystem;
namespace {

// Decodes one UTF-8 sequence at text[i]; returns its length, or 0 when it is not valid UTF-8.
size_t Utf8At(const std::string& text, size_t i, uint32_t* code) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b = byte(i);
  size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > text.size()) return 0;
  uint32_t c = n == 1 ? b : b & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    c = (c << 6) | (byte(i + k) & 0x3f);
  }
  static constexpr uint32_t kMinOfLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < kMinOfLength[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
  *code = c;
  return n;
}

// Control characters (C0, DEL, C1), line and paragraph separators, and the bidirectional
// overrides that make a terminal or an editor show text other than it is.
bool IsControl(uint32_t c) {
  return c < 0x20 || (c >= 0x7f && c < 0xa0) || c == 0x2028 || c == 0x2029 ||
         (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

// Whether the normal absolute `path` is `folder` or lies inside it.
bool UnderPrefix(const std::string& path, const std::string& folder) {
  const fs::path rel = fs::path(path).lexically_relative(folder);
  return !rel.empty() && *rel.begin() != "..";
}

}  // namespace

bool IsPrintableText(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    uint32_t c = 0;
    const size_t n = Utf8At(text, i, &c);
    if (n == 0 || IsControl(c)) return false;
    i += n;
  }
  return true;
}

std::string Printable(const std::string& text, size_t max_bytes) {
  std::string out;
  size_t i = 0;
  while (i < text.size() && i < max_bytes) {
    uint32_t c = 0;
    const size_t n = Utf8At(text, i, &c);
    if (n == 0 || IsControl(c)) {
      const unsigned char b = static_cast<unsigned char>(text[i]);
      out += b == '\n'   ? std::string("\\n")
             : b == '\t' ? std::string("\\t")
                         : absl::StrFormat("\\x%02x", b);
      i += n == 0 ? 1 : n;  // an escaped multi-byte control shows its first byte only
      continue;
    }
    if (c == '\\') out += '\\';
    out.append(text, i, n);
    i += n;
  }
  if (i < text.size()) out += "...";
  return out;
}

absl::Status CheckPathText(const std::string& field, const std::string& path) {
  const auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("field '", field, "': ", why));
  };
  if (path.empty()) return bad("empty path");
  if (path.size() > kMaxPathBytes) {
    return bad(absl::StrCat("path longer than ", kMaxPathBytes, " bytes"));
  }
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f) {
      return bad(absl::StrCat("path '", Printable(path), "' contains a ",
                              c == 0 ? "NUL byte" : "control character"));
    }
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash - start > kMaxPathComponent) {
      return bad(absl::StrCat("path '", Printable(path), "' has a component over ",
                              kMaxPathComponent, " bytes"));
    }
    start = slash + 1;
  }
  return absl::OkStatus();
}

bool UnderRoots(const std::string& path, const std::vector<std::string>& roots) {
  if (roots.empty()) return true;
  for (const std::string& root : roots) {
    char buffer[PATH_MAX];
    if (::realpath(root.c_str(), buffer) == nullptr)
      continue;  // a root that is gone allows nothing
    if (UnderPrefix(path, buffer)) return true;
  }
  return false;
}

absl::StatusOr<std::string> ResolveUserPath(const std::string& field, const std::string& path,
                                            PathKind kind, const std::vector<std::string>& roots) {
  if (absl::Status text = CheckPathText(field, path); !text.ok()) return text;
  const auto where = [&](const std::string& why) {
    return absl::StrCat("field '", field, "': '", Printable(path), "' ", why);
  };
  char buffer[PATH_MAX];
  if (::realpath(path.c_str(), buffer) == nullptr) {
    const int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      return absl::NotFoundError(where("does not exist"));
    }
    return absl::InvalidArgumentError(
        where(absl::StrCat("cannot be resolved: ", std::strerror(error))));
  }
  const std::string resolved(buffer);
  for (const char* kernel : {"/proc", "/sys", "/dev"}) {
    // /dev/shm is an ordinary tmpfs, where fast datasets often live.
    if (UnderPrefix(resolved, kernel) && !UnderPrefix(resolved, "/dev/shm")) {
      return absl::InvalidArgumentError(where("is a kernel interface, not a regular file"));
    }
  }
  if (!UnderRoots(resolved, roots)) {
    return absl::PermissionDeniedError(where("is outside the allowed roots"));
  }
  struct stat st {};
  if (::stat(resolved.c_str(), &st) != 0) {
    return absl::NotFoundError(where(absl::StrCat("cannot be read: ", std::strerror(errno))));
  }
  const bool file = S_ISREG(st.st_mode), dir = S_ISDIR(st.st_mode);
  if (kind == PathKind::kFile && !file) {
    return absl::InvalidArgumentError(
        where(dir ? "is a directory, not a file" : "is not a regular file"));
  }
  if (kind == PathKind::kDirectory && !dir) {
    return absl::InvalidArgumentError(where("is not a directory"));
  }
  if (kind == PathKind::kFileOrDirectory && !file && !dir) {
    return absl::InvalidArgumentError(where("is neither a regular file nor a directory"));
  }
  return resolved;
}

}  // namespace yolo
