// Memory logs: memory_log_YYYYMMDD_HHMMSS.json, written by yolod into each experiment's run
// folder while it runs and by `yoloctl memory monitor`; read back by `yoloctl memory analyze`.
// LibTorch-free.
//
// Schema "yolod.memory_log", version 1 (a reader refuses a newer version; fields may be added
// within a version):
//   {"schema": "yolod.memory_log", "version": 1,
//    "source": "yolod" | "yoloctl memory monitor",
//    "experiment_id": "exp-…",            (yolod's logs only)
//    "rss_of": what rss_bytes measures ("the experiment's worker", "yolod and its workers"),
//    "started": "2026-12-02T01:35:31Z",   (UTC, RFC 3339)
//    "interval_seconds": 5,               (between samples; doubles when the log is thinned)
//    "thresholds": {"ram": [70, 80, 90], "gpu": [80, 90, 95]},   (notice, warning, danger %)
//    "samples": [{"t": 0.0,                (seconds since `started`)
//                 "ram_used_bytes": N, "ram_limit_bytes": N,   (against the effective limit)
//                 "ram_level": "ok" | "notice" | "warning" | "danger",
//                 "rss_bytes": N,                              (absent: not measured)
//                 "gpus": [{"index": 0, "used_bytes": N, "total_bytes": N}],
//                 "gpu_level": "ok" | …,                       (absent without GPUs)
//                 "psi_full_avg10": 0.0,                       (absent without PSI)
//                 "epoch": E}],                                (absent outside an epoch)
//    "events": [{"t": 12.5, "kind": "epoch" | "round" | "policy" | "level" | …,
//                "message": "…", "epoch": E, "rss_bytes": N}]}   (epoch, rss_bytes optional)
// The file is replaced whole (a temporary file, fsync, rename) at every flush, so that it is
// valid JSON whenever the writer dies. A log holds at most `max_samples` samples: past that,
// every other one is dropped and the interval doubles, so that a run of days stays a few MB.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace yolo {

inline constexpr char kMemoryLogSchema[] = "yolod.memory_log";
inline constexpr int kMemoryLogVersion = 1;

struct MemoryLogGpu {
  int index = 0;
  int64_t used_bytes = 0, total_bytes = 0;
};

struct MemoryLogSample {
  double t = 0;  // seconds since the log started
  int64_t ram_used_bytes = 0, ram_limit_bytes = 0;
  std::string ram_level = "ok";
  std::optional<int64_t> rss_bytes;
  std::vector<MemoryLogGpu> gpus;
  std::optional<std::string> gpu_level;
  std::optional<double> psi_full_avg10;
  std::optional<int> epoch;
};

struct MemoryLogEvent {
  double t = 0;
  std::string kind;
  std::string message;
  std::optional<int> epoch;
  std::optional<int64_t> rss_bytes;
};

struct MemoryLog {
  int version = kMemoryLogVersion;
  std::string source, experiment_id, rss_of;
  std::chrono::system_clock::time_point started;
  double interval_seconds = 1;
  std::vector<double> ram_thresholds{70, 80, 90}, gpu_thresholds{80, 90, 95};  // percent
  std::vector<MemoryLogSample> samples;
  std::vector<MemoryLogEvent> events;
};

// memory_log_YYYYMMDD_HHMMSS.json for `when`, in local time as the file names of the memory
// guide's monitor.
std::string MemoryLogFileName(std::chrono::system_clock::time_point when);

// Writes one log. Not thread-safe: one owner.
class MemoryLogWriter {
 public:
  // `header`'s samples and events are ignored; `started` is when t = 0.
  MemoryLogWriter(std::string path, MemoryLog header, size_t max_samples = 10000);
  const std::string& path() const { return path_; }
  double Seconds(std::chrono::system_clock::time_point when) const;  // t for `when`
  void Add(MemoryLogSample sample);
  void Add(MemoryLogEvent event);
  // The whole log to disk, replacing the file atomically.
  absl::Status Flush();
  size_t bytes() const { return bytes_; }        // of the last write
  const MemoryLog& log() const { return log_; }  // as the next write will have it

 private:
  std::string path_;
  MemoryLog log_;
  size_t max_samples_;
  int64_t offered_ = 0;  // samples offered
  int stride_ = 1;       // of them, every stride-th is kept
  size_t bytes_ = 0;
};

// The log as JSON text (the schema above).
std::string MemoryLogToJson(const MemoryLog& log);
// INVALID_ARGUMENT naming the file and what is wrong: not JSON (a truncated file says where it
// ends), not a memory log (no schema, or another), a newer version, a field of the wrong type
// ("samples[12].ram_used_bytes"). NOT_FOUND when the file is missing.
absl::StatusOr<MemoryLog> ReadMemoryLog(const std::string& path);
absl::StatusOr<MemoryLog> ParseMemoryLog(const std::string& text, const std::string& name);

struct SeriesStats {
  int count = 0;
  double min = 0, mean = 0, max = 0, p95 = 0;
};

struct MemoryAnalysis {
  double seconds = 0;  // from the first sample to the last
  SeriesStats ram_used_bytes, ram_used_percent, rss_bytes, gpu_used_bytes, gpu_used_percent;
  // Least squares over time: RAM used and RSS, per minute.
  double ram_bytes_per_minute = 0, ram_r2 = 0;
  double rss_bytes_per_minute = 0, rss_r2 = 0;
  // The leak rule (leak.h) over the RSS of the epoch events, the first (the warm-up) left out.
  int epochs_fitted = 0;
  double rss_bytes_per_epoch = 0, epoch_r2 = 0;
  bool leak_suspected = false;
  std::string leak_verdict;  // in words
  // Seconds spent at each level, ok notice warning danger, from each sample to the next.
  double ram_level_seconds[4] = {0, 0, 0, 0};
  double gpu_level_seconds[4] = {0, 0, 0, 0};
  bool has_gpu = false;
};

MemoryAnalysis AnalyzeMemoryLog(const MemoryLog& log);
// The analysis as a table, for `yoloctl memory analyze`.
std::string FormatMemoryAnalysis(const MemoryLog& log, const MemoryAnalysis& analysis);

// "ok" -> 0 ... "danger" -> 3; -1 for anything else.
int MemoryLevelIndex(const std::string& level);

}  // namespace yolo
