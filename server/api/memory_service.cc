#include <condition_variable>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/api/services.h"
#include "server/api/stream_writer.h"

namespace yolo {

grpc::ServerUnaryReactor* MemoryServiceImpl::GetMemoryReport(grpc::CallbackServerContext* context,
                                                             const v1::GetMemoryReportRequest*,
                                                             v1::MemoryReport* response) {
  return RunUnary(context, *auth_, /*mutating=*/false, [&]() -> absl::Status {
    *response = memory_->Report();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MemoryServiceImpl::GetMemoryLevels(grpc::CallbackServerContext* context,
                                                             const v1::GetMemoryLevelsRequest*,
                                                             v1::MemoryLevels* response) {
  return RunUnary(context, *auth_, /*mutating=*/false, [&]() -> absl::Status {
    *response = memory_->Levels();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MemoryServiceImpl::SetMemoryLevels(
    grpc::CallbackServerContext* context, const v1::SetMemoryLevelsRequest* request,
    v1::MemoryLevels* response) {
  return RunUnary(context, *auth_, /*mutating=*/true, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, memory_->SetLevels(*request));
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
    *response = memory_->Cleanup(std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
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
    while (sink.Push(memory_->Report())) {
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
