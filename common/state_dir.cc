#include "common/state_dir.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace yolo {

std::string DefaultStateDir() {
  const char* xdg = std::getenv("XDG_STATE_HOME");
  if (xdg != nullptr && *xdg != '\0') return absl::StrCat(xdg, "/yolod");
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return absl::StrCat(home, "/.local/state/yolod");
  return "/var/lib/yolod";
}

}  // namespace yolo
