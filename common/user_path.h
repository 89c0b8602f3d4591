// Paths that someone outside the process named (a client's spec, a data.yaml, a command line):
// the one place that decides whether such a path may be read. LibTorch-free.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace yolo {

inline constexpr size_t kMaxPathBytes = 4096;     // PATH_MAX
inline constexpr size_t kMaxPathComponent = 255;  // NAME_MAX

// INVALID_ARGUMENT, naming `field`, for an empty path, one over kMaxPathBytes, one with a NUL
// or another control character, or with a component over kMaxPathComponent bytes.
absl::Status CheckPathText(const std::string& field, const std::string& path);

enum class PathKind { kFile, kDirectory, kFileOrDirectory };

// Checks the text, resolves the path once (every symlink, `.` and `..`), checks that the
// resolved path lies under one of `roots` (all allowed when empty) and that it is a regular file
// or a directory as `kind` asks (never a FIFO, device or socket). Stats only: never opens, so it
// cannot block on a FIFO. Returns the resolved path, which is the one to use from then on.
absl::StatusOr<std::string> ResolveUserPath(const std::string& field, const std::string& path,
                                            PathKind kind, const std::vector<std::string>& roots);

// Whether the resolved `path` lies under one of `roots` (each resolved; all allowed if empty).
bool UnderRoots(const std::string& path, const std::vector<std::string>& roots);

// `text` for an error message or a log line: control characters and bytes that are not
// printable ASCII as \xNN (\n as \n), cut after `max_bytes` with "..." after it.
std::string Printable(const std::string& text, size_t max_bytes = 80);

// Whether `text` has only printable characters (no control characters; UTF-8 above 0x7f is
// accepted as it is).
bool IsPrintableText(const std::string& text);

}  // namespace yolo
