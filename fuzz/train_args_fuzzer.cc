// The trainer's key=value arguments (a command line, a spec, yoloctl config set): whatever is
// accepted is within its range and survives args.yaml unchanged.
#include "absl/strings/str_split.h"
#include "common/train_args.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> tokens = absl::StrSplit(text, '\n');
  yolo::TrainArgs args;
  if (!args.ParseTokens(tokens).ok()) return 0;
  auto again = yolo::TrainArgs::FromYaml(args.ToYaml());
  yolo::fuzz::Require(again.ok());
  for (const yolo::ArgSpec& spec : yolo::AllArgSpecs()) {
    yolo::fuzz::Require(again->Raw(spec.key) == args.Raw(spec.key));
  }
  return 0;
}
