// Reading a YAML file that someone outside the process wrote (data.yaml, yolod.yaml, a batch of
// experiment specs, training_config.yaml). LibTorch-free.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace yolo {

// Parses a regular file of at most `max_bytes` (see ReadFile: never blocks on a FIFO).
// NOT_FOUND when it does not exist; INVALID_ARGUMENT naming the file (and the line, for a
// syntax error) otherwise. Never throws.
absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path, size_t max_bytes = 1u << 20);

}  // namespace yolo
