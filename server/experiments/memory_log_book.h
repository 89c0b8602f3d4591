// The memory log of each experiment (common/memory_log.h), memory_log_YYYYMMDD_HHMMSS.json in
// its run folder: opened when it first runs in this yolod, a sample every interval while a
// worker of it runs (the watchdog's latest sample and the worker's RSS), its events (state
// changes, epoch ends with the RSS, every memory action), closed at a final state. The file is
// replaced whole (common/memory_log.h), so that it is valid JSON whenever yolod dies: at each
// interval with an event, else every 1 + size/256 KiB intervals, so that a long log does not
// keep the disk busy (a crash loses at most those samples).
//
// A thread of its own writes the files; the calls only queue, so that the manager may call
// them with its lock held. LibTorch-free.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/memory_log.h"
#include "server/memory/levels.h"
#include "server/memory/proc_probe.h"
#include "server/memory/watchdog.h"

namespace yolo {

struct MemoryLogSource {
  std::function<std::optional<MemorySample>()> sample;            // the watchdog's latest
  std::function<std::pair<Thresholds, Thresholds>()> thresholds;  // RAM, GPU
};

class MemoryLogBook {
 public:
  MemoryLogBook(std::shared_ptr<const ProcProbe> proc, std::chrono::milliseconds interval);
  ~MemoryLogBook();  // writes what is queued and every open log once more

  // Set once before experiments run; without it, samples are not taken (events still are).
  void SetSource(MemoryLogSource source);
  // A log for `id` in `run_dir`, unless one is open.
  void Open(const std::string& id, const std::string& run_dir);
  // The worker whose RSS the samples take (0: none runs now), and the epoch it trains.
  void SetWorker(const std::string& id, pid_t pid);
  void SetEpoch(const std::string& id, int epoch);
  void Event(const std::string& id, std::string kind, std::string message,
             std::optional<int> epoch = std::nullopt,
             std::optional<int64_t> rss_bytes = std::nullopt);
  // Written once more and forgotten.
  void Close(const std::string& id);
  // Forgotten without a write, once no write of it is under way (before its folder goes).
  void Forget(const std::string& id);

 private:
  struct Log {
    std::string run_dir;
    std::chrono::system_clock::time_point opened;
    std::unique_ptr<MemoryLogWriter> writer;  // made by the thread at its first write
    pid_t pid = 0;
    std::optional<int> epoch;
    std::vector<std::pair<std::chrono::system_clock::time_point, MemoryLogEvent>> pending;
    bool closing = false;
    int unwritten = 0;                                    // intervals since the last write
    std::chrono::system_clock::time_point last_sample{};  // the watchdog's, as last logged
  };
  void Loop();
  void WriteAll(bool final);

  const std::shared_ptr<const ProcProbe> proc_;
  const std::chrono::milliseconds interval_;
  mutable std::mutex mu_;  // guards what follows; never held while a file is written
  MemoryLogSource source_;
  std::map<std::string, Log> logs_;
  bool stop_ = false;
  std::condition_variable cv_;
  // One writer of the files at a time (the thread, or the destructor); only it makes or
  // destroys a Log's writer.
  std::mutex write_mu_;
  std::thread thread_;
};

}  // namespace yolo
