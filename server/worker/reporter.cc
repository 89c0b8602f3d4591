#include "server/worker/reporter.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "server/worker/train/cpu_allocator.h"
#include "server/worker/train/run_support.h"

namespace yolo {

WorkerReporter::WorkerReporter(std::atomic<bool>* stop, std::atomic<bool>* cleanup,
                               PolicyRequest* policy, std::shared_ptr<const ProcProbe> proc)
    : stop_(stop), cleanup_(cleanup), policy_(policy), proc_(std::move(proc)) {}

absl::StatusOr<std::unique_ptr<WorkerReporter>> WorkerReporter::Connect(
    const std::string& address, const std::string& experiment_id, const std::string& secret,
    std::atomic<bool>* stop, std::atomic<bool>* cleanup, PolicyRequest* policy,
    std::shared_ptr<const ProcProbe> proc) {
  std::unique_ptr<WorkerReporter> r(new WorkerReporter(stop, cleanup, policy, std::move(proc)));
  r->channel_ = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  if (!r->channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    return absl::UnavailableError(absl::StrCat("cannot reach yolod at ", address));
  }
  r->stub_ = v1::WorkerChannel::NewStub(r->channel_);
  r->stream_ = r->stub_->Connect(&r->context_);
  v1::WorkerMessage hello;
  hello.mutable_hello()->set_experiment_id(experiment_id);
  hello.mutable_hello()->set_pid(static_cast<int32_t>(getpid()));
  hello.mutable_hello()->set_secret(secret);
  if (!r->stream_->Write(hello)) {
    return absl::UnavailableError(absl::StrCat("yolod at ", address, " closed the channel"));
  }
  r->reader_ = std::thread([p = r.get()] { p->ReadLoop(); });
  return r;
}

WorkerReporter::~WorkerReporter() {
  closing_ = true;
  if (stream_ == nullptr) return;  // never connected
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (!broken_) stream_->WritesDone();
  }
  if (reader_.joinable()) reader_.join();
  stream_->Finish();
}

void WorkerReporter::ReadLoop() {
  v1::WorkerCommand command;
  while (stream_->Read(&command)) {
    if (command.has_stop()) {
      spdlog::info("yolod asked to stop: stopping at the next batch");
      stop_->store(true);
    } else if (command.has_cleanup()) {
      cleanup_request_id_ = command.cleanup().request_id();
      cleanup_->store(true);
    } else if (command.has_apply_policy() && policy_ != nullptr) {
      spdlog::warn("yolod asks for the memory pressure policy ({}): at the end of this epoch",
                   command.apply_policy().reason());
      policy_->Ask(command.apply_policy().reason());
    }
  }
  if (!closing_) {
    // yolod went away: stop with a checkpoint rather than train on unsupervised.
    spdlog::warn("the channel to yolod closed: stopping at the next batch");
    stop_->store(true);
  }
}

void WorkerReporter::Send(const v1::WorkerMessage& message) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (broken_) return;
  if (!stream_->Write(message)) broken_ = true;
}

void WorkerReporter::SendMemory(int64_t rss_bytes, int64_t gpu_reserved_bytes,
                                const std::optional<v1::CudaAllocatorStats>& cuda) {
  v1::WorkerMessage m;
  auto* mem = m.mutable_memory();
  const CpuAllocatorStats cpu = GetCpuAllocatorStats();
  mem->set_rss_bytes(rss_bytes);
  mem->set_gpu_reserved_bytes(gpu_reserved_bytes);
  mem->set_cpu_cached_bytes(cpu.cached_bytes);
  mem->set_cpu_allocated_bytes(cpu.allocated_bytes);
  if (cuda) *mem->mutable_cuda() = *cuda;
  Send(m);
}

void WorkerReporter::OnBatch(const BatchReport& report) {
  const auto now = std::chrono::steady_clock::now();
  if (report.batch < report.batches && now - last_progress_ < progress_interval) return;
  last_progress_ = now;
  v1::WorkerMessage m;
  auto* p = m.mutable_progress();
  p->set_epoch(report.epoch);
  p->set_epochs(report.epochs);
  p->set_batch(report.batch);
  p->set_batches(report.batches);
  p->set_box_loss(report.box_loss);
  p->set_cls_loss(report.cls_loss);
  p->set_dfl_loss(report.dfl_loss);
  p->set_images_per_second(report.images_per_second);
  const int64_t rss = CurrentRssBytes(*proc_);
  p->set_rss_bytes(rss);
  p->set_gpu_reserved_bytes(report.gpu_reserved_bytes);
  Send(m);
  SendMemory(rss, report.gpu_reserved_bytes, report.cuda);
}

void WorkerReporter::OnEpoch(const EpochReport& report) {
  v1::WorkerMessage m;
  auto* e = m.mutable_epoch();
  e->set_epoch(report.epoch);
  e->set_epochs(report.epochs);
  e->set_box_loss(report.box_loss);
  e->set_cls_loss(report.cls_loss);
  e->set_dfl_loss(report.dfl_loss);
  e->set_precision(report.metrics.precision);
  e->set_recall(report.metrics.recall);
  e->set_map50(report.metrics.map50);
  e->set_map50_95(report.metrics.map);
  e->set_fitness(report.fitness);
  e->set_train_seconds(report.train_seconds);
  e->set_images_per_second(report.images_per_second);
  e->set_rss_bytes(CurrentRssBytes(*proc_));
  Send(m);
}

void WorkerReporter::OnPolicyApplied(const PolicyReport& report) {
  v1::WorkerMessage m;
  auto* p = m.mutable_policy_applied();
  p->set_epoch(report.epoch);
  p->set_batch_before(report.batch_before);
  p->set_batch_after(report.batch_after);
  p->set_detail(report.detail);
  Send(m);
}

void WorkerReporter::OnOomRetry(const OomRetryReport& report) {
  v1::WorkerMessage m;
  auto* o = m.mutable_oom_retry();
  o->set_epoch(report.epoch);
  o->set_attempt(report.attempt);
  o->set_batch_before(report.batch_before);
  o->set_batch_after(report.batch_after);
  o->set_error(report.error);
  Send(m);
}

void WorkerReporter::OnMemoryEstimate(const v1::MemoryEstimate& estimate) {
  v1::WorkerMessage m;
  *m.mutable_memory_estimate() = estimate;
  Send(m);
}

void WorkerReporter::OnCleanup(const CleanupReport& report) {
  v1::WorkerMessage m;
  auto* c = m.mutable_cleanup_done();
  c->set_request_id(cleanup_request_id_.load());
  c->set_rss_before_bytes(report.rss_before_bytes);
  c->set_rss_after_bytes(report.rss_after_bytes);
  c->set_detail(report.detail);
  Send(m);
}

}  // namespace yolo
