#include "common/data_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <stdexcept>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "common/user_path.h"
#include "common/yaml_file.h"

namespace yolo {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxDataYamlBytes = 1u << 20;
constexpr size_t kMaxListBytes = 256u << 20;  // a .txt list of image paths
constexpr size_t kMaxSources = 1000;
constexpr size_t kMaxClassName = 256;

std::string Lower(std::string s) { return absl::AsciiStrToLower(s); }

absl::StatusOr<std::vector<std::string>> SourcesOf(const YAML::Node& node, const std::string& key,
                                                   const std::string& root,
                                                   const std::string& yaml_path) {
  std::vector<std::string> out;
  if (!node || node.IsNull()) return out;
  auto resolve = [&](const std::string& p) {
    absl::Status text = CheckPathText(absl::StrCat(yaml_path, ": ", key), p);
    if (!text.ok()) throw std::invalid_argument(std::string(text.message()));
    fs::path path(p);
    return path.is_absolute() ? path.lexically_normal().string()
                              : (fs::path(root) / path).lexically_normal().string();
  };
  try {
    if (node.IsSequence()) {
      for (const auto& item : node) out.push_back(resolve(item.as<std::string>()));
    } else {
      out.push_back(resolve(node.as<std::string>()));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(yaml_path, ": field '", key, "' must be a path or a list of paths"));
  } catch (const std::invalid_argument& e) {
    return absl::InvalidArgumentError(e.what());
  }
  if (out.size() > kMaxSources) {
    return absl::InvalidArgumentError(
        absl::StrCat(yaml_path, ": field '", key, "' lists more than ", kMaxSources, " sources"));
  }
  return out;
}

}  // namespace

bool IsImageFile(const std::string& path) {
  static const std::set<std::string> kSuffixes = {".bmp", ".dng", ".jpeg", ".jpg",  ".mpo",
                                                  ".png", ".tif", ".tiff", ".webp", ".pfm"};
  return kSuffixes.count(Lower(fs::path(path).extension().string())) > 0;
}

namespace {

absl::StatusOr<DataConfig> ParseDataConfig(const std::string& yaml_path) {
  auto loaded = LoadYamlFile(yaml_path, kMaxDataYamlBytes);
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(), absl::StrCat("data: ", loaded.status().message()));
  }
  const YAML::Node root = *loaded;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(yaml_path, ": expected a mapping of fields"));
  }
  DataConfig config;
  config.yaml_path = yaml_path;
  const fs::path yaml_dir = fs::absolute(yaml_path).parent_path();
  fs::path base = yaml_dir;
  if (root["path"] && !root["path"].IsNull()) {
    if (!root["path"].IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(yaml_path, ": field 'path' must be a path"));
    }
    const std::string text_path = root["path"].as<std::string>();
    RETURN_IF_ERROR(CheckPathText(absl::StrCat(yaml_path, ": path"), text_path));
    fs::path p(text_path);
    if (p.is_absolute()) {
      base = p;
    } else if (fs::exists(yaml_dir / p)) {
      base = yaml_dir / p;
    } else {
      base = fs::absolute(p);
    }
  }
  config.root = base.lexically_normal().string();

  YAML::Node val = root["val"] ? root["val"] : root["validation"];
  if (!root["train"] || root["train"].IsNull()) {
    return absl::InvalidArgumentError(absl::StrCat(yaml_path, ": field 'train' is missing"));
  }
  if (!val || val.IsNull()) {
    return absl::InvalidArgumentError(absl::StrCat(yaml_path, ": field 'val' is missing"));
  }
  auto train = SourcesOf(root["train"], "train", config.root, yaml_path);
  if (!train.ok()) return train.status();
  auto vals = SourcesOf(val, "val", config.root, yaml_path);
  if (!vals.ok()) return vals.status();
  auto test = SourcesOf(root["test"], "test", config.root, yaml_path);
  if (!test.ok()) return test.status();
  if (train->empty() || vals->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        yaml_path, ": field '", train->empty() ? "train" : "val", "' lists no sources"));
  }
  config.train = *train;
  config.val = *vals;
  config.test = *test;

  const YAML::Node names = root["names"];
  try {
    if (names && names.IsSequence()) {
      for (const auto& n : names) config.names.push_back(n.as<std::string>());
    } else if (names && names.IsMap()) {
      std::map<int, std::string> by_id;
      for (const auto& item : names) {
        const int id = item.first.as<int>();
        if (id < 0 || id >= kMaxClasses) {
          return absl::InvalidArgumentError(absl::StrCat(yaml_path, ": field 'names': class id ",
                                                         id, " is outside [0, ", kMaxClasses, ")"));
        }
        by_id[id] = item.second.as<std::string>();
      }
      int expect = 0;
      for (const auto& [id, name] : by_id) {
        if (id != expect) {
          return absl::InvalidArgumentError(absl::StrCat(
              yaml_path, ": field 'names': class ids must run 0..nc-1, missing ", expect));
        }
        config.names.push_back(name);
        ++expect;
      }
    } else if (names && !names.IsNull()) {
      return absl::InvalidArgumentError(
          absl::StrCat(yaml_path, ": field 'names' must be a list or a map of id: name"));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(yaml_path, ": field 'names' is malformed: ", e.what()));
  }
  if (root["nc"] && !root["nc"].IsNull()) {
    int nc = 0;
    try {
      nc = root["nc"].as<int>();
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError(absl::StrCat(yaml_path, ": field 'nc' must be an integer"));
    }
    if (nc < 1 || nc > kMaxClasses) {
      return absl::InvalidArgumentError(
          absl::StrCat(yaml_path, ": field 'nc' must be in [1, ", kMaxClasses, "]"));
    }
    if (config.names.empty()) {
      for (int i = 0; i < nc; ++i) config.names.push_back(absl::StrCat("class_", i));
    } else if (static_cast<int>(config.names.size()) != nc) {
      return absl::InvalidArgumentError(absl::StrCat(
          yaml_path, ": 'nc' is ", nc, " but 'names' has ", config.names.size(), " entries"));
    }
  }
  if (config.names.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(yaml_path, ": give the classes in field 'names' (or 'nc')"));
  }
  if (config.names.size() > static_cast<size_t>(kMaxClasses)) {
    return absl::InvalidArgumentError(
        absl::StrCat(yaml_path, ": field 'names' has more than ", kMaxClasses, " classes"));
  }
  for (size_t i = 0; i < config.names.size(); ++i) {
    const std::string& name = config.names[i];
    if (name.size() > kMaxClassName || !IsPrintableText(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(yaml_path, ": field 'names': class ", i, " ('", Printable(name),
                       "') must be printable text of at most ", kMaxClassName, " bytes"));
    }
  }
  return config;
}

}  // namespace

absl::StatusOr<DataConfig> LoadDataConfig(const std::string& yaml_path) {
  RETURN_IF_ERROR(CheckPathText("data", yaml_path));
  try {
    return ParseDataConfig(yaml_path);
  } catch (const std::exception& e) {  // yaml-cpp conversions, std::filesystem
    return absl::InvalidArgumentError(absl::StrCat(Printable(yaml_path), ": ", e.what()));
  }
}

absl::StatusOr<std::vector<std::string>> ListImages(const std::vector<std::string>& sources,
                                                    const std::vector<std::string>& roots) {
  std::vector<std::string> images;
  for (const std::string& source : sources) {
    std::vector<std::string> found;
    std::error_code ec;
    if (fs::is_directory(source, ec)) {
      for (auto it = fs::recursive_directory_iterator(source, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        std::error_code file_ec;
        if (it->is_regular_file(file_ec) && IsImageFile(it->path().string())) {
          found.push_back(it->path().string());
        }
      }
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot list ", Printable(source, 256), ": ", ec.message()));
      }
      std::sort(found.begin(), found.end());
    } else if (fs::is_regular_file(source, ec) && Lower(fs::path(source).extension()) == ".txt") {
      std::string text;
      RETURN_IF_ERROR(ReadFile(source, &text, kMaxListBytes));
      const fs::path parent = fs::path(source).parent_path();
      for (absl::string_view line : absl::StrSplit(text, '\n')) {
        line = absl::StripAsciiWhitespace(line);
        if (line.empty()) continue;
        const std::string entry(line);
        if (absl::Status ok = CheckPathText(absl::StrCat(source, ": entry"), entry); !ok.ok()) {
          return ok;
        }
        fs::path p{entry};
        if (p.is_relative()) p = parent / p;
        if (IsImageFile(p.string())) found.push_back(p.lexically_normal().string());
      }
    } else if (fs::is_regular_file(source, ec) && IsImageFile(source)) {
      found.push_back(source);
    } else {
      return absl::NotFoundError(absl::StrCat("dataset source '", Printable(source, 256),
                                              "' does not exist (expected a folder of images, "
                                              "a .txt list or an image)"));
    }
    if (!roots.empty()) {
      if (!UnderRoots(fs::weakly_canonical(source, ec).string(), roots)) {
        return absl::PermissionDeniedError(absl::StrCat("dataset source '", Printable(source, 256),
                                                        "' is outside the allowed roots"));
      }
      for (const std::string& image : found) {
        char buffer[PATH_MAX];
        if (::realpath(image.c_str(), buffer) == nullptr) continue;  // reported when it is read
        if (!UnderRoots(buffer, roots)) {
          return absl::PermissionDeniedError(
              absl::StrCat("image '", Printable(image, 256), "' (of dataset source '",
                           Printable(source, 256), "') is outside the allowed roots"));
        }
      }
    }
    images.insert(images.end(), found.begin(), found.end());
  }
  return images;
}

}  // namespace yolo
