// yolod's --config file: loaded and finished, or an error; never a throw.
#include "fuzz/fuzz_util.h"
#include "server/daemon/daemon_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = yolo::fuzz::WriteInput("yolod.yaml", data, size);
  yolo::DaemonConfig config;
  if (yolo::LoadDaemonConfigFile(path, &config).ok()) (void)yolo::FinishDaemonConfig(&config);
  return 0;
}
