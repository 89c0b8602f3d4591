#include "server/experiments/record_writer.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"

namespace yolo {
namespace fs = std::filesystem;

namespace {
constexpr int64_t kRemoved = std::numeric_limits<int64_t>::max();
}

std::string RecordWriter::PathOf(const std::string& id) const {
  return (fs::path(runs_dir_) / id / "experiment.json").string();
}

absl::Status RecordWriter::Write(const RecordSnapshot& snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = written_.find(snapshot.exp.id());
  if (it != written_.end() && it->second >= snapshot.version) return absl::OkStatus();
  return WriteLocked(snapshot);
}

absl::Status RecordWriter::Create(const RecordSnapshot& snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  written_.erase(snapshot.exp.id());
  return WriteLocked(snapshot);
}

absl::Status RecordWriter::WriteLocked(const RecordSnapshot& snapshot) {
  std::string json;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  auto st = google::protobuf::util::MessageToJsonString(snapshot.exp, &json, opts);
  const std::string path = PathOf(snapshot.exp.id());
  absl::Status written =
      st.ok() ? WriteFileAtomic(path, json) : absl::InternalError(std::string(st.message()));
  if (!written.ok()) {
    spdlog::error("cannot save {}: {}", path, std::string(written.message()));
    return written;
  }
  written_[snapshot.exp.id()] = snapshot.version;
  return written;
}

absl::Status RecordWriter::Remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  written_[id] = kRemoved;
  const fs::path dir = fs::path(runs_dir_) / id;
  std::error_code ec;
  // remove_all never follows symlinks below the folder; the folder itself must be one too.
  if (fs::is_symlink(fs::symlink_status(dir, ec))) {
    fs::remove(dir, ec);
  } else {
    fs::remove_all(dir, ec);
  }
  if (ec)
    return absl::InternalError(absl::StrCat("cannot remove ", dir.string(), ": ", ec.message()));
  return absl::OkStatus();
}

void PendingWrites::Flush() {
  for (const RecordSnapshot& s : queued_) (void)writer_->Write(s);  // logged
  queued_.clear();
  for (const auto& [path, line] : lines_) {
    // One write with O_APPEND: whole, after whatever the worker wrote last.
    const int fd =
        ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      spdlog::warn("cannot append to {}: {}", path, std::strerror(errno));
      continue;
    }
    const std::string text = line + "\n";
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      spdlog::warn("cannot append to {}: {}", path, std::strerror(errno));
    }
    ::close(fd);
  }
  lines_.clear();
}

}  // namespace yolo
