#include "server/worker/train/run_support.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <unistd.h>
#ifdef YOLO_WITH_CUDA
#include <ATen/autocast_mode.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <opencv2/core.hpp>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/cpu_budget.h"
#include "server/worker/train/optim.h"

namespace yolo {
namespace fs = std::filesystem;

void SetAutocast(bool enabled) {
#ifdef YOLO_WITH_CUDA
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
#else
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  at::autocast::set_enabled(enabled);
#endif
  if (!enabled) at::autocast::clear_cache();
#else
  (void)enabled;
#endif
}

int64_t GpuReservedBytes(const c10::Device& device) {
#ifdef YOLO_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return stats.reserved_bytes[0].current;
  }
#endif
  (void)device;
  return 0;
}

std::optional<v1::CudaAllocatorStats> CudaAllocatorStatsOf(const c10::Device& device) {
#ifdef YOLO_WITH_CUDA
  if (device.is_cuda()) {
    const auto s = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    v1::CudaAllocatorStats out;
    out.set_device(device.index());
    // [0]: StatType::AGGREGATE, the small and the large pool together.
    out.set_allocated_bytes(s.allocated_bytes[0].current);
    out.set_allocated_peak_bytes(s.allocated_bytes[0].peak);
    out.set_reserved_bytes(s.reserved_bytes[0].current);
    out.set_reserved_peak_bytes(s.reserved_bytes[0].peak);
    out.set_active_bytes(s.active_bytes[0].current);
    out.set_active_peak_bytes(s.active_bytes[0].peak);
    out.set_inactive_split_bytes(s.inactive_split_bytes[0].current);
    out.set_inactive_split_peak_bytes(s.inactive_split_bytes[0].peak);
    out.set_alloc_retries(s.num_alloc_retries);
    out.set_ooms(s.num_ooms);
    return out;
  }
#endif
  (void)device;
  return std::nullopt;
}

int64_t EmptyDeviceCache(const c10::Device& device) {
  const int64_t before = GpuReservedBytes(device);
#ifdef YOLO_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  return std::max<int64_t>(before - GpuReservedBytes(device), 0);
}

bool GpuMemoryInfo(const c10::Device& device, int64_t* free_bytes, int64_t* total_bytes) {
#ifdef YOLO_WITH_CUDA
  if (device.is_cuda()) {
    int previous = 0;
    size_t free = 0, total = 0;
    if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(device.index()) != cudaSuccess) {
      return false;
    }
    const bool ok = cudaMemGetInfo(&free, &total) == cudaSuccess;
    cudaSetDevice(previous);
    *free_bytes = static_cast<int64_t>(free), *total_bytes = static_cast<int64_t>(total);
    return ok;
  }
#endif
  (void)device, (void)free_bytes, (void)total_bytes;
  return false;
}

bool IsOutOfMemory(const c10::Error& error) {
  const std::string what = error.what_without_backtrace();
  return dynamic_cast<const c10::OutOfMemoryError*>(&error) != nullptr ||
         absl::StrContains(what, "out of memory") || absl::StrContains(what, "not enough memory") ||
         absl::StrContains(what, "can't allocate memory");
}

std::string GpuMem(const c10::Device& device) {
  if (!device.is_cuda()) return "0G";
  return absl::StrFormat("%.3gG", static_cast<double>(GpuReservedBytes(device)) / 1e9);
}

const char* const kResultsHeader =
    "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),"
    "metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,"
    "val/dfl_loss,lr/pg0,lr/pg1,lr/pg2\n";

std::string NowIso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", std::localtime(&t));
  return buf;
}

absl::StatusOr<c10::Device> ResolveDevice(const std::string& device) {
  if (device == "cpu") return c10::Device(c10::kCPU);
  const bool cuda = torch::cuda::is_available();
  if (device.empty()) return cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  const std::string index = absl::StartsWith(device, "cuda:") ? device.substr(5) : device;
  int i = 0;
  absl::SimpleAtoi(index, &i);
  if (!cuda) {
    return absl::FailedPreconditionError(
        absl::StrCat("argument 'device': '", device,
                     "' asks for a GPU but CUDA is not available in this "
                     "build or machine; use device=cpu"));
  }
  if (i >= static_cast<int>(torch::cuda::device_count())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "argument 'device': GPU ", i, " does not exist (", torch::cuda::device_count(), " found)"));
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i));
}

// runs/detect/train, train2, ...: an existing folder is reused only with exist_ok.
std::string NewRunDir(const TrainArgs& args) {
  const std::string project = args.IsNull("project") ? "runs/detect" : args.GetString("project");
  const std::string name = args.IsNull("name") ? "train" : args.GetString("name");
  fs::path dir = fs::path(project) / name;
  if (args.GetBool("exist_ok") || !fs::exists(dir)) return dir.string();
  for (int n = 2;; ++n) {
    fs::path candidate = fs::path(project) / absl::StrCat(name, n);
    if (!fs::exists(candidate)) return candidate.string();
  }
}

// The newest weights/last.pt under `root`.
std::optional<std::string> NewestLastPt(const std::string& root) {
  std::optional<std::string> best;
  fs::file_time_type best_time;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename() == "last.pt" && it->path().parent_path().filename() == "weights") {
      auto t = fs::last_write_time(it->path(), ec);
      if (!best || t > best_time) best = it->path().string(), best_time = t;
    }
  }
  return best;
}

LoaderOptions BaseLoaderOptions(const TrainArgs& a, int imgsz) {
  LoaderOptions o;
  o.imgsz = imgsz;
  o.workers = static_cast<int>(a.GetInt("workers"));
  o.seed = static_cast<uint64_t>(a.GetInt("seed"));
  const std::string cache = a.GetString("cache");
  o.cache = cache == "ram"    ? CacheMode::kRam
            : cache == "disk" ? CacheMode::kDisk
                              : CacheMode::kNone;
  o.hyp.hsv_h = a.GetFloat("hsv_h"), o.hyp.hsv_s = a.GetFloat("hsv_s");
  o.hyp.hsv_v = a.GetFloat("hsv_v"), o.hyp.degrees = a.GetFloat("degrees");
  o.hyp.translate = a.GetFloat("translate"), o.hyp.scale = a.GetFloat("scale");
  o.hyp.shear = a.GetFloat("shear"), o.hyp.perspective = a.GetFloat("perspective");
  o.hyp.flipud = a.GetFloat("flipud"), o.hyp.fliplr = a.GetFloat("fliplr");
  o.hyp.mosaic = a.GetFloat("mosaic"), o.hyp.mixup = a.GetFloat("mixup");
  return o;
}

LoaderOptions TrainLoaderOptions(const TrainArgs& a, int imgsz, int batch, int epochs) {
  LoaderOptions o = BaseLoaderOptions(a, imgsz);
  o.batch = batch;
  o.augment = true;
  o.rect = a.GetBool("rect");
  o.rect_pad = 0.0;
  o.shuffle = !o.rect;
  o.close_mosaic_epoch = CloseMosaicEpoch(epochs, a.GetInt("close_mosaic"));
  return o;
}

int CheckImgsz(const TrainArgs& a) {
  const int64_t requested = a.GetInt("imgsz");
  const int imgsz = static_cast<int>(std::max<int64_t>(32, (requested + 31) / 32 * 32));
  if (imgsz != requested) {
    spdlog::warn("imgsz={} must be a multiple of max stride 32, updating to {}", requested, imgsz);
  }
  return imgsz;
}

std::string ResultsRow(int epoch, double time, const std::array<double, 3>& tloss,
                       const MetricsSummary& m, const std::array<double, 3>& vloss,
                       const std::array<double, 3>& lr) {
  std::vector<double> values = {static_cast<double>(epoch),
                                time,
                                tloss[0],
                                tloss[1],
                                tloss[2],
                                m.precision,
                                m.recall,
                                m.map50,
                                m.map,
                                vloss[0],
                                vloss[1],
                                vloss[2],
                                lr[0],
                                lr[1],
                                lr[2]};
  std::vector<std::string> cells;
  for (double v : values) cells.push_back(absl::StrFormat("%.6g", v));
  return absl::StrJoin(cells, ",") + "\n";
}

// The `time` value of the last row of a results.csv text (0 if none).
double LastResultsTime(const std::string& csv) {
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  if (lines.size() < 2) return 0;
  std::vector<std::string> cells = absl::StrSplit(lines.back(), ',');
  double t = 0;
  if (cells.size() > 1) absl::SimpleAtod(cells[1], &t);
  return t;
}

namespace {
// 3157200 -> "3,157,200", as Ultralytics prints counts.
std::string WithThousands(int64_t n) {
  std::string digits = absl::StrCat(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}
}  // namespace

std::string ModelSummary(DetectionModel& m, int imgsz) {
  return absl::StrFormat("YOLOv8%c summary: %d layers, %s parameters, %s gradients, %.1f GFLOPs",
                         m->scale.letter, m->LayerCount(), WithThousands(m->ParameterCount()),
                         WithThousands(m->GradientCount()), m->Gflops(imgsz));
}

// Copies into `dst` every parameter and buffer of `src` whose name and shape match.
int TransferWeights(DetectionModel& src, DetectionModel& dst) {
  at::NoGradGuard no_grad;
  int copied = 0;
  auto sp = src->named_parameters();
  for (auto& item : dst->named_parameters()) {
    const at::Tensor* s = sp.find(item.key());
    if (s != nullptr && s->sizes() == item.value().sizes()) item.value().copy_(*s), ++copied;
  }
  auto sb = src->named_buffers();
  for (auto& item : dst->named_buffers()) {
    const at::Tensor* s = sb.find(item.key());
    if (s != nullptr && s->sizes() == item.value().sizes()) item.value().copy_(*s), ++copied;
  }
  return copied;
}

void ConfigureDeterminism(bool deterministic) {
  if (deterministic) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(deterministic, /*warn_only=*/true);
  at::globalContext().setDeterministicCuDNN(deterministic);
}

int ConfigureThreads(int threads) {
  const int n = threads > 0 ? threads : UsableCpus();
  at::set_num_threads(n);
  // OpenCV runs single-threaded inside each loader thread, as in each of Ultralytics' loader
  // processes: the loader's threads spread the images over the cores, and OpenCV's own pool
  // would only compete with them and with LibTorch's threads.
  cv::setNumThreads(1);
  return n;
}

int64_t CurrentRssBytes(const ProcProbe& proc) {
  auto self = proc.SelfTree();  // with data-parallel ranks, rank 0 and the ranks it started
  return self.ok() ? self->rss_bytes : 0;
}

long PeakRssBytes() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss * 1024L;
}

}  // namespace yolo
