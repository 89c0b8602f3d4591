#include "server/worker/train/distributed.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "absl/strings/str_cat.h"

// c10d: LibTorch 1.13 (Debian's) and 2.x. In 2.x a process group dispatches to a backend per
// device type; ProcessGroupGloo and ProcessGroupNCCL became backends. Gloo is in every build whose
// LibTorch ships its headers; NCCL needs a CUDA LibTorch 2.x and nccl.h on the include path.
#if defined(USE_C10D_GLOO) && __has_include(<gloo/config.h>)
#define YOLO_HAS_GLOO 1
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#if TORCH_VERSION_MAJOR >= 2 && defined(USE_C10D_NCCL) && __has_include(<nccl.h>)
#define YOLO_HAS_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif
#if defined(YOLO_EXPECT_NCCL) && !defined(YOLO_HAS_NCCL)  // bench/libtorch2_check.sh
#error "YOLO_EXPECT_NCCL: c10d's NCCL header is not usable with these flags and include paths"
#endif

namespace yolo {

#ifdef YOLO_HAS_GLOO

// Two groups on GPUs: NCCL for the tensors on the device (gradients, parameters, SyncBatchNorm
// and the loss), Gloo for the few host-side values (flags, the epoch's image count) and the
// barrier. On the CPU both are the one Gloo group.
class ProcessGroupHandle {
 public:
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> device_group;
  c10::intrusive_ptr<c10d::ProcessGroup> host_group;

  const c10::intrusive_ptr<c10d::ProcessGroup>& For(const at::Tensor& t) const {
    return t.is_cpu() ? host_group : device_group;
  }
};

namespace {

constexpr size_t kFirstBucketBytes = 1 << 20;     // DDP's first bucket
constexpr size_t kBucketBytes = 25 << 20;         // DDP's bucket_cap_mb=25
constexpr size_t kBroadcastBytes = 250ull << 20;  // DDP's broadcast buffer

// c10d::Reducer's constructor, which changed across LibTorch versions: 1.13-2.7 take the
// per-bucket size limits; 2.8 dropped them and added two flags; later versions add a list of
// bucket caps. The one this LibTorch has is chosen at compile time (R is a template parameter so
// that the constructors it does not have are never instantiated).
template <typename R = c10d::Reducer>
std::unique_ptr<R> NewReducer(std::vector<at::Tensor> params,
                              c10::intrusive_ptr<c10d::ProcessGroup> group) {
  const std::vector<bool> sparse(params.size(), false);
  auto [buckets, limits] =
      c10d::compute_bucket_assignment_by_size(params, {kFirstBucketBytes, kBucketBytes}, sparse);
  // DDP reduces the last parameters first: backward produces their gradients first.
  std::reverse(buckets.begin(), buckets.end());
  std::reverse(limits.begin(), limits.end());
  using Params = std::vector<at::Tensor>;
  using Buckets = std::vector<std::vector<size_t>>;
  using Group = c10::intrusive_ptr<c10d::ProcessGroup>;
  using Sparse = std::vector<bool>;
  using Names = std::unordered_map<size_t, std::string>;
  constexpr int64_t cap = kBucketBytes, first = kFirstBucketBytes;
  constexpr bool find_unused = false, grad_as_bucket_view = false;
  if constexpr (std::is_constructible_v<R, Params, Buckets, Group, Sparse, int64_t, bool, bool,
                                        Names, int64_t, bool, bool, std::vector<int64_t>>) {
    return std::make_unique<R>(std::move(params), std::move(buckets), std::move(group), sparse, cap,
                               find_unused, grad_as_bucket_view, Names{}, first,
                               /*skip_all_reduce_unused_params=*/false,
                               /*use_python_reducer=*/false, std::vector<int64_t>{});
  } else if constexpr (std::is_constructible_v<R, Params, Buckets, Group, Sparse, int64_t, bool,
                                               bool, Names, int64_t, bool, bool>) {
    return std::make_unique<R>(std::move(params), std::move(buckets), std::move(group), sparse, cap,
                               find_unused, grad_as_bucket_view, Names{}, first,
                               /*skip_all_reduce_unused_params=*/false,
                               /*use_python_reducer=*/false);
  } else {
    return std::make_unique<R>(std::move(params), std::move(buckets), std::move(limits),
                               std::move(group), sparse, cap, find_unused, grad_as_bucket_view,
                               Names{}, first);
  }
}

class C10dReducer : public DistributedGroup::GradientReducer {
 public:
  C10dReducer(const std::vector<at::Tensor>& params, c10::intrusive_ptr<c10d::ProcessGroup> group)
      : reducer_(NewReducer(params, std::move(group))) {}
  void BeforeForward() override { reducer_->prepare_for_forward(); }
  void BeforeBackward(const std::vector<at::Tensor>& outputs) override {
    reducer_->prepare_for_backward(outputs);
  }

 private:
  std::unique_ptr<c10d::Reducer> reducer_;
};

// TCPStoreOptions::useLibUV (LibTorch 2.2 on; true by default from 2.4), where it exists.
template <typename O>
auto SetLibUV(O& options, bool on, int) -> decltype(options.useLibUV = on, void()) {
  options.useLibUV = on;
}
template <typename O>
void SetLibUV(O&, bool, long) {}

// The rendezvous store, rank 0 its server. A LibTorch built without libuv (Debian's 2.x) refuses
// the libuv server that 2.4 and later ask for by default: the classic one is used there.
c10::intrusive_ptr<c10d::Store> NewStore(const DistributedConfig& config,
                                         std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(config.master_port);
  options.isServer = config.rank == 0;
  options.numWorkers = config.world_size;
  options.waitWorkers = true;
  options.timeout = timeout;
  try {
    return c10::make_intrusive<c10d::TCPStore>(config.master_addr, options);
  } catch (const std::exception& e) {
    if (std::string(e.what()).find("libuv") == std::string::npos) throw;
    SetLibUV(options, false, 0);
    return c10::make_intrusive<c10d::TCPStore>(config.master_addr, options);
  }
}

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

// A Gloo group over `store`: 1.13's ProcessGroupGloo is a process group, 2.x's a backend that a
// process group holds for every device type.
c10::intrusive_ptr<c10d::ProcessGroup> GlooGroup(const c10::intrusive_ptr<c10d::Store>& store,
                                                 const DistributedConfig& config,
                                                 std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(IsLoopback(config.master_addr)
                                 ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                 : c10d::ProcessGroupGloo::createDefaultDevice());
  auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
      c10::make_intrusive<c10d::PrefixStore>("gloo/", store), config.rank, config.world_size,
      options);
#if TORCH_VERSION_MAJOR < 2
  return gloo;
#else
  using Type = c10d::ProcessGroup::BackendType;
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, config.rank, config.world_size);
  group->setDefaultBackend(Type::GLOO);
  group->setBackend(c10::DeviceType::CPU, Type::GLOO, gloo);
  return group;
#endif
}

#ifdef YOLO_HAS_NCCL
c10::intrusive_ptr<c10d::ProcessGroup> NcclGroup(const c10::intrusive_ptr<c10d::Store>& store,
                                                 const DistributedConfig& config,
                                                 std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
      c10::make_intrusive<c10d::PrefixStore>("nccl/", store), config.rank, config.world_size,
      options);
  using Type = c10d::ProcessGroup::BackendType;
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, config.rank, config.world_size);
  group->setDefaultBackend(Type::NCCL);
  group->setBackend(c10::DeviceType::CUDA, Type::NCCL, nccl);
  return group;
}
#endif

}  // namespace

absl::StatusOr<std::unique_ptr<DistributedGroup>> DistributedGroup::Join(
    const DistributedConfig& config, std::chrono::seconds timeout) {
#ifndef YOLO_HAS_NCCL
  if (!config.gpus.empty()) {
    return absl::UnimplementedError(
        "data-parallel training on GPUs needs NCCL, which comes with a CUDA LibTorch 2.x; this "
        "build has LibTorch " TORCH_VERSION " without it: use device=cpu world_size=N");
  }
#endif
  auto handle = std::make_unique<ProcessGroupHandle>();
  try {
    handle->store = NewStore(config, timeout);
    handle->host_group = GlooGroup(handle->store, config, timeout);
    handle->device_group = handle->host_group;
#ifdef YOLO_HAS_NCCL
    if (!config.gpus.empty()) handle->device_group = NcclGroup(handle->store, config, timeout);
#endif
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("data-parallel rendezvous at ", config.master_addr,
                                               ":", config.master_port, " as rank ", config.rank,
                                               " of ", config.world_size, " failed: ", e.what()));
  }
  return std::unique_ptr<DistributedGroup>(new DistributedGroup(config, std::move(handle)));
}

void DistributedGroup::Broadcast(const std::vector<at::Tensor>& tensors, int root) {
  std::vector<at::Tensor> host, device;
  for (const at::Tensor& t : tensors) (t.is_cpu() ? host : device).push_back(t);
  if (!host.empty()) c10d::broadcast_coalesced(group_->host_group, host, kBroadcastBytes, root);
  if (!device.empty()) {
    c10d::broadcast_coalesced(group_->device_group, device, kBroadcastBytes, root);
  }
}

namespace {
void AllReduce(const c10::intrusive_ptr<c10d::ProcessGroup>& group, at::Tensor& t,
               c10d::ReduceOp op) {
  std::vector<at::Tensor> v{t};
  c10d::AllreduceOptions o;
  o.reduceOp = op;
  group->allreduce(v, o)->wait();
}
}  // namespace

void DistributedGroup::AllReduceSum(at::Tensor& t) {
  AllReduce(group_->For(t), t, c10d::ReduceOp::SUM);
}

void DistributedGroup::AllReduceMax(at::Tensor& t) {
  AllReduce(group_->For(t), t, c10d::ReduceOp::MAX);
}

void DistributedGroup::Barrier() { group_->host_group->barrier()->wait(); }

std::unique_ptr<DistributedGroup::GradientReducer> DistributedGroup::MakeReducer(
    const std::vector<at::Tensor>& params) {
  if (params.empty()) return nullptr;
  return std::make_unique<C10dReducer>(params, group_->For(params.front()));
}

#else  // no Gloo headers in this LibTorch: one process only

class ProcessGroupHandle {};

absl::StatusOr<std::unique_ptr<DistributedGroup>> DistributedGroup::Join(const DistributedConfig&,
                                                                         std::chrono::seconds) {
  return absl::UnimplementedError(
      "data-parallel training needs c10d's Gloo headers, which this build's LibTorch " TORCH_VERSION
      " does not ship");
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
