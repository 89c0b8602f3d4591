// The worker's side of the channel to yolod (WorkerChannel.Connect over a unix socket): it
// reports progress, epochs, memory and cleanups, and turns yolod's commands into the flags the
// trainer polls. Used when yolod starts the worker; a standalone `yolo-worker train` has none.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/memory/proc_probe.h"
#include "server/worker/train/trainer.h"
#include "yolo/v1/worker.grpc.pb.h"

namespace yolo {

class WorkerReporter {
 public:
  // Connects to `address` (e.g. unix:/state/worker.sock) and says hello. `stop` and `cleanup`
  // are set when yolod asks for them; `stop` also when the channel breaks (yolod is gone);
  // `policy` is asked when yolod sends the pressure policy.
  static absl::StatusOr<std::unique_ptr<WorkerReporter>> Connect(
      const std::string& address, const std::string& experiment_id, const std::string& secret,
      std::atomic<bool>* stop, std::atomic<bool>* cleanup, PolicyRequest* policy,
      std::shared_ptr<const ProcProbe> proc = std::make_shared<ProcProbe>());
  ~WorkerReporter();  // closes the stream and waits for the reader thread

  // Training-thread calls. Progress is sent at most every `progress_interval` (and always for
  // an epoch's last batch).
  void OnBatch(const BatchReport& report);
  void OnEpoch(const EpochReport& report);
  void OnCleanup(const CleanupReport& report);
  void OnPolicyApplied(const PolicyReport& report);
  void OnOomRetry(const OomRetryReport& report);
  void OnMemoryEstimate(const v1::MemoryEstimate& estimate);

  std::chrono::milliseconds progress_interval{500};

 private:
  WorkerReporter(std::atomic<bool>* stop, std::atomic<bool>* cleanup, PolicyRequest* policy,
                 std::shared_ptr<const ProcProbe> proc);
  void ReadLoop();
  void Send(const v1::WorkerMessage& message);
  void SendMemory(int64_t rss_bytes, int64_t gpu_reserved_bytes,
                  const std::optional<v1::CudaAllocatorStats>& cuda = std::nullopt);

  std::atomic<bool>* stop_;
  std::atomic<bool>* cleanup_;
  PolicyRequest* policy_;
  std::shared_ptr<const ProcProbe> proc_;  // this worker's RSS
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerChannel::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::WorkerCommand>> stream_;
  std::mutex write_mu_;
  bool broken_ = false;  // guarded by write_mu_
  std::atomic<bool> closing_{false};
  std::atomic<int64_t> cleanup_request_id_{0};
  std::chrono::steady_clock::time_point last_progress_{};
  std::thread reader_;
};

}  // namespace yolo
