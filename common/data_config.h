// Ultralytics' data.yaml and the image sources it names. LibTorch- and OpenCV-free, so that
// yolod can check a dataset before it queues an experiment.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace yolo {

bool IsImageFile(const std::string& path);

inline constexpr int kMaxClasses = 10000;

struct DataConfig {
  std::string yaml_path;
  std::string root;                // resolved `path`
  std::vector<std::string> train;  // resolved sources: folders or .txt lists
  std::vector<std::string> val;
  std::vector<std::string> test;
  std::vector<std::string> names;  // class names, index = class id
  int nc() const { return static_cast<int>(names.size()); }
};

// Reads data.yaml (at most 1 MiB, a regular file). `names` may be a list or an {id: name} map;
// `nc` alone gives class_0...; both must agree; at most kMaxClasses classes, each printable
// text. Errors name the file and the field; nothing in the file makes it throw.
absl::StatusOr<DataConfig> LoadDataConfig(const std::string& yaml_path);

// Every image of the sources, each a folder (searched recursively, symlinked folders not
// followed) or a .txt list of paths (relative ones resolve against the list's folder), sorted
// per source. With `roots`, every image and source is resolved and must lie under one of them
// (PERMISSION_DENIED naming it otherwise); the paths are returned as listed, so that labels are
// found beside them as Ultralytics finds them.
absl::StatusOr<std::vector<std::string>> ListImages(const std::vector<std::string>& sources,
                                                    const std::vector<std::string>& roots = {});

}  // namespace yolo
