// The defaults new experiments start from (ConfigService), saved in <state-dir>/
// training_config.yaml, and the device profiles. LibTorch-free.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace yolo {

struct DeviceProfileInfo {
  std::string name;  // cpu, cuda, mps
  std::map<std::string, std::string> args;
  bool available = false;
  std::string note;
};

// The guide's profiles: cpu batch 4 / workers 2 / no cache / no amp; cuda batch 16 / workers 8 /
// amp; mps batch 8 / workers 4 (refused on Linux).
std::vector<DeviceProfileInfo> DeviceProfiles(bool has_gpu);
// The profile for a device argument ("" means GPU 0 when there is one).
std::map<std::string, std::string> ProfileArgsFor(const std::string& device, bool has_gpu);

class TrainingConfigStore {
 public:
  // Loads <state_dir>/training_config.yaml when it exists.
  static absl::StatusOr<std::unique_ptr<TrainingConfigStore>> Open(const std::string& state_dir);

  std::map<std::string, std::string> Get() const;
  // Each value is checked as the trainer checks it (INVALID_ARGUMENT naming the key); keys
  // yolod sets itself are refused. Saved atomically before it returns.
  absl::StatusOr<std::map<std::string, std::string>> Update(
      const std::map<std::string, std::string>& set, const std::vector<std::string>& unset);

 private:
  explicit TrainingConfigStore(std::string path) : path_(std::move(path)) {}
  std::string path_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> defaults_;
};

}  // namespace yolo
