// ExperimentManager: smart training, the run in rounds of fresh workers (spec.smart).
//
// Round r trains epochs done+1 .. min(done + round_epochs, max_total_epochs) in a worker that
// resumes weights/last.pt and ends with exit code 5 after its last epoch (round_end). Between
// two rounds yolod cleans up and logs the memory report; the round's record keeps the
// worker's peak and end RSS and yolod's RSS and the host's available RAM before and after.
// When the best fitness has not improved for `patience` rounds, one more worker only finishes
// the run (optimizer stripped, best.pt validated) at the epoch last.pt holds.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/experiments/experiment_manager.h"

namespace yolo {

namespace {

std::string Mb(int64_t bytes) {
  return bytes >= 10e9 ? absl::StrFormat("%.2f GB", bytes / 1e9)
                       : absl::StrFormat("%.1f MB", bytes / 1e6);
}

bool Finishing(const v1::Experiment& exp) {
  const v1::SmartTraining& smart = exp.spec().smart();
  return smart.patience() > 0 && exp.rounds_without_improvement() >= smart.patience() &&
         exp.epochs_completed() > 0;
}

}  // namespace

void ExperimentManager::AddSmartRoundArgsLocked(const Entry& e,
                                                std::map<std::string, std::string>* args) const {
  if (!e.exp.spec().has_smart()) return;
  const v1::SmartTraining& smart = e.exp.spec().smart();
  const int done = e.exp.epochs_completed();
  if (Finishing(e.exp)) {
    (*args)["round_end"] = std::to_string(done);
    return;
  }
  const int end = std::min(done + smart.round_epochs(), smart.max_total_epochs());
  if (end < smart.max_total_epochs()) (*args)["round_end"] = std::to_string(end);
}

std::string ExperimentManager::SmartSucceededReasonLocked(const Entry& e) const {
  const v1::SmartTraining& smart = e.exp.spec().smart();
  const int last = e.exp.epochs_completed();
  const int rounds = e.exp.smart_rounds_size() + (last >= e.round_first_epoch ? 1 : 0);
  if (last >= smart.max_total_epochs()) {
    return absl::StrCat("smart: finished ", last, " epochs in ", rounds, " rounds");
  }
  if (Finishing(e.exp)) {
    return absl::StrFormat(
        "smart: ended after epoch %d of %d: the best fitness (%.5f) did not improve for %d rounds",
        last, smart.max_total_epochs(), e.exp.best_fitness(), e.exp.rounds_without_improvement());
  }
  return absl::StrCat("smart: ended after epoch ", last, " of ", smart.max_total_epochs(),
                      " (the trainer's patience, in epochs)");
}

void ExperimentManager::TrackFitnessLocked(Entry& e, const v1::EpochResult& epoch) {
  if (!e.exp.spec().has_smart()) return;
  // Called before epochs_completed counts this epoch: the run's first epoch sets the best.
  if (e.exp.epochs_completed() == 0 || epoch.fitness() > e.exp.best_fitness()) {
    e.exp.set_best_fitness(epoch.fitness());
    e.round_improved = true;
  }
}

void ExperimentManager::EndSmartRoundLocked(Entry& e, const v1::RoundMemory& after,
                                            int64_t peak_rss, const std::string& memory_summary,
                                            PendingWrites& writes) {
  const v1::SmartTraining& smart = e.exp.spec().smart();
  const int last = e.exp.epochs_completed();
  if (last >= e.round_first_epoch) {  // it trained epochs (a finishing worker trains none)
    v1::SmartRound round;
    round.set_round(e.exp.smart_rounds_size() + 1);
    round.set_first_epoch(e.round_first_epoch);
    round.set_last_epoch(last);
    round.set_best_fitness(e.exp.best_fitness());
    round.set_improved(e.round_improved);
    round.set_worker_peak_rss_bytes(peak_rss);
    round.set_worker_end_rss_bytes(e.exp.last_epoch().rss_bytes());
    round.set_yolod_rss_before_bytes(e.exp.memory_before().yolod_rss_bytes());
    round.set_yolod_rss_after_bytes(after.yolod_rss_bytes());
    round.set_host_available_before_bytes(e.exp.memory_before().host_available_bytes());
    round.set_host_available_after_bytes(after.host_available_bytes());
    round.set_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - e.round_start).count());
    const int64_t baseline = e.exp.smart_rounds_size() > 0
                                 ? e.exp.smart_rounds(0).yolod_rss_before_bytes()
                                 : round.yolod_rss_before_bytes();
    round.set_message(absl::StrFormat(
        "round %d (epochs %d-%d of %d, %.0f s): worker peak RSS %s, %s at its last epoch end; "
        "after the cleanup yolod RSS %s (%s before round 1), host %s available (%s before this "
        "round); best fitness %.5f%s",
        round.round(), round.first_epoch(), round.last_epoch(), smart.max_total_epochs(),
        round.seconds(), Mb(peak_rss), Mb(round.worker_end_rss_bytes()),
        Mb(round.yolod_rss_after_bytes()), Mb(baseline), Mb(round.host_available_after_bytes()),
        Mb(round.host_available_before_bytes()), round.best_fitness(),
        round.improved() ? " (improved)" : " (not improved)"));
    if (round.improved()) {
      e.exp.set_rounds_without_improvement(0);
    } else {
      e.exp.set_rounds_without_improvement(e.exp.rounds_without_improvement() + 1);
    }
    v1::MemoryAction action;
    action.set_kind("round");
    action.set_message(memory_summary.empty()
                           ? round.message()
                           : absl::StrCat(round.message(), "; memory report: ", memory_summary));
    *e.exp.add_smart_rounds() = std::move(round);
    AddMemoryActionLocked(e, std::move(action), writes);
  }
  if (!e.round_pending) return;  // the run ended with this worker
  e.round_pending = false;
  if (shutting_down_ || e.stop_requested || e.exp.stopped_for_memory()) {
    // Asked while yolod was between two rounds: last.pt holds the round's last epoch.
    e.exp.set_state(shutting_down_ ? v1::INTERRUPTED : v1::STOPPED);
    e.exp.set_reason(shutting_down_ ? "yolod shut down between two rounds; resume continues"
                     : e.exp.stopped_for_memory()
                         ? "stopped by the memory watchdog between two rounds; it resumes by "
                           "itself when memory is back to ok"
                         : "stopped by request between two rounds; weights/last.pt is resumable");
    return;
  }
  e.exp.set_state(v1::QUEUED);
  if (Finishing(e.exp)) {
    e.exp.set_reason(absl::StrFormat(
        "smart: the best fitness (%.5f) has not improved for %d rounds; a last worker finishes "
        "the run at epoch %d of %d",
        e.exp.best_fitness(), e.exp.rounds_without_improvement(), last, smart.max_total_epochs()));
  } else {
    e.exp.set_reason(absl::StrCat("smart: round ", e.exp.smart_rounds_size(), " done (epoch ", last,
                                  " of ", smart.max_total_epochs(), "); the next round is queued"));
  }
  spdlog::info("experiment {}: {}", e.exp.id(), e.exp.reason());
  queue_.push_front(e.exp.id());  // its slot is the one it had
  cv_.notify_all();
}

}  // namespace yolo
