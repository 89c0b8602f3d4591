// Starting a yolo-worker process and telling how it ended. LibTorch-free.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "yolo/v1/experiment.pb.h"

namespace yolo {

struct WorkerLaunch {
  std::string worker_path;                  // the yolo-worker executable
  std::map<std::string, std::string> args;  // key=value arguments of `yolo-worker train`
  std::string log_path;                     // stdout and stderr are appended here (train.log)
  std::string socket_path;                  // yolod's worker channel
  std::string experiment_id;
  std::string secret;  // YOLOD_WORKER_SECRET: the worker proves who it is with it
  int nice = 0;        // the worker lowers its priority to this (YOLOD_WORKER_NICE)
  // The folders every image must lie under (YOLOD_ALLOWED_ROOTS, one per line); empty: any.
  std::vector<std::string> allowed_roots;
};

// Spawns the worker in its own process group, with default signal handling, no inherited file
// descriptors beyond stdin/stdout/stderr, and YOLOD_WORKER_SOCKET, YOLOD_EXPERIMENT_ID,
// YOLOD_PID, YOLOD_WORKER_NICE, YOLOD_ALLOWED_ROOTS and YOLOD_WORKER_SECRET set (the secret
// in the environment, never on the command line, which every user can read).
// Call it from a thread that lives as long as yolod: the worker asks the kernel for SIGTERM
// when that thread ends (PR_SET_PDEATHSIG).
absl::StatusOr<pid_t> SpawnWorker(const WorkerLaunch& launch);

// How a worker ended, from waitpid's status and the worker's exit codes (common/worker_exit.h).
struct WorkerEnd {
  v1::WorkerExit exit = v1::WORKER_EXIT_UNSPECIFIED;
  int code = 0;                  // exit code, when it exited
  int signal = 0;                // signal number, when a signal killed it
  std::string Describe() const;  // "exit code 1", "killed by signal 9 (SIGKILL)"
};
WorkerEnd ClassifyWait(int wait_status);

// The last "error: ..." line in the last 64 KiB of a worker's log, to say why it failed ("" if
// none).
std::string LastErrorLine(const std::string& log_path);

}  // namespace yolo
