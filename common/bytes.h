// Bytes in words for messages: "512.0 MB", "1.25 GB". LibTorch-free.
#pragma once

#include <cmath>
#include <string>

#include "absl/strings/str_format.h"

namespace yolo {

inline std::string MegaOrGigaBytes(double bytes) {
  if (std::abs(bytes) >= 1e9) return absl::StrFormat("%.2f GB", bytes / 1e9);
  return absl::StrFormat("%.1f MB", bytes / 1e6);
}

}  // namespace yolo
