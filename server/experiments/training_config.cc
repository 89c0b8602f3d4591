#include "server/experiments/training_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/train_args.h"
#include "common/yaml_file.h"

namespace yolo {
namespace fs = std::filesystem;

std::vector<DeviceProfileInfo> DeviceProfiles(bool has_gpu) {
  return {
      {"cpu",
       {{"batch", "4"}, {"workers", "2"}, {"cache", "false"}, {"amp", "false"}},
       true,
       "small batches, two loader threads, no cache: RAM is what runs out"},
      {"cuda",
       {{"batch", "16"}, {"workers", "8"}, {"amp", "true"}},
       has_gpu,
       has_gpu ? "mixed precision (bf16)" : "no GPU on this host"},
      {"mps",
       {{"batch", "8"}, {"workers", "4"}, {"cache", "false"}, {"amp", "false"}},
       false,
       "Apple's GPU backend: it does not exist on Linux"},
  };
}

std::map<std::string, std::string> ProfileArgsFor(const std::string& device, bool has_gpu) {
  const bool gpu = device.empty() ? has_gpu : device != "cpu";
  for (auto& p : DeviceProfiles(has_gpu)) {
    if (p.name == (gpu ? "cuda" : "cpu")) return p.args;
  }
  return {};
}

absl::StatusOr<std::unique_ptr<TrainingConfigStore>> TrainingConfigStore::Open(
    const std::string& state_dir) {
  std::unique_ptr<TrainingConfigStore> store(
      new TrainingConfigStore((fs::path(state_dir) / "training_config.yaml").string()));
  if (!fs::exists(store->path_)) return store;
  auto loaded = LoadYamlFile(store->path_);
  if (!loaded.ok()) return loaded.status();
  try {
    const YAML::Node node = *loaded;
    if (!node.IsMap() && !node.IsNull()) {
      return absl::InvalidArgumentError(absl::StrCat(store->path_, ": expected key: value lines"));
    }
    TrainArgs check;
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      const std::string value = kv.second.IsNull() ? "" : kv.second.as<std::string>();
      absl::Status s = check.Set(key, value);
      if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(store->path_, ": ", s.message()));
      store->defaults_[key] = check.Raw(key);
    }
  } catch (const std::exception& e) {  // yaml-cpp's conversions
    return absl::InvalidArgumentError(absl::StrCat(store->path_, ": ", e.what()));
  }
  return store;
}

std::map<std::string, std::string> TrainingConfigStore::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return defaults_;
}

absl::StatusOr<std::map<std::string, std::string>> TrainingConfigStore::Update(
    const std::map<std::string, std::string>& set, const std::vector<std::string>& unset) {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::string> next = defaults_;
  TrainArgs check;
  for (const auto& [key, value] : set) {
    if (IsReservedArg(key)) {
      return absl::InvalidArgumentError(absl::StrCat("field '", key, "': set by yolod"));
    }
    absl::Status s = check.Set(key, value);
    if (!s.ok()) return s;
    next[key] = check.Raw(key);
  }
  for (const std::string& key : unset) next.erase(key);
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const auto& [k, v] : next) out << YAML::Key << k << YAML::Value << v;
  out << YAML::EndMap;
  absl::Status saved = WriteFileAtomic(path_, std::string(out.c_str()) + "\n");
  if (!saved.ok()) return saved;
  defaults_ = std::move(next);
  return defaults_;
}

}  // namespace yolo
