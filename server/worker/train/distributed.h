// Data-parallel training across processes on PyTorch's own distributed engine, c10d: a TCPStore
// rendezvous at master_addr:master_port, a Gloo process group on CPUs (on GPUs, NCCL for the
// device's tensors beside Gloo for host-side values, in a CUDA LibTorch 2.x), and c10d's Reducer,
// the engine under PyTorch's DistributedDataParallel, which all-reduces gradients in buckets while
// the backward pass is still running.
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
#include "common/distributed_config.h"
#include "server/worker/train/rank_sum.h"

namespace yolo {

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
