#include <google/protobuf/util/time_util.h>
#include <malloc.h>

#include <condition_variable>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/api/services.h"
#include "server/api/stream_writer.h"
#include "server/experiments/clock.h"
#include "server/memory/proc_probe.h"

namespace yolo {
using google::protobuf::util::TimeUtil;

v1::MemoryReport MemoryServiceImpl::Report() const {
  v1::MemoryReport report;
  *report.mutable_time() = NowTimestamp();
  ProcProbe probe;
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
  for (auto& w : manager_->WorkerMemory()) *report.add_workers() = std::move(w);
  return report;
}

grpc::ServerUnaryReactor* MemoryServiceImpl::GetMemoryReport(grpc::CallbackServerContext* context,
                                                             const v1::GetMemoryReportRequest*,
                                                             v1::MemoryReport* response) {
  return RunUnary(context, *auth_, /*mutating=*/false, [&]() -> absl::Status {
    *response = Report();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MemoryServiceImpl::ForceCleanup(grpc::CallbackServerContext* context,
                                                          const v1::ForceCleanupRequest* request,
                                                          v1::ForceCleanupResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status allowed = auth_->Check(context, /*mutating=*/true);
  if (!allowed.ok()) {
    reactor->Finish(allowed);
    return reactor;
  }
  const double timeout_s =
      request->timeout_seconds() > 0 ? std::min(request->timeout_seconds(), 60.0) : 10.0;
  // Waiting for the workers' answers must not hold a gRPC thread.
  if (!threads_.TryStart()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "too many cleanups and memory watches at once; try later"));
    return reactor;
  }
  std::thread([this, reactor, response, timeout_s] {
    ProcProbe probe;
    v1::CleanupResult self;
    self.set_component("yolod");
    self.set_pid(getpid());
    self.set_answered(true);
    if (auto before = probe.Self(); before.ok()) self.set_rss_before_bytes(before->rss_bytes);
    malloc_trim(0);
    if (auto after = probe.Self(); after.ok()) self.set_rss_after_bytes(after->rss_bytes);
    self.set_freed_bytes(std::max<int64_t>(self.rss_before_bytes() - self.rss_after_bytes(), 0));
    self.set_detail("malloc_trim");
    *response->add_results() = self;
    for (auto& r : manager_->CleanupWorkers(
             std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)))) {
      *response->add_results() = std::move(r);
    }
    int64_t total = 0;
    for (const auto& r : response->results()) total += r.freed_bytes();
    response->set_total_freed_bytes(total);
    reactor->Finish(grpc::Status::OK);
    threads_.Done();
  }).detach();
  return reactor;
}

grpc::ServerWriteReactor<v1::MemoryReport>* MemoryServiceImpl::WatchMemory(
    grpc::CallbackServerContext* context, const v1::WatchMemoryRequest* request) {
  struct Ticker {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto ticker = std::make_shared<Ticker>();
  auto* writer = new StreamWriter<v1::MemoryReport>([ticker] {
    std::lock_guard<std::mutex> lock(ticker->mu);
    ticker->done = true;
    ticker->cv.notify_all();
  });
  auto sink = writer->sink();
  grpc::Status allowed = auth_->Check(context, /*mutating=*/false);
  if (!allowed.ok()) {
    sink.Finish(allowed);
    return writer;
  }
  // Finite and bounded: an infinite interval or duration once made the stream's thread spin.
  const double asked_interval = request->interval_seconds();
  const double duration = request->duration_seconds();
  if (!(asked_interval == 0 ||
        (asked_interval >= kMinInterval && asked_interval <= kMaxInterval))) {
    sink.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             absl::StrCat("field 'interval_seconds': must be 0 (1 s) or in [",
                                          kMinInterval, ", ", kMaxInterval, "] seconds")));
    return writer;
  }
  if (!(duration >= 0 && duration <= kMaxDuration)) {
    sink.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             absl::StrCat("field 'duration_seconds': must be 0 (until cancelled) "
                                          "or in (0, ",
                                          kMaxDuration, "] seconds")));
    return writer;
  }
  const double interval = asked_interval == 0 ? 1.0 : asked_interval;
  if (!threads_.TryStart()) {
    sink.Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                             absl::StrCat("more than ", kMaxWatches,
                                          " memory watches and cleanups at once; try later")));
    return writer;
  }
  std::thread([this, ticker, sink, interval, duration] {
    const auto start = std::chrono::steady_clock::now();
    const auto period = std::chrono::microseconds(static_cast<int64_t>(interval * 1e6));
    const auto length = std::chrono::microseconds(static_cast<int64_t>(duration * 1e6));
    auto next = start;
    while (sink.Push(Report())) {
      next += period;
      if (duration > 0 && next - start > length) {
        sink.Finish();
        break;
      }
      std::unique_lock<std::mutex> lock(ticker->mu);
      if (ticker->cv.wait_until(lock, next, [&] { return ticker->done; })) break;
    }
    threads_.Done();
  }).detach();
  return writer;
}

}  // namespace yolo
