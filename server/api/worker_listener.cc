#include "server/api/worker_listener.h"

#include <fcntl.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace yolo {

absl::StatusOr<std::unique_ptr<WorkerListener>> WorkerListener::Start(
    const std::string& socket_path, grpc::Server* server, IsWorker is_worker) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("worker socket path ", socket_path,
                                                   " is longer than ", sizeof(addr.sun_path) - 1,
                                                   " bytes: choose a shorter --state-dir"));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  ::unlink(socket_path.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  const mode_t old_umask = ::umask(0077);
  const int bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old_umask);
  if (bound != 0 || ::listen(fd, 64) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot listen on ", socket_path, ": ", why));
  }
  ::chmod(socket_path.c_str(), 0600);
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::unique_ptr<WorkerListener> listener(
      new WorkerListener(socket_path, fd, wake[0], wake[1], server, std::move(is_worker)));
  listener->thread_ = std::thread([l = listener.get()] { l->AcceptLoop(); });
  return listener;
}

WorkerListener::WorkerListener(std::string path, int listen_fd, int wake_fd, int wake_write_fd,
                               grpc::Server* server, IsWorker is_worker)
    : path_(std::move(path)),
      listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      wake_write_fd_(wake_write_fd),
      server_(server),
      is_worker_(std::move(is_worker)) {}

void WorkerListener::StopAccepting() {
  if (!thread_.joinable()) return;
  const char byte = 0;
  (void)!::write(wake_write_fd_, &byte, 1);
  thread_.join();
}

WorkerListener::~WorkerListener() {
  StopAccepting();
  ::close(listen_fd_);
  ::close(wake_fd_);
  ::close(wake_write_fd_);
  ::unlink(path_.c_str());
}

pid_t WorkerListener::PeerPid(const std::string& grpc_peer) const {
  absl::string_view rest = grpc_peer;
  int fd = -1;
  if (!absl::ConsumePrefix(&rest, "fd:") || !absl::SimpleAtoi(rest, &fd)) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(fd);
  return it == peers_.end() ? 0 : it->second;
}

void WorkerListener::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("worker socket: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        spdlog::warn("worker socket: accept: {}", std::strerror(errno));
        ::usleep(100 * 1000);  // EMFILE and the like: do not spin
      }
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      spdlog::warn("worker socket: cannot tell who connected ({}); refused", std::strerror(errno));
      ::close(fd);
      continue;
    }
    if (cred.uid != ::getuid() || !is_worker_(cred.pid)) {
      spdlog::warn(
          "worker socket: refused a connection from pid {} (uid {}): not a worker "
          "that yolod started",
          cred.pid, cred.uid);
      ::close(fd);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      peers_[fd] = cred.pid;  // a reused fd number is a new connection: overwritten here
    }
    grpc::AddInsecureChannelFromFd(server_, fd);  // gRPC owns the fd from here
  }
}

}  // namespace yolo
