// `yoloctl start-experiment -f FILE`: a spec, a list of specs or `experiments: [...]`; parsed
// or refused with the file named, never a throw.
#include "client/commands.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = yolo::fuzz::WriteInput("experiments.yaml", data, size);
  auto specs = yolo::LoadExperimentsFile(path);
  if (specs.ok()) yolo::fuzz::Require(!specs->empty());
  return 0;
}
