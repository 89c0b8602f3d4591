#include "server/experiments/spec_check.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/data_config.h"
#include "common/distributed_config.h"
#include "common/status_macros.h"
#include "common/train_args.h"
#include "common/user_path.h"

namespace yolo {
namespace {

constexpr size_t kMaxName = 128;
constexpr size_t kMaxValue = 4096;
constexpr size_t kMaxArgs = 256;

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("field '", field, "': ", why));
}

bool IsScaleName(const std::string& model) {
  static const std::set<std::string> kScales = {"yolov8n", "yolov8s", "yolov8m", "yolov8l",
                                                "yolov8x"};
  std::string m = model;
  if (absl::EndsWith(m, ".yaml")) m = m.substr(0, m.size() - 5);
  return kScales.count(m) > 0;
}

// A path the spec names, resolved and checked (see ResolveUserPath); any failure is the spec's
// INVALID_ARGUMENT naming the field.
absl::StatusOr<std::string> CheckedPath(const std::string& field, const std::string& path,
                                        PathKind kind, const std::vector<std::string>& roots) {
  auto resolved = ResolveUserPath(field, path, kind, roots);
  if (!resolved.ok()) return absl::InvalidArgumentError(resolved.status().message());
  return resolved;
}

}  // namespace

absl::StatusOr<CheckedSpec> CheckSpec(const std::string& name,
                                      const std::map<std::string, std::string>& args,
                                      const SpecCheckOptions& options) {
  if (name.size() > kMaxName) return Bad("name", absl::StrCat("longer than ", kMaxName));
  if (!IsPrintableText(name)) {
    return Bad("name", absl::StrCat("'", Printable(name),
                                    "' must be printable text (no control "
                                    "characters, newlines or terminal escapes)"));
  }
  if (args.size() > kMaxArgs) return Bad("args", absl::StrCat("more than ", kMaxArgs, " entries"));
  for (const auto& [key, value] : args) {
    if (key.size() > kMaxName || !IsPrintableText(key)) {
      return Bad(Printable(key), "not a trainer argument");
    }
    if (value.size() > kMaxValue) {
      return Bad(key,
                 absl::StrCat("'", Printable(value), "' is longer than ", kMaxValue, " bytes"));
    }
    if (IsReservedArg(key)) return Bad(key, "set by yolod (the run folder is its own)");
    if (IsFaultInjectionArg(key) && !options.allow_fault_injection) {
      return Bad(key, "fault injection is for tests: start yolod with --enable-fault-injection");
    }
  }

  // Layer: profile < config < spec. Only the spec's own keys are errors of the spec; a bad
  // default is reported as such.
  TrainArgs parsed;
  CheckedSpec out;
  auto apply = [&](const std::map<std::string, std::string>& layer,
                   const char* origin) -> absl::Status {
    for (const auto& [key, value] : layer) {
      if (IsFaultInjectionArg(key) && !options.allow_fault_injection) {
        return absl::InvalidArgumentError(absl::StrCat(
            origin, "field '", key,
            "': fault injection is for tests: start yolod with --enable-fault-injection"));
      }
      absl::Status s = parsed.Set(key, value);
      if (!s.ok()) {
        absl::string_view why = s.message();
        absl::ConsumePrefix(&why, absl::StrCat("argument '", key, "': "));  // said once below
        return absl::InvalidArgumentError(absl::StrCat(origin, "field '", key, "': ", why));
      }
      out.args[key] = parsed.Raw(key);
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(apply(options.profile_defaults, "device profile: "));
  RETURN_IF_ERROR(apply(options.config_defaults, "training config: "));
  {
    const auto device = args.find("device");
    if (device != args.end() && absl::AsciiStrToLower(device->second) == "mps") {
      return Bad("device", "'mps' is Apple's GPU backend and does not exist on Linux");
    }
  }
  RETURN_IF_ERROR(apply(args, ""));

  const int64_t imgsz = parsed.GetInt("imgsz");
  if (imgsz % 32 != 0 || imgsz < 32 || imgsz > 4096) {
    return Bad("imgsz",
               absl::StrCat("'", parsed.Raw("imgsz"), "' must be a multiple of 32 in [32, 4096]"));
  }
  const double batch = parsed.GetFloat("batch");
  if (!(batch == -1 || (batch > 0 && batch < 1) ||
        (batch >= 1 && batch == static_cast<int64_t>(batch)))) {
    return Bad("batch", absl::StrCat("'", parsed.Raw("batch"),
                                     "' must be an integer >= 1, -1 (AutoBatch) or a memory "
                                     "fraction in (0, 1) for AutoBatch"));
  }
  if (parsed.GetInt("epochs") < 1) return Bad("epochs", "must be >= 1");

  const std::string device = parsed.GetString("device");
  if (device.empty()) {
    out.device = options.has_gpu ? "cuda:0" : "cpu";
  } else if (device == "cpu") {
    out.device = "cpu";
  } else {
    const std::string list = absl::StartsWith(device, "cuda:") ? device.substr(5) : device;
    if (!options.has_gpu)
      return Bad("device", absl::StrCat("'", device, "': this host has no GPU"));
    out.device = absl::StrCat("cuda:", list);
  }
  out.args["device"] = out.device == "cpu" ? "cpu" : out.device.substr(5);
  // The data-parallel layout (world_size against the GPUs named, nnodes, node_rank,
  // master_port) is checked here rather than by a worker that would fail at its start.
  RETURN_IF_ERROR(parsed.Set("device", out.args["device"]));
  const auto layout = ResolveDistributedLayout(parsed);
  if (!layout.ok()) {
    absl::string_view why = layout.status().message();
    absl::ConsumePrefix(&why, "argument ");
    return absl::InvalidArgumentError(absl::StrCat("field ", why));
  }
  for (const int gpu : layout->gpus) {
    if (options.gpu_count > 0 && gpu >= options.gpu_count) {
      return Bad("device",
                 absl::StrCat("'", device, "': GPU ", gpu, " does not exist (this host has ",
                              options.gpu_count, ": 0 to ", options.gpu_count - 1, ")"));
    }
  }

  const std::string model = parsed.GetString("model");
  if (model.empty()) {
    out.args["model"] = "yolov8n";
  } else if (!IsScaleName(model)) {
    if (!absl::EndsWith(model, ".pt")) {
      return Bad("model", absl::StrCat("'", Printable(model),
                                       "' is neither yolov8n/s/m/l/x(.yaml) nor a .pt checkpoint"));
    }
    ASSIGN_OR_RETURN(out.args["model"],
                     CheckedPath("model", model, PathKind::kFile, options.allowed_roots));
  }

  const std::string data = parsed.GetString("data");
  if (data.empty()) return Bad("data", "required: the path of a data.yaml");
  ASSIGN_OR_RETURN(const std::string data_path,
                   CheckedPath("data", data, PathKind::kFile, options.allowed_roots));
  auto config = LoadDataConfig(data_path);
  if (!config.ok()) return Bad("data", std::string(config.status().message()));
  if (config->train.empty() || config->val.empty()) {
    return Bad("data", absl::StrCat(Printable(data_path), " needs both 'train' and 'val'"));
  }
  // The folders and lists data.yaml names are the client's paths too. (The images inside
  // them are checked against the roots by the worker, which lists them.)
  for (const auto* sources : {&config->train, &config->val, &config->test}) {
    for (const std::string& source : *sources) {
      auto checked =
          ResolveUserPath("data", source, PathKind::kFileOrDirectory, options.allowed_roots);
      if (!checked.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            checked.status().message(), " (a dataset source of ", Printable(data_path), ")"));
      }
    }
  }
  out.args["data"] = data_path;
  return out;
}

std::vector<std::string> DevicesOf(const std::string& device) {
  if (!absl::StartsWith(device, "cuda:")) return {device};
  std::vector<std::string> out;
  for (absl::string_view index : absl::StrSplit(device.substr(5), ',')) {
    out.push_back(absl::StrCat("cuda:", index));
  }
  return out;
}

bool SlotsFree(const std::string& device, const std::map<std::string, int>& running, int max) {
  for (const std::string& d : DevicesOf(device)) {
    auto it = running.find(d);
    if (it != running.end() && it->second >= max) return false;
  }
  return true;
}

absl::StatusOr<v1::SmartTraining> CheckSmartTraining(
    const v1::SmartTraining& smart, const std::map<std::string, std::string>& spec_args,
    CheckedSpec* checked) {
  for (const auto& [field, value] :
       {std::pair<const char*, int>{"max_total_epochs", smart.max_total_epochs()},
        {"round_epochs", smart.round_epochs()},
        {"patience", smart.patience()}}) {
    if (value < 0) {
      return Bad(absl::StrCat("smart.", field), absl::StrCat(value, " must be >= 0"));
    }
  }
  TrainArgs parsed;  // the checked values, canonical already
  for (const auto& [key, value] : checked->args) RETURN_IF_ERROR(parsed.Set(key, value));
  if (!parsed.GetBool("save")) {
    return Bad("save", "smart training needs save=True: each round resumes from weights/last.pt");
  }
  if (smart.patience() > 0 && !parsed.GetBool("val")) {
    return Bad("smart.patience",
               "needs val=True: without validation every epoch's fitness is 0 and no round "
               "could improve it");
  }
  v1::SmartTraining out = smart;
  const int epochs = static_cast<int>(parsed.GetInt("epochs"));
  if (out.max_total_epochs() == 0) {
    out.set_max_total_epochs(epochs);
  } else if (spec_args.count("epochs") && epochs != out.max_total_epochs()) {
    return Bad("smart.max_total_epochs",
               absl::StrCat(out.max_total_epochs(), " disagrees with epochs=", epochs,
                            ": give one of them (both are the run's total)"));
  } else if (absl::Status s = parsed.Set("epochs", std::to_string(out.max_total_epochs()));
             !s.ok()) {  // the range of epochs
    absl::string_view why = s.message();
    absl::ConsumePrefix(&why, "argument 'epochs': ");
    return Bad("smart.max_total_epochs", std::string(why));
  }
  if (out.round_epochs() == 0) out.set_round_epochs(10);
  out.set_round_epochs(std::min(out.round_epochs(), out.max_total_epochs()));
  checked->args["epochs"] = std::to_string(out.max_total_epochs());
  return out;
}

}  // namespace yolo
