// yolo-worker's exit codes: the worker exits with them and yolod reads them back from waitpid.
// The one definition both sides use.
#pragma once

namespace yolo::worker_exit {

inline constexpr int kSucceeded = 0;    // finished every epoch (or the command's work)
inline constexpr int kError = 1;        // failed; the reason is its last "error: " line
inline constexpr int kUsage = 2;        // bad arguments
inline constexpr int kStopped = 3;      // stopped on request; weights/last.pt is resumable
inline constexpr int kOutOfMemory = 4;  // RAM or GPU memory ran out
inline constexpr int kRoundEnded = 5;   // round_end's epoch is done; weights/last.pt resumable

}  // namespace yolo::worker_exit
