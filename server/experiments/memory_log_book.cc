#include "server/experiments/memory_log_book.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace yolo {

namespace {
namespace fs = std::filesystem;

std::vector<double> Percent(const Thresholds& t) {
  return {t.notice * 100, t.warning * 100, t.danger * 100};
}

// memory_log_YYYYMMDD_HHMMSS.json, or with _2, _3 ... when a log of the same second exists.
std::string FreshPath(const std::string& run_dir, std::chrono::system_clock::time_point when) {
  const std::string name = MemoryLogFileName(when);
  std::error_code ec;
  std::string path = (fs::path(run_dir) / name).string();
  for (int n = 2; fs::exists(path, ec); ++n) {
    path = (fs::path(run_dir) / absl::StrCat(name.substr(0, name.size() - 5), "_", n, ".json"))
               .string();
  }
  return path;
}

}  // namespace

MemoryLogBook::MemoryLogBook(std::shared_ptr<const ProcProbe> proc,
                             std::chrono::milliseconds interval)
    : proc_(std::move(proc)), interval_(std::max(interval, std::chrono::milliseconds(100))) {
  thread_ = std::thread([this] { Loop(); });
}

MemoryLogBook::~MemoryLogBook() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  WriteAll(/*final=*/true);
}

void MemoryLogBook::SetSource(MemoryLogSource source) {
  std::lock_guard<std::mutex> lock(mu_);
  source_ = std::move(source);
}

void MemoryLogBook::Open(const std::string& id, const std::string& run_dir) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = logs_.find(id);
  if (it != logs_.end() && !it->second.closing) return;
  if (it != logs_.end()) {  // closing, not yet written: this one goes on instead
    it->second.closing = false;
    return;
  }
  Log& log = logs_[id];
  log.run_dir = run_dir;
  log.opened = std::chrono::system_clock::now();
}

void MemoryLogBook::SetWorker(const std::string& id, pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = logs_.find(id); it != logs_.end()) {
    it->second.pid = pid;
    if (pid == 0) it->second.epoch.reset();
  }
}

void MemoryLogBook::SetEpoch(const std::string& id, int epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = logs_.find(id); it != logs_.end()) it->second.epoch = epoch;
}

void MemoryLogBook::Event(const std::string& id, std::string kind, std::string message,
                          std::optional<int> epoch, std::optional<int64_t> rss_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = logs_.find(id);
  if (it == logs_.end()) return;
  MemoryLogEvent event;
  event.kind = std::move(kind);
  event.message = std::move(message);
  event.epoch = epoch;
  event.rss_bytes = rss_bytes;
  it->second.pending.emplace_back(std::chrono::system_clock::now(), std::move(event));
}

void MemoryLogBook::Close(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = logs_.find(id); it != logs_.end()) it->second.closing = true;
}

void MemoryLogBook::Forget(const std::string& id) {
  std::lock_guard<std::mutex> writing(write_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  logs_.erase(id);
}

void MemoryLogBook::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, interval_);
    if (stop_) break;
    lock.unlock();
    WriteAll(/*final=*/false);
    lock.lock();
  }
}

void MemoryLogBook::WriteAll(bool final) {
  std::lock_guard<std::mutex> writing(write_mu_);
  struct Work {
    std::string id;
    Log* log;  // stays: only this function, under write_mu_, erases a Log
    pid_t pid;
    std::optional<int> epoch;
    std::vector<std::pair<std::chrono::system_clock::time_point, MemoryLogEvent>> events;
    bool closing;
  };
  std::vector<Work> work;
  MemoryLogSource source;
  {
    std::lock_guard<std::mutex> lock(mu_);
    source = source_;
    for (auto& [id, log] : logs_) {
      work.push_back({id, &log, log.pid, log.epoch, std::move(log.pending), log.closing || final});
      log.pending.clear();
    }
  }
  if (work.empty()) return;
  const std::optional<MemorySample> sample = source.sample ? source.sample() : std::nullopt;
  Thresholds ram = kDefaultRamThresholds, gpu = kDefaultGpuThresholds;
  if (source.thresholds) std::tie(ram, gpu) = source.thresholds();
  std::vector<std::string> closed;
  for (Work& w : work) {
    Log& log = *w.log;
    if (!log.writer) {
      MemoryLog header;
      header.source = "yolod";
      header.experiment_id = w.id;
      header.rss_of = "the experiment's worker";
      header.started = log.opened;
      header.interval_seconds = std::chrono::duration<double>(interval_).count();
      header.ram_thresholds = Percent(ram);
      header.gpu_thresholds = Percent(gpu);
      log.writer =
          std::make_unique<MemoryLogWriter>(FreshPath(log.run_dir, log.opened), std::move(header));
    }
    for (auto& [wall, event] : w.events) {
      event.t = log.writer->Seconds(wall);
      log.writer->Add(std::move(event));
    }
    // A sample older than the log (taken before its worker started) is not the run's.
    // Nor the one already logged (the watchdog samples at its own interval).
    if (sample && w.pid > 0 && sample->host && sample->wall >= log.opened &&
        sample->wall > log.last_sample) {
      log.last_sample = sample->wall;
      MemoryLogSample s;
      s.t = log.writer->Seconds(sample->wall);
      s.ram_used_bytes = sample->ram_used_bytes;
      s.ram_limit_bytes = sample->ram_limit_bytes;
      s.ram_level = LevelName(sample->ram_level);
      // A worker that has just exited reads as no RSS, not 0.
      if (auto p = proc_->Process(w.pid); p.ok() && p->rss_bytes > 0) s.rss_bytes = p->rss_bytes;
      if (sample->gpus) {
        for (const auto& g : *sample->gpus) {
          s.gpus.push_back({g.index, g.used_bytes, g.total_bytes});
        }
        if (!sample->gpus->empty()) s.gpu_level = LevelName(sample->gpu_level);
      }
      if (sample->pressure) s.psi_full_avg10 = sample->pressure->full_avg10;
      s.epoch = w.epoch;
      log.writer->Add(std::move(s));
    }
    const bool due = !w.events.empty() || w.closing ||
                     ++log.unwritten >= 1 + static_cast<int>(log.writer->bytes() / (256 << 10));
    if (!due) continue;
    log.unwritten = 0;
    if (absl::Status written = log.writer->Flush(); !written.ok()) {
      spdlog::warn("experiment {}: memory log not written: {}", w.id,
                   std::string(written.message()));
    }
    if (w.closing) closed.push_back(w.id);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& id : closed) {
    auto it = logs_.find(id);
    // Opened again meanwhile: the same log goes on.
    if (it != logs_.end() && (it->second.closing || final)) logs_.erase(it);
  }
}

}  // namespace yolo
