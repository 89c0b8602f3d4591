#include "server/worker/train/distributed.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#if TORCH_VERSION_MAJOR < 2
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#endif

namespace yolo {

std::string DistributedConfig::device() const {
  return gpus.empty() ? "cpu" : std::to_string(gpus[std::min<size_t>(local_rank, gpus.size() - 1)]);
}

namespace {

absl::Status Bad(const std::string& key, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("argument '", key, "': ", why));
}

bool EnvInt(const char* name, int* out) {
  const char* v = std::getenv(name);
  return v != nullptr && absl::SimpleAtoi(v, out);
}

}  // namespace

absl::StatusOr<DistributedConfig> ResolveDistributed(const TrainArgs& args) {
  DistributedConfig c;
  const std::string device = args.GetString("device");
  if (!device.empty() && device != "cpu") {
    const std::string list = device.rfind("cuda:", 0) == 0 ? device.substr(5) : device;
    for (absl::string_view index : absl::StrSplit(list, ',')) {
      int d = 0;
      if (!absl::SimpleAtoi(index, &d)) return Bad("device", absl::StrCat("'", device, "'"));
      c.gpus.push_back(d);
    }
  }
  c.nnodes = static_cast<int>(args.GetInt("nnodes"));
  c.node_rank = static_cast<int>(args.GetInt("node_rank"));
  c.master_addr = args.GetString("master_addr");
  c.master_port = static_cast<int>(args.GetInt("master_port"));
  const int asked = static_cast<int>(args.GetInt("world_size"));
  if (c.gpus.size() > 1) {
    c.local_world_size = static_cast<int>(c.gpus.size());
    c.world_size = c.local_world_size * c.nnodes;
    if (asked > 1 && asked != c.world_size) {
      return Bad("world_size", absl::StrCat(asked, " does not match device=", device, " on ",
                                            c.nnodes, " node(s): ", c.world_size, " ranks"));
    }
  } else {
    c.world_size = std::max(asked, 1);
    if (c.world_size > 1 && !c.gpus.empty()) {
      return Bad("world_size",
                 absl::StrCat(c.world_size, " ranks on the single GPU device=", device,
                              ": name one GPU per rank (device=0,1) or use "
                              "device=cpu"));
    }
    if (c.world_size % c.nnodes != 0) {
      return Bad("world_size",
                 absl::StrCat(c.world_size, " ranks do not split evenly over nnodes=", c.nnodes));
    }
    c.local_world_size = c.world_size / c.nnodes;
  }
  if (c.node_rank >= c.nnodes) {
    return Bad("node_rank", absl::StrCat(c.node_rank, " is not below nnodes=", c.nnodes));
  }
  if (!c.enabled()) {
    c.nnodes = 1, c.node_rank = 0;
    return c;
  }
  if (c.master_port == 0 && c.nnodes > 1) {
    return Bad("master_port", "is needed with nnodes > 1 (every node must name the same port)");
  }
  int port = 0;
  if (EnvInt(kMasterPortEnv, &port)) c.master_port = port;
  int rank = 0, local = 0;
  if (EnvInt(kRankEnv, &rank) && EnvInt(kLocalRankEnv, &local)) {
    if (rank < 0 || rank >= c.world_size || local < 0 || local >= c.local_world_size) {
      return absl::InvalidArgumentError(absl::StrCat(kRankEnv, "=", rank, " / ", kLocalRankEnv, "=",
                                                     local,
                                                     " do not fit world_size=", c.world_size));
    }
    c.rank = rank, c.local_rank = local;
  } else {
    c.local_rank = 0;
    c.rank = c.node_rank * c.local_world_size;
  }
  return c;
}

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
