#include "server/experiments/experiment_manager.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "common/user_path.h"
#include "server/experiments/clock.h"

namespace yolo {
namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

namespace {

bool IsFinal(v1::ExperimentState s) {
  return s == v1::SUCCEEDED || s == v1::FAILED || s == v1::STOPPED || s == v1::INTERRUPTED;
}

// 128 bits from the kernel's random source, as hex.
std::string NewSecret() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {  // no getrandom: the C++ library's device instead
      std::random_device device;
      for (; got < sizeof bytes; ++got) bytes[got] = static_cast<unsigned char>(device());
    }
  }
  std::string hex;
  for (unsigned char b : bytes) absl::StrAppend(&hex, absl::Hex(b, absl::kZeroPad2));
  return hex;
}

constexpr size_t kMaxExperimentJson = 4u << 20;
constexpr size_t kMaxTailPerTick = 4u << 20;  // of train.log per watcher, every 200 ms
constexpr double kPreflightWarnRatio = 0.70;  // host RAM in use when a round starts

// Up to `max_bytes` of the file from `offset` into *text; true when that reached its end.
bool ReadLogTail(const std::string& path, int64_t offset, size_t max_bytes, std::string* text) {
  text->clear();
  std::ifstream in(path, std::ios::binary);
  if (!in) return true;  // no log (yet): nothing to send
  in.seekg(0, std::ios::end);
  const int64_t size = in.tellg();
  if (size <= offset) return true;
  const int64_t n = std::min<int64_t>(size - offset, static_cast<int64_t>(max_bytes));
  text->resize(static_cast<size_t>(n));
  in.seekg(offset);
  in.read(text->data(), n);
  text->resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return offset + static_cast<int64_t>(text->size()) >= size;
}

// The order of arrival: the sequence number, then (for experiments saved before there were
// sequence numbers, all 0) the creation time.
std::tuple<int64_t, int64_t, std::string> ArrivalKey(const v1::Experiment& e) {
  return {e.sequence(), TimeUtil::TimestampToNanoseconds(e.create_time()), e.id()};
}

// "exp-" and 8 hex digits, as NewId makes them.
bool IsExperimentId(const std::string& id) {
  if (id.size() != 12 || id.rfind("exp-", 0) != 0) return false;
  return std::all_of(id.begin() + 4, id.end(), [](char c) { return std::isxdigit(c) != 0; });
}

std::string NewId() {
  static std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("exp-%08x", static_cast<uint32_t>(rng()));
}

// A worker that ran out of memory: it said so (exit code 4), or it was SIGKILLed without yolod
// asking, as the kernel's OOM killer (and earlyoom, systemd-oomd, the kubelet) kill.
bool OutOfMemoryEnd(const WorkerEnd& end, bool stop_requested) {
  return end.exit == v1::WORKER_OUT_OF_MEMORY || (end.signal == SIGKILL && !stop_requested);
}

std::string OutOfMemoryWhy(const WorkerEnd& end, int64_t oom_kills_at_start,
                           const absl::StatusOr<CgroupMemory>& group_after,
                           const std::string& error) {
  if (end.exit == v1::WORKER_OUT_OF_MEMORY) {
    return absl::StrCat("out of memory (", end.Describe(), ")", error.empty() ? "" : ": ", error);
  }
  const bool counted = oom_kills_at_start >= 0 && group_after.ok() &&
                       group_after->oom_kill_events > oom_kills_at_start;
  return absl::StrCat("worker ", end.Describe(),
                      counted ? ": the cgroup counted an OOM kill"
                              : ": not by yolod, as memory killers kill (no OOM kill counted)");
}

v1::ExperimentEvent EventNow() {
  v1::ExperimentEvent e;
  *e.mutable_time() = NowTimestamp();
  return e;
}

}  // namespace

ExperimentManager::ExperimentManager(ManagerOptions options, DefaultsFn defaults)
    : options_(std::move(options)),
      defaults_(std::move(defaults)),
      writer_((fs::path(options_.state_dir) / "runs").string()),
      logs_(std::make_unique<MemoryLogBook>(options_.proc, options_.memory_log_interval)) {}

v1::RoundMemory ExperimentManager::CleanupAndMeasure() const {
  v1::RoundMemory m;
  *m.mutable_time() = NowTimestamp();
  const auto before = options_.proc->Self();
  malloc_trim(0);
  const auto after = options_.proc->Self();
  if (after.ok()) m.set_yolod_rss_bytes(after->rss_bytes);
  if (before.ok() && after.ok()) {
    m.set_freed_bytes(std::max<int64_t>(before->rss_bytes - after->rss_bytes, 0));
  }
  if (auto host = options_.proc->Host(); host.ok() && host->total_bytes > 0) {
    m.set_host_available_bytes(host->available_bytes);
    m.set_host_used_ratio(1.0 - static_cast<double>(host->available_bytes) / host->total_bytes);
  }
  return m;
}

bool ExperimentManager::WorkerAlive(pid_t pid) const {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  auto info = options_.proc->Process(pid);
  return info.ok() && info->name.rfind("yolo-worker", 0) == 0;
}

std::string ExperimentManager::RunsDir() const {
  return (fs::path(options_.state_dir) / "runs").string();
}

absl::StatusOr<std::unique_ptr<ExperimentManager>> ExperimentManager::Create(ManagerOptions options,
                                                                             DefaultsFn defaults) {
  std::unique_ptr<ExperimentManager> m(new ExperimentManager(std::move(options), defaults));
  std::error_code ec;
  fs::create_directories(m->RunsDir(), ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", m->RunsDir(), ": ", ec.message()));
  RETURN_IF_ERROR(m->Recover());
  m->scheduler_ = std::thread([p = m.get()] { p->SchedulerLoop(); });
  m->ticker_ = std::thread([p = m.get()] { p->TickerLoop(); });
  return m;
}

ExperimentManager::~ExperimentManager() {
  Shutdown(std::chrono::seconds(10));
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_threads_ = true;
  }
  cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
  if (ticker_.joinable()) ticker_.join();
}

absl::Status ExperimentManager::Recover() {
  std::vector<std::unique_ptr<Entry>> loaded;
  std::error_code ec;
  for (const auto& dir : fs::directory_iterator(RunsDir(), ec)) {
    const std::string id = dir.path().filename().string();
    std::error_code type_ec;
    if (!IsExperimentId(id) || !dir.is_directory(type_ec) || dir.is_symlink(type_ec)) {
      spdlog::warn("{}: not an experiment folder; left as it is", Printable(dir.path().string()));
      continue;
    }
    const fs::path json = dir.path() / "experiment.json";
    if (!fs::exists(json, type_ec)) continue;
    std::string text;
    absl::Status read = ReadFile(json.string(), &text, kMaxExperimentJson);
    auto e = std::make_unique<Entry>();
    if (read.ok()) {
      auto parsed = google::protobuf::util::JsonStringToMessage(text, &e->exp);
      if (!parsed.ok()) read = absl::DataLossError(parsed.ToString());
    }
    if (read.ok() && e->exp.id() != id) {
      read = absl::DataLossError(
          absl::StrCat("it names experiment '", Printable(e->exp.id()), "', not ", id));
    }
    if (!read.ok()) {
      spdlog::error("{}: cannot be read ({}); left as it is", json.string(),
                    Printable(std::string(read.message()), 300));
      continue;
    }
    e->exp.set_run_dir(RunDirOf(id));  // whatever the file says
    loaded.push_back(std::move(e));
  }
  // Order of arrival; experiments saved before sequences existed come first, by creation time.
  std::sort(loaded.begin(), loaded.end(),
            [](const auto& a, const auto& b) { return ArrivalKey(a->exp) < ArrivalKey(b->exp); });
  // Before the manager's threads start: nothing else touches the entries yet.
  for (auto& e : loaded) {
    const std::string id = e->exp.id();
    last_sequence_ = std::max(last_sequence_, e->exp.sequence());
    if (e->exp.state() == v1::RUNNING) {
      e->exp.set_state(v1::INTERRUPTED);
      const bool has_checkpoint =
          fs::exists(fs::path(e->exp.run_dir()) / "weights" / "last.pt", ec);
      e->exp.set_reason(absl::StrCat("yolod stopped while it ran (worker pid ", e->exp.worker_pid(),
                                     has_checkpoint
                                         ? "); resume continues from last.pt"
                                         : "); it had no checkpoint yet: start it again"));
      *e->exp.mutable_end_time() = NowTimestamp();
      (void)writer_.Write({e->exp, ++e->version});  // logged
      spdlog::warn("experiment {} was running when yolod stopped: INTERRUPTED", id);
    } else if (e->exp.state() == v1::QUEUED) {
      queue_.push_back(id);
    }
    entries_[id] = std::move(e);
  }
  spdlog::info("{} experiments loaded from {}, {} queued", entries_.size(), RunsDir(),
               queue_.size());
  return absl::OkStatus();
}

std::string ExperimentManager::RunDirOf(const std::string& id) const {
  return (fs::path(RunsDir()) / id).string();
}

std::string ExperimentManager::LogPathOf(const std::string& id) const {
  return (fs::path(RunDirOf(id)) / "train.log").string();
}

RecordSnapshot ExperimentManager::SnapshotLocked(Entry& e) { return {e.exp, ++e.version}; }

void ExperimentManager::PublishLocked(const std::string& id, const v1::ExperimentEvent& event) {
  for (auto& [handle, w] : watchers_) {
    if (w->id != id || w->ending) continue;
    if (event.has_progress()) {
      const auto now = std::chrono::steady_clock::now();
      const bool last = event.progress().batch() >= event.progress().batches();
      if (!last && now - w->last_progress < w->progress_interval) continue;
      w->last_progress = now;
    }
    w->sink(event);
  }
}

ExperimentCounters ExperimentManager::Counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

void ExperimentManager::PublishStateLocked(Entry& e, PendingWrites& writes) {
  writes.Add(SnapshotLocked(e));  // a failed write is logged; memory is the truth for this run
  if (e.exp.state() != e.counted_state) {
    e.counted_state = e.exp.state();
    ++counters_.entered[e.exp.state()];
  }
  if (e.exp.state() != e.logged_state) {
    e.logged_state = e.exp.state();
    logs_->Event(e.exp.id(), "state",
                 absl::StrCat(v1::ExperimentState_Name(e.exp.state()), ": ", e.exp.reason()));
    if (IsFinal(e.exp.state())) logs_->Close(e.exp.id());
  }
  v1::ExperimentEvent event = EventNow();
  *event.mutable_experiment() = e.exp;
  PublishLocked(e.exp.id(), event);
  if (IsFinal(e.exp.state())) EndWatchesLocked(e);
}

void ExperimentManager::EndWatchesLocked(Entry& e) {
  bool handed_over = false;
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    Watcher& w = *it->second;
    if (w.id != e.exp.id() || w.ending) {
      ++it;
    } else if (w.logs) {  // after its last log lines
      w.ending = true;
      handed_over = true;
      ++it;
    } else {
      if (w.on_end) w.on_end();
      it = watchers_.erase(it);
    }
  }
  if (handed_over) cv_.notify_all();
}

absl::StatusOr<ExperimentManager::Entry*> ExperimentManager::FindLocked(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("experiment '", Printable(id), "' not found"));
  }
  return it->second.get();
}

absl::StatusOr<v1::Experiment> ExperimentManager::Start(const v1::ExperimentSpec& spec,
                                                        const std::function<bool()>& cancelled) {
  std::map<std::string, std::string> args(spec.args().begin(), spec.args().end());
  const auto device = args.find("device");
  SpecCheckOptions check = defaults_(device == args.end() ? "" : device->second);
  check.allowed_roots = options_.allowed_roots;
  check.has_gpu = options_.has_gpu;
  check.gpu_count = options_.gpu_count;
  check.allow_fault_injection = options_.allow_fault_injection;
  ASSIGN_OR_RETURN(CheckedSpec checked, CheckSpec(spec.name(), args, check));
  v1::ExperimentSpec resolved_spec = spec;
  if (spec.has_smart()) {
    ASSIGN_OR_RETURN(*resolved_spec.mutable_smart(),
                     CheckSmartTraining(spec.smart(), args, &checked));
  }

  if (cancelled && cancelled()) {
    return absl::CancelledError("the client gave up before the experiment was queued");
  }
  RecordSnapshot first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return absl::UnavailableError("yolod is shutting down");
    if (starts_held_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "new experiments are held while memory is at the danger level: ", hold_reason_,
          "; try again when it falls (yoloctl memory report)"));
    }
    std::string id = NewId();
    while (entries_.count(id) || reserved_ids_.count(id)) id = NewId();
    reserved_ids_.insert(id);
    v1::Experiment& exp = first.exp;
    exp.set_id(id);
    *exp.mutable_spec() = resolved_spec;
    exp.set_state(v1::QUEUED);
    exp.set_reason("waiting for a free slot on its device");
    *exp.mutable_create_time() = NowTimestamp();
    exp.set_sequence(++last_sequence_);  // a failed start leaves a gap, nothing else
    exp.set_run_dir(RunDirOf(id));
    exp.set_device(checked.device);
    for (const auto& [k, v] : checked.args) (*exp.mutable_resolved_args())[k] = v;
    // 0 until the worker's AutoBatch says (batch=-1 or a fraction).
    double batch = 16;  // Ultralytics' default
    if (auto b = checked.args.find("batch"); b != checked.args.end()) {
      absl::SimpleAtod(b->second, &batch);
    }
    exp.set_batch(batch >= 1 ? static_cast<int>(batch) : 0);
    first.version = 1;
  }
  // The folder and the record, without the lock: OK only once experiment.json is on disk.
  const std::string& id = first.exp.id();
  std::error_code ec;
  absl::Status saved;
  fs::create_directories(first.exp.run_dir(), ec);
  if (ec) {
    saved = absl::InternalError(
        absl::StrCat("cannot create ", first.exp.run_dir(), ": ", ec.message()));
  } else {
    saved = writer_.Create(first);
    if (!saved.ok()) fs::remove_all(first.exp.run_dir(), ec);
  }
  std::lock_guard<std::mutex> lock(mu_);
  reserved_ids_.erase(id);
  if (!saved.ok()) {
    return absl::Status(saved.code(),
                        absl::StrCat("the experiment was not queued: ", saved.message()));
  }
  auto e = std::make_unique<Entry>();
  e->exp = first.exp;
  e->version = first.version;
  entries_[id] = std::move(e);
  queue_.push_back(id);  // if yolod is shutting down, the next one starts it
  spdlog::info("experiment {} queued on {} ({})", id, checked.device, Printable(spec.name()));
  cv_.notify_all();
  return first.exp;
}

absl::StatusOr<v1::Experiment> ExperimentManager::Get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("experiment '", Printable(id), "' not found"));
  }
  return it->second->exp;
}

std::vector<v1::Experiment> ExperimentManager::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::Experiment> out;
  for (const auto& [id, e] : entries_) out.push_back(e->exp);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return ArrivalKey(a) < ArrivalKey(b); });
  return out;
}

absl::StatusOr<v1::Experiment> ExperimentManager::Stop(const std::string& id) {
  PendingWrites writes(&writer_);
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Entry * e, FindLocked(id));
  if (e->launching) {  // the scheduler stops it as soon as it has started
    e->stop_requested = true;
    e->exp.set_reason("stopping: its worker is starting and stops at once");
    return e->exp;
  }
  if (e->exp.state() == v1::QUEUED) {
    queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
    e->exp.set_state(v1::STOPPED);
    e->exp.set_reason("stopped by request before it started");
    *e->exp.mutable_end_time() = NowTimestamp();
    PublishStateLocked(*e, writes);
    return e->exp;
  }
  if (e->exp.state() != v1::RUNNING) {
    return absl::FailedPreconditionError(absl::StrCat(
        "experiment ", id, " is ", v1::ExperimentState_Name(e->exp.state()), ", not running"));
  }
  e->stop_requested = true;
  e->exp.set_reason("stopping: the worker ends at the next batch and keeps last.pt");
  if (e->session != nullptr) {
    v1::WorkerCommand stop;
    stop.mutable_stop();
    e->session->Send(stop);
  }
  if (e->pid > 0) kill(e->pid, SIGTERM);
  PublishStateLocked(*e, writes);
  return e->exp;
}

absl::StatusOr<v1::Experiment> ExperimentManager::Resume(const std::string& id) {
  // The checkpoint and the last worker are looked at before the lock is taken (files, /proc).
  ASSIGN_OR_RETURN(const v1::Experiment before, Get(id));
  const fs::path last = fs::path(RunDirOf(id)) / "weights" / "last.pt";
  std::error_code ec;
  const bool has_checkpoint = fs::exists(last, ec);
  const bool last_worker_alive = WorkerAlive(before.worker_pid());

  PendingWrites writes(&writer_);
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return absl::UnavailableError("yolod is shutting down");
  ASSIGN_OR_RETURN(Entry * e, FindLocked(id));
  const auto state = e->exp.state();
  if (state != v1::STOPPED && state != v1::INTERRUPTED && state != v1::FAILED) {
    return absl::FailedPreconditionError(
        absl::StrCat("experiment ", id, " is ", v1::ExperimentState_Name(state),
                     "; only STOPPED, INTERRUPTED or FAILED experiments resume"));
  }
  if (!has_checkpoint) {
    return absl::FailedPreconditionError(
        absl::StrCat("experiment ", id, " has no checkpoint (", last.string(),
                     "): it ended before its first epoch; start it again instead"));
  }
  if (last_worker_alive && e->exp.worker_pid() == before.worker_pid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the last worker of ", id, " (pid ", e->exp.worker_pid(),
                     ") is still finishing; try again in a few seconds"));
  }
  e->exp.set_state(v1::QUEUED);
  e->exp.set_reason(starts_held_ ? "resume queued: it waits while memory is at the danger level"
                                 : "resume queued: continues from weights/last.pt");
  e->stop_requested = false;
  e->exp.set_stopped_for_memory(false);
  e->resume_after_stop = false;
  queue_.push_back(id);
  PublishStateLocked(*e, writes);
  cv_.notify_all();
  return e->exp;
}

absl::Status ExperimentManager::Delete(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(Entry * e, FindLocked(id));
    if (e->exp.state() == v1::QUEUED || e->exp.state() == v1::RUNNING) {
      return absl::FailedPreconditionError(absl::StrCat(
          "experiment ", id, " is ", v1::ExperimentState_Name(e->exp.state()), ": stop it first"));
    }
    entries_.erase(id);
  }
  logs_->Forget(id);  // no write of its memory log into the folder as it goes
  RETURN_IF_ERROR(writer_.Remove(id));
  spdlog::info("experiment {} deleted with {}", id, RunDirOf(id));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ExperimentManager::ReadLog(const std::string& id, int64_t offset,
                                                       int64_t max_bytes,
                                                       int64_t* next_offset) const {
  ASSIGN_OR_RETURN(v1::Experiment exp, Get(id));
  std::ifstream in(fs::path(exp.run_dir()) / "train.log", std::ios::binary);
  *next_offset = offset;
  if (!in) return std::string();
  in.seekg(0, std::ios::end);
  const int64_t size = in.tellg();
  if (offset >= size) return std::string();
  in.seekg(offset);
  std::string text(static_cast<size_t>(std::min(size - offset, max_bytes)), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  const size_t end = text.rfind('\n');
  text.resize(end == std::string::npos ? 0 : end + 1);  // whole lines only
  *next_offset = offset + static_cast<int64_t>(text.size());
  return text;
}

absl::StatusOr<int64_t> ExperimentManager::Watch(const std::string& id, bool logs,
                                                 int64_t log_offset,
                                                 std::chrono::milliseconds progress_interval,
                                                 EventSink sink, std::function<void()> on_end) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Entry * e, FindLocked(id));
  v1::ExperimentEvent first = EventNow();
  *first.mutable_experiment() = e->exp;
  sink(first);
  auto w = std::make_unique<Watcher>();
  w->id = id;
  w->sink = std::move(sink);
  w->on_end = std::move(on_end);
  w->logs = logs;
  w->log_offset = std::max<int64_t>(log_offset, 0);
  w->progress_interval = progress_interval;
  const int64_t handle = next_watch_++;
  const bool final = IsFinal(e->exp.state());
  watchers_[handle] = std::move(w);
  if (final) EndWatchesLocked(*e);  // replays the log and ends the watch at once
  return handle;
}

void ExperimentManager::Unwatch(int64_t handle) {
  std::lock_guard<std::mutex> lock(mu_);
  watchers_.erase(handle);
}

void ExperimentManager::TickerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_threads_) {
    cv_.wait_for(lock, std::chrono::milliseconds(200));
    TailLogs(lock);
  }
}

void ExperimentManager::TailLogs(std::unique_lock<std::mutex>& lock) {
  struct Tail {
    int64_t handle;
    std::string path;
    int64_t offset;
    std::string text;  // read from `offset` without the lock
    bool at_end = false;
  };
  std::vector<Tail> tails;
  for (const auto& [handle, w] : watchers_) {
    if (w->logs) tails.push_back({handle, LogPathOf(w->id), w->log_offset, {}, false});
  }
  if (tails.empty()) return;
  lock.unlock();
  for (Tail& t : tails) t.at_end = ReadLogTail(t.path, t.offset, kMaxTailPerTick, &t.text);
  lock.lock();
  for (Tail& t : tails) {
    auto it = watchers_.find(t.handle);
    if (it == watchers_.end() || it->second->log_offset != t.offset) continue;
    Watcher& w = *it->second;
    const bool last = w.ending && t.at_end;  // then a partial last line is sent as well
    size_t begin = 0;
    while (begin < t.text.size()) {
      const size_t newline = t.text.find('\n', begin);
      if (newline == std::string::npos && !last) break;  // wait for the end of this line
      const size_t end = newline == std::string::npos ? t.text.size() : newline;
      v1::ExperimentEvent log = EventNow();
      log.set_log_line(t.text.substr(begin, end - begin));
      w.sink(log);
      begin = newline == std::string::npos ? end : end + 1;
    }
    w.log_offset += static_cast<int64_t>(begin);
    if (last) {
      if (w.on_end) w.on_end();
      watchers_.erase(it);
    }
  }
}

void ExperimentManager::SchedulerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_threads_) {
    // The first queued experiment with a free slot on each of its devices (a data-parallel
    // run on cuda:0,1 holds one on both).
    std::map<std::string, int> running;
    for (const auto& [id, e] : entries_) {
      if (e->exp.state() != v1::RUNNING && !e->launching) continue;
      for (const std::string& d : DevicesOf(e->exp.device())) ++running[d];
    }
    auto next = queue_.end();
    if (!shutting_down_ && !starts_held_) {  // held: queued experiments wait
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (SlotsFree(entries_[*it]->exp.device(), running, options_.max_running_per_device)) {
          next = it;
          break;
        }
      }
    }
    if (next == queue_.end()) {
      cv_.wait(lock);
      continue;
    }
    const std::string id = *next;
    queue_.erase(next);
    // Still QUEUED while launching, so that Delete and Resume refuse it and the entry stays.
    Entry& e = *entries_[id];
    e.launching = true;
    ++active_waiters_;  // Shutdown waits for this start too
    e.secret = NewSecret();
    WorkerLaunch launch;
    launch.worker_path = options_.worker_path;
    launch.log_path = LogPathOf(id);
    launch.socket_path = (fs::path(options_.state_dir) / "worker.sock").string();
    launch.experiment_id = id;
    launch.nice = options_.worker_nice;
    launch.allowed_roots = options_.allowed_roots;
    launch.secret = e.secret;
    const bool later_round = e.exp.rounds() > 0;
    const int batch = e.exp.batch();
    const std::map<std::string, std::string> resolved(e.exp.resolved_args().begin(),
                                                      e.exp.resolved_args().end());
    lock.unlock();

    // The checkpoint and the process start, without the lock.
    const fs::path last = fs::path(RunDirOf(id)) / "weights" / "last.pt";
    std::error_code ec;
    if (later_round && fs::exists(last, ec)) {
      launch.args["resume"] = last.string();
      if (batch > 0) launch.args["batch"] = std::to_string(batch);  // as the run has it now
    } else {
      launch.args = resolved;
      launch.args["project"] = RunsDir();
      launch.args["name"] = id;
      launch.args["exist_ok"] = "True";
      // A later round with nothing to resume from starts again, at the batch the run has now.
      if (later_round && batch > 0) launch.args["batch"] = std::to_string(batch);
    }
    lock.lock();
    PlanSmartRoundLocked(e, &launch.args);
    lock.unlock();
    const auto group_before = options_.cgroup
                                  ? options_.cgroup->Read()
                                  : absl::StatusOr<CgroupMemory>(absl::NotFoundError(""));
    const v1::RoundMemory memory_before = CleanupAndMeasure();
    auto pid = SpawnWorker(launch);

    PendingWrites writes(&writer_);
    lock.lock();
    e.launching = false;
    *e.exp.mutable_start_time() = NowTimestamp();
    e.exp.set_rounds(e.exp.rounds() + 1);
    e.exp.clear_progress();
    if (!pid.ok()) {
      --active_waiters_;
      e.exp.set_state(v1::FAILED);
      e.exp.set_reason(std::string(pid.status().message()));
      *e.exp.mutable_end_time() = NowTimestamp();
      PublishStateLocked(e, writes);
      cv_.notify_all();
    } else {
      e.pid = *pid;
      e.oom_kills_at_start = group_before.ok() ? group_before->oom_kill_events : -1;
      e.rss_by_epoch.clear();  // a leak cannot outlive a round: each fits its own
      e.first_epoch_seen = false;
      e.leak_reported = false;
      e.exp.clear_rss_trend();
      e.worker_start = std::chrono::steady_clock::now();
      e.policy_sent = false;  // a new worker: a policy in force must reach it too
      logs_->Open(id, RunDirOf(id));
      logs_->SetWorker(id, *pid);
      SmartWorkerStartedLocked(e, memory_before);
      e.exp.set_worker_pid(*pid);
      *e.exp.mutable_memory_before() = memory_before;
      if (memory_before.host_used_ratio() > kPreflightWarnRatio) {
        v1::MemoryAction action;
        action.set_kind("preflight");
        action.set_message(absl::StrFormat(
            "%.1f %% of host RAM is in use as this round starts (above %.0f %%): %.2f GB "
            "available; the watchdog applies the pressure policy above its warning level",
            memory_before.host_used_ratio() * 100, kPreflightWarnRatio * 100,
            memory_before.host_available_bytes() / 1e9));
        AddMemoryActionLocked(e, std::move(action), writes);
      }
      e.exp.set_state(v1::RUNNING);
      e.exp.set_reason(launch.args.count("resume") ? "resumed from weights/last.pt" : "training");
      if (e.exp.spec().has_smart()) {
        const auto end = launch.args.find("round_end");
        const v1::SmartRound& round = e.exp.smart_round();
        e.exp.set_reason(
            !e.exp.has_smart_round()
                ? absl::StrCat("smart: finishing the run at epoch ", e.exp.epochs_completed(),
                               " (optimizer stripped, best.pt validated)")
                : absl::StrCat(
                      "smart round ", e.exp.smart_rounds_size() + 1, ": epochs ",
                      round.first_epoch(), " to ",
                      end == launch.args.end() ? std::to_string(round.last_epoch()) : end->second,
                      " of ", e.exp.spec().smart().max_total_epochs()));
      }
      e.exp.clear_end_time();
      if (e.stop_requested || shutting_down_) {  // asked while it was starting
        e.exp.set_reason("stopping: the worker ends at the next batch and keeps last.pt");
        kill(*pid, SIGTERM);
      }
      spdlog::info("experiment {}: worker pid {} started (worker #{} of it)", id, *pid,
                   e.exp.rounds());
      PublishStateLocked(e, writes);
      std::thread([this, id, p = *pid] { WaitForWorker(id, p); }).detach();
    }
    lock.unlock();
    writes.Flush();
    lock.lock();
  }
}

void ExperimentManager::WaitForWorker(std::string id, pid_t pid) {
  int status = 0;
  struct rusage usage {};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  const int64_t peak_rss = static_cast<int64_t>(usage.ru_maxrss) * 1024;  // the kernel's count
  const WorkerEnd end = ClassifyWait(status);
  // The worker has exited and its log is complete: read it, the checkpoint and the cgroup's
  // OOM kill count before taking the lock.
  const std::string error = end.exit == v1::WORKER_SUCCEEDED ? "" : LastErrorLine(LogPathOf(id));
  std::error_code ec;
  const bool has_checkpoint = fs::exists(fs::path(RunDirOf(id)) / "weights" / "last.pt", ec);
  const auto group_after = end.signal == SIGKILL && options_.cgroup
                               ? options_.cgroup->Read()
                               : absl::StatusOr<CgroupMemory>(absl::NotFoundError(""));
  // Smart training: the cleanup between rounds and the memory report come before the round is
  // recorded and the next one queued, so that nothing of this worker's is in the figures.
  bool smart = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = entries_.find(id); it != entries_.end())
      smart = it->second->exp.spec().has_smart();
  }
  std::optional<v1::RoundMemory> smart_after;
  std::string summary;
  if (smart) {
    smart_after = CleanupAndMeasure();
    std::function<std::string()> summarize;
    {
      std::lock_guard<std::mutex> lock(hooks_mu_);
      summarize = memory_summary_;
    }
    if (summarize) summary = summarize();
  }
  {
    PendingWrites writes(&writer_);  // written once the lock below is released
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) {
      Entry& e = *it->second;
      e.pid = 0;
      logs_->SetWorker(id, 0);
      logs_->Event(id, "exit", absl::StrCat("worker pid ", pid, " ended: ", end.Describe()));
      e.secret.clear();
      e.session = nullptr;
      e.exp.set_last_exit(end.exit);
      e.exp.set_exit_code(end.code);
      e.exp.set_exit_signal(end.signal);
      *e.exp.mutable_end_time() = NowTimestamp();
      if (smart_after) {
        *e.exp.mutable_memory_after() = *smart_after;
        SmartWorkerEndedLocked(e, *smart_after, peak_rss, summary, writes);
      }
      if (end.exit == v1::WORKER_SUCCEEDED) {
        e.exp.set_state(v1::SUCCEEDED);
        e.exp.set_reason(e.exp.spec().has_smart()
                             ? SmartSucceededReasonLocked(e)
                             : absl::StrCat("finished after epoch ", e.exp.epochs_completed()));
      } else if (shutting_down_ && (end.exit == v1::WORKER_STOPPED ||
                                    end.exit == v1::WORKER_ROUND_ENDED || end.signal != 0)) {
        e.exp.set_state(v1::INTERRUPTED);
        e.exp.set_reason(has_checkpoint
                             ? "yolod shut down; resume continues from weights/last.pt"
                             : "yolod shut down before its first epoch ended: no checkpoint; "
                               "start it again");
      } else if (e.stop_requested && end.signal == SIGTERM) {
        // Stopped while it was still starting, before it could take the signal itself.
        e.exp.set_state(v1::STOPPED);
        e.exp.set_reason("stopped by request while the worker was starting");
      } else if (end.exit == v1::WORKER_ROUND_ENDED && !e.stop_requested &&
                 !e.exp.stopped_for_memory()) {
        QueueNextSmartRoundLocked(e);
      } else if ((end.exit == v1::WORKER_STOPPED || end.exit == v1::WORKER_ROUND_ENDED) &&
                 e.exp.stopped_for_memory()) {
        e.exp.set_state(v1::STOPPED);
        e.exp.set_reason(
            "stopped by the memory watchdog at the danger level; weights/last.pt resumes by "
            "itself when memory is back to ok");
      } else if (end.exit == v1::WORKER_STOPPED || end.exit == v1::WORKER_ROUND_ENDED) {
        e.exp.set_state(v1::STOPPED);
        e.exp.set_reason(!has_checkpoint
                             ? (e.stop_requested
                                    ? "stopped by request before its first epoch ended: no "
                                      "checkpoint; start it again"
                                    : "the worker was stopped by a signal from outside before its "
                                      "first epoch ended: no checkpoint")
                         : e.stop_requested ? "stopped by request; weights/last.pt is resumable"
                                            : "the worker was stopped by a signal from outside");
      } else if (OutOfMemoryEnd(end, e.stop_requested) && has_checkpoint &&
                 e.exp.oom_resumes() < options_.oom_retries && e.exp.batch() > 1) {
        // Out of memory: resume from last.pt at half the batch, a bounded number of times.
        const int before = e.exp.batch(), after = std::max(1, before / 2);
        e.exp.set_batch(after);
        e.exp.set_oom_resumes(e.exp.oom_resumes() + 1);
        const std::string why = OutOfMemoryWhy(end, e.oom_kills_at_start, group_after, error);
        v1::MemoryAction action;
        action.set_kind("oom_resume");
        action.set_batch_before(before);
        action.set_batch_after(after);
        action.set_message(absl::StrCat(why, ": resumed from last.pt at batch ", before, " -> ",
                                        after, " (resume ", e.exp.oom_resumes(), " of ",
                                        options_.oom_retries, ")"));
        e.exp.set_state(v1::QUEUED);
        e.exp.set_reason(action.message());
        AddMemoryActionLocked(e, std::move(action), writes);
        queue_.push_back(id);
        cv_.notify_all();
      } else if (OutOfMemoryEnd(end, e.stop_requested)) {
        e.exp.set_state(v1::FAILED);
        std::string attempts;
        for (const auto& a : e.exp.memory_actions()) {
          if (a.kind() == "oom_retry" || a.kind() == "oom_resume") {
            absl::StrAppend(&attempts, attempts.empty() ? "" : ", ", a.batch_before(), " -> ",
                            a.batch_after());
          }
        }
        e.exp.set_reason(absl::StrCat(
            OutOfMemoryWhy(end, e.oom_kills_at_start, group_after, error),
            attempts.empty() ? "" : absl::StrCat("; batches tried: ", attempts),
            e.exp.oom_resumes() >= options_.oom_retries
                ? absl::StrCat("; no resume left (--oom-retries ", options_.oom_retries, ")")
            : !has_checkpoint ? "; no checkpoint to resume from"
                              : "; batch 1 already"));
      } else {
        e.exp.set_state(v1::FAILED);
        e.exp.set_reason(absl::StrCat("worker ", end.Describe(), error.empty() ? "" : ": ", error));
      }
      spdlog::info("experiment {}: worker pid {} ended ({}): {}", id, pid, end.Describe(),
                   v1::ExperimentState_Name(e.exp.state()));
      if (e.resume_after_stop && e.exp.state() == v1::STOPPED) {  // memory was ok already
        e.resume_after_stop = false;
        e.exp.set_stopped_for_memory(false);
        e.stop_requested = false;
        e.exp.set_state(v1::QUEUED);
        e.exp.set_reason("resume queued: memory is back to ok after the memory stop");
        queue_.push_back(id);
        cv_.notify_all();
      }
      PublishStateLocked(e, writes);
    }
  }
  // A cleanup between rounds: what yolod held for this one goes back; the record keeps the
  // memory after it.
  if (!smart) {
    const v1::RoundMemory memory_after = CleanupAndMeasure();
    PendingWrites writes(&writer_);
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = entries_.find(id); it != entries_.end()) {
      *it->second->exp.mutable_memory_after() = memory_after;
      writes.Add(SnapshotLocked(*it->second));
    }
  }
  // Last: once the count is 0 and the lock released, Shutdown may return and the manager go.
  std::lock_guard<std::mutex> lock(mu_);
  --active_waiters_;
  cv_.notify_all();
}

}  // namespace yolo
