#include "server/worker/ranks.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/worker_exit.h"

extern char** environ;

namespace yolo {
namespace {

std::mutex g_stderr_mu;  // whole lines from every rank

void WriteAll(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    const ssize_t n = write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::string DescribeExit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return absl::StrCat("was killed by signal ", sig, " (", strsignal(sig), ")");
  }
  const int code = WEXITSTATUS(status);
  const char* what = code == worker_exit::kOutOfMemory ? " (out of memory)"
                     : code == worker_exit::kUsage     ? " (bad arguments)"
                                                       : "";
  return absl::StrCat("exited with code ", code, what);
}

// Exits that are a rank's normal end: done, stopped on request, or its round over.
bool NormalEnd(int status) {
  if (!WIFEXITED(status)) return false;
  const int code = WEXITSTATUS(status);
  return code == worker_exit::kSucceeded || code == worker_exit::kStopped ||
         code == worker_exit::kRoundEnded;
}

// The environment of a launched rank: this one without yolod's channel (rank 0 alone reports)
// and with its place in the group.
std::vector<std::string> RankEnvironment(int rank, int local_rank, int master_port) {
  static const char* const kDropped[] = {
      "YOLOD_WORKER_SOCKET", "YOLOD_EXPERIMENT_ID", "YOLOD_PID",           "YOLOD_WORKER_SECRET",
      "YOLO_DDP_RANK",       "YOLO_DDP_LOCAL_RANK", "YOLO_DDP_MASTER_PORT"};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    bool drop = false;
    for (const char* d : kDropped) drop |= absl::StartsWith(*e, absl::StrCat(d, "="));
    if (!drop) env.emplace_back(*e);
  }
  env.push_back(absl::StrCat("YOLO_DDP_RANK=", rank));
  env.push_back(absl::StrCat("YOLO_DDP_LOCAL_RANK=", local_rank));
  env.push_back(absl::StrCat("YOLO_DDP_MASTER_PORT=", master_port));
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = strerror(errno);
    close(fd);
    return absl::InternalError(absl::StrCat("no free port on 127.0.0.1: ", why));
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

absl::StatusOr<std::unique_ptr<RankLauncher>> RankLauncher::Start(const Options& o) {
  std::unique_ptr<RankLauncher> launcher(new RankLauncher());
  const pid_t parent = getpid();
  for (int local = 1; local < o.local_ranks; ++local) {
    auto r = std::make_unique<Rank>();
    r->rank = o.first_rank + local - 1;
    std::vector<std::string> env = RankEnvironment(r->rank, local, o.master_port);
    std::vector<std::string> args = o.argv;
    args[0] = "/proc/self/exe";
    std::vector<char*> envp = CStrings(env), argv = CStrings(args);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
    }
    const pid_t pid = fork();
    if (pid < 0) {
      close(fds[0]), close(fds[1]);
      return absl::InternalError(absl::StrCat("fork for rank ", r->rank, ": ", strerror(errno)));
    }
    if (pid == 0) {  // only async-signal-safe calls from here to exec
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // rank 0 is already gone
      dup2(fds[1], STDOUT_FILENO);
      dup2(fds[1], STDERR_FILENO);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(fds[1]);
    r->pid = pid;
    r->out_fd = fds[0];
    Rank* raw = r.get();
    r->reader = std::thread([raw] {
      std::string pending;
      char buf[4096];
      while (true) {
        const ssize_t n = read(raw->out_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        pending.append(buf, static_cast<size_t>(n));
        for (size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1)) {
          std::lock_guard<std::mutex> lock(g_stderr_mu);
          WriteAll(STDERR_FILENO,
                   absl::StrCat("[rank ", raw->rank, "] ", pending.substr(0, nl + 1)));
        }
      }
      if (!pending.empty()) {
        std::lock_guard<std::mutex> lock(g_stderr_mu);
        WriteAll(STDERR_FILENO, absl::StrCat("[rank ", raw->rank, "] ", pending, "\n"));
      }
    });
    RankLauncher* self = launcher.get();
    r->watcher = std::thread([self, raw] { self->Watch(raw); });
    launcher->ranks_.push_back(std::move(r));
  }
  return launcher;
}

void RankLauncher::Watch(Rank* r) {
  int status = 0;
  while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR) {
  }
  r->exited = true;
  if (NormalEnd(status)) return;
  std::function<void(const Failure&)> notify;
  Failure f;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_) return;  // the first failure is the reason; the others follow from it
    if (finishing_ && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) return;  // we stopped it
    f.reason = absl::StrCat("rank ", r->rank, " (pid ", r->pid, ") ", DescribeExit(status));
    f.exit_code = WIFEXITED(status) && WEXITSTATUS(status) == worker_exit::kOutOfMemory
                      ? worker_exit::kOutOfMemory
                      : worker_exit::kError;
    failure_ = f;
    notify = on_failure_;
  }
  if (notify) notify(f);
}

std::optional<RankLauncher::Failure> RankLauncher::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

void RankLauncher::set_on_failure(std::function<void(const Failure&)> f) {
  std::lock_guard<std::mutex> lock(mu_);
  on_failure_ = std::move(f);
}

void RankLauncher::Finish(double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  auto all_exited = [&] {
    for (const auto& r : ranks_) {
      if (!r->exited) return false;
    }
    return true;
  };
  while (!all_exited() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  finishing_ = true;
  StopAll();
}

void RankLauncher::StopAll() {
  finishing_ = true;
  for (const auto& r : ranks_) {
    if (!r->exited) kill(r->pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (const auto& r : ranks_) {
    while (!r->exited && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!r->exited) kill(r->pid, SIGKILL);
  }
  for (const auto& r : ranks_) {
    if (r->watcher.joinable()) r->watcher.join();
    if (r->reader.joinable()) r->reader.join();
    if (r->out_fd >= 0) close(r->out_fd), r->out_fd = -1;
  }
}

RankLauncher::~RankLauncher() { StopAll(); }

}  // namespace yolo
