#include "server/worker/train/val_command.h"

#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "server/worker/train/checkpoint.h"
#include "server/worker/train/run_support.h"

namespace yolo {

absl::StatusOr<ValOutcome> Val(const TrainArgs& args) {
  if (args.IsNull("model") || !absl::EndsWith(args.GetString("model"), ".pt")) {
    return absl::InvalidArgumentError("argument 'model': val needs a checkpoint (weights/best.pt)");
  }
  ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, LoadCheckpoint(args.GetString("model")));
  ASSIGN_OR_RETURN(TrainArgs saved, TrainArgs::FromYaml(ckpt.meta.train_args));
  const std::string data_path =
      args.IsNull("data") ? saved.GetString("data") : args.GetString("data");
  ASSIGN_OR_RETURN(DataConfig data, LoadDataConfig(data_path));
  if (data.nc() != ckpt.meta.nc && !saved.GetBool("single_cls")) {
    return absl::InvalidArgumentError(absl::StrCat("data '", data_path, "' has ", data.nc(),
                                                   " classes but the model was trained for ",
                                                   ckpt.meta.nc));
  }
  ASSIGN_OR_RETURN(c10::Device device, ResolveDevice(args.GetString("device")));
  const int threads = ConfigureThreads(static_cast<int>(args.GetInt("threads")));
  const std::string split = args.GetString("split");
  const std::vector<std::string>& sources = split == "train"  ? data.train
                                            : split == "test" ? data.test
                                                              : data.val;
  if (sources.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("data '", data_path, "' has no '", split, "' split"));
  }
  const bool single_cls = saved.GetBool("single_cls");
  ASSIGN_OR_RETURN(DatasetScan scan,
                   ScanDataset(sources, single_cls ? 1 << 30 : data.nc(), single_cls,
                               std::max(threads, static_cast<int>(args.GetInt("workers")))));
  spdlog::info("{}: {}", split, scan.Summary());
  const int imgsz = CheckImgsz(args.WasSet("imgsz") ? args : saved);
  LoaderOptions opts = BaseLoaderOptions(args, imgsz);
  opts.batch =
      static_cast<int>(args.WasSet("batch") ? args.GetInt("batch") : saved.GetInt("batch"));
  opts.batch = std::max(opts.batch, 1);
  opts.rect = true;
  opts.cache = CacheMode::kNone;
  BatchLoader loader(std::move(scan.images), opts);
  NmsOptions nms;
  nms.conf = args.IsNull("conf") ? 0.001 : args.GetFloat("conf");
  nms.iou = args.GetFloat("iou");
  nms.max_det = static_cast<int>(args.GetInt("max_det"));
  nms.agnostic = single_cls;
  ckpt.model->to(device);
  ValOutcome out;
  try {
    out.result = Validate(ckpt.model, loader, nullptr, nms, device);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
  out.names = absl::StrSplit(ckpt.meta.names, '\n');
  return out;
}

}  // namespace yolo
