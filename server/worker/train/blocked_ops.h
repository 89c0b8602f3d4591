// Training on the CPU in oneDNN's blocked layout. LibTorch keeps NCHW tensors and its oneDNN
// convolutions reorder every activation into the layout the kernels use (8 or 16 channels
// interleaved, "nChw8c", "nChw16c") and back, several times per layer and step. Here activations
// stay in that layout from the first convolution to the head: a blocked tensor is an at::Tensor
// of shape (N, C/B, H, W, B), convolutions call oneDNN directly, BatchNorm + SiLU run on it
// (bn_silu_kernel.h), and cat, chunk and add work on it as they are (channel blocks are
// dimension 1). Every function here is differentiable through LibTorch's autograd.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace yolo {

// Built with oneDNN, running on a CPU with AVX2 and FMA, and not turned off with the
// environment variable YOLO_BLOCKED_LAYOUT=0 (which makes CPU training use LibTorch's ops)
// nor with YOLO_FUSED_BN=0.
bool BlockedLayoutAvailable();

// The fused BatchNorm + SiLU (bn_silu_kernel.h, which keeps its normalised input in bfloat16
// for backward) trains CPU models unless YOLO_FUSED_BN=0: then BatchNorm runs as LibTorch's,
// in float32 throughout, the reference the parity harness compares with.
bool FusedBatchNormEnabled();

// Whether the fused BatchNorm keeps x̂ in bfloat16 (YOLO_BN_BF16=1): half the memory it holds
// for backward, for gradients within ~1e-2 relative of float's instead of ~1e-5.
bool FusedBatchNormKeepsBf16();
// Whether a blocked convolution whose input is made of fused BatchNorm+SiLU outputs rebuilds
// that input from their x̂ in backward instead of keeping it (recompute.h: the same gradients
// bit for bit, less memory); YOLO_RECOMPUTE=0 keeps inputs. Only with x̂ in float.
bool RecomputeEnabled();

// Whether 3x3 convolutions of stride 1 between blocked tensors use Winograd's F(4x4, 3x3)
// where oneDNN has it (AVX-512, nChw16c): about half the time of direct convolution over a
// training step's three directions, for results within 1e-5 relative of it
// (blocked_ops_test). YOLO_WINOGRAD=0 keeps direct convolution everywhere.
bool WinogradEnabled();

// Channels per block: 16 where oneDNN runs AVX-512 kernels (nChw16c), 8 otherwise (nChw8c,
// AVX2). On an AVX-512 CPU oneDNN has only AVX2 kernels for nChw8c, about 1.75x slower than
// its nChw16c ones. YOLO_BLOCK_WIDTH=8 or 16 in the environment overrides.
int BlockedLayoutWidth();

// (N, C, H, W) <-> (N, C/B, H, W, B) with B = BlockedLayoutWidth(); C a multiple of B.
at::Tensor ToBlocked(const at::Tensor& nchw);
at::Tensor FromBlocked(const at::Tensor& blocked);

// A 2-D convolution with square kernel, stride and padding taken from `weight` (OIHW) and the
// arguments. `x` is blocked (5-D) or NCHW (4-D, the image); the result is blocked or, with
// `out_blocked` false, NCHW. `bias` may be undefined.
at::Tensor BlockedConv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         int64_t stride, int64_t padding, bool out_blocked);

// The convolution alone, outside autograd: blocked or NCHW `x`, blocked result, no bias.
at::Tensor BlockedConvForward(const at::Tensor& x, const at::Tensor& weight, int64_t stride,
                              int64_t padding);

// BatchNorm+SiLU (training) of a convolution without bias into the blocked layout, keeping
// neither the convolution's output nor x̂ for backward: both are made again there from the
// input, for about one more forward pass of the convolution (recompute.h). For convolutions
// that cost little against the activations they make (the stem, 1x1). Where recomputing is
// off, the same as BlockedConv2d followed by CpuBatchNormSilu.
at::Tensor BlockedConvBatchNormSilu(const at::Tensor& x, const at::Tensor& weight,
                                    const at::Tensor& gamma, const at::Tensor& beta,
                                    at::Tensor running_mean, at::Tensor running_var, int64_t stride,
                                    int64_t padding, double momentum, double eps);

// BatchNorm in training mode followed by SiLU (bn_silu_kernel.h) on a CPU float tensor, NCHW
// and contiguous or blocked (CpuBatchNormSiluHandles says which tensors qualify); updates the
// running statistics as BatchNorm2d does.
bool CpuBatchNormSiluHandles(const at::Tensor& z);
at::Tensor CpuBatchNormSilu(const at::Tensor& z, const at::Tensor& gamma, const at::Tensor& beta,
                            at::Tensor running_mean, at::Tensor running_var, double momentum,
                            double eps);

// Drops the convolution kernels made so far (oneDNN primitives, one per shape and direction,
// with their generated code), here and in oneDNN's own cache; the next convolution of each shape
// makes its kernel again. For the memory estimate, whose steps at other batch sizes make kernels
// the run never uses. No convolution may run meanwhile, on any thread: a convolution holds its
// kernel by reference.
void ForgetConvolutionKernels();

// Nearest-neighbour upsampling by 2 of a blocked tensor.
at::Tensor BlockedUpsample2x(const at::Tensor& x);

// Concatenation and chunking along channels, and addition, of activations blocked or NCHW:
// at::cat(parts, 1), x.chunk(chunks, 1) and a + b, whose blocked results a convolution taking
// them can rebuild in backward (recompute.h).
at::Tensor ConcatChannels(const std::vector<at::Tensor>& parts);
std::vector<at::Tensor> ChunkChannels(const at::Tensor& x, int64_t chunks);
at::Tensor AddActivations(const at::Tensor& a, const at::Tensor& b);

}  // namespace yolo
