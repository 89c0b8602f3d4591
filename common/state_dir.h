// Where yolod keeps its state when not told: both yolod and yoloctl (which reads the address a
// local yolod wrote there) need the same answer.
#pragma once

#include <string>

namespace yolo {

// $XDG_STATE_HOME/yolod, else $HOME/.local/state/yolod, else /var/lib/yolod.
std::string DefaultStateDir();

}  // namespace yolo
