// The memory log as a PNG, drawn with PLplot (Debian's libplplot, its cairo PNG device): RAM
// (and the RSS the log measures) as a percentage of the RAM limit over time, and with GPUs their
// memory, each over the notice / warning / danger bands, the events marked where they happened.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "common/memory_log.h"

namespace yolo {

// Replaces `png_path` atomically, when it is missing or a regular file other than
// `source_path` (the log's own file); INVALID_ARGUMENT otherwise. FAILED_PRECONDITION when
// PLplot has no PNG device.
absl::Status PlotMemoryLog(const MemoryLog& log, const std::string& png_path,
                           const std::string& source_path = "");

}  // namespace yolo
