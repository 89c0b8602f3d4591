// ExperimentManager: smart training, the run in rounds of fresh workers (spec.smart).
//
// Round r trains epochs done+1 .. min(done + round_epochs, max_total_epochs) in a worker that
// resumes weights/last.pt and ends with exit code 5 after its last epoch (round_end); a worker
// stopped or out of memory in it is resumed to the same end. Between two rounds yolod cleans up
// and logs the memory report; the round's record keeps the worker's peak and end RSS and yolod's
// RSS and the host's available RAM before and after. Only rounds that reach their end count for
// patience.
// When the best fitness has not improved for `patience` rounds, one more worker only finishes
// the run (optimizer stripped, best.pt validated) at the epoch last.pt holds.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/bytes.h"
#include "server/experiments/experiment_manager.h"

namespace yolo {

namespace {

std::string Mb(int64_t bytes) { return MegaOrGigaBytes(static_cast<double>(bytes)); }

bool Finishing(const v1::Experiment& exp) {
  const v1::SmartTraining& smart = exp.spec().smart();
  return smart.patience() > 0 && exp.rounds_without_improvement() >= smart.patience() &&
         exp.epochs_completed() > 0;
}

}  // namespace

void ExperimentManager::PlanSmartRoundLocked(Entry& e, std::map<std::string, std::string>* args) {
  if (!e.exp.spec().has_smart()) return;
  const v1::SmartTraining& smart = e.exp.spec().smart();
  const int done = e.exp.epochs_completed();
  if (Finishing(e.exp)) {
    e.exp.clear_smart_round();
    (*args)["round_end"] = std::to_string(done);
    return;
  }
  if (!e.exp.has_smart_round() || e.exp.smart_round().last_epoch() <= done) {
    v1::SmartRound round;
    round.set_round(e.exp.smart_rounds_size() + 1);
    round.set_first_epoch(done + 1);
    round.set_last_epoch(std::min(done + smart.round_epochs(), smart.max_total_epochs()));
    *e.exp.mutable_smart_round() = std::move(round);
  }
  const int end = e.exp.smart_round().last_epoch();
  if (end < smart.max_total_epochs()) (*args)["round_end"] = std::to_string(end);
}

void ExperimentManager::SmartWorkerStartedLocked(Entry& e, const v1::RoundMemory& before) {
  if (!e.exp.has_smart_round()) return;
  v1::SmartRound* round = e.exp.mutable_smart_round();
  if (round->yolod_rss_before_bytes() != 0) return;  // a later worker of the same round
  round->set_yolod_rss_before_bytes(before.yolod_rss_bytes());
  round->set_host_available_before_bytes(before.host_available_bytes());
}

std::string ExperimentManager::SmartSucceededReasonLocked(const Entry& e) const {
  const v1::SmartTraining& smart = e.exp.spec().smart();
  const int last = e.exp.epochs_completed();
  if (last >= smart.max_total_epochs()) {
    return absl::StrCat("smart: finished ", last, " epochs in ", e.exp.smart_rounds_size(),
                        " rounds");
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
    e.exp.mutable_smart_round()->set_improved(true);
  }
}

void ExperimentManager::SmartWorkerEndedLocked(Entry& e, const v1::RoundMemory& after,
                                               int64_t peak_rss, const std::string& memory_summary,
                                               PendingWrites& writes) {
  if (!e.exp.has_smart_round()) return;  // the finishing worker trains no round
  v1::SmartRound* round = e.exp.mutable_smart_round();
  round->set_worker_peak_rss_bytes(std::max(round->worker_peak_rss_bytes(), peak_rss));
  round->set_seconds(
      round->seconds() +
      std::chrono::duration<double>(std::chrono::steady_clock::now() - e.worker_start).count());
  const int last = e.exp.epochs_completed();
  if (last < round->last_epoch()) return;  // stopped or out of memory: it goes on when resumed
  const v1::SmartTraining& smart = e.exp.spec().smart();
  round->set_worker_end_rss_bytes(e.exp.last_epoch().rss_bytes());
  round->set_yolod_rss_after_bytes(after.yolod_rss_bytes());
  round->set_host_available_after_bytes(after.host_available_bytes());
  round->set_best_fitness(e.exp.best_fitness());
  const int64_t baseline = e.exp.smart_rounds_size() > 0
                               ? e.exp.smart_rounds(0).yolod_rss_before_bytes()
                               : round->yolod_rss_before_bytes();
  round->set_message(absl::StrFormat(
      "round %d (epochs %d-%d of %d, %.0f s): worker peak RSS %s, %s at its last epoch end; "
      "after the cleanup yolod RSS %s (%s before round 1), host %s available (%s before this "
      "round); best fitness %.5f%s",
      round->round(), round->first_epoch(), round->last_epoch(), smart.max_total_epochs(),
      round->seconds(), Mb(round->worker_peak_rss_bytes()), Mb(round->worker_end_rss_bytes()),
      Mb(round->yolod_rss_after_bytes()), Mb(baseline), Mb(round->host_available_after_bytes()),
      Mb(round->host_available_before_bytes()), round->best_fitness(),
      round->improved() ? " (improved)" : " (not improved)"));
  e.exp.set_rounds_without_improvement(round->improved() ? 0
                                                         : e.exp.rounds_without_improvement() + 1);
  v1::MemoryAction action;
  action.set_kind("round");
  action.set_message(memory_summary.empty()
                         ? round->message()
                         : absl::StrCat(round->message(), "; memory report: ", memory_summary));
  *e.exp.add_smart_rounds() = std::move(*round);
  e.exp.clear_smart_round();
  AddMemoryActionLocked(e, std::move(action), writes);
}

void ExperimentManager::QueueNextSmartRoundLocked(Entry& e) {
  const v1::SmartTraining& smart = e.exp.spec().smart();
  const int last = e.exp.epochs_completed();
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
