#include "server/worker/train/autobatch.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <torch/nn/utils/clip_grad.h>
#ifdef YOLO_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <fstream>
#include <mutex>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/bytes.h"
#include "server/memory/proc_probe.h"
#include "server/worker/train/blocked_ops.h"
#include "server/worker/train/cpu_allocator.h"
#include "server/worker/train/run_support.h"

namespace yolo {
namespace {

std::string Bytes(double b) { return MegaOrGigaBytes(b); }

// Runs `step` on a thread of its own and throws what it threw. glibc gives each thread an arena
// of its own (or one a finished thread left), so what the step makes with malloc (its model,
// gradients and optimizer state, and at small batches activations under the caching
// allocator's 1 MB) comes and goes there. On the calling thread, which trains next, the holes
// it leaves would sit among the run's own blocks, stay resident and be written again by each
// step's small buffers: tens of MB more RSS for the whole run.
// Where no thread can be started (a capped address space, say), the step runs here.
void OnThreadOfItsOwn(const std::function<void()>& step) {
  std::exception_ptr error;
  std::thread thread;
  try {
    thread = std::thread([&] {
      try {
        step();
      } catch (...) {
        error = std::current_exception();
      }
    });
  } catch (const std::system_error&) {
    step();
    return;
  }
  thread.join();
  if (error) std::rethrow_exception(error);
}

// Forgets the kernels a measured step made, however it ended: they are for its batch alone.
struct ForgetKernelsAfter {
  ~ForgetKernelsAfter() { ForgetConvolutionKernels(); }
};

}  // namespace

bool ResetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

LineFit FitLine(const std::vector<double>& x, const std::vector<double>& y) {
  LineFit fit = FitLeastSquares(x, y);
  if (fit.slope < 0) {  // held flat, through the mean: it explains nothing
    fit.slope = 0, fit.intercept = fit.mean_y, fit.r2 = 0;
  }
  return fit;
}

double MemoryModel::Train(int batch) const { return std::max(train.At(batch), 0.0); }

double MemoryModel::Predict(int batch) const {
  const double training = Train(batch) + loader_bytes_per_image * batch;
  // The validation loader holds batches of twice the size while it runs.
  const double validation = std::max(val.At(2.0 * batch), 0.0) + 2 * loader_bytes_per_image * batch;
  return std::max(training, validation) + fixed_bytes;
}

int LargestBatchWithin(const MemoryModel& model, double budget_bytes, int max_batch) {
  if (max_batch < 1 || model.Predict(1) > budget_bytes) return 0;
  int lo = 1, hi = max_batch;  // Predict is non-decreasing: the slopes are at least 0
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (model.Predict(mid) <= budget_bytes) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

int64_t ModelBytes(const torch::nn::Module& model) {
  int64_t bytes = 0;
  for (const auto& p : model.parameters()) bytes += p.numel() * p.element_size();
  for (const auto& b : model.buffers()) bytes += b.numel() * b.element_size();
  return bytes;
}

StepProfiler::StepProfiler(const StepSpec& spec) : spec_(spec) {
  model_bytes_ = ModelBytes(*NewModel());
  measure_ = spec.device.is_cuda() ? "reserved" : (ResetPeakRss() ? "RSS" : "allocator");
}

DetectionModel StepProfiler::NewModel() const {
  // The run's initialisation and augmentation draw from the global generator: the profiler's
  // models must not move it.
  at::Generator global = at::detail::getDefaultCPUGenerator();
  at::Tensor state;
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    state = global.get_state();
  }
  DetectionModel model(spec_.scale, spec_.nc);
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    global.set_state(state);
  }
  model->to(spec_.device);
  return model;
}

void StepProfiler::Synthetic(int batch, at::Tensor* images, DetectionTargets* targets) {
  at::Generator g = at::detail::createCPUGenerator(20240601);
  const int64_t s = spec_.imgsz, n = static_cast<int64_t>(batch) * spec_.max_objects;
  *images = at::randint(0, 256, {batch, 3, s, s}, g, at::TensorOptions().dtype(at::kByte));
  targets->batch_idx = at::arange(batch, at::kFloat).repeat_interleave(spec_.max_objects);
  targets->cls = at::randint(0, spec_.nc, {n}, g, at::TensorOptions().dtype(at::kFloat));
  at::Tensor centre = at::rand({n, 2}, g) * 0.8 + 0.1;
  at::Tensor size = at::rand({n, 2}, g) * 0.25 + 0.02;
  targets->boxes = at::cat({centre, size}, 1);
}

absl::StatusOr<int64_t> StepProfiler::Measure(const std::function<void()>& step) {
  if (spec_.stop != nullptr && spec_.stop->load()) {
    return absl::CancelledError("stop requested during the memory estimate");
  }
  try {
#ifdef YOLO_WITH_CUDA
    if (spec_.device.is_cuda()) {
      namespace alloc = c10::cuda::CUDACachingAllocator;
      torch::cuda::synchronize();
      alloc::emptyCache();
      const int dev = spec_.device.index();
      alloc::resetPeakStats(dev);
      const int64_t before = alloc::getDeviceStats(dev).reserved_bytes[0].current;
      step();
      torch::cuda::synchronize();
      const int64_t peak = alloc::getDeviceStats(dev).reserved_bytes[0].peak;
      alloc::emptyCache();
      return std::max<int64_t>(peak - before, 0);
    }
#endif
    EmptyCpuCache();
    malloc_trim(0);
    ProcProbe proc;
    if (measure_ == "RSS") {
      auto before = proc.Self();
      if (before.ok() && ResetPeakRss()) {
        {
          ForgetKernelsAfter forget;  // made in the step's arena, for a batch size of its own
          OnThreadOfItsOwn(step);
        }
        auto after = proc.Self();
        EmptyCpuCache();
        if (after.ok()) return std::max<int64_t>(after->peak_rss_bytes - before->rss_bytes, 0);
      }
      measure_ = "allocator";  // and measure again that way
    }
    const int64_t live = GetCpuAllocatorStats().allocated_bytes;
    ResetCpuAllocatorPeak();
    {
      ForgetKernelsAfter forget;
      OnThreadOfItsOwn(step);
    }
    const int64_t peak = GetCpuAllocatorStats().peak_allocated_bytes;
    EmptyCpuCache();
    return std::max<int64_t>(peak - live, 0);
  } catch (const c10::Error& e) {
    if (!IsOutOfMemory(e)) throw;
    SetAutocast(false);
    EmptyCpuCache();
    EmptyDeviceCache(spec_.device);
    return absl::ResourceExhaustedError(e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    // The caching CPU allocator's refusal. Safe to go on here, unlike in training: what the
    // step held belonged to a model that is gone.
    SetAutocast(false);
    EmptyCpuCache();
    return absl::ResourceExhaustedError("the CPU allocator could not allocate (std::bad_alloc)");
  }
}

int64_t StepProfiler::Baseline() const {
#ifdef YOLO_WITH_CUDA
  if (spec_.device.is_cuda()) {
    return c10::cuda::CUDACachingAllocator::getDeviceStats(spec_.device.index())
        .reserved_bytes[0]
        .current;
  }
#endif
  EmptyCpuCache();
  malloc_trim(0);
  auto self = ProcProbe().Self();
  return self.ok() ? self->rss_bytes : 0;
}

// Each measurement builds its model inside it, so that everything a model carries once it has
// trained (gradients, the optimizer's state, the layouts its kernels keep) is counted; less the
// weights themselves, which the run has before it starts.
absl::StatusOr<int64_t> StepProfiler::Train(int batch) {
  // A full batch, a partial one (as an epoch ends) and a full one again: each runs on what the
  // one before left in the allocator's cache, whose other shapes cost it more than a repeat.
  at::Tensor images[3];
  DetectionTargets targets[3];
  Synthetic(batch, &images[0], &targets[0]);
  Synthetic(std::max(1, batch / 3), &images[1], &targets[1]);
  images[2] = images[0], targets[2] = targets[0];
  auto measured = Measure([&] {
    DetectionModel model = NewModel();
    model->train();
    DetectionLoss loss_fn(spec_.nc, model->detect->strides, spec_.gains);
    ParamGroups groups = SplitParameters(*model);
    auto optimizer = MakeOptimizer(spec_.optimizer, groups, 5e-4);
    for (int i = 0; i < 3; ++i) {
      at::Tensor input = images[i].to(spec_.device);  // scaled by the model, as in training
      SetAutocast(spec_.amp);
      std::vector<at::Tensor> raw = model->forward(input);
      SetAutocast(false);
      if (spec_.amp) {
        for (auto& r : raw) r = r.to(at::kFloat);
      }
      LossOutput loss = loss_fn(raw, targets[i]);
      loss.total.backward();
      torch::nn::utils::clip_grad_norm_(model->parameters(), 10.0);
      optimizer->step();
      optimizer->zero_grad();
    }
  });
  if (!measured.ok()) return measured;
  return std::max<int64_t>(*measured - model_bytes_, 0);
}

absl::StatusOr<int64_t> StepProfiler::Val(int batch) {
  at::Tensor images;
  DetectionTargets targets;
  Synthetic(batch, &images, &targets);
  auto measured = Measure([&] {
    DetectionModel model = NewModel();
    model->eval();
    at::NoGradGuard no_grad;
    at::Tensor input = images.to(spec_.device);
    SetAutocast(spec_.amp);
    std::vector<at::Tensor> raw = model->forward(input);
    SetAutocast(false);
    if (spec_.amp) {
      for (auto& r : raw) r = r.to(at::kFloat);
    }
    at::Tensor pred = model->detect->Decode(raw).to(at::kCPU, at::kFloat);
  });
  if (!measured.ok()) return measured;
  return std::max<int64_t>(*measured - model_bytes_, 0);
}

absl::StatusOr<v1::MemoryEstimate> EstimateMemory(StepProfiler& profiler,
                                                  const EstimateInputs& in) {
  const auto start = std::chrono::steady_clock::now();
  const bool autobatch = in.fraction > 0;
  // AutoBatch aims below the fraction by the prediction's own error, so that the real peak
  // stays within it.
  const double budget =
      autobatch ? in.fraction * static_cast<double>(in.available_bytes) * (1 - kPredictionMargin)
                : 0;
  v1::MemoryEstimate out;
  out.set_autobatch(autobatch);
  out.set_fraction(autobatch ? in.fraction : 0);
  out.set_limit_bytes(in.limit_bytes);
  out.set_available_bytes(in.available_bytes);
  out.set_cache_bytes(in.cache_bytes);
  MemoryModel model;
  model.loader_bytes_per_image = in.loader_bytes_per_image;
  model.fixed_bytes = in.fixed_bytes;

  std::vector<double> xs, train, val_x, val;
  std::string stopped;
  // The first steps pay for one-time set-up (LibTorch's thread pools and caches): not measured.
  // Each measured step makes its own kernels again (they are forgotten after each).
  if (auto warm = profiler.Train(1); !warm.ok()) {
    return absl::ResourceExhaustedError(
        "memory estimate: a training step at batch 1 ran out of memory");
  }
  (void)profiler.Val(2);
  const std::vector<int> batches =
      autobatch ? std::vector<int>{1, 2, 4, 8, 16} : std::vector<int>{1, 2, 4};
  for (int b : batches) {
    if (autobatch && b > in.max_batch) break;
    auto t = profiler.Train(b);
    if (!t.ok()) {
      stopped = absl::StrCat("; batch ", b, " ran out of memory");
      break;
    }
    auto v = profiler.Val(2 * b);
    if (!v.ok()) {
      stopped = absl::StrCat("; validation at batch ", 2 * b, " ran out of memory");
      break;
    }
    auto* step = out.add_steps();
    step->set_batch(b);
    step->set_train_bytes(*t);
    step->set_val_bytes(*v);
    xs.push_back(b), train.push_back(static_cast<double>(*t));
    val_x.push_back(2.0 * b), val.push_back(static_cast<double>(*v));
    // A larger batch only needs more: stop once a step alone passes the budget.
    if (autobatch && *t + model.loader_bytes_per_image * b + model.fixed_bytes > budget) break;
  }
  if (xs.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("memory estimate: not even a training step at batch 1 fits on ",
                     profiler.measure() == "reserved" ? "the GPU" : "the CPU", stopped));
  }
  model.train = FitLine(xs, train);
  model.val = FitLine(val_x, val);

  int batch = in.batch;
  // A line through fewer than two steps, or a flat one (noise), says nothing beyond them.
  const bool extrapolate = xs.size() >= 2 && model.train.slope > 0;
  if (autobatch) {
    batch = LargestBatchWithin(model, budget,
                               extrapolate ? std::max(in.max_batch, 1)
                                           : std::min(static_cast<int>(xs.back()), in.max_batch));
    if (batch == 0) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "AutoBatch: even batch 1 needs about %s, more than %.0f %% of the %s available",
          Bytes(model.Predict(1)), in.fraction * 100, Bytes(in.available_bytes)));
    }
  }
  // Steps at the run's batch confirm it: a fixed batch that the small steps say fits (beyond
  // them), and AutoBatch's choice. Where the line under-predicted (memory per image grows a
  // little with the batch), AutoBatch takes the secant through the largest small batch and the
  // step just measured for its next try; after three, the largest measured batch that fitted.
  const double limit = autobatch ? budget : static_cast<double>(in.available_bytes);
  const auto fits = [&](double step_bytes, int b) {
    return step_bytes + model.loader_bytes_per_image * b + model.fixed_bytes <= limit;
  };
  const size_t profiled = xs.size();  // the small batches; the largest is the last
  const bool confirm = autobatch || (batch > xs.back() && model.Predict(batch) <= limit);
  bool confirmed = !confirm;
  for (int attempt = 0; confirm && attempt < 3 && !confirmed; ++attempt) {
    const double expected = model.Train(batch);
    auto measured = profiler.Train(batch);
    if (measured.ok()) xs.push_back(batch), train.push_back(static_cast<double>(*measured));
    confirmed = measured.ok() && fits(static_cast<double>(*measured), batch);
    if (confirmed) {
      out.set_confirm_predicted_bytes(static_cast<int64_t>(expected));
      out.set_confirm_measured_bytes(*measured);
      break;
    }
    if (!autobatch) {  // a fixed batch that its own step says cannot fit
      return absl::ResourceExhaustedError(
          measured.ok()
              ? absl::StrFormat("memory estimate: a training step at batch %d needs %s, beyond "
                                "the %s available",
                                batch, Bytes(static_cast<double>(*measured)), Bytes(limit))
              : absl::StrFormat("memory estimate: a training step at batch %d ran out of memory "
                                "with %s available (%s)",
                                batch, Bytes(limit), measured.status().message()));
    }
    int next = batch / 2;
    if (measured.ok()) {
      model.train = FitLine({xs[profiled - 1], static_cast<double>(batch)},
                            {train[profiled - 1], static_cast<double>(*measured)});
      next = LargestBatchWithin(model, budget, batch - 1);
    }
    spdlog::warn("AutoBatch: at batch {} the run {}; trying batch {}", batch,
                 measured.ok()
                     ? absl::StrCat("needs ",
                                    Bytes(static_cast<double>(*measured) +
                                          model.loader_bytes_per_image * batch + model.fixed_bytes),
                                    ", over the budget of ", Bytes(budget))
                     : std::string("ran out of memory"),
                 next);
    if (next < 1) break;
    batch = next;
  }
  if (autobatch && !confirmed) {
    int best = 0;
    for (size_t k = 0; k < xs.size(); ++k) {
      if (fits(train[k], static_cast<int>(xs[k]))) best = std::max(best, static_cast<int>(xs[k]));
    }
    if (best == 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("AutoBatch: no batch fits in ", Bytes(budget)));
    }
    spdlog::warn("AutoBatch: using batch {}, the largest measured to fit", best);
    batch = best;
  }
  model.train = FitLine(xs, train);  // the final fit includes the confirming steps
  // What the worker holds now, with whatever the measuring left behind (kernel caches, arenas).
  out.set_baseline_bytes(profiler.Baseline());
  out.set_batch(batch);
  // What AutoBatch would pick at its default fraction.
  out.set_fits_batch(LargestBatchWithin(
      model,
      kDefaultAutoBatchFraction * (1 - kPredictionMargin) * static_cast<double>(in.available_bytes),
      extrapolate ? kMaxAutoBatch : static_cast<int>(xs.back())));
  out.set_predicted_bytes(static_cast<int64_t>(model.Predict(batch)));
  out.set_intercept_bytes(model.train.intercept);
  out.set_bytes_per_image(model.train.slope);
  out.set_r2(model.train.r2);
  out.set_loader_bytes(static_cast<int64_t>(model.loader_bytes_per_image * batch));
  out.set_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());

  std::vector<std::string> steps;
  for (size_t i = 0; i < xs.size(); ++i) {
    steps.push_back(absl::StrCat(static_cast<int>(xs[i]), ": ", Bytes(train[i])));
  }
  const std::string fit = absl::StrFormat(
      "training step %s + %s/image, R² %.3f, from %s peaks at batch %s%s; loader %s; EMA and "
      "cache %s",
      Bytes(model.train.intercept), Bytes(model.train.slope), model.train.r2, profiler.measure(),
      absl::StrJoin(steps, ", "), stopped, Bytes(model.loader_bytes_per_image * batch),
      Bytes(model.fixed_bytes));
  const std::string head = absl::StrFormat("needs about %s above the worker's %s, of %s available",
                                           Bytes(out.predicted_bytes()),
                                           Bytes(out.baseline_bytes()), Bytes(in.available_bytes));
  const std::string confirmation =
      out.confirm_measured_bytes() > 0
          ? absl::StrFormat(
                "; the step at batch %d measured %s against %s predicted from the "
                "smaller ones",
                batch, Bytes(out.confirm_measured_bytes()), Bytes(out.confirm_predicted_bytes()))
          : std::string();
  if (autobatch) {
    out.set_message(
        absl::StrFormat("AutoBatch: batch %d for %.0f %% of the memory available: %s (%s)%s", batch,
                        in.fraction * 100, head, fit, confirmation));
  } else {
    out.set_message(
        absl::StrFormat("memory estimate: batch %d %s (%s)%s", batch, head, fit, confirmation));
  }
  return out;
}

}  // namespace yolo
