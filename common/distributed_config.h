// The data-parallel layout of a training run: how many ranks, on which devices and nodes, and
// where they meet. LibTorch-free, so that yolod checks a spec's layout before it queues it; the
// engine itself is server/worker/train/distributed.h.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/train_args.h"

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
// master_port, node_rank, nnodes), as local rank 0 of its node sees it. An error names the
// argument that does not fit. yolod checks a spec with it before queueing.
absl::StatusOr<DistributedConfig> ResolveDistributedLayout(const TrainArgs& args);

// The layout and this process's place in it: from the variables above in a launched rank,
// local rank 0 of its node when they are absent.
absl::StatusOr<DistributedConfig> ResolveDistributed(const TrainArgs& args);

}  // namespace yolo
