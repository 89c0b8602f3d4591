#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/api/services.h"
#include "server/api/stream_writer.h"

namespace yolo {
namespace {

constexpr double kMaxProgressInterval = 3600;  // seconds

}  // namespace

grpc::ServerUnaryReactor* ExperimentServiceImpl::StartExperiment(
    grpc::CallbackServerContext* context, const v1::StartExperimentRequest* request,
    v1::Experiment* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status allowed = auth_->Check(context, /*mutating=*/true);
  if (!allowed.ok()) {
    reactor->Finish(allowed);
    return reactor;
  }
  if (!checks_.TryStart()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "too many experiments being checked at once; try again"));
    return reactor;
  }
  // The spec check stats and reads the files the client named: on a thread of its own, so
  // that a slow or hung filesystem holds this call only, never a gRPC thread. A client that
  // gave up meanwhile gets nothing queued.
  std::thread([this, context, request, response, reactor] {
    grpc::Status status;
    try {
      auto out = manager_->Start(request->spec(), [context] { return context->IsCancelled(); });
      if (out.ok()) *response = *std::move(out);
      status = ToGrpcStatus(out.status());
    } catch (const std::exception& e) {
      status = InternalErrorOf("StartExperiment", &e);
    }
    reactor->Finish(status);
    checks_.Done();
  }).detach();
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetExperiment(
    grpc::CallbackServerContext* context, const v1::GetExperimentRequest* request,
    v1::Experiment* response) {
  return RunUnary(context, *auth_, /*mutating=*/false, [&]() -> absl::Status {
    auto out = manager_->Get(request->id());
    if (out.ok()) *response = *std::move(out);
    return out.status();
  });
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ListExperiments(
    grpc::CallbackServerContext* context, const v1::ListExperimentsRequest*,
    v1::ListExperimentsResponse* response) {
  return RunUnary(context, *auth_, /*mutating=*/false, [&]() -> absl::Status {
    for (auto& e : manager_->List()) *response->add_experiments() = std::move(e);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::StopExperiment(
    grpc::CallbackServerContext* context, const v1::StopExperimentRequest* request,
    v1::Experiment* response) {
  return RunUnary(context, *auth_, /*mutating=*/true, [&]() -> absl::Status {
    auto out = manager_->Stop(request->id());
    if (out.ok()) *response = *std::move(out);
    return out.status();
  });
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ResumeExperiment(
    grpc::CallbackServerContext* context, const v1::ResumeExperimentRequest* request,
    v1::Experiment* response) {
  return RunUnary(context, *auth_, /*mutating=*/true, [&]() -> absl::Status {
    auto out = manager_->Resume(request->id());
    if (out.ok()) *response = *std::move(out);
    return out.status();
  });
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::DeleteExperiment(
    grpc::CallbackServerContext* context, const v1::DeleteExperimentRequest* request,
    v1::DeleteExperimentResponse*) {
  return RunUnary(context, *auth_, /*mutating=*/true,
                  [&]() -> absl::Status { return manager_->Delete(request->id()); });
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetExperimentLogs(
    grpc::CallbackServerContext* context, const v1::GetExperimentLogsRequest* request,
    v1::ExperimentLogs* response) {
  return RunUnary(context, *auth_, /*mutating=*/false, [&]() -> absl::Status {
    constexpr int64_t kMaxBytes = 4 << 20;
    if (request->offset() < 0) return absl::InvalidArgumentError("field 'offset': must be >= 0");
    const int64_t max_bytes =
        request->max_bytes() > 0 ? std::min(request->max_bytes(), kMaxBytes) : kMaxBytes;
    int64_t next = 0;
    auto text = manager_->ReadLog(request->id(), request->offset(), max_bytes, &next);
    if (!text.ok()) return text.status();
    response->set_text(*std::move(text));
    response->set_next_offset(next);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::ExperimentEvent>* ExperimentServiceImpl::WatchExperiment(
    grpc::CallbackServerContext* context, const v1::WatchExperimentRequest* request) {
  // The watch handle is known only after Watch returns; the reactor may end before that.
  auto handle = std::make_shared<std::atomic<int64_t>>(0);
  ExperimentManager* manager = manager_;
  auto* writer = new StreamWriter<v1::ExperimentEvent>([manager, handle] {
    if (const int64_t h = handle->load(); h > 0) manager->Unwatch(h);
  });
  auto sink = writer->sink();
  grpc::Status allowed = auth_->Check(context, /*mutating=*/false);
  if (!allowed.ok()) {
    sink.Finish(allowed);
    return writer;
  }
  const double asked = request->progress_interval_seconds();
  if (!(asked >= 0 && asked <= kMaxProgressInterval)) {  // NaN and infinities fail too
    sink.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             absl::StrCat("field 'progress_interval_seconds': must be 0 (1 s) or "
                                          "at most ",
                                          kMaxProgressInterval, " seconds")));
    return writer;
  }
  const double interval = asked > 0 ? asked : 1.0;
  auto watched = manager_->Watch(
      request->id(), request->logs(), request->log_offset(),
      std::chrono::milliseconds(static_cast<int64_t>(interval * 1000)),
      [sink](const v1::ExperimentEvent& event) { sink.Push(event); }, [sink] { sink.Finish(); });
  if (!watched.ok()) {
    sink.Finish(ToGrpcStatus(watched.status()));
    return writer;
  }
  handle->store(*watched);
  if (sink.Done()) manager_->Unwatch(*watched);  // ended (or cancelled) before the store
  return writer;
}

}  // namespace yolo
