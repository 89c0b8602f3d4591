// Crash-safe file writes: the content goes to a temp file in the same folder, is fsynced,
// renamed over the destination, and the folder is fsynced. A reader (or a process restarted
// after SIGKILL) sees either the old file or the new one, never a half-written one.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"

namespace yolo {

// Writes `contents` to `path` atomically.
absl::Status WriteFileAtomic(const std::string& path, const std::string& contents);

// A temp path beside `path` for writers that cannot write to a string (e.g. LibTorch archives).
// Unique per process and call.
std::string TempPathFor(const std::string& path);

// Fsyncs `temp_path`, renames it to `path` and fsyncs the folder. Removes the temp file on error.
absl::Status CommitTempFile(const std::string& temp_path, const std::string& path);

// Reads a whole regular file of at most `max_bytes`. Opens without blocking (a FIFO is refused,
// never waited on) and refuses anything that is not a regular file: NOT_FOUND when it is
// missing, INVALID_ARGUMENT when it is a directory, device, FIFO or socket, or too large.
inline constexpr size_t kDefaultMaxRead = 64u << 20;
absl::Status ReadFile(const std::string& path, std::string* contents,
                      size_t max_bytes = kDefaultMaxRead);

}  // namespace yolo
