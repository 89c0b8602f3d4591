// The worker channel's unix socket. yolod accepts each connection itself and asks the kernel
// who is calling (SO_PEERCRED) before gRPC reads a byte: a connection from a process of
// another user, or from a process yolod did not spawn as a worker, is closed and logged. The
// rest are handed to the gRPC server that serves WorkerChannel (a server with no port of its
// own), which calls the connection "fd:N".
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace grpc {
class Server;
}

namespace yolo {

class WorkerListener {
 public:
  // Whether `pid` is a worker that yolod spawned and is still waiting for. Called on the
  // listener's thread.
  using IsWorker = std::function<bool(pid_t pid)>;

  // Binds `socket_path` (0600, in a 0700 folder), and accepts on a thread of its own until
  // destroyed. `server` must be started and outlive the listener.
  static absl::StatusOr<std::unique_ptr<WorkerListener>> Start(const std::string& socket_path,
                                                               grpc::Server* server,
                                                               IsWorker is_worker);
  ~WorkerListener();  // stops accepting (if not yet) and removes the socket
  // Accepts no more connections; returns once the accepting thread has ended. The listener
  // still answers PeerPid, so call this before the server's Shutdown and destroy it after.
  void StopAccepting();

  // The pid at the other end of a connection, from the peer name gRPC gives it ("fd:N");
  // 0 when unknown. Any thread.
  pid_t PeerPid(const std::string& grpc_peer) const;

 private:
  WorkerListener(std::string path, int listen_fd, int wake_fd, int wake_write_fd,
                 grpc::Server* server, IsWorker is_worker);
  void AcceptLoop();

  const std::string path_;
  const int listen_fd_, wake_fd_, wake_write_fd_;
  grpc::Server* const server_;
  const IsWorker is_worker_;
  mutable std::mutex mu_;
  std::map<int, pid_t> peers_;  // by connection fd
  std::thread thread_;
};

}  // namespace yolo
