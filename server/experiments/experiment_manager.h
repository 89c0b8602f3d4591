// The experiments of one yolod: their state, the queue, the worker processes and the watchers.
// The gRPC services above it are stateless translators. LibTorch-free.
//
// Threads: the public methods may be called from any thread. One scheduler thread starts
// workers (it must outlive them: they get SIGTERM when it ends); one waiter thread per worker
// reaps it; a ticker thread tails train.log for log watchers. No file is read or written, and
// no process started, while the manager's lock is held: records are written after it is
// released (RecordWriter), logs are read by the ticker between two holds of the lock.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/experiments/memory_log_book.h"
#include "server/experiments/record_writer.h"
#include "server/experiments/spec_check.h"
#include "server/experiments/worker_process.h"
#include "server/memory/memory_manager.h"
#include "server/memory/proc_probe.h"
#include "server/memory/watchdog.h"
#include "yolo/v1/experiment.pb.h"
#include "yolo/v1/memory.pb.h"
#include "yolo/v1/worker.pb.h"

namespace yolo {

struct ManagerOptions {
  std::string state_dir;    // runs/ and worker.sock live here
  std::string worker_path;  // the yolo-worker executable
  int max_running_per_device = 1;
  std::vector<std::string> allowed_roots;
  bool has_gpu = false;
  int gpu_count = 0;  // when known (0: not checked); a spec naming a GPU past it is refused
  // Workers' niceness: below yolod, so that it answers promptly while they use every core.
  int worker_nice = 10;
  std::shared_ptr<const ProcProbe> proc = std::make_shared<ProcProbe>();  // /proc, or fixtures
  // Where the kernel counts OOM kills (memory.events, memory.oom_control).
  std::shared_ptr<const CgroupProbe> cgroup = std::make_shared<CgroupProbe>();
  // Rounds resumed at half the batch after a worker ran out of memory, per experiment.
  int oom_retries = 2;
  bool allow_fault_injection = false;  // fault_leak_mb and fault_oom_epoch in specs
  // Between the samples of each experiment's memory_log_*.json.
  std::chrono::milliseconds memory_log_interval{5000};
};

// A worker's open channel, as the manager sees it: where to send commands.
class WorkerSession {
 public:
  virtual ~WorkerSession() = default;
  virtual void Send(const v1::WorkerCommand& command) = 0;
};

// What the experiments did since yolod started, for the metrics.
struct ExperimentCounters {
  std::map<std::string, int64_t> memory_actions;  // by MemoryAction kind
  // Experiments that entered each state ("QUEUED", "RUNNING", "FAILED", ...) in this yolod,
  // once per entry into it.
  std::map<v1::ExperimentState, int64_t> entered;
  std::map<std::string, int64_t> worker_freed_bytes;  // workers' cleanups, by trigger
};

class ExperimentManager final : public WorkerFleet, public PressureTarget {
 public:
  using EventSink = std::function<void(const v1::ExperimentEvent&)>;
  using DefaultsFn = std::function<SpecCheckOptions(const std::string& device_hint)>;

  // Loads every experiment under <state_dir>/runs: RUNNING ones become INTERRUPTED (yolod
  // stopped while they ran), QUEUED ones are queued again in their order of arrival. A folder
  // whose name is not an experiment id, or whose experiment.json is unreadable or names
  // another id, is left alone and logged.
  static absl::StatusOr<std::unique_ptr<ExperimentManager>> Create(ManagerOptions options,
                                                                   DefaultsFn defaults);
  ~ExperimentManager() override;

  // Queues an experiment; OK only once its experiment.json is on disk. When `cancelled` says
  // so after the spec was checked (the client gave up), nothing is created: CANCELLED. While
  // memory is at the danger level, RESOURCE_EXHAUSTED with the watchdog's reason.
  absl::StatusOr<v1::Experiment> Start(const v1::ExperimentSpec& spec,
                                       const std::function<bool()>& cancelled = {});
  absl::StatusOr<v1::Experiment> Get(const std::string& id) const;
  std::vector<v1::Experiment> List() const;
  absl::StatusOr<v1::Experiment> Stop(const std::string& id);
  absl::StatusOr<v1::Experiment> Resume(const std::string& id);
  // Removes a final experiment and its run folder (never following a symlink out of it).
  absl::Status Delete(const std::string& id);

  // train.log from byte `offset`, at most `max_bytes`; sets *next_offset.
  absl::StatusOr<std::string> ReadLog(const std::string& id, int64_t offset, int64_t max_bytes,
                                      int64_t* next_offset) const;

  // Sends the experiment now, then its events, to `sink` until Unwatch or a final state, when
  // `on_end` is called. Both are called with the manager's lock held, from any of its threads:
  // they must only queue, never block or call back into the manager. With `logs`, train.log
  // lines from byte `log_offset` on are sent too. Returns a handle for Unwatch.
  absl::StatusOr<int64_t> Watch(const std::string& id, bool logs, int64_t log_offset,
                                std::chrono::milliseconds progress_interval, EventSink sink,
                                std::function<void()> on_end);
  void Unwatch(int64_t handle);

  // The worker channel. A hello is accepted only from the process spawned for `id` (its pid
  // as the hello says and as the kernel says, `peer_pid`), with the secret it was given, and
  // only once per worker; false (and logged) otherwise.
  bool AttachWorker(const std::string& id, pid_t pid, const std::string& secret, pid_t peer_pid,
                    WorkerSession* session);
  // Whether `pid` is a worker yolod started and has not reaped yet.
  bool IsWorkerPid(pid_t pid) const;
  void DetachWorker(WorkerSession* session);
  void OnWorkerMessage(WorkerSession* session, const v1::WorkerMessage& message);
  // What the manager asks of the memory side, which is made after it (it needs the manager):
  // bytes of RAM left before the danger level (the watchdog's latest sample), for the leak
  // forecast; the memory report in one line, logged between the rounds of a smart experiment;
  // where the memory logs take their samples. Set once, before or while workers run (queued
  // experiments may start as soon as the manager exists); called without the manager's lock.
  // Whoever made them must reset the manager before they go.
  void SetMemoryHooks(std::function<double()> danger_headroom, std::function<std::string()> summary,
                      MemoryLogSource log_source) {
    logs_->SetSource(std::move(log_source));
    std::lock_guard<std::mutex> lock(hooks_mu_);
    danger_headroom_ = std::move(danger_headroom);
    memory_summary_ = std::move(summary);
  }

  // WorkerFleet.
  std::vector<v1::WorkerMemory> WorkerMemory() const override;
  std::vector<v1::CleanupResult> CleanupWorkers(std::chrono::milliseconds timeout,
                                                const std::string& trigger) override;

  ExperimentCounters Counters() const;

  // PressureTarget: what the memory watchdog asks. Each action is a MemoryAction in the
  // experiment's record, its watch stream and train.log.
  void ApplyPressurePolicy(const std::string& reason) override;
  void EndPressurePolicy() override;
  void HoldStarts(bool hold, const std::string& reason) override;
  std::string StopNewestForMemory(const std::string& reason) override;
  std::vector<std::string> ResumeStoppedForMemory(const std::string& reason) override;

  // Graceful shutdown: no new starts; running workers are asked to stop (they checkpoint) and
  // marked INTERRUPTED; after `grace` the rest are killed. Returns when all have exited.
  void Shutdown(std::chrono::milliseconds grace);

  std::string RunsDir() const;

 private:
  struct Entry {
    v1::Experiment exp;
    pid_t pid = 0;                     // while its worker runs
    std::string secret;                // the running worker's one-time secret
    WorkerSession* session = nullptr;  // once its worker said hello
    bool stop_requested = false;
    bool launching = false;           // taken off the queue; its worker is being started
    bool policy_sent = false;         // the pressure policy went to its worker
    bool resume_after_stop = false;   // stopped for memory; memory was ok before it ended
    int64_t oom_kills_at_start = -1;  // the cgroup's OOM kill count when its worker started
    std::vector<std::pair<double, double>> rss_by_epoch;  // this round's epoch ends
    bool leak_reported = false;                           // this round
    bool first_epoch_seen = false;                        // this round's warm-up epoch
    int64_t version = 0;                                  // of `exp`, for RecordWriter
    v1::ExperimentState logged_state = v1::EXPERIMENT_STATE_UNSPECIFIED;  // in its memory log
    std::chrono::steady_clock::time_point worker_start{};                 // of its running worker
    v1::WorkerMemoryStats memory;                              // as the worker last reported
    std::map<int64_t, v1::WorkerCleanupDone> cleanup_answers;  // by request id, when awaited
    // Cleanup requests not answered yet: their trigger, and whether CleanupWorkers waits.
    std::map<int64_t, std::pair<std::string, bool>> cleanup_requests;
    v1::ExperimentState counted_state = v1::EXPERIMENT_STATE_UNSPECIFIED;  // in counters_
  };
  struct Watcher {
    std::string id;
    EventSink sink;
    std::function<void()> on_end;
    bool logs = false;
    bool ending = false;  // the experiment is final: the ticker sends the rest of the log, ends it
    int64_t log_offset = 0;
    std::chrono::steady_clock::time_point last_progress{};
    std::chrono::milliseconds progress_interval{1000};
  };
  explicit ExperimentManager(ManagerOptions options, DefaultsFn defaults);
  absl::Status Recover();
  void SchedulerLoop();
  void WaitForWorker(std::string id, pid_t pid);
  // Smart training (experiment_manager_smart.cc); callers hold mu_. The next worker's round:
  // the one in progress, or a new one; its round_end, or (the best fitness not improved for
  // `patience` rounds) the epoch last.pt holds, so that it only finishes the run; none for the
  // run's last round.
  void PlanSmartRoundLocked(Entry& e, std::map<std::string, std::string>* args);
  // A smart experiment's worker started: the round's memory before it, if it is the first.
  void SmartWorkerStartedLocked(Entry& e, const v1::RoundMemory& before);
  // Its worker exited and yolod has cleaned up (`after`): the round's peak and end RSS; a round
  // that reached its last epoch goes into smart_rounds, with a "round" memory action (and
  // `memory_summary`), and counts for patience. Before the state is decided.
  void SmartWorkerEndedLocked(Entry& e, const v1::RoundMemory& after, int64_t peak_rss,
                              const std::string& memory_summary, PendingWrites& writes);
  // A round ended as planned (exit code 5): the next round, or the finishing worker, queued.
  void QueueNextSmartRoundLocked(Entry& e);
  // Why a smart experiment SUCCEEDED: every epoch done, or no better fitness for `patience`
  // rounds, or the trainer's own patience. Caller holds mu_.
  std::string SmartSucceededReasonLocked(const Entry& e) const;
  // The epoch's fitness against the run's best, for the round's verdict. Caller holds mu_.
  void TrackFitnessLocked(Entry& e, const v1::EpochResult& epoch);
  void TickerLoop();
  // The entry's state with a new version, to write once mu_ is released; caller holds mu_.
  RecordSnapshot SnapshotLocked(Entry& e);
  void PublishLocked(const std::string& id, const v1::ExperimentEvent& event);
  // Publishes the entry's state and queues its record on `writes`; caller holds mu_.
  void PublishStateLocked(Entry& e, PendingWrites& writes);
  // <state_dir>/runs/<id>: derived from the id, never read back from experiment.json.
  std::string RunDirOf(const std::string& id) const;
  std::string LogPathOf(const std::string& id) const;
  // For a final state: ends the watches without logs now, and hands the others to the ticker,
  // which sends the rest of the log first.
  void EndWatchesLocked(Entry& e);
  // Records, publishes and (with `log`) appends to train.log one memory action.
  void AddMemoryActionLocked(Entry& e, v1::MemoryAction action, PendingWrites& writes,
                             bool log = true);
  void SendPolicyLocked(Entry& e, const std::string& reason, PendingWrites& writes);
  // The leak fit after an epoch end; a memory action the first time a leak is suspected.
  void TrackRssLocked(Entry& e, const v1::EpochResult& epoch, double danger_headroom,
                      PendingWrites& writes);
  // The ticker's work: reads new log lines for watchers without the lock and sends them.
  void TailLogs(std::unique_lock<std::mutex>& lock);
  absl::StatusOr<Entry*> FindLocked(const std::string& id);
  // malloc_trim in yolod, then the host's memory and yolod's RSS; no lock held.
  v1::RoundMemory CleanupAndMeasure() const;
  // Whether `pid` is still a yolo-worker (a worker of an earlier yolod may outlive it briefly).
  bool WorkerAlive(pid_t pid) const;

  ManagerOptions options_;
  DefaultsFn defaults_;
  RecordWriter writer_;
  mutable std::mutex hooks_mu_;  // guards the two hooks; never held while one runs
  std::function<double()> danger_headroom_;
  std::function<std::string()> memory_summary_;
  std::unique_ptr<MemoryLogBook> logs_;  // its own thread; its calls only queue
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::deque<std::string> queue_;
  std::set<std::string> reserved_ids_;  // of experiments being created by Start
  std::map<int64_t, std::unique_ptr<Watcher>> watchers_;
  int64_t next_watch_ = 1;
  int64_t last_sequence_ = 0;  // of the newest experiment
  int64_t next_cleanup_ = 1;
  ExperimentCounters counters_;
  std::condition_variable cleanup_cv_;
  bool shutting_down_ = false;
  bool starts_held_ = false;  // by the watchdog, at the danger level
  std::string hold_reason_;
  bool policy_in_force_ = false;  // memory at the warning level or above
  std::string policy_reason_;
  int active_waiters_ = 0;  // workers being started or waited for
  bool stop_threads_ = false;
  std::thread scheduler_;
  std::thread ticker_;
  std::vector<std::thread> waiters_;
};

}  // namespace yolo
