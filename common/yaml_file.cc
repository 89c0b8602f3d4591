#include "common/yaml_file.h"

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/user_path.h"

namespace yolo {

absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path, size_t max_bytes) {
  std::string text;
  if (absl::Status read = ReadFile(path, &text, max_bytes); !read.ok()) {
    if (absl::IsNotFound(read)) {
      return absl::NotFoundError(absl::StrCat("file '", Printable(path, 256), "' does not exist"));
    }
    return absl::InvalidArgumentError(read.message());
  }
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {  // its what() says "yaml-cpp: error at line N, column M"
    return absl::InvalidArgumentError(
        absl::StrCat(Printable(path, 256), ": not valid YAML: ", Printable(e.what(), 200)));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(Printable(path, 256), ": ", e.what()));
  }
}

}  // namespace yolo
