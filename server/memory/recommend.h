// Recommendations in plain words, from a memory report: what to lower, by how much, and why
// ("exp-1: batch 16 -> 8 frees about 1.1 GB of RAM at this run's rate ..."). The figures come from
// each run's pre-flight estimate (bytes per image, loader, image cache) and its RSS trend.
#pragma once

#include <string>
#include <vector>

#include "yolo/v1/memory.pb.h"

namespace yolo {

// Nothing while every level is ok and no leak is suspected.
std::vector<std::string> Recommend(const v1::MemoryReport& report);

}  // namespace yolo
