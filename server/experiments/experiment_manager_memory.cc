// ExperimentManager: what the memory watchdog asks of the experiments (PressureTarget).
#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/leak.h"
#include "server/experiments/clock.h"
#include "server/experiments/experiment_manager.h"

namespace yolo {
namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

namespace {
constexpr int kMaxMemoryActions = 100;  // kept in each record
}

void ExperimentManager::AddMemoryActionLocked(Entry& e, v1::MemoryAction action,
                                              PendingWrites& writes, bool log) {
  if (!action.has_time()) *action.mutable_time() = NowTimestamp();
  ++counters_.memory_actions[action.kind()];
  auto* actions = e.exp.mutable_memory_actions();
  *actions->Add() = action;
  if (actions->size() > kMaxMemoryActions) actions->DeleteSubrange(0, 1);
  writes.Add(SnapshotLocked(e));
  logs_->Event(e.exp.id(), action.kind(), action.message());
  if (log) {
    writes.AppendLine(LogPathOf(e.exp.id()), absl::StrCat("yolod: memory: ", action.message()));
  }
  v1::ExperimentEvent event;
  *event.mutable_time() = action.time();
  *event.mutable_memory_action() = std::move(action);
  PublishLocked(e.exp.id(), event);
}

void ExperimentManager::SendPolicyLocked(Entry& e, const std::string& reason,
                                         PendingWrites& writes) {
  if (e.session == nullptr || e.policy_sent || !e.exp.memory_policy().empty()) return;
  e.policy_sent = true;
  v1::WorkerCommand command;
  command.mutable_apply_policy()->set_reason(reason);
  e.session->Send(command);
  v1::MemoryAction action;
  action.set_kind("policy");
  action.set_message(absl::StrCat("pressure policy requested (", reason,
                                  "): it applies at the next epoch boundary"));
  AddMemoryActionLocked(e, std::move(action), writes);
}

void ExperimentManager::TrackRssLocked(Entry& e, const v1::EpochResult& epoch,
                                       double danger_headroom, PendingWrites& writes) {
  if (epoch.rss_bytes() <= 0) return;
  if (!e.first_epoch_seen) {
    e.first_epoch_seen = true;  // the round's warm-up: allocator and caches fill
    return;
  }
  e.rss_by_epoch.emplace_back(epoch.epoch(), static_cast<double>(epoch.rss_bytes()));
  const LeakFit fit = FitLeak(e.rss_by_epoch, LeakCriteria{},
                              danger_headroom > 0 ? epoch.rss_bytes() + danger_headroom : 0);
  v1::RssTrend* t = e.exp.mutable_rss_trend();
  t->set_epochs(fit.epochs);
  t->set_bytes_per_epoch(fit.bytes_per_epoch);
  t->set_r2(fit.r2);
  t->set_leak_suspected(fit.suspected);
  t->set_epochs_to_danger(fit.epochs_to_limit);
  t->set_message(DescribeLeak(fit));
  if (fit.suspected && !e.leak_reported) {
    e.leak_reported = true;
    spdlog::warn("experiment {}: memory leak suspected: {}", e.exp.id(), DescribeLeak(fit));
    v1::MemoryAction action;
    action.set_kind("leak_suspected");
    action.set_epoch(epoch.epoch());
    action.set_message(absl::StrCat("memory leak suspected: ", DescribeLeak(fit)));
    AddMemoryActionLocked(e, std::move(action), writes);
  }
}

void ExperimentManager::ApplyPressurePolicy(const std::string& reason) {
  PendingWrites writes(&writer_);
  std::lock_guard<std::mutex> lock(mu_);
  policy_in_force_ = true;
  policy_reason_ = reason;
  for (auto& [id, e] : entries_) {
    if (e->exp.state() == v1::RUNNING) SendPolicyLocked(*e, reason, writes);
  }
}

void ExperimentManager::EndPressurePolicy() {
  std::lock_guard<std::mutex> lock(mu_);
  policy_in_force_ = false;
}

void ExperimentManager::HoldStarts(bool hold, const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    starts_held_ = hold;
    hold_reason_ = reason;
  }
  if (hold) {
    spdlog::warn("new experiments are held: {}", reason);
  } else {
    spdlog::info("new experiments may start again");
  }
  cv_.notify_all();
}

std::string ExperimentManager::StopNewestForMemory(const std::string& reason) {
  PendingWrites writes(&writer_);
  std::lock_guard<std::mutex> lock(mu_);
  Entry* newest = nullptr;
  for (auto& [id, e] : entries_) {
    if (e->exp.state() != v1::RUNNING || e->stop_requested || e->pid <= 0) continue;
    if (newest == nullptr || TimeUtil::TimestampToNanoseconds(e->exp.start_time()) >
                                 TimeUtil::TimestampToNanoseconds(newest->exp.start_time())) {
      newest = e.get();
    }
  }
  if (newest == nullptr) return "";
  Entry& e = *newest;
  e.stop_requested = true;
  e.exp.set_stopped_for_memory(true);
  e.exp.set_reason(absl::StrCat("stopping for memory (", reason,
                                "): the worker checkpoints; it resumes when memory is ok"));
  if (e.session != nullptr) {
    v1::WorkerCommand stop;
    stop.mutable_stop();
    e.session->Send(stop);
  }
  kill(e.pid, SIGTERM);
  v1::MemoryAction action;
  action.set_kind("stop");
  action.set_message(absl::StrCat("stopped by the watchdog with a checkpoint (", reason,
                                  "); it resumes by itself when memory is back to ok"));
  AddMemoryActionLocked(e, std::move(action), writes);
  PublishStateLocked(e, writes);
  spdlog::warn("experiment {}: stopped for memory: {}", e.exp.id(), reason);
  return e.exp.id();
}

std::vector<std::string> ExperimentManager::ResumeStoppedForMemory(const std::string& reason) {
  std::vector<std::string> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, e] : entries_) {
      if (!e->exp.stopped_for_memory()) continue;
      if (e->exp.state() == v1::RUNNING) {
        e->resume_after_stop = true;  // still checkpointing: WaitForWorker queues it
      } else if (e->exp.state() == v1::STOPPED) {
        ready.push_back(id);
      }
    }
  }
  std::vector<std::string> resumed;
  for (const std::string& id : ready) {
    auto r = Resume(id);
    if (!r.ok()) {
      spdlog::warn("experiment {}: not resumed after the memory stop: {}", id,
                   std::string(r.status().message()));
      continue;
    }
    resumed.push_back(id);
    PendingWrites writes(&writer_);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    v1::MemoryAction action;
    action.set_kind("resume");
    action.set_message(absl::StrCat("resumed by the watchdog: ", reason));
    AddMemoryActionLocked(*it->second, std::move(action), writes);
  }
  return resumed;
}

}  // namespace yolo
