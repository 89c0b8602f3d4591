// A server-streaming reactor fed from any thread: producers push messages through a Sink, which
// outlives the RPC (pushes after the RPC ended are dropped). Messages are written in order, one
// at a time, as gRPC's callback API requires; the reactor deletes itself when the RPC is done.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace yolo {

template <typename T>
class StreamWriter final : public grpc::ServerWriteReactor<T> {
  struct Core {
    std::recursive_mutex mu;  // gRPC may run a reaction inline from StartWrite or Finish
    StreamWriter* reactor = nullptr;
    std::deque<T> pending;  // the front one is being written when `writing`
    bool writing = false, finish_asked = false, finish_called = false, done = false;
    grpc::Status status;

    void FinishLocked() {
      if (finish_called || reactor == nullptr) return;
      finish_called = true;
      reactor->Finish(status);
    }
  };

 public:
  class Sink {
   public:
    // Queues a message; false once the RPC is over (the client went away).
    bool Push(T message) const {
      std::lock_guard<std::recursive_mutex> lock(core_->mu);
      if (core_->done || core_->finish_asked) return false;
      core_->pending.push_back(std::move(message));
      if (!core_->writing) {
        core_->writing = true;
        core_->reactor->StartWrite(&core_->pending.front());
      }
      return true;
    }
    // Ends the RPC with `status` once the queued messages are written.
    void Finish(grpc::Status status = grpc::Status::OK) const {
      std::lock_guard<std::recursive_mutex> lock(core_->mu);
      if (core_->done || core_->finish_asked) return;
      core_->finish_asked = true;
      core_->status = std::move(status);
      if (!core_->writing) core_->FinishLocked();
    }
    bool Done() const {
      std::lock_guard<std::recursive_mutex> lock(core_->mu);
      return core_->done || core_->finish_asked;
    }

   private:
    friend class StreamWriter;
    explicit Sink(std::shared_ptr<Core> core) : core_(std::move(core)) {}
    std::shared_ptr<Core> core_;
  };

  // `on_done` runs once when the RPC is over, on a gRPC thread.
  explicit StreamWriter(std::function<void()> on_done)
      : core_(std::make_shared<Core>()), on_done_(std::move(on_done)) {
    core_->reactor = this;
  }
  Sink sink() const { return Sink(core_); }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(core_->mu);
    core_->pending.pop_front();
    core_->writing = false;
    if (!ok) {
      core_->finish_asked = true;
      core_->status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the client went away");
      core_->pending.clear();
    }
    if (!core_->pending.empty()) {
      core_->writing = true;
      this->StartWrite(&core_->pending.front());
    } else if (core_->finish_asked) {
      core_->FinishLocked();
    }
  }
  void OnCancel() override { Sink(core_).Finish(grpc::Status::CANCELLED); }
  void OnDone() override {
    {
      std::lock_guard<std::recursive_mutex> lock(core_->mu);
      core_->done = true;
      core_->reactor = nullptr;
    }
    if (on_done_) on_done_();
    delete this;
  }

 private:
  std::shared_ptr<Core> core_;
  std::function<void()> on_done_;
};

}  // namespace yolo
