// ExperimentManager: the worker channel, worker memory, cleanups and shutdown.
#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/secret.h"
#include "common/user_path.h"
#include "server/experiments/clock.h"
#include "server/experiments/experiment_manager.h"

namespace yolo {
namespace {

// A memory action the worker reported (and logged itself, so yolod does not log it again).
v1::MemoryAction WorkerAction(const std::string& kind, std::string message, int epoch = 0,
                              int batch_before = 0, int batch_after = 0) {
  v1::MemoryAction a;
  a.set_kind(kind);
  a.set_message(std::move(message));
  a.set_epoch(epoch);
  a.set_batch_before(batch_before);
  a.set_batch_after(batch_after);
  return a;
}

}  // namespace

using google::protobuf::util::TimeUtil;

bool ExperimentManager::IsWorkerPid(pid_t pid) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, e] : entries_) {
    if (pid > 0 && e->pid == pid) return true;
  }
  return false;
}

bool ExperimentManager::AttachWorker(const std::string& id, pid_t pid, const std::string& secret,
                                     pid_t peer_pid, WorkerSession* session) {
  PendingWrites writes(&writer_);  // written once the lock is released
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  const char* refused = nullptr;
  if (it == entries_.end() || it->second->pid <= 0) {
    refused = "yolod runs no worker for it";
  } else if (pid != it->second->pid || peer_pid != it->second->pid) {
    refused = "it is not the process yolod started for it";
  } else if (it->second->secret.empty() || !SecretsEqual(secret, it->second->secret)) {
    refused = "wrong secret";
  } else if (it->second->session != nullptr) {
    refused = "its worker is attached already";
  }
  if (refused != nullptr) {
    spdlog::warn(
        "worker channel: refused a hello for experiment '{}' (pid {} says, pid {} "
        "connected): {}",
        Printable(id), pid, peer_pid, refused);
    return false;
  }
  it->second->session = session;
  if (it->second->stop_requested || shutting_down_) {
    v1::WorkerCommand stop;
    stop.mutable_stop();
    session->Send(stop);
  }
  // Started while memory is at the warning level or above: the policy from its first epoch.
  if (policy_in_force_) SendPolicyLocked(*it->second, policy_reason_, writes);
  return true;
}

void ExperimentManager::DetachWorker(WorkerSession* session) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, e] : entries_) {
    if (e->session != session) continue;
    e->session = nullptr;
    e->cleanup_requests.clear();  // no answer can come now
  }
  cleanup_cv_.notify_all();
}

void ExperimentManager::OnWorkerMessage(WorkerSession* session, const v1::WorkerMessage& message) {
  // Read before the lock: it takes the watchdog's.
  std::function<double()> headroom_of;
  if (message.has_epoch()) {
    std::lock_guard<std::mutex> lock(hooks_mu_);
    headroom_of = danger_headroom_;
  }
  const double headroom = headroom_of ? headroom_of() : 0;
  PendingWrites writes(&writer_);  // written once the lock is released
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = nullptr;
  for (auto& [id, entry] : entries_) {
    if (entry->session == session) e = entry.get();
  }
  if (e == nullptr) return;
  if (message.has_progress()) {
    *e->exp.mutable_progress() = message.progress();
    logs_->SetEpoch(e->exp.id(), message.progress().epoch());
    v1::ExperimentEvent event;
    *event.mutable_time() = NowTimestamp();
    *event.mutable_progress() = message.progress();
    PublishLocked(e->exp.id(), event);
  } else if (message.has_epoch()) {
    *e->exp.mutable_last_epoch() = message.epoch();
    TrackFitnessLocked(*e, message.epoch());
    logs_->Event(e->exp.id(), "epoch",
                 absl::StrFormat("epoch %d/%d: RSS %.1f MB, mAP50-95 %.4f", message.epoch().epoch(),
                                 message.epoch().epochs(), message.epoch().rss_bytes() / 1e6,
                                 message.epoch().map50_95()),
                 message.epoch().epoch(), message.epoch().rss_bytes());
    e->exp.set_epochs_completed(message.epoch().epoch());
    TrackRssLocked(*e, message.epoch(), headroom, writes);
    writes.Add(SnapshotLocked(*e));  // a failed write is logged; the next epoch saves again
    v1::ExperimentEvent event;
    *event.mutable_time() = NowTimestamp();
    *event.mutable_epoch() = message.epoch();
    PublishLocked(e->exp.id(), event);
  } else if (message.has_memory()) {
    e->memory = message.memory();
  } else if (message.has_policy_applied()) {
    const v1::PolicyApplied& p = message.policy_applied();
    e->exp.set_memory_policy(p.detail());
    e->exp.set_batch(p.batch_after());
    AddMemoryActionLocked(*e,
                          WorkerAction("policy_applied",
                                       absl::StrCat("the worker applied the pressure policy after "
                                                    "epoch ",
                                                    p.epoch(), ": ", p.detail()),
                                       p.epoch(), p.batch_before(), p.batch_after()),
                          writes, /*log=*/false);
  } else if (message.has_oom_retry()) {
    const v1::OomRetry& o = message.oom_retry();
    e->exp.set_batch(o.batch_after());
    AddMemoryActionLocked(
        *e,
        WorkerAction("oom_retry",
                     absl::StrCat("out of memory in epoch ", o.epoch(), " (", o.error(),
                                  "): retry ", o.attempt(), " of the epoch at batch ",
                                  o.batch_before(), " -> ", o.batch_after()),
                     o.epoch(), o.batch_before(), o.batch_after()),
        writes, /*log=*/false);
  } else if (message.has_memory_estimate()) {
    const v1::MemoryEstimate& m = message.memory_estimate();
    *e->exp.mutable_memory_estimate() = m;
    if (m.batch() > 0) e->exp.set_batch(m.batch());
    AddMemoryActionLocked(
        *e, WorkerAction(m.autobatch() ? "autobatch" : "estimate", m.message(), 0, 0, m.batch()),
        writes, /*log=*/false);
    if (!m.warning().empty()) {
      AddMemoryActionLocked(*e, WorkerAction("preflight", m.warning()), writes, /*log=*/false);
    }
  } else if (message.has_cleanup_done()) {
    const v1::WorkerCleanupDone& done = message.cleanup_done();
    auto request = e->cleanup_requests.find(done.request_id());
    if (request == e->cleanup_requests.end()) return;  // not asked, or answered already
    counters_.worker_freed_bytes[request->second.first] +=
        std::max<int64_t>(done.rss_before_bytes() - done.rss_after_bytes(), 0);
    if (request->second.second) e->cleanup_answers[done.request_id()] = done;
    e->cleanup_requests.erase(request);
    cleanup_cv_.notify_all();
  }
}

std::vector<v1::WorkerMemory> ExperimentManager::WorkerMemory() const {
  std::vector<std::pair<std::string, pid_t>> running;
  std::map<std::string, v1::WorkerMemoryStats> stats;
  std::map<std::string, v1::WorkerMemory> known;  // what the record says of each
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, e] : entries_) {
      if (e->pid <= 0) continue;
      running.emplace_back(id, e->pid);
      stats[id] = e->memory;
      v1::WorkerMemory& k = known[id];
      const auto& args = e->exp.resolved_args();
      int workers = 0;
      if (auto w = args.find("workers"); w != args.end()) absl::SimpleAtoi(w->second, &workers);
      std::string cache = args.count("cache") ? absl::AsciiStrToLower(args.at("cache")) : "";
      if (cache == "true") cache = "ram";
      if (cache != "ram" && cache != "disk") cache.clear();
      if (!e->exp.memory_policy().empty()) {  // the policy caps workers and turns the cache off
        workers = std::min(workers, 2);
        cache.clear();
      }
      k.set_batch(e->exp.batch());
      k.set_workers(workers);
      k.set_cache(cache);
      k.set_policy(e->exp.memory_policy());
      if (e->exp.has_rss_trend()) *k.mutable_rss_trend() = e->exp.rss_trend();
      if (e->exp.has_memory_estimate()) *k.mutable_estimate() = e->exp.memory_estimate();
    }
  }
  std::vector<v1::WorkerMemory> out;
  const ProcProbe& probe = *options_.proc;
  for (const auto& [id, pid] : running) {
    v1::WorkerMemory w = std::move(known[id]);
    w.set_experiment_id(id);
    w.mutable_process()->set_pid(pid);
    if (auto info = probe.Tree(pid); info.ok()) {  // a data-parallel worker and its ranks
      w.mutable_process()->set_processes(info->processes);
      w.mutable_process()->set_rss_bytes(info->rss_bytes);
      w.mutable_process()->set_peak_rss_bytes(info->peak_rss_bytes);
      w.mutable_process()->set_pss_bytes(info->pss_bytes);
      w.mutable_process()->set_anon_bytes(info->anon_bytes);
      w.mutable_process()->set_swap_bytes(info->swap_bytes);
    }
    const v1::WorkerMemoryStats& s = stats[id];
    w.set_gpu_reserved_bytes(s.gpu_reserved_bytes());
    w.set_cpu_cached_bytes(s.cpu_cached_bytes());
    w.set_cpu_allocated_bytes(s.cpu_allocated_bytes());
    if (s.has_cuda()) *w.mutable_cuda() = s.cuda();
    out.push_back(w);
  }
  return out;
}

std::vector<v1::CleanupResult> ExperimentManager::CleanupWorkers(std::chrono::milliseconds timeout,
                                                                 const std::string& trigger) {
  std::unique_lock<std::mutex> lock(mu_);
  std::map<std::string, int64_t> asked;  // experiment id -> request id
  for (auto& [id, e] : entries_) {
    if (e->pid <= 0) continue;
    const int64_t request = next_cleanup_++;
    asked[id] = request;
    if (e->session != nullptr) {
      e->cleanup_requests[request] = {trigger, timeout.count() > 0};
      v1::WorkerCommand cleanup;
      cleanup.mutable_cleanup()->set_request_id(request);
      e->session->Send(cleanup);
    }
  }
  auto answered = [&] {
    for (const auto& [id, request] : asked) {
      auto it = entries_.find(id);
      if (it == entries_.end() || it->second->session == nullptr) continue;  // gone: no answer
      if (!it->second->cleanup_answers.count(request)) return false;
    }
    return true;
  };
  cleanup_cv_.wait_for(lock, timeout, answered);
  std::vector<v1::CleanupResult> results;
  for (const auto& [id, request] : asked) {
    v1::CleanupResult r;
    r.set_component(absl::StrCat("worker/", id));
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    Entry& e = *it->second;
    r.set_pid(e.pid);
    auto answer = e.cleanup_answers.find(request);
    if (answer != e.cleanup_answers.end()) {
      r.set_answered(true);
      r.set_rss_before_bytes(answer->second.rss_before_bytes());
      r.set_rss_after_bytes(answer->second.rss_after_bytes());
      r.set_freed_bytes(std::max<int64_t>(
          answer->second.rss_before_bytes() - answer->second.rss_after_bytes(), 0));
      r.set_detail(answer->second.detail());
      e.cleanup_answers.erase(answer);
    } else {
      // A late answer is counted, not kept.
      if (auto late = e.cleanup_requests.find(request); late != e.cleanup_requests.end()) {
        late->second.second = false;
      }
      r.set_detail(e.session == nullptr ? "no channel to the worker yet"
                                        : "no answer in time (it cleans up at its next batch)");
    }
    results.push_back(r);
  }
  lock.unlock();
  // Workers that did not answer: their RSS as it is now, read without the lock.
  const ProcProbe& probe = *options_.proc;
  for (v1::CleanupResult& r : results) {
    if (r.answered()) continue;
    if (auto info = probe.Process(r.pid()); info.ok()) {
      r.set_rss_before_bytes(info->rss_bytes);
      r.set_rss_after_bytes(info->rss_bytes);
    }
  }
  return results;
}

void ExperimentManager::Shutdown(std::chrono::milliseconds grace) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!shutting_down_) {
    shutting_down_ = true;
    for (auto& [id, e] : entries_) {
      if (e->pid <= 0) continue;
      spdlog::info("experiment {}: asking worker pid {} to checkpoint and stop", id, e->pid);
      if (e->session != nullptr) {
        v1::WorkerCommand stop;
        stop.mutable_stop();
        e->session->Send(stop);
      }
      kill(e->pid, SIGTERM);
    }
  }
  cv_.notify_all();
  if (!cv_.wait_for(lock, grace, [&] { return active_waiters_ == 0; })) {
    for (auto& [id, e] : entries_) {
      if (e->pid <= 0) continue;
      spdlog::warn("experiment {}: worker pid {} did not stop in time: killed", id, e->pid);
      kill(e->pid, SIGKILL);
    }
    cv_.wait(lock, [&] { return active_waiters_ == 0; });
  }
}

}  // namespace yolo
