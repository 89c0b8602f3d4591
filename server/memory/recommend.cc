#include "server/memory/recommend.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace yolo {
namespace {

std::string Bytes(double b) {
  if (b >= 1e9) return absl::StrFormat("%.1f GB", b / 1e9);
  return absl::StrFormat("%.0f MB", b / 1e6);
}

bool Raised(const v1::ResourceLevel& level) {
  return level.level() != v1::MEMORY_LEVEL_UNSPECIFIED && level.level() != v1::MEMORY_OK;
}

}  // namespace

std::vector<std::string> Recommend(const v1::MemoryReport& report) {
  std::vector<std::string> out;
  const bool ram = Raised(report.ram()), gpu = report.has_gpu() && Raised(report.gpu());
  std::vector<const v1::WorkerMemory*> workers;
  for (const auto& w : report.workers()) workers.push_back(&w);
  std::sort(workers.begin(), workers.end(), [](const auto* a, const auto* b) {
    return a->process().rss_bytes() > b->process().rss_bytes();
  });
  for (const v1::WorkerMemory* w : workers) {
    const std::string& id = w->experiment_id();
    const v1::RssTrend& trend = w->rss_trend();
    if (trend.leak_suspected()) {
      out.push_back(absl::StrFormat(
          "%s: its RSS grows %s per epoch (R² %.2f over %d epochs)%s: restart it in a fresh "
          "worker (yoloctl stop %s, then yoloctl resume %s) to give that memory back, and look for "
          "what the run keeps from one epoch to the next",
          id, Bytes(trend.bytes_per_epoch()), trend.r2(), trend.epochs(),
          trend.epochs_to_danger() >= 0
              ? absl::StrFormat("; at this rate RAM reaches the danger level in about %.0f epochs",
                                trend.epochs_to_danger())
              : std::string(),
          id, id));
    }
    const v1::MemoryEstimate& est = w->estimate();
    const bool on_gpu = absl::StartsWith(est.device(), "cuda");
    if (!(on_gpu ? gpu : ram)) continue;
    const int batch = w->batch();
    if (batch > 1 && est.bytes_per_image() > 0) {
      const int half = batch / 2;
      const double per_image =
          est.bytes_per_image() +
          (est.batch() > 0 ? static_cast<double>(est.loader_bytes()) / est.batch() : 0);
      out.push_back(absl::StrFormat(
          "%s: batch %d -> %d frees about %s of %s at this run's rate (%s per image, from its "
          "memory estimate); gradient accumulation rises to keep the nominal batch (nbs), so "
          "the results hold",
          id, batch, half, Bytes(per_image * (batch - half)), on_gpu ? "GPU memory" : "RAM",
          Bytes(per_image)));
    }
    if (w->cache() == "ram" && est.cache_bytes() > 0) {
      out.push_back(absl::StrFormat(
          "%s: cache=ram holds about %s of decoded images; cache=False frees it, at the cost of "
          "decoding every image every epoch",
          id, Bytes(static_cast<double>(est.cache_bytes()))));
    }
    if (w->workers() > 2 && est.loader_bytes() > 0) {
      // The loader's queue and the batches in flight grow with the workers.
      const double freed = static_cast<double>(est.loader_bytes()) * (1 - 2.0 / w->workers());
      out.push_back(absl::StrFormat(
          "%s: workers %d -> 2 frees about %s of batches queued and in flight; the loader may "
          "then feed training more slowly",
          id, w->workers(), Bytes(freed)));
    }
  }
  if ((ram || gpu) && out.empty()) {
    out.push_back(
        workers.empty()
            ? std::string("no experiment is running: the memory in use belongs to other "
                          "processes (see the host and cgroup figures)")
            : std::string("the running experiments have no memory estimate yet to size a "
                          "change by; the pressure policy halves their batches at the warning "
                          "level"));
  }
  return out;
}

}  // namespace yolo
