// Times BatchNorm + SiLU in training, forward and backward, on the activation shapes of
// yolov8n at 320 px, batch 16: the fused CPU path (CpuBatchNormSilu, NCHW) against the ATen ops it
// replaces (native_batch_norm + silu_, then the recomputed BN output, silu_backward and
// native_batch_norm_backward). Best of 10 runs each, interleaved. Run by hand:
// build/bench/bn_silu_bench
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "server/worker/train/blocked_ops.h"
#include "server/worker/train/bn_silu_kernel.h"
#include "server/worker/train/cpu_allocator.h"
#include "server/worker/train/run_support.h"

namespace {
using Clock = std::chrono::steady_clock;
double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

int main() {
  const int threads = yolo::ConfigureThreads(0);
  yolo::InstallCachingCpuAllocator();
  std::printf("threads %d, vectorised kernel %s\n", threads,
              yolo::BnSiluVectorised() ? "yes" : "no");
  std::printf("%-14s %12s %12s %12s %12s\n", "C x H x W", "fused_fwd", "aten_fwd", "fused_bwd",
              "aten_bwd");
  const std::vector<std::vector<int64_t>> shapes = {
      {16, 16, 160, 160}, {16, 32, 80, 80}, {16, 64, 40, 40}, {16, 128, 20, 20}};
  for (const auto& shape : shapes) {
    const int64_t c = shape[1];
    at::Tensor z = at::randn(shape), gy = at::randn(shape);
    at::Tensor zg = z.clone().set_requires_grad(true);
    at::Tensor gamma = at::rand({c}) + 0.5, beta = at::rand({c}) - 0.5;
    at::Tensor running_mean = at::zeros({c}), running_var = at::ones({c});
    double fused_fwd = 1e9, fused_bwd = 1e9, aten_fwd = 1e9, aten_bwd = 1e9;
    for (int run = 0; run < 10; ++run) {
      auto t0 = Clock::now();
      at::Tensor y = yolo::CpuBatchNormSilu(zg, gamma, beta, running_mean, running_var, 0.03, 1e-3);
      auto t1 = Clock::now();
      y.backward(gy);
      zg.mutable_grad().reset();
      auto t2 = Clock::now();
      auto [u, mean, invstd] = at::native_batch_norm(z, gamma, beta, running_mean, running_var,
                                                     /*training=*/true, 0.03, 1e-3);
      at::silu_(u);
      auto t3 = Clock::now();
      at::Tensor scale = (gamma * invstd).view({1, c, 1, 1});
      at::Tensor shift = (beta - mean * gamma * invstd).view({1, c, 1, 1});
      at::Tensor gu = at::silu_backward(gy, at::addcmul(shift, z, scale));
      auto grads = at::native_batch_norm_backward(gu, z, gamma, {}, {}, mean, invstd,
                                                  /*train=*/true, 1e-3, {true, true, true});
      auto t4 = Clock::now();
      fused_fwd = std::min(fused_fwd, Ms(t0, t1));
      fused_bwd = std::min(fused_bwd, Ms(t1, t2));
      aten_fwd = std::min(aten_fwd, Ms(t2, t3));
      aten_bwd = std::min(aten_bwd, Ms(t3, t4));
    }
    char name[32];
    std::snprintf(name, sizeof name, "%ldx%ldx%ld", static_cast<long>(c),
                  static_cast<long>(shape[2]), static_cast<long>(shape[3]));
    std::printf("%-14s %9.2f ms %9.2f ms %9.2f ms %9.2f ms\n", name, fused_fwd, aten_fwd, fused_bwd,
                aten_bwd);
  }
  return 0;
}
