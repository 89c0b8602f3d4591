#include <spdlog/spdlog.h>

#include <deque>
#include <mutex>

#include "server/api/services.h"

namespace yolo {
namespace {

// One worker's stream: the first message says who it is; later ones are reports; commands
// from the manager are written back one at a time.
class WorkerLink final : public grpc::ServerBidiReactor<v1::WorkerMessage, v1::WorkerCommand>,
                         public WorkerSession {
 public:
  WorkerLink(ExperimentManager* manager, pid_t peer_pid) : manager_(manager), peer_pid_(peer_pid) {
    StartRead(&in_);
  }

  void Send(const v1::WorkerCommand& command) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (finishing_) return;
    out_.push_back(command);
    if (!writing_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      manager_->DetachWorker(this);
      std::lock_guard<std::recursive_mutex> lock(mu_);
      finishing_ = true;
      if (!writing_) Finish(grpc::Status::OK);
      return;
    }
    if (!attached_) {
      const v1::WorkerHello& hello = in_.hello();
      if (!in_.has_hello() || !manager_->AttachWorker(hello.experiment_id(), hello.pid(),
                                                      hello.secret(), peer_pid_, this)) {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        finishing_ = true;
        if (!writing_) {
          Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                              "not a worker that yolod started for this experiment"));
        }
        return;
      }
      attached_ = true;
    } else {
      manager_->OnWorkerMessage(this, in_);
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    out_.pop_front();
    writing_ = false;
    if (ok && !out_.empty() && !finishing_) {
      writing_ = true;
      StartWrite(&out_.front());
    } else if (finishing_) {
      Finish(grpc::Status::OK);
    }
  }

  void OnDone() override {
    manager_->DetachWorker(this);
    delete this;
  }

 private:
  ExperimentManager* manager_;
  const pid_t peer_pid_;  // as the kernel says; 0 when unknown
  v1::WorkerMessage in_;
  std::recursive_mutex mu_;
  std::deque<v1::WorkerCommand> out_;
  bool writing_ = false;
  bool finishing_ = false;
  bool attached_ = false;
};

}  // namespace

grpc::ServerBidiReactor<v1::WorkerMessage, v1::WorkerCommand>* WorkerChannelImpl::Connect(
    grpc::CallbackServerContext* context) {
  return new WorkerLink(manager_, peer_pid_ ? peer_pid_(context->peer()) : 0);
}

}  // namespace yolo
