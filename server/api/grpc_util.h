// What the gRPC services share: status conversion and the token check.
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <mutex>
#include <string>

#include "absl/status/status.h"

namespace yolo {

// The one mapping from our status codes to gRPC's (the numbers are the same by design).
grpc::Status ToGrpcStatus(const absl::Status& status);

// Bearer-token check. Without a token everything is open (loopback only: yolod refuses a
// non-loopback address without TLS and a token). With one, mutating calls always need it,
// read-only calls too unless `open_reads`.
class Authorizer {
 public:
  Authorizer(std::string token, bool open_reads)
      : token_(std::move(token)), open_reads_(open_reads) {}
  grpc::Status Check(const grpc::CallbackServerContext* context, bool mutating) const;

 private:
  std::string token_;
  bool open_reads_;
};

// Threads that handlers start so as not to hold a gRPC thread (work that waits, or touches
// files a client named): at most `limit` at once, and a wait for the last one at shutdown.
class HandlerThreads {
 public:
  explicit HandlerThreads(int limit) : limit_(limit) {}
  // Counts one more thread; false (not counted) when `limit` already run.
  bool TryStart() {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_ >= limit_) return false;
    ++running_;
    return true;
  }
  void Done() {
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
    idle_.notify_all();
  }
  // Call after the server's Shutdown, before what the threads use goes away.
  void WaitIdle() {
    std::unique_lock<std::mutex> lock(mu_);
    idle_.wait(lock, [&] { return running_ == 0; });
  }

 private:
  const int limit_;
  std::mutex mu_;
  std::condition_variable idle_;
  int running_ = 0;
};

// The status for an exception that escaped our code inside `call` (a bug: logged as one).
grpc::Status InternalErrorOf(const char* call, const std::exception* e);

// A unary method's body: check the token, run `fn` (returning absl::Status), finish. An
// exception from `fn` becomes INTERNAL naming the call, never gRPC's empty UNIMPLEMENTED.
template <typename Fn>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* context, const Authorizer& auth,
                                   bool mutating, Fn&& fn,
                                   const char* call = __builtin_FUNCTION()) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status status = auth.Check(context, mutating);
  if (status.ok()) {
    try {
      status = ToGrpcStatus(fn());
    } catch (const std::exception& e) {
      status = InternalErrorOf(call, &e);
    } catch (...) {
      status = InternalErrorOf(call, nullptr);
    }
  }
  reactor->Finish(status);
  return reactor;
}

}  // namespace yolo
