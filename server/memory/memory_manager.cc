#include "server/memory/memory_manager.h"

#include <google/protobuf/util/time_util.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>

namespace yolo {
using google::protobuf::util::TimeUtil;

v1::MemoryReport MemoryManager::Report() const {
  v1::MemoryReport report;
  *report.mutable_time() =
      TimeUtil::NanosecondsToTimestamp(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                           options_.clock->WallNow().time_since_epoch())
                                           .count());
  const ProcProbe& probe = *options_.proc;
  if (auto host = probe.Host(); host.ok()) {
    auto* h = report.mutable_host();
    h->set_total_bytes(host->total_bytes);
    h->set_available_bytes(host->available_bytes);
    h->set_used_bytes(host->total_bytes - host->available_bytes);
    h->set_used_ratio(host->total_bytes > 0 ? static_cast<double>(h->used_bytes()) /
                                                  static_cast<double>(host->total_bytes)
                                            : 0);
    h->set_swap_total_bytes(host->swap_total_bytes);
    h->set_swap_free_bytes(host->swap_free_bytes);
  }
  if (auto self = probe.Self(); self.ok()) {
    report.mutable_daemon()->set_pid(getpid());
    report.mutable_daemon()->set_rss_bytes(self->rss_bytes);
    report.mutable_daemon()->set_peak_rss_bytes(self->peak_rss_bytes);
  }
  for (auto& w : fleet_->WorkerMemory()) *report.add_workers() = std::move(w);
  return report;
}

v1::ForceCleanupResponse MemoryManager::Cleanup(std::chrono::milliseconds timeout) {
  v1::ForceCleanupResponse response;
  const ProcProbe& probe = *options_.proc;
  v1::CleanupResult* self = response.add_results();
  self->set_component("yolod");
  self->set_pid(getpid());
  self->set_answered(true);
  if (auto before = probe.Self(); before.ok()) self->set_rss_before_bytes(before->rss_bytes);
  malloc_trim(0);
  if (auto after = probe.Self(); after.ok()) self->set_rss_after_bytes(after->rss_bytes);
  self->set_freed_bytes(std::max<int64_t>(self->rss_before_bytes() - self->rss_after_bytes(), 0));
  self->set_detail("malloc_trim");
  for (auto& r : fleet_->CleanupWorkers(timeout)) *response.add_results() = std::move(r);
  int64_t total = 0;
  for (const auto& r : response.results()) total += r.freed_bytes();
  response.set_total_freed_bytes(total);
  return response;
}

}  // namespace yolo
