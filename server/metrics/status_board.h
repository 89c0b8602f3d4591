// The data behind yolod's status page: the host's RAM, each GPU and each running experiment's
// worker RSS over the last hour, sampled every `interval` on a thread of its own, and the page's
// JSON (GET /api/status): that history, the thresholds and levels, the experiments with their
// progress and latest memory events. LibTorch-free.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/memory/watchdog.h"
#include "yolo/v1/experiment.pb.h"
#include "yolo/v1/memory.pb.h"

namespace yolo {

struct StatusSources {
  std::function<std::optional<MemorySample>()> latest;  // the watchdog's latest sample
  std::function<std::vector<v1::WorkerMemory>()> workers;
  std::function<std::vector<v1::Experiment>()> experiments;
  std::function<std::pair<Thresholds, Thresholds>()> thresholds;  // RAM, GPU
  std::function<std::vector<WatchdogEvent>()> events;
};

class StatusBoard {
 public:
  struct Options {
    std::chrono::milliseconds interval{5000};
    std::chrono::seconds window{3600};  // history kept
  };
  StatusBoard(StatusSources sources, Options options);
  explicit StatusBoard(StatusSources sources) : StatusBoard(std::move(sources), Options()) {}
  ~StatusBoard();  // Stop()

  void Start();
  void Stop();
  void SampleOnce();  // the thread's work; tests call it
  // The page's JSON. Any thread.
  std::string Json() const;
  // The workers' memory as of the latest sample: /metrics serves it, since reading each
  // worker's smaps_rollup costs milliseconds that a scrape should not pay. Any thread.
  std::vector<v1::WorkerMemory> Workers() const;

 private:
  struct Point {
    std::chrono::system_clock::time_point wall;
    double ram_ratio = 0;
    int64_t ram_used = 0, ram_limit = 0;
    std::map<int, double> gpu_ratio;            // by GPU index
    std::map<std::string, int64_t> worker_rss;  // by experiment id
  };
  void Loop();

  const StatusSources sources_;
  const Options options_;
  mutable std::mutex mu_;
  std::deque<Point> points_;
  std::map<int, std::string> gpu_names_;   // index -> "NVIDIA H200 (GPU-...)"
  std::vector<v1::WorkerMemory> workers_;  // as of the latest sample
  bool stop_ = false;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace yolo
