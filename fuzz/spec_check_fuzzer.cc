// An experiment spec as a client sends it (first line the name, then key=value lines): the
// check answers OK or INVALID_ARGUMENT with a short message, and never blocks or throws.
#include "absl/strings/str_split.h"
#include "fuzz/fuzz_util.h"
#include "server/experiments/spec_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  std::map<std::string, std::string> args;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t eq = lines[i].find('=');
    if (eq != std::string::npos) args[lines[i].substr(0, eq)] = lines[i].substr(eq + 1);
  }
  yolo::SpecCheckOptions options;
  options.allowed_roots = {yolo::fuzz::ScratchDir().string()};
  auto checked = yolo::CheckSpec(lines[0], args, options);
  if (!checked.ok()) {
    yolo::fuzz::Require(checked.status().code() == absl::StatusCode::kInvalidArgument);
    yolo::fuzz::Require(checked.status().message().size() < 1200);
  }
  return 0;
}
