// data.yaml as a client may write it: LoadDataConfig returns a config or an error naming the
// file, never throws, and never accepts more classes than it allows.
#include "common/data_config.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = yolo::fuzz::WriteInput("data.yaml", data, size);
  auto config = yolo::LoadDataConfig(path);
  if (config.ok()) {
    yolo::fuzz::Require(config->nc() >= 1 && config->nc() <= yolo::kMaxClasses);
    yolo::fuzz::Require(!config->train.empty() && !config->val.empty());
  } else {
    yolo::fuzz::Require(config.status().message().find(path) != absl::string_view::npos ||
                        config.status().message().find("data") != absl::string_view::npos);
  }
  return 0;
}
