#include "server/experiments/worker_process.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/worker_exit.h"

extern char** environ;

namespace yolo {

namespace {
constexpr std::streamoff kErrorSearchBytes = 64 << 10;
}  // namespace

absl::StatusOr<pid_t> SpawnWorker(const WorkerLaunch& launch) {
  std::vector<std::string> argv_s = {launch.worker_path, "train"};
  for (const auto& [k, v] : launch.args) argv_s.push_back(absl::StrCat(k, "=", v));
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    if (absl::StartsWith(*e, "YOLOD_")) continue;
    env_s.emplace_back(*e);
  }
  env_s.push_back(absl::StrCat("YOLOD_WORKER_SOCKET=", launch.socket_path));
  env_s.push_back(absl::StrCat("YOLOD_EXPERIMENT_ID=", launch.experiment_id));
  env_s.push_back(absl::StrCat("YOLOD_PID=", getpid()));
  env_s.push_back(absl::StrCat("YOLOD_WORKER_NICE=", launch.nice));
  env_s.push_back(absl::StrCat("YOLOD_WORKER_SECRET=", launch.secret));
  env_s.push_back(absl::StrCat("YOLOD_ALLOWED_ROOTS=", absl::StrJoin(launch.allowed_roots, "\n")));
  std::vector<char*> argv, envp;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, launch.log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = 0;
  const int rc =
      posix_spawn(&pid, launch.worker_path.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", launch.worker_path, ": ", std::strerror(rc)));
  }
  return pid;
}

std::string WorkerEnd::Describe() const {
  if (signal != 0) {
    const char* name = sigabbrev_np(signal);
    return absl::StrCat("killed by signal ", signal, name ? absl::StrCat(" (SIG", name, ")") : "");
  }
  return absl::StrCat("exit code ", code);
}

WorkerEnd ClassifyWait(int wait_status) {
  WorkerEnd end;
  if (WIFSIGNALED(wait_status)) {
    end.signal = WTERMSIG(wait_status);
    end.exit = v1::WORKER_SIGNALED;
    return end;
  }
  end.code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  switch (end.code) {
    case worker_exit::kSucceeded:
      end.exit = v1::WORKER_SUCCEEDED;
      break;
    case worker_exit::kStopped:
      end.exit = v1::WORKER_STOPPED;
      break;
    case worker_exit::kOutOfMemory:
      end.exit = v1::WORKER_OUT_OF_MEMORY;
      break;
    case worker_exit::kRoundEnded:
      end.exit = v1::WORKER_ROUND_ENDED;
      break;
    default:
      end.exit = v1::WORKER_FAILED;
  }
  return end;
}

std::string LastErrorLine(const std::string& log_path) {
  std::ifstream in(log_path, std::ios::binary);
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(size > kErrorSearchBytes ? size - kErrorSearchBytes : 0);  // the end is what matters
  std::string line, last;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "error: ")) last = line.substr(7);
  }
  return last;
}

}  // namespace yolo
