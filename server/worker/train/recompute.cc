#include "server/worker/train/recompute.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "server/worker/train/blocked_ops.h"
#include "server/worker/train/bn_silu_kernel.h"

// at::parallel_for splits the channels over threads only where this file is compiled with
// OpenMP (CMakeLists.txt); without it every kernel here would run on one thread.
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "compile this file with OpenMP: LibTorch's parallel_for is OpenMP here"
#endif

namespace yolo {
namespace {

using Weak = c10::weak_intrusive_ptr<c10::TensorImpl>;

enum Op : int64_t {
  kBatchNormSilu,
  kUpsample,
  kAdd,
  kCat,
  kChunk,
  kTensor,
  kConvBatchNormSilu,
  kScaledBytes
};

// How one recorded tensor was made. Tensors are held weakly: a recipe never keeps memory alive.
struct Recipe {
  Op op = kBatchNormSilu;
  // kUpsample, kChunk, kConvBatchNormSilu (its input): 1; kAdd: 2; kCat: n
  std::vector<std::shared_ptr<const Recipe>> parts;
  // kBatchNormSilu: x̂, gamma, beta; kTensor: itself; kScaledBytes: the bytes;
  // kConvBatchNormSilu: weight, statistics (mean and inverse standard deviation, 2 x C), gamma,
  // beta
  std::vector<Weak> tensors;
  int64_t arg0 = 0, arg1 = 0;  // kChunk: index, count; kConvBatchNormSilu: stride, padding
};

struct Recorded {
  Weak output;
  int64_t version;
  std::shared_ptr<const Recipe> recipe;
};

// Keyed by the output's TensorImpl; an entry whose output is gone can never match a new tensor
// at the same address (its weak reference no longer locks), and is pruned as the map grows.
struct Registry {
  std::unordered_map<const c10::TensorImpl*, Recorded> entries;
  size_t prune_at = 256;
  int suspended = 0;  // NoRecomputeScopes alive
};
thread_local Registry registry;

std::shared_ptr<const Recipe> Find(const at::Tensor& t) {
  if (!t.defined()) return nullptr;
  auto it = registry.entries.find(t.unsafeGetTensorImpl());
  if (it == registry.entries.end()) return nullptr;
  const Recorded& r = it->second;
  if (r.output.lock().get() != t.unsafeGetTensorImpl() || t._version() != r.version) {
    return nullptr;
  }
  return r.recipe;
}

void Record(const at::Tensor& y, std::shared_ptr<const Recipe> recipe) {
  Registry& reg = registry;
  if (reg.entries.size() >= reg.prune_at) {
    for (auto it = reg.entries.begin(); it != reg.entries.end();) {
      it = it->second.output.expired() ? reg.entries.erase(it) : std::next(it);
    }
    reg.prune_at = std::max<size_t>(256, 2 * reg.entries.size());
  }
  reg.entries.insert_or_assign(y.unsafeGetTensorImpl(), Recorded{Weak(y.getIntrusivePtr()),
                                                                 y._version(), std::move(recipe)});
}

// Records `y` as `op` of `inputs` when every input is recorded.
void RecordOf(const at::Tensor& y, Op op, const std::vector<at::Tensor>& inputs) {
  if (!RecomputeActive() || y.dim() != 5) return;
  auto recipe = std::make_shared<Recipe>();
  recipe->op = op;
  for (const at::Tensor& t : inputs) {
    std::shared_ptr<const Recipe> part = Find(t);
    if (!part) return;
    recipe->parts.push_back(std::move(part));
  }
  Record(y, std::move(recipe));
}

// Flattens a recipe into steps, each node once (its operands come first), and leaves, each
// tensor once. Returns the node's index, or -1 when a tensor it needs is gone.
class Planner {
 public:
  explicit Planner(RecomputePlan* plan) : plan_(plan) {}

  int64_t Add(const Recipe& r) {
    if (auto it = nodes_.find(&r); it != nodes_.end()) return it->second;
    std::vector<int64_t> operands;
    if (r.op == kCat) operands.push_back(static_cast<int64_t>(r.parts.size()));
    for (const auto& part : r.parts) {
      const int64_t node = Add(*part);
      if (node < 0) return -1;
      operands.push_back(node);
    }
    for (const Weak& w : r.tensors) {
      const int64_t leaf = Leaf(w);
      if (leaf < 0) return -1;
      operands.push_back(leaf);
    }
    if (r.op == kChunk || r.op == kConvBatchNormSilu)
      operands.insert(operands.end(), {r.arg0, r.arg1});
    plan_->steps.push_back(r.op);
    plan_->steps.insert(plan_->steps.end(), operands.begin(), operands.end());
    return nodes_[&r] = next_node_++;
  }

 private:
  int64_t Leaf(const Weak& w) {
    c10::intrusive_ptr<c10::TensorImpl> impl = w.lock();
    if (!impl) return -1;
    if (auto it = leaves_.find(impl.get()); it != leaves_.end()) return it->second;
    const int64_t index = static_cast<int64_t>(plan_->leaves.size());
    leaves_[impl.get()] = index;
    plan_->leaves.emplace_back(std::move(impl));
    return index;
  }

  RecomputePlan* plan_;
  std::unordered_map<const Recipe*, int64_t> nodes_;
  std::unordered_map<const c10::TensorImpl*, int64_t> leaves_;
  int64_t next_node_ = 0;
};

// A kScaledBytes value, made the same way in forward and backward.
at::Tensor Scaled(const at::Tensor& bytes) { return bytes.to(at::kFloat).div_(255.0); }

// y = silu(gamma x̂ + beta) for a blocked x̂, as the fused BatchNorm's forward wrote it.
at::Tensor BatchNormSiluOutput(const at::Tensor& xhat, const at::Tensor& gamma,
                               const at::Tensor& beta) {
  const BnSiluShape s{xhat.size(0), xhat.size(1) * xhat.size(4), xhat.size(2) * xhat.size(3),
                      xhat.size(4)};
  at::Tensor y = at::empty_like(xhat);
  at::parallel_for(0, s.c / s.block, 1, [&](int64_t begin, int64_t end) {
    BnSiluOutputBlocked(xhat.data_ptr<float>(), s, begin, end, gamma.data_ptr<float>(),
                        beta.data_ptr<float>(), y.data_ptr<float>());
  });
  return y;
}

}  // namespace

void RecordBatchNormSilu(const at::Tensor& y, const at::Tensor& xhat, const at::Tensor& gamma,
                         const at::Tensor& beta) {
  if (!RecomputeActive() || y.dim() != 5 || xhat.scalar_type() != at::kFloat ||
      xhat.sizes() != y.sizes() || !xhat.is_contiguous()) {
    return;
  }
  auto recipe = std::make_shared<Recipe>();
  for (const at::Tensor* t : {&xhat, &gamma, &beta}) {
    recipe->tensors.emplace_back(t->getIntrusivePtr());
  }
  Record(y, std::move(recipe));
}

at::Tensor ScaleBytes(const at::Tensor& bytes) {
  TORCH_CHECK(bytes.scalar_type() == at::kByte, "ScaleBytes: uint8 images, not ",
              bytes.scalar_type());
  at::Tensor x = Scaled(bytes);
  if (RecomputeActive() && x.device().is_cpu()) {
    auto recipe = std::make_shared<Recipe>();
    recipe->op = kScaledBytes;
    recipe->tensors.emplace_back(bytes.getIntrusivePtr());
    Record(x, std::move(recipe));
  }
  return x;
}

void RecordUpsample(const at::Tensor& y, const at::Tensor& x) { RecordOf(y, kUpsample, {x}); }

void RecordAdd(const at::Tensor& y, const at::Tensor& a, const at::Tensor& b) {
  RecordOf(y, kAdd, {a, b});
}

void RecordCat(const at::Tensor& y, const std::vector<at::Tensor>& parts) {
  RecordOf(y, kCat, parts);
}

void RecordChunks(const std::vector<at::Tensor>& chunks, const at::Tensor& x) {
  if (!RecomputeActive()) return;
  std::shared_ptr<const Recipe> whole = Find(x);
  if (!whole) return;
  for (size_t i = 0; i < chunks.size(); ++i) {
    auto recipe = std::make_shared<Recipe>();
    recipe->op = kChunk;
    recipe->parts = {whole};
    recipe->arg0 = static_cast<int64_t>(i);
    recipe->arg1 = static_cast<int64_t>(chunks.size());
    Record(chunks[i], std::move(recipe));
  }
}

bool PlanRecompute(const at::Tensor& x, RecomputePlan* plan) {
  std::shared_ptr<const Recipe> recipe = Find(x);
  if (!recipe) return false;
  RecomputePlan p;
  if (Planner(&p).Add(*recipe) < 0) return false;
  *plan = std::move(p);
  return true;
}

at::Tensor Recompute(const std::vector<at::Tensor>& leaves, const std::vector<int64_t>& steps) {
  // Decode the steps once, so that each value can be freed after its last use.
  struct Node {
    Op op;
    std::vector<int64_t> operands;  // earlier nodes
    std::vector<int64_t> leaves;
    int64_t arg0 = 0, arg1 = 0;
  };
  std::vector<Node> nodes;
  for (size_t i = 0; i < steps.size();) {
    Node n{static_cast<Op>(steps[i++]), {}, {}};
    const bool source = n.op == kBatchNormSilu || n.op == kTensor || n.op == kScaledBytes;
    const int64_t parts = source ? 0 : n.op == kAdd ? 2 : n.op == kCat ? steps.at(i++) : 1;
    const int64_t leaves = n.op == kBatchNormSilu                    ? 3
                           : n.op == kTensor || n.op == kScaledBytes ? 1
                           : n.op == kConvBatchNormSilu              ? 4
                                                                     : 0;
    for (int64_t k = 0; k < parts; ++k) n.operands.push_back(steps.at(i++));
    for (int64_t k = 0; k < leaves; ++k) n.leaves.push_back(steps.at(i++));
    if (n.op == kChunk || n.op == kConvBatchNormSilu)
      n.arg0 = steps.at(i++), n.arg1 = steps.at(i++);
    nodes.push_back(std::move(n));
  }
  if (nodes.empty()) throw std::logic_error("Recompute: no steps");
  std::vector<size_t> last_use(nodes.size(), 0);
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (int64_t operand : nodes[i].operands) last_use.at(operand) = i;
  }
  std::vector<at::Tensor> values(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    auto in = [&](size_t k) -> const at::Tensor& { return values.at(n.operands[k]); };
    auto leaf = [&](size_t k) -> const at::Tensor& { return leaves.at(n.leaves[k]); };
    switch (n.op) {
      case kBatchNormSilu:
        values[i] = BatchNormSiluOutput(leaf(0), leaf(1), leaf(2));
        break;
      case kTensor:
        values[i] = leaf(0);
        break;
      case kScaledBytes:
        values[i] = Scaled(leaf(0));
        break;
      case kConvBatchNormSilu:
        values[i] = BatchNormSiluOutput(
            NormalisedConvOutput(in(0), leaf(0), leaf(1), n.arg0, n.arg1, /*last=*/false), leaf(2),
            leaf(3));
        break;
      case kUpsample:
        values[i] = BlockedUpsample2x(in(0));
        break;
      case kAdd:
        values[i] = in(0) + in(1);
        break;
      case kCat: {
        std::vector<at::Tensor> parts;
        for (size_t k = 0; k < n.operands.size(); ++k) parts.push_back(in(k));
        values[i] = at::cat(parts, 1);
        break;
      }
      case kChunk:
        values[i] = in(0).chunk(n.arg1, 1).at(n.arg0);
        break;
    }
    for (int64_t operand : n.operands) {
      if (last_use[operand] == i) values[operand].reset();
    }
  }
  return values.back().contiguous();
}

void RecordConvBatchNormSilu(const at::Tensor& y, const at::Tensor& x, const at::Tensor& weight,
                             const at::Tensor& stats, const at::Tensor& gamma,
                             const at::Tensor& beta, int64_t stride, int64_t padding) {
  if (!RecomputeActive() || y.dim() != 5) return;
  std::shared_ptr<const Recipe> input = Find(x);
  if (!input) {
    auto kept = std::make_shared<Recipe>();
    kept->op = kTensor;
    kept->tensors.emplace_back(x.getIntrusivePtr());
    input = std::move(kept);
  }
  auto recipe = std::make_shared<Recipe>();
  recipe->op = kConvBatchNormSilu;
  recipe->parts = {std::move(input)};
  for (const at::Tensor* t : {&weight, &stats, &gamma, &beta}) {
    recipe->tensors.emplace_back(t->getIntrusivePtr());
  }
  recipe->arg0 = stride, recipe->arg1 = padding;
  Record(y, std::move(recipe));
}

at::Tensor NormalisedConvOutput(const at::Tensor& x, const at::Tensor& weight,
                                const at::Tensor& stats, int64_t stride, int64_t padding,
                                bool last) {
  // x̂s made in backward wait here for the convolution's own backward, the last to need them.
  static std::mutex mu;
  static auto* made = new std::unordered_map<const c10::TensorImpl*, std::pair<Weak, at::Tensor>>;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = made->find(stats.unsafeGetTensorImpl());
    if (it != made->end() && it->second.first.lock().get() == stats.unsafeGetTensorImpl()) {
      at::Tensor xhat = it->second.second;
      if (last) made->erase(it);
      return xhat;
    }
  }
  // (z - mean) * invstd, each rounded as the forward pass's kernel rounds it.
  at::Tensor xhat = BlockedConvForward(x, weight, stride, padding);
  const std::vector<int64_t> per_channel{1, xhat.size(1), 1, 1, xhat.size(4)};
  xhat.sub_(stats[0].view(per_channel)).mul_(stats[1].view(per_channel));
  if (!last) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = made->begin(); it != made->end();) {  // left by a backward pass cut short
      it = it->second.first.expired() ? made->erase(it) : std::next(it);
    }
    made->emplace(stats.unsafeGetTensorImpl(), std::make_pair(Weak(stats.getIntrusivePtr()), xhat));
  }
  return xhat;
}

bool RecomputeActive() { return registry.suspended == 0 && RecomputeEnabled(); }

NoRecomputeScope::NoRecomputeScope() { ++registry.suspended; }
NoRecomputeScope::~NoRecomputeScope() { --registry.suspended; }

}  // namespace yolo
