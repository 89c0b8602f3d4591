#include "common/train_args.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/data_config.h"
#include "common/user_path.h"

namespace yolo {
namespace {

using T = ArgType;

constexpr size_t kMaxArgValue = 4096;

absl::Status BadValue(const std::string& key, const std::string& value, const std::string& want) {
  return absl::InvalidArgumentError(absl::StrCat("argument '", key, "': invalid value '",
                                                 Printable(value, 40), "' (expected ", want, ")"));
}

// Threads of any kind beyond this many per CPU are a mistake, not a setting.
double MaxThreads() { return 4.0 * std::max(1u, std::thread::hardware_concurrency()); }

// The values a human would mean, per numeric argument: [lo, hi]. The one table of ranges: the
// worker, yolod's spec check and ConfigService all set arguments through TrainArgs::Set.
struct Range {
  const char* key;
  double lo, hi;
};
const std::vector<Range>& Ranges() {
  static const std::vector<Range> kRanges = {
      {"epochs", 1, 100000},
      {"patience", 0, 100000},
      {"imgsz", 32, 4096},
      {"save_period", -1, 100000},
      {"workers", 0, MaxThreads()},
      {"threads", 0, MaxThreads()},
      {"seed", 0, 4294967295.0},
      {"close_mosaic", 0, 100000},
      {"fraction", 1e-9, 1},
      {"conf", 0, 1},
      {"iou", 0, 1},
      {"max_det", 1, 100000},
      {"fault_leak_mb", 0, 65536},
      {"fault_oom_epoch", 0, 100000},
      {"round_end", 0, 100000},
      {"world_size", 0, 1024},
      {"master_port", 0, 65535},
      {"node_rank", 0, 1023},
      {"nnodes", 1, 1024},
      {"lr0", 0, 1},
      {"lrf", 0, 1},
      {"momentum", 0, 0.9999},
      {"weight_decay", 0, 1},
      {"warmup_epochs", 0, 1000},
      {"warmup_momentum", 0, 0.9999},
      {"warmup_bias_lr", 0, 10},
      {"box", 0, 1000},
      {"cls", 0, 1000},
      {"dfl", 0, 1000},
      {"nbs", 1, 100000},
      {"hsv_h", 0, 1},
      {"hsv_s", 0, 1},
      {"hsv_v", 0, 1},
      {"degrees", 0, 180},
      {"translate", 0, 1},
      {"scale", 0, 0.9999},
      {"shear", 0, 89},
      {"perspective", 0, 0.001},
      {"flipud", 0, 1},
      {"fliplr", 0, 1},
      {"mosaic", 0, 1},
      {"mixup", 0, 1},
      {"copy_paste", 0, 1},
      {"nc", 1, kMaxClasses},
  };
  return kRanges;
}

// Key-specific checks beyond the type; `value` is already canonical.
absl::Status CheckRange(const std::string& key, const std::string& value) {
  static const std::map<std::string, std::set<std::string>> kChoices = {
      {"cache", {"false", "ram", "disk"}},
      {"optimizer", {"auto", "SGD", "Adam", "AdamW"}},
      {"format", {"text", "json"}},
      {"split", {"train", "val", "test"}},
      {"task", {"detect"}},
      {"mode", {"train", "val"}},
  };
  auto it = kChoices.find(key);
  if (it != kChoices.end() && it->second.count(value) == 0) {
    return BadValue(key, value, absl::StrCat("one of ", absl::StrJoin(it->second, ", ")));
  }
  double v = 0;
  const bool number = absl::SimpleAtod(value, &v);
  if (key == "batch" && number) {
    if (!((v >= 1 && v <= 4096) || v == -1 || (v > 0 && v < 1))) {
      return BadValue(key, value,
                      "an integer in [1, 4096], -1 for AutoBatch, or a memory fraction in (0, 1)");
    }
    return absl::OkStatus();
  }
  for (const Range& r : Ranges()) {
    if (key != r.key || !number) continue;
    if (v < r.lo || v > r.hi) {
      return BadValue(key, value,
                      key == "fraction" ? std::string("a number in (0, 1]")
                                        : absl::StrCat("a number in [", r.lo, ", ", r.hi, "]"));
    }
  }
  if (key == "device" && !value.empty() && value != "cpu") {
    // One GPU (0, cuda:0) or several for data-parallel training (0,1), each once.
    std::string list = value.rfind("cuda:", 0) == 0 ? value.substr(5) : value;
    std::set<int> seen;
    for (absl::string_view index : absl::StrSplit(list, ',')) {
      int d = 0;
      if (!absl::SimpleAtoi(index, &d) || d < 0 || d > 255 || !seen.insert(d).second) {
        return BadValue(key, value,
                        "cpu, a GPU index such as 0 or cuda:0, or several GPUs such as 0,1");
      }
    }
  }
  static const std::set<std::string> kPaths = {"model", "data", "project", "name"};
  if (!value.empty() &&
      (kPaths.count(key) || (key == "resume" && value != "true" && value != "false"))) {
    absl::Status path = CheckPathText(key, value);
    if (!path.ok()) return absl::InvalidArgumentError(absl::StrCat("argument ", path.message()));
  }
  return absl::OkStatus();
}

// Makes `value` canonical for its type: true/false for booleans, plain decimal numbers.
absl::StatusOr<std::string> Canonical(const ArgSpec& spec, const std::string& raw) {
  const std::string key = spec.key;
  if (raw.size() > kMaxArgValue) {
    return BadValue(key, raw, absl::StrCat("at most ", kMaxArgValue, " bytes"));
  }
  if (!IsPrintableText(raw)) {
    return BadValue(key, raw,
                    raw.find('\0') != std::string::npos
                        ? "text without NUL bytes"
                        : "printable text, without control characters or terminal escapes");
  }
  std::string value(absl::StripAsciiWhitespace(raw));
  std::string lower = absl::AsciiStrToLower(value);
  if (lower == "none" || lower == "null" || lower == "~") value = lower = "";
  if (key == "cache") {
    if (lower == "true" || lower == "ram") return std::string("ram");
    if (lower == "false" || lower.empty() || lower == "0") return std::string("false");
    if (lower == "disk") return std::string("disk");
    return BadValue(key, raw, "false, true, ram or disk");
  }
  if (key == "optimizer") {
    for (const char* name : {"auto", "SGD", "Adam", "AdamW"}) {
      if (lower == absl::AsciiStrToLower(name)) return std::string(name);
    }
    return BadValue(key, raw, "auto, SGD, Adam or AdamW");
  }
  if (key == "resume") {
    // A boolean, or the path of a last.pt to resume.
    if (lower == "true" || lower == "1") return std::string("true");
    if (lower == "false" || lower == "0" || lower.empty()) return std::string("false");
    return value;
  }
  switch (spec.type) {
    case T::kBool:
      if (lower == "true" || lower == "1") return std::string("true");
      if (lower == "false" || lower == "0") return std::string("false");
      return BadValue(key, raw, "true or false");
    case T::kInt: {
      int64_t i = 0;
      double d = 0;
      if (absl::SimpleAtoi(value, &i)) return absl::StrCat(i);
      // Ultralytics accepts batch as a fraction (AutoBatch) and imgsz as a float.
      if (key == "batch" && absl::SimpleAtod(value, &d) && std::isfinite(d)) {
        return absl::StrCat(d);
      }
      return BadValue(key, raw, "an integer");
    }
    case T::kFloat: {
      double d = 0;
      if (value.empty() && spec.default_value[0] == '\0') return std::string();
      if (!absl::SimpleAtod(value, &d) || !std::isfinite(d)) return BadValue(key, raw, "a number");
      return absl::StrCat(d);
    }
    case T::kString:
      return value;
  }
  return value;
}

const ArgSpec* FindSpec(const std::string& key) {
  for (const ArgSpec& spec : AllArgSpecs()) {
    if (key == spec.key) return &spec;
  }
  return nullptr;
}

[[noreturn]] void UnknownKeyInCode(const std::string& key) {
  std::fprintf(stderr, "internal error: no argument named '%s'\n", key.c_str());
  std::abort();
}

}  // namespace

const std::vector<ArgSpec>& AllArgSpecs() {
  static const std::vector<ArgSpec> kSpecs = {
      {"task", T::kString, "detect", "the task; only detect"},
      {"mode", T::kString, "train", "train or val"},
      {"model", T::kString, "", "scale name (yolov8n), model yaml (yolov8n.yaml) or checkpoint"},
      {"data", T::kString, "", "path to data.yaml"},
      {"epochs", T::kInt, "100", "epochs to train"},
      {"patience", T::kInt, "100", "epochs without improvement before stopping early"},
      {"batch", T::kInt, "16", "images per batch; -1 or a fraction for AutoBatch"},
      {"imgsz", T::kInt, "640", "image size, a multiple of 32"},
      {"save", T::kBool, "true", "save checkpoints"},
      {"save_period", T::kInt, "-1", "also save epoch{N}.pt every N epochs (-1: off)"},
      {"cache", T::kString, "false", "cache images: false, ram or disk"},
      {"device", T::kString, "", "cpu, or a GPU index (0) / cuda:0; default: GPU 0 if present"},
      {"workers", T::kInt, "8", "data loading threads (0: load in the training thread)"},
      {"project", T::kString, "", "folder of runs (default runs/detect)"},
      {"name", T::kString, "", "run folder name (default train, train2, ...)"},
      {"exist_ok", T::kBool, "false", "allow writing into an existing run folder"},
      {"optimizer", T::kString, "auto", "auto, SGD, Adam or AdamW"},
      {"verbose", T::kBool, "true", "print per-class validation rows"},
      {"seed", T::kInt, "0", "random seed"},
      {"deterministic", T::kBool, "true", "deterministic algorithms and cuDNN (CUDA)"},
      {"single_cls", T::kBool, "false", "train every class as one"},
      {"rect", T::kBool, "false", "rectangular training batches"},
      {"cos_lr", T::kBool, "false", "cosine learning-rate schedule"},
      {"close_mosaic", T::kInt, "10", "turn mosaic off for the last N epochs"},
      {"resume", T::kString, "false", "resume the run of `model` (a last.pt), or true"},
      {"round_end", T::kInt, "0",
       "end this process after epoch N, weights/last.pt resumable (exit code 5); with resume "
       "and N the epoch last.pt holds, only finish the run (yolod's smart training)"},
      {"amp", T::kBool, "true", "mixed precision (CUDA only)"},
      {"world_size", T::kInt, "0",
       "data-parallel ranks in all, on every node (device=cpu: N processes; device=0,1: one "
       "per GPU, this many in all); 0 or 1: one process"},
      {"master_addr", T::kString, "127.0.0.1", "data-parallel rendezvous: rank 0's node"},
      {"master_port", T::kInt, "0",
       "data-parallel rendezvous port on master_addr (0: a free one, one node only)"},
      {"node_rank", T::kInt, "0", "data-parallel: this node's index, 0 to nnodes-1"},
      {"nnodes", T::kInt, "1", "data-parallel: nodes taking part"},
      {"fraction", T::kFloat, "1.0", "fraction of the training set to use"},
      {"val", T::kBool, "true", "validate every epoch"},
      {"split", T::kString, "val", "dataset split used by val"},
      {"conf", T::kFloat, "", "confidence threshold (default 0.001 for val)"},
      {"iou", T::kFloat, "0.7", "NMS IoU threshold"},
      {"max_det", T::kInt, "300", "maximum detections per image"},
      {"plots", T::kBool, "true", "save plots (yolod writes none)"},
      {"lr0", T::kFloat, "0.01", "initial learning rate"},
      {"lrf", T::kFloat, "0.01", "final learning rate as a fraction of lr0"},
      {"momentum", T::kFloat, "0.937", "SGD momentum / Adam beta1"},
      {"weight_decay", T::kFloat, "0.0005", "weight decay (scaled by batch / nbs)"},
      {"warmup_epochs", T::kFloat, "3.0", "warmup epochs"},
      {"warmup_momentum", T::kFloat, "0.8", "initial warmup momentum"},
      {"warmup_bias_lr", T::kFloat, "0.1", "initial warmup learning rate of biases"},
      {"box", T::kFloat, "7.5", "box loss gain"},
      {"cls", T::kFloat, "0.5", "classification loss gain"},
      {"dfl", T::kFloat, "1.5", "distribution focal loss gain"},
      {"nbs", T::kInt, "64", "nominal batch size"},
      {"hsv_h", T::kFloat, "0.015", "hue augmentation (fraction)"},
      {"hsv_s", T::kFloat, "0.7", "saturation augmentation (fraction)"},
      {"hsv_v", T::kFloat, "0.4", "value augmentation (fraction)"},
      {"degrees", T::kFloat, "0.0", "rotation (+/- degrees)"},
      {"translate", T::kFloat, "0.1", "translation (+/- fraction)"},
      {"scale", T::kFloat, "0.5", "scale gain (+/-)"},
      {"shear", T::kFloat, "0.0", "shear (+/- degrees)"},
      {"perspective", T::kFloat, "0.0", "perspective (+/- fraction)"},
      {"flipud", T::kFloat, "0.0", "vertical flip probability"},
      {"fliplr", T::kFloat, "0.5", "horizontal flip probability"},
      {"mosaic", T::kFloat, "1.0", "mosaic probability"},
      {"mixup", T::kFloat, "0.0", "mixup probability"},
      {"copy_paste", T::kFloat, "0.0", "copy-paste probability (needs segments; 0 only)"},
      {"format", T::kString, "text", "val output: text or json"},
      {"threads", T::kInt, "0", "LibTorch intra-op threads (0: the CPUs this process may use)"},
      {"nc", T::kInt, "80", "number of classes (info)"},
      // Fault injection, for tests of the memory features: yolod refuses them unless started
      // with --enable-fault-injection.
      {"fault_leak_mb", T::kInt, "0", "fault injection: keep N MB more at every epoch end"},
      {"fault_oom_epoch", T::kInt, "0",
       "fault injection: out of memory in epoch E (1-based) while the batch is the first one"},
  };
  return kSpecs;
}

TrainArgs::TrainArgs() {
  for (const ArgSpec& spec : AllArgSpecs()) {
    absl::StatusOr<std::string> value = Canonical(spec, spec.default_value);
    values_[spec.key] = value.ok() ? *value : spec.default_value;
  }
}

absl::Status TrainArgs::Set(const std::string& key, const std::string& value) {
  const ArgSpec* spec = FindSpec(key);
  if (spec == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown argument '", Printable(key, 40), "'"));
  }
  absl::StatusOr<std::string> canonical = Canonical(*spec, value);
  if (!canonical.ok()) return canonical.status();
  absl::Status range = CheckRange(key, *canonical);
  if (!range.ok()) return range;
  if (key == "copy_paste" && *canonical != "0") {
    return BadValue(key, value, "0 (copy-paste needs segment labels, which yolod does not use)");
  }
  values_[key] = *canonical;
  explicit_[key] = true;
  return absl::OkStatus();
}

absl::Status TrainArgs::ParseTokens(const std::vector<std::string>& tokens) {
  for (const std::string& token : tokens) {
    size_t eq = token.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("argument '", token, "' is not of the form key=value"));
    }
    absl::Status status = Set(token.substr(0, eq), token.substr(eq + 1));
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

const std::string& TrainArgs::Raw(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) UnknownKeyInCode(key);
  return it->second;
}

bool TrainArgs::GetBool(const std::string& key) const { return Raw(key) == "true"; }

int64_t TrainArgs::GetInt(const std::string& key) const {
  double d = 0;
  absl::SimpleAtod(Raw(key), &d);
  return static_cast<int64_t>(std::llround(d));
}

double TrainArgs::GetFloat(const std::string& key) const {
  double d = 0;
  absl::SimpleAtod(Raw(key), &d);
  return d;
}

const std::string& TrainArgs::GetString(const std::string& key) const { return Raw(key); }

std::string TrainArgs::ToYaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const ArgSpec& spec : AllArgSpecs()) {
    const std::string& value = Raw(spec.key);
    out << YAML::Key << spec.key << YAML::Value;
    if (value.empty()) {
      out << YAML::Null;
    } else {
      out << value;  // yaml-cpp quotes only what needs quoting
    }
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

absl::StatusOr<TrainArgs> TrainArgs::FromYaml(const std::string& text) {
  TrainArgs args;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("args yaml: ", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("args yaml: not a mapping");
  for (const auto& item : root) {
    const std::string key = item.first.as<std::string>();
    std::string value = item.second.IsNull() ? "" : item.second.as<std::string>();
    absl::Status status = args.Set(key, value);
    if (!status.ok()) return status;
  }
  return args;
}

bool IsFaultInjectionArg(const std::string& key) {
  return key == "fault_leak_mb" || key == "fault_oom_epoch";
}

bool IsReservedArg(const std::string& key) {
  static const std::set<std::string> kReserved = {"project", "name",      "exist_ok",
                                                  "resume",  "round_end", "mode"};
  return kReserved.count(key) > 0;
}

}  // namespace yolo
