#include "server/worker/train/checkpoint.h"

#include <fcntl.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"

namespace yolo {

constexpr const char* kFormat = "yolod-checkpoint-1";

namespace {

// "no space left on device writing last.pt (/runs/x/weights/last.pt)"
absl::Status WriteError(const std::string& path, int error) {
  return absl::UnavailableError(
      absl::StrCat(absl::AsciiStrToLower(std::strerror(error)), " writing ",
                   std::filesystem::path(path).filename().string(), " (", path, ")"));
}

}  // namespace

absl::Status SaveCheckpoint(const std::string& path, const CheckpointMeta& meta,
                            DetectionModel& model, DetectionModel* ema,
                            torch::optim::Optimizer* optimizer) {
  const std::string temp = TempPathFor(path);
  try {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(std::string(kFormat)));
    archive.write("epoch", c10::IValue(meta.epoch));
    archive.write("best_fitness", c10::IValue(meta.best_fitness));
    archive.write("updates", c10::IValue(meta.updates));
    archive.write("train_args", c10::IValue(meta.train_args));
    archive.write("train_results", c10::IValue(meta.results_csv));
    archive.write("names", c10::IValue(meta.names));
    archive.write("scale", c10::IValue(meta.scale));
    archive.write("nc", c10::IValue(meta.nc));
    archive.write("date", c10::IValue(meta.date));
    torch::serialize::OutputArchive model_archive;
    model->save(model_archive);
    archive.write("model", model_archive);
    if (ema != nullptr) {
      torch::serialize::OutputArchive ema_archive;
      (*ema)->save(ema_archive);
      archive.write("ema", ema_archive);
    }
    if (optimizer != nullptr) {
      torch::serialize::OutputArchive opt_archive;
      optimizer->save(opt_archive);
      archive.write("optimizer", opt_archive);
    }
    // Through our own writer: LibTorch's file writer throws from its destructor when the disk
    // is full, which ends the process. Ours never fails inside LibTorch; it keeps the first
    // error and the checkpoint is refused below.
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return WriteError(path, errno);
    int error = 0;
    archive.save_to([&](const void* data, size_t n) -> size_t {
      const char* p = static_cast<const char*>(data);
      for (size_t left = n; left > 0 && error == 0;) {
        const ssize_t w = ::write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          error = errno;
        } else {
          p += w;
          left -= static_cast<size_t>(w);
        }
      }
      return n;
    });
    if (::close(fd) != 0 && error == 0) error = errno;
    if (error != 0) {
      ::unlink(temp.c_str());
      return WriteError(path, error);
    }
  } catch (const std::exception& e) {
    std::error_code ec;
    std::filesystem::remove(temp, ec);
    return absl::InternalError(absl::StrCat("cannot write checkpoint ", path, ": ", e.what()));
  }
  return CommitTempFile(temp, path);
}

absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat("checkpoint '", path, "' does not exist"));
  }
  LoadedCheckpoint out;
  out.path = path;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    c10::IValue v;
    if (!archive.try_read("format", v) || v.toStringRef() != kFormat) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", path,
                       "' is not a yolod checkpoint (Ultralytics .pt files are Python "
                       "pickles and cannot be read here)"));
    }
    auto read = [&](const char* key) -> const c10::IValue& {
      archive.read(key, v);
      return v;
    };
    out.meta.epoch = read("epoch").toInt();
    out.meta.best_fitness = read("best_fitness").toDouble();
    out.meta.updates = read("updates").toInt();
    out.meta.train_args = read("train_args").toStringRef();
    out.meta.results_csv = read("train_results").toStringRef();
    out.meta.names = read("names").toStringRef();
    out.meta.scale = read("scale").toStringRef();
    out.meta.nc = read("nc").toInt();
    out.meta.date = read("date").toStringRef();
    auto scale = ScaleFromName(out.meta.scale);
    if (!scale.ok()) return scale.status();
    out.raw = DetectionModel(*scale, static_cast<int>(out.meta.nc));
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    out.raw->load(model_archive);
    torch::serialize::InputArchive ema_archive;
    if (archive.try_read("ema", ema_archive)) {
      out.model = DetectionModel(*scale, static_cast<int>(out.meta.nc));
      out.model->load(ema_archive);
    } else {
      out.model = out.raw;
    }
    torch::serialize::InputArchive opt_archive;
    out.has_optimizer = archive.try_read("optimizer", opt_archive);
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat("checkpoint '", path, "' is unreadable or truncated: ", e.what()));
  }
  return out;
}

absl::Status LoadOptimizerState(const std::string& path, torch::optim::Optimizer& optimizer,
                                const c10::Device& device) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path, device);
    torch::serialize::InputArchive opt_archive;
    archive.read("optimizer", opt_archive);
    optimizer.load(opt_archive);
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat("cannot restore the optimizer from '", path, "': ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace yolo
