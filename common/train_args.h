// The trainer's arguments, under Ultralytics' names and with the defaults of its default.yaml,
// plus a few of yolod's own (`threads`, `nc`, `format`). Values are kept as canonical strings,
// validated when set, so that they can be passed over the wire or written to args.yaml and
// read back unchanged. LibTorch-free: the daemon and the CLI validate specs with it too.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace yolo {

enum class ArgType { kBool, kInt, kFloat, kString };

struct ArgSpec {
  const char* key;
  ArgType type;
  const char* default_value;  // "" means null (None in Ultralytics)
  const char* help;
};

// Every supported argument, in args.yaml order.
const std::vector<ArgSpec>& AllArgSpecs();

// Arguments yolod sets itself for each experiment (its run folder, resume): a spec may not.
bool IsReservedArg(const std::string& key);
// fault_leak_mb and fault_oom_epoch: for tests, refused by yolod unless it allows them.
bool IsFaultInjectionArg(const std::string& key);

class TrainArgs {
 public:
  TrainArgs();  // all defaults

  // Sets one argument; the error names the key and the bad value.
  absl::Status Set(const std::string& key, const std::string& value);
  // Parses `key=value` tokens in order.
  absl::Status ParseTokens(const std::vector<std::string>& tokens);

  bool GetBool(const std::string& key) const;
  int64_t GetInt(const std::string& key) const;
  double GetFloat(const std::string& key) const;
  const std::string& GetString(const std::string& key) const;
  bool IsNull(const std::string& key) const { return GetString(key).empty(); }
  // The canonical text of any argument, as args.yaml has it.
  const std::string& Raw(const std::string& key) const;
  // True when the user (or a loaded args.yaml) gave the key, rather than the default.
  bool WasSet(const std::string& key) const { return explicit_.count(key) > 0; }

  // args.yaml text: every key in table order.
  std::string ToYaml() const;
  // Reads an args.yaml (as written by ToYaml). Unknown keys are an error naming them.
  static absl::StatusOr<TrainArgs> FromYaml(const std::string& text);

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> explicit_;
};

}  // namespace yolo
