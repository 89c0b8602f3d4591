// The other data-parallel ranks of this node, started and watched by local rank 0 (the
// yolo-worker that yolod or a user started), as torchrun does for PyTorch:
// - each is this program again with the same arguments and YOLO_DDP_RANK / _LOCAL_RANK /
//   _MASTER_PORT set, without yolod's channel variables (rank 0 alone reports to yolod), and
//   dies with rank 0 (PR_SET_PDEATHSIG);
// - its output comes through rank 0's stderr, each line prefixed "[rank N] ", so that the last
//   "error: " line of the log is always rank 0's;
// - one that ends before the run does, or fails, ends the run: `on_failure` gets the reason
//   ("rank 1 (pid 123) was killed by signal 9 (Killed)"), the others are stopped, and rank 0
//   exits with that reason if its collectives do not fail by themselves within a grace period.
// LibTorch-free.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace yolo {

// A free TCP port on the loopback interface, for a one-node rendezvous (master_port=0).
absl::StatusOr<int> FreeLoopbackPort();

class RankLauncher {
 public:
  struct Options {
    int first_rank = 1;             // global rank of local rank 1
    int local_ranks = 1;            // on this node, rank 0 included
    int master_port = 0;            // resolved, passed to every rank
    std::vector<std::string> argv;  // this program's arguments (argv[0] is replaced)
  };
  // What ended a rank, if one did: the reason and the exit code rank 0 should end with.
  struct Failure {
    std::string reason;
    int exit_code = 1;
  };
  static absl::StatusOr<std::unique_ptr<RankLauncher>> Start(const Options& options);
  ~RankLauncher();  // stops and reaps whatever still runs

  // The first rank failure, once there is one.
  std::optional<Failure> failure() const;
  // Called once, from a watcher thread, when a rank fails.
  void set_on_failure(std::function<void(const Failure&)> f);
  // After rank 0's training returned: waits up to `seconds` for the others to finish their
  // part, then stops them. A rank that exits now with a failure still counts.
  void Finish(double seconds);

 private:
  struct Rank {
    int rank = 0;
    pid_t pid = -1;
    int out_fd = -1;
    std::thread reader, watcher;
    std::atomic<bool> exited{false};
  };
  RankLauncher() = default;
  void Watch(Rank* r);
  void StopAll();

  std::vector<std::unique_ptr<Rank>> ranks_;
  mutable std::mutex mu_;
  std::optional<Failure> failure_;
  std::function<void(const Failure&)> on_failure_;
  std::atomic<bool> finishing_{false};
};

}  // namespace yolo
