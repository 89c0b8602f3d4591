// BatchNorm (training mode) followed by SiLU on a contiguous NCHW float tensor, in two
// memory passes per direction instead of ATen's five or six: forward reads z twice (statistics,
// then normalise + SiLU) and writes y and the normalised input x̂, the only thing backward
// needs (recomputing u = γx̂ + β there); backward reads the output gradient and x̂ and writes
// SiLU's gradient (one sigmoid an element) into the input gradient's buffer, then reads x̂ and
// that buffer again and writes the input gradient in place. x̂ is kept as float (backward then
// matches LibTorch's BatchNorm to rounding) or as bfloat16 bits (uint16_t), half the memory, as
// mixed precision keeps it; every sum and the output stay in float/double either way.
// LibTorch-free: the caller splits the channels over threads (each call owns [c0, c1)).
#pragma once

#include <cstdint>

namespace yolo {

struct BnSiluShape {
  int64_t n = 0;      // batch
  int64_t c = 0;      // channels
  int64_t hw = 0;     // height × width
  int64_t block = 8;  // the blocked functions' channels per block: 8 or 16
};

// Whether the vectorised kernels run on this CPU (AVX2 and FMA); the portable loops run
// otherwise, with the same results up to rounding.
bool BnSiluVectorised();

// Statistics of channels [c0, c1) and the forward pass for them: mean[c], invstd[c] =
// 1/sqrt(var + eps) with the biased variance, var_unbiased[c] (for the running estimate),
// xhat = (z - mean) * invstd (as bfloat16 bits or float), y = silu(gamma * xhat + beta).
void BnSiluForward(const float* z, const BnSiluShape& s, int64_t c0, int64_t c1, double eps,
                   const float* gamma, const float* beta, float* mean, float* invstd,
                   float* var_unbiased, uint16_t* xhat, float* y);
void BnSiluForward(const float* z, const BnSiluShape& s, int64_t c0, int64_t c1, double eps,
                   const float* gamma, const float* beta, float* mean, float* invstd,
                   float* var_unbiased, float* xhat, float* y);

// Backward for channels [c0, c1), from the output gradient gy and the saved xhat: writes gz,
// ggamma[c] and gbeta[c].
void BnSiluBackward(const float* gy, const uint16_t* xhat, const BnSiluShape& s, int64_t c0,
                    int64_t c1, const float* gamma, const float* beta, const float* invstd,
                    float* gz, float* ggamma, float* gbeta);
void BnSiluBackward(const float* gy, const float* xhat, const BnSiluShape& s, int64_t c0,
                    int64_t c1, const float* gamma, const float* beta, const float* invstd,
                    float* gz, float* ggamma, float* gbeta);

// The same two for the blocked layout [n][c / B][hw][B] with B = s.block, 8 or 16 (oneDNN's
// nChw8c, nChw16c; c a multiple of B), over channel blocks [b0, b1). Only where
// BnSiluVectorised().
void BnSiluForwardBlocked(const float* z, const BnSiluShape& s, int64_t b0, int64_t b1, double eps,
                          const float* gamma, const float* beta, float* mean, float* invstd,
                          float* var_unbiased, uint16_t* xhat, float* y);
void BnSiluForwardBlocked(const float* z, const BnSiluShape& s, int64_t b0, int64_t b1, double eps,
                          const float* gamma, const float* beta, float* mean, float* invstd,
                          float* var_unbiased, float* xhat, float* y);
// The forward's output again from its float x̂, y = silu(gamma x̂ + beta), for channel blocks
// [b0, b1) of the blocked layout: the same operations as BnSiluForwardBlocked, so the same bits.
void BnSiluOutputBlocked(const float* xhat, const BnSiluShape& s, int64_t b0, int64_t b1,
                         const float* gamma, const float* beta, float* y);
void BnSiluBackwardBlocked(const float* gy, const uint16_t* xhat, const BnSiluShape& s, int64_t b0,
                           int64_t b1, const float* gamma, const float* beta, const float* invstd,
                           float* gz, float* ggamma, float* gbeta);
void BnSiluBackwardBlocked(const float* gy, const float* xhat, const BnSiluShape& s, int64_t b0,
                           int64_t b1, const float* gamma, const float* beta, const float* invstd,
                           float* gz, float* ggamma, float* gbeta);

}  // namespace yolo
