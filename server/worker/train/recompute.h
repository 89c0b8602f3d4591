// Rebuilding blocked activations in backward instead of keeping them. A convolution keeps its
// input for the weight gradient; when that input is made only of fused BatchNorm+SiLU outputs
// (whose x̂, gamma and beta backward keeps anyway) through channel concatenation, chunking,
// addition and 2x upsampling (or of the uint8 image batch), the convolution keeps those instead and
// rebuilds its input in backward with the same operations, so the same bits. Each producing
// operation records how its output was made (a recipe); outputs are held weakly, with their
// version, so that a freed tensor is forgotten and one changed in place is never rebuilt. Recipes
// are per thread: the thread that runs the forward pass records and reads them.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace yolo {

// Recording, called by the producing operations with their (blocked) output; the model's input
// (ScaleBytes below) is the one NCHW tensor recorded. An output whose inputs are not all
// recorded is not recorded either.
void RecordBatchNormSilu(const at::Tensor& y, const at::Tensor& xhat, const at::Tensor& gamma,
                         const at::Tensor& beta);
void RecordUpsample(const at::Tensor& y, const at::Tensor& x);
void RecordAdd(const at::Tensor& y, const at::Tensor& a, const at::Tensor& b);
void RecordCat(const at::Tensor& y, const std::vector<at::Tensor>& parts);      // along dim 1
void RecordChunks(const std::vector<at::Tensor>& chunks, const at::Tensor& x);  // x.chunk(n, 1)
// y = silu(gamma x̂ + beta) with x̂ = (conv(x, weight) - mean) * invstd, `stats` holding mean
// and invstd (2 x C): rebuilt by running the convolution again. `x` is kept as it is where it
// is not recorded itself.
void RecordConvBatchNormSilu(const at::Tensor& y, const at::Tensor& x, const at::Tensor& weight,
                             const at::Tensor& stats, const at::Tensor& gamma,
                             const at::Tensor& beta, int64_t stride, int64_t padding);

// A uint8 image batch as the model's float input, bytes / 255, recorded so that a convolution
// taking it rebuilds it from the bytes, a quarter of its size (DetectionModelImpl::forward).
at::Tensor ScaleBytes(const at::Tensor& bytes);

// Whether recipes are recorded on this thread: RecomputeEnabled() and no NoRecomputeScope.
bool RecomputeActive();

// x̂ of a RecordConvBatchNormSilu output, from its convolution run again (blocked). The first
// call in a backward pass makes it and keeps it for later ones; `last` (the layer's own
// backward) takes it away.
at::Tensor NormalisedConvOutput(const at::Tensor& x, const at::Tensor& weight,
                                const at::Tensor& stats, int64_t stride, int64_t padding,
                                bool last);

// How to rebuild one tensor: the tensors it is made from (x̂s, gammas, betas), to be saved for
// backward in place of the tensor, and the steps, a flat list of integers.
struct RecomputePlan {
  std::vector<at::Tensor> leaves;
  std::vector<int64_t> steps;
};

// The plan for `x` (the tensor itself as recorded, not a view or copy of it), or false when it
// is not recorded, has changed since, or what it is made from is gone.
bool PlanRecompute(const at::Tensor& x, RecomputePlan* plan);

// `x` again, contiguous, from the saved leaves and the plan's steps.
at::Tensor Recompute(const std::vector<at::Tensor>& leaves, const std::vector<int64_t>& steps);

// While one lives, this thread records nothing, so convolutions keep their inputs (tests
// compare the two ways).
class NoRecomputeScope {
 public:
  NoRecomputeScope();
  ~NoRecomputeScope();
  NoRecomputeScope(const NoRecomputeScope&) = delete;
  NoRecomputeScope& operator=(const NoRecomputeScope&) = delete;
};

}  // namespace yolo
