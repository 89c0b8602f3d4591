// yolod's gRPC services: thin translators over ExperimentManager, MemoryManager and the
// training config. They hold no state of their own.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

#include "server/api/grpc_util.h"
#include "server/experiments/experiment_manager.h"
#include "server/experiments/training_config.h"
#include "server/memory/memory_manager.h"
#include "yolo/v1/config.grpc.pb.h"
#include "yolo/v1/experiment.grpc.pb.h"
#include "yolo/v1/memory.grpc.pb.h"
#include "yolo/v1/worker.grpc.pb.h"

namespace yolo {

class ExperimentServiceImpl final : public v1::ExperimentService::CallbackService {
 public:
  ExperimentServiceImpl(ExperimentManager* manager, const Authorizer* auth)
      : manager_(manager), auth_(auth) {}
  // Waits for the spec checks still running; after the server's Shutdown.
  void WaitIdle() { checks_.WaitIdle(); }
  grpc::ServerUnaryReactor* StartExperiment(grpc::CallbackServerContext* context,
                                            const v1::StartExperimentRequest* request,
                                            v1::Experiment* response) override;
  grpc::ServerUnaryReactor* GetExperiment(grpc::CallbackServerContext* context,
                                          const v1::GetExperimentRequest* request,
                                          v1::Experiment* response) override;
  grpc::ServerUnaryReactor* ListExperiments(grpc::CallbackServerContext* context,
                                            const v1::ListExperimentsRequest* request,
                                            v1::ListExperimentsResponse* response) override;
  grpc::ServerWriteReactor<v1::ExperimentEvent>* WatchExperiment(
      grpc::CallbackServerContext* context, const v1::WatchExperimentRequest* request) override;
  grpc::ServerUnaryReactor* StopExperiment(grpc::CallbackServerContext* context,
                                           const v1::StopExperimentRequest* request,
                                           v1::Experiment* response) override;
  grpc::ServerUnaryReactor* ResumeExperiment(grpc::CallbackServerContext* context,
                                             const v1::ResumeExperimentRequest* request,
                                             v1::Experiment* response) override;
  grpc::ServerUnaryReactor* DeleteExperiment(grpc::CallbackServerContext* context,
                                             const v1::DeleteExperimentRequest* request,
                                             v1::DeleteExperimentResponse* response) override;
  grpc::ServerUnaryReactor* GetExperimentLogs(grpc::CallbackServerContext* context,
                                              const v1::GetExperimentLogsRequest* request,
                                              v1::ExperimentLogs* response) override;

 private:
  ExperimentManager* manager_;
  const Authorizer* auth_;
  // StartExperiment's spec checks: they stat and read what the client named, so they run off
  // the gRPC threads; a hung filesystem holds at most this many.
  HandlerThreads checks_{16};
};

class MemoryServiceImpl final : public v1::MemoryService::CallbackService {
 public:
  MemoryServiceImpl(MemoryManager* memory, const Authorizer* auth) : memory_(memory), auth_(auth) {}
  grpc::ServerUnaryReactor* GetMemoryReport(grpc::CallbackServerContext* context,
                                            const v1::GetMemoryReportRequest* request,
                                            v1::MemoryReport* response) override;
  grpc::ServerUnaryReactor* ForceCleanup(grpc::CallbackServerContext* context,
                                         const v1::ForceCleanupRequest* request,
                                         v1::ForceCleanupResponse* response) override;
  grpc::ServerWriteReactor<v1::MemoryReport>* WatchMemory(
      grpc::CallbackServerContext* context, const v1::WatchMemoryRequest* request) override;
  grpc::ServerUnaryReactor* GetMemoryLevels(grpc::CallbackServerContext* context,
                                            const v1::GetMemoryLevelsRequest* request,
                                            v1::MemoryLevels* response) override;
  grpc::ServerUnaryReactor* SetMemoryLevels(grpc::CallbackServerContext* context,
                                            const v1::SetMemoryLevelsRequest* request,
                                            v1::MemoryLevels* response) override;

  // Waits until the threads that cleanups and memory watches run on have ended. Call after the
  // server's Shutdown (which cancels the watches) and before the manager goes.
  void WaitIdle() { threads_.WaitIdle(); }

 private:
  static constexpr double kMinInterval = 0.05, kMaxInterval = 3600;  // seconds
  static constexpr double kMaxDuration = 30 * 86400.0;
  static constexpr int kMaxWatches = 64;

  MemoryManager* memory_;
  const Authorizer* auth_;
  HandlerThreads threads_{kMaxWatches};  // cleanups and memory watches
};

class ConfigServiceImpl final : public v1::ConfigService::CallbackService {
 public:
  ConfigServiceImpl(TrainingConfigStore* store, bool has_gpu, const Authorizer* auth)
      : store_(store), has_gpu_(has_gpu), auth_(auth) {}
  grpc::ServerUnaryReactor* GetTrainingConfig(grpc::CallbackServerContext* context,
                                              const v1::GetTrainingConfigRequest* request,
                                              v1::TrainingConfig* response) override;
  grpc::ServerUnaryReactor* UpdateTrainingConfig(grpc::CallbackServerContext* context,
                                                 const v1::UpdateTrainingConfigRequest* request,
                                                 v1::TrainingConfig* response) override;
  grpc::ServerUnaryReactor* ListDeviceProfiles(grpc::CallbackServerContext* context,
                                               const v1::ListDeviceProfilesRequest* request,
                                               v1::ListDeviceProfilesResponse* response) override;

 private:
  TrainingConfigStore* store_;
  bool has_gpu_;
  const Authorizer* auth_;
};

// The worker channel, served on the unix socket only (see WorkerListener). `peer_pid` says
// which process is at the other end of a call, from its peer name.
class WorkerChannelImpl final : public v1::WorkerChannel::CallbackService {
 public:
  using PeerPid = std::function<pid_t(const std::string& grpc_peer)>;
  WorkerChannelImpl(ExperimentManager* manager, PeerPid peer_pid)
      : manager_(manager), peer_pid_(std::move(peer_pid)) {}
  grpc::ServerBidiReactor<v1::WorkerMessage, v1::WorkerCommand>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  ExperimentManager* manager_;
  PeerPid peer_pid_;
};

}  // namespace yolo
