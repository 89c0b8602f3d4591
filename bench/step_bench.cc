// Times one training step of a YOLOv8 model (forward, loss, backward, optimizer) on random
// input, in NCHW and channels-last layouts. Run by hand: build/bench/step_bench [scale] [imgsz]
// [batch] [iterations].
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "server/worker/train/cpu_allocator.h"
#include "server/worker/train/loss.h"
#include "server/worker/train/model.h"
#include "server/worker/train/optim.h"
#include "server/worker/train/run_support.h"

namespace {
using Clock = std::chrono::steady_clock;
// Current resident memory in MB.
double RssMb() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * 4096.0 / 1e6;
}
double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

int main(int argc, char** argv) {
  const std::string scale_name = argc > 1 ? argv[1] : "n";
  const int imgsz = argc > 2 ? std::atoi(argv[2]) : 320;
  const int batch = argc > 3 ? std::atoi(argv[3]) : 16;
  const int iters = argc > 4 ? std::atoi(argv[4]) : 5;
  const int threads = yolo::ConfigureThreads(0);
  if (!std::getenv("NO_CACHE")) yolo::InstallCachingCpuAllocator();
  if (std::getenv("NO_MKLDNN")) at::globalContext().setUserEnabledMkldnn(false);
  auto scale = yolo::ScaleFromName(scale_name);
  if (!scale.ok()) return 1;
  std::printf("scale %s imgsz %d batch %d threads %d\n", scale_name.c_str(), imgsz, batch, threads);
  std::printf("%-14s %10s %10s %10s %10s %10s %10s\n", "layout", "fwd_ms", "loss_ms", "bwd_ms",
              "step_ms", "img/s", "peakRSS_MB");
  for (const std::string layout : {"blocked", "nchw", "channels_last"}) {
    const bool channels_last = layout == "channels_last";
    // ONLY=blocked, ONLY=nchw or ONLY=channels_last runs one layout.
    const char* only = std::getenv("ONLY");
    if (only && layout != only) continue;
    torch::manual_seed(0);
    yolo::DetectionModel model(*scale, 3);
    model->train();
    model->set_blocked_layout(layout == "blocked");
    if (channels_last) {
      for (auto& p : model->parameters()) {
        if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
      }
    }
    auto groups = yolo::SplitParameters(*model);
    auto opt = yolo::MakeOptimizer({"AdamW", 0.001, 0.9, 0}, groups, 5e-4);
    yolo::DetectionLoss loss(3, {8, 16, 32}, {});
    at::Tensor x = at::rand({batch, 3, imgsz, imgsz});
    if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    yolo::DetectionTargets t;
    const int n = batch * 4;
    t.batch_idx = at::arange(n, at::kFloat).floor_divide(4);
    t.cls = at::randint(0, 3, {n}).to(at::kFloat);
    t.boxes = at::cat({at::rand({n, 2}) * 0.6 + 0.2, at::rand({n, 2}) * 0.2 + 0.05}, 1);
    double f = 0, l = 0, b = 0, s = 0;
    for (int i = 0; i < iters + 2; ++i) {
      // PROFILE=FILE writes a Chrome trace of the last step of the blocked run.
      std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
      if (std::getenv("PROFILE") && i == iters + 1 && layout == "blocked") {
        profile =
            std::make_unique<torch::autograd::profiler::RecordProfile>(std::getenv("PROFILE"));
      }
      const double rss0 = RssMb();
      yolo::CpuStepScope step;  // placed by the allocator's step plan, as training steps are
      auto t0 = Clock::now();
      auto raw = model->forward(x);
      auto t1 = Clock::now();
      if (i == iters + 1) {
        std::printf("  rss before forward %.0f MB, after %.0f MB; live after forward %.0f MB\n",
                    rss0, RssMb(), yolo::GetCpuAllocatorStats().allocated_bytes / 1e6);
      }
      auto out = loss(raw, t);
      auto t2 = Clock::now();
      out.total.backward();
      auto t3 = Clock::now();
      opt->step();
      opt->zero_grad();
      raw.clear();
      out = {};
      step.Done();
      auto t4 = Clock::now();
      if (i < 2) continue;  // warm-up, and the step the allocator watches (step plans)
      f += Ms(t0, t1), l += Ms(t1, t2), b += Ms(t2, t3), s += Ms(t3, t4);
    }
    const double total = (f + l + b + s) / iters;
    std::printf("%-14s %10.1f %10.1f %10.1f %10.1f %10.1f %10.0f\n", layout.c_str(), f / iters,
                l / iters, b / iters, s / iters, batch * 1000.0 / total,
                yolo::PeakRssBytes() / 1e6);
    std::printf("  allocator: peak live %.0f MB, reserved and free %.0f MB\n",
                yolo::GetCpuAllocatorStats().peak_allocated_bytes / 1e6,
                yolo::GetCpuAllocatorStats().cached_bytes / 1e6);
  }
  return 0;
}
