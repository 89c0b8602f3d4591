// Data-parallel training across processes on PyTorch's own distributed engine, c10d: a TCPStore
// rendezvous at master_addr:master_port, a Gloo process group on CPUs (NCCL on GPUs in a CUDA
// build), and c10d's Reducer, the engine under PyTorch's DistributedDataParallel, which
// all-reduces gradients in buckets while the backward pass is still running.
//
// The ranks: `yolo-worker train` with world_size > 1 (device=cpu) or several GPUs (device=0,1)
// is local rank 0 of its node; it starts the node's other ranks as child processes of the same
// program (RankLauncher in server/worker/ranks.h) that find their rank in YOLO_DDP_* variables.
// The c10d headers stay in distributed.cc.
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/train_args.h"
#include "server/worker/train/rank_sum.h"

namespace yolo {

struct DistributedConfig {
  int world_size = 1;  // ranks in all
  int rank = 0;        // this process's, 0 to world_size - 1
  int local_rank = 0;  // on this node
  int local_world_size = 1;
  int node_rank = 0, nnodes = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  std::vector<int> gpus;  // one per local rank; empty on the CPU
  bool enabled() const { return world_size > 1; }
  bool is_main() const { return rank == 0; }
  // The device this rank trains on: its GPU, or the CPU.
  std::string device() const;
};

// The environment variables a launched rank reads its place from.
inline constexpr char kRankEnv[] = "YOLO_DDP_RANK";
inline constexpr char kLocalRankEnv[] = "YOLO_DDP_LOCAL_RANK";
inline constexpr char kMasterPortEnv[] = "YOLO_DDP_MASTER_PORT";

// The data-parallel layout the arguments ask for (device, world_size, master_addr,
// master_port, node_rank, nnodes) and this process's place in it (from the variables above,
// or local rank 0 when they are absent). An error names the argument that does not fit.
absl::StatusOr<DistributedConfig> ResolveDistributed(const TrainArgs& args);

class ProcessGroupHandle;  // c10d's process group, behind the header wall

// This rank's membership of the group; collectives block until every rank takes part, and
// fail (c10::Error) when a rank has gone.
class DistributedGroup {
 public:
  // Joins the rendezvous; rank 0 hosts the store. Fails after `timeout` without every rank.
  static absl::StatusOr<std::unique_ptr<DistributedGroup>> Join(const DistributedConfig& config,
                                                                std::chrono::seconds timeout);
  ~DistributedGroup();

  const DistributedConfig& config() const { return config_; }
  int world_size() const { return config_.world_size; }
  int rank() const { return config_.rank; }

  // Rank `root`'s values into everyone's tensors (same shapes on all ranks), coalesced.
  void Broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  void AllReduceSum(at::Tensor& t);
  void AllReduceMax(at::Tensor& t);
  void Barrier();
  RankSum Summer();  // AllReduceSum as a function, for SyncBatchNorm and the loss

  // Gradient averaging for `params` during backward (c10d::Reducer: buckets of 25 MB, the
  // first 1 MB, in reverse order of the parameters as DDP assigns them).
  class GradientReducer {
   public:
    virtual ~GradientReducer() = default;
    virtual void BeforeForward() = 0;
    // After the forward pass, with its outputs, before backward.
    virtual void BeforeBackward(const std::vector<at::Tensor>& outputs) = 0;
  };
  std::unique_ptr<GradientReducer> MakeReducer(const std::vector<at::Tensor>& params);

 private:
  DistributedGroup(DistributedConfig config, std::unique_ptr<ProcessGroupHandle> group);
  DistributedConfig config_;
  std::unique_ptr<ProcessGroupHandle> group_;
};

}  // namespace yolo
