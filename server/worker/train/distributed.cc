#include "server/worker/train/distributed.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

#if TORCH_VERSION_MAJOR < 2
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#endif

namespace yolo {

#if TORCH_VERSION_MAJOR < 2

class ProcessGroupHandle {
 public:
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

namespace {

constexpr size_t kFirstBucketBytes = 1 << 20;     // DDP's first bucket
constexpr size_t kBucketBytes = 25 << 20;         // DDP's bucket_cap_mb=25
constexpr size_t kBroadcastBytes = 250ull << 20;  // DDP's broadcast buffer

class C10dReducer : public DistributedGroup::GradientReducer {
 public:
  C10dReducer(const std::vector<at::Tensor>& params, c10::intrusive_ptr<c10d::ProcessGroup> group) {
    const std::vector<bool> sparse(params.size(), false);
    auto [buckets, limits] =
        c10d::compute_bucket_assignment_by_size(params, {kFirstBucketBytes, kBucketBytes}, sparse);
    // DDP reduces the last parameters first: backward produces their gradients first.
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(limits.begin(), limits.end());
    reducer_ = std::make_unique<c10d::Reducer>(params, buckets, limits, std::move(group), sparse,
                                               kBucketBytes, /*find_unused_parameters=*/false,
                                               /*gradient_as_bucket_view=*/false,
                                               std::unordered_map<size_t, std::string>{},
                                               kFirstBucketBytes);
  }
  void BeforeForward() override { reducer_->prepare_for_forward(); }
  void BeforeBackward(const std::vector<at::Tensor>& outputs) override {
    reducer_->prepare_for_backward(outputs);
  }

 private:
  std::unique_ptr<c10d::Reducer> reducer_;
};

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

}  // namespace

absl::StatusOr<std::unique_ptr<DistributedGroup>> DistributedGroup::Join(
    const DistributedConfig& config, std::chrono::seconds timeout) {
  if (!config.gpus.empty()) {
    return absl::UnimplementedError(
        "data-parallel training on GPUs needs NCCL, which comes with a CUDA LibTorch 2.x; this "
        "build has LibTorch " TORCH_VERSION " without it: use device=cpu world_size=N");
  }
  auto handle = std::make_unique<ProcessGroupHandle>();
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(config.master_port);
    options.isServer = config.rank == 0;
    options.numWorkers = config.world_size;
    options.waitWorkers = true;
    options.timeout = timeout;
    handle->store = c10::make_intrusive<c10d::TCPStore>(config.master_addr, options);
    auto gloo = c10d::ProcessGroupGloo::Options::create(timeout);
    gloo->devices.push_back(IsLoopback(config.master_addr)
                                ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                : c10d::ProcessGroupGloo::createDefaultDevice());
    handle->group = c10::make_intrusive<c10d::ProcessGroupGloo>(handle->store, config.rank,
                                                                config.world_size, gloo);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("data-parallel rendezvous at ", config.master_addr,
                                               ":", config.master_port, " as rank ", config.rank,
                                               " of ", config.world_size, " failed: ", e.what()));
  }
  return std::unique_ptr<DistributedGroup>(new DistributedGroup(config, std::move(handle)));
}

void DistributedGroup::Broadcast(const std::vector<at::Tensor>& tensors, int root) {
  c10d::broadcast_coalesced(group_->group, tensors, kBroadcastBytes, root);
}

void DistributedGroup::AllReduceSum(at::Tensor& t) {
  std::vector<at::Tensor> v{t};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  group_->group->allreduce(v, o)->wait();
}

void DistributedGroup::AllReduceMax(at::Tensor& t) {
  std::vector<at::Tensor> v{t};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  group_->group->allreduce(v, o)->wait();
}

void DistributedGroup::Barrier() { group_->group->barrier()->wait(); }

std::unique_ptr<DistributedGroup::GradientReducer> DistributedGroup::MakeReducer(
    const std::vector<at::Tensor>& params) {
  return std::make_unique<C10dReducer>(params, group_->group);
}

#else  // LibTorch 2.x: c10d split process groups from backends; not wired here yet.

class ProcessGroupHandle {};

absl::StatusOr<std::unique_ptr<DistributedGroup>> DistributedGroup::Join(const DistributedConfig&,
                                                                         std::chrono::seconds) {
  return absl::UnimplementedError(
      "data-parallel training is built for LibTorch 1.13's c10d; "
      "this build has LibTorch " TORCH_VERSION);
}
void DistributedGroup::Broadcast(const std::vector<at::Tensor>&, int) {}
void DistributedGroup::AllReduceSum(at::Tensor&) {}
void DistributedGroup::AllReduceMax(at::Tensor&) {}
void DistributedGroup::Barrier() {}
std::unique_ptr<DistributedGroup::GradientReducer> DistributedGroup::MakeReducer(
    const std::vector<at::Tensor>&) {
  return nullptr;
}

#endif

DistributedGroup::DistributedGroup(DistributedConfig config,
                                   std::unique_ptr<ProcessGroupHandle> group)
    : config_(std::move(config)), group_(std::move(group)) {}

DistributedGroup::~DistributedGroup() = default;

RankSum DistributedGroup::Summer() {
  return [this](at::Tensor& t) { AllReduceSum(t); };
}

}  // namespace yolo
