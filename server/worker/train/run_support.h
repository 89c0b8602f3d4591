// Pieces that `train` and `val` share: devices and threads, run folders, results.csv rows,
// loader options from arguments, model summaries and weight transfer.
#pragma once

#include <c10/core/Device.h>
#include <c10/util/Exception.h>

#include <array>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/train_args.h"
#include "server/memory/proc_probe.h"
#include "server/worker/train/loader.h"
#include "server/worker/train/metrics.h"
#include "server/worker/train/model.h"
#include "yolo/v1/experiment.pb.h"

namespace yolo {

// results.csv's header (Ultralytics 8.3 columns), with its newline.
extern const char* const kResultsHeader;

// "" (GPU 0 when CUDA is available, else the CPU), "cpu", "0" or "cuda:0". A GPU asked for
// where there is none is an error naming the argument.
absl::StatusOr<c10::Device> ResolveDevice(const std::string& device);

// Sets LibTorch's intra-op threads: `threads`, or when 0 the CPUs this process may use.
int ConfigureThreads(int threads);

// deterministic=True as Ultralytics applies it (with PyTorch 2): deterministic algorithms where
// LibTorch has them (a warning where it has none), deterministic cuDNN, and cuBLAS's fixed
// workspace (CUBLAS_WORKSPACE_CONFIG=:4096:8, unless set); false turns the first two off. Call
// before the first CUDA operation. CPU training is deterministic either way.
void ConfigureDeterminism(bool deterministic);

// Peak resident memory of this process so far.
long PeakRssBytes();
// Resident memory of this process and its descendants (the ranks rank 0 started) now, as
// `proc` reads it (0 if it cannot).
int64_t CurrentRssBytes(const ProcProbe& proc);

// Bytes the CUDA caching allocator holds on `device` (0 on the CPU or without CUDA).
int64_t GpuReservedBytes(const c10::Device& device);
// The CUDA caching allocator's statistics on `device`; none on the CPU or in a CPU build.
std::optional<v1::CudaAllocatorStats> CudaAllocatorStatsOf(const c10::Device& device);
// Gives the CUDA caching allocator's unused blocks back to the driver; returns the bytes
// released (0 on the CPU or without CUDA).
int64_t EmptyDeviceCache(const c10::Device& device);

// Free and total memory of a CUDA device as the driver sees it; false on the CPU or without CUDA.
bool GpuMemoryInfo(const c10::Device& device, int64_t* free_bytes, int64_t* total_bytes);

// An out-of-memory error that leaves a known state: CUDA's OutOfMemoryError, or LibTorch's CPU
// allocator (or oneDNN's) refusing an allocation.
bool IsOutOfMemory(const c10::Error& error);

// Mixed precision on CUDA (bf16 autocast, no loss scaling needed); a no-op without CUDA.
void SetAutocast(bool enabled);

// Ultralytics' GPU_mem column: memory reserved by the CUDA caching allocator ("0G" on CPU).
std::string GpuMem(const c10::Device& device);

// <project>/<name>, or name2, name3, ... when it exists and exist_ok is false.
std::string NewRunDir(const TrainArgs& args);

// The most recently written weights/last.pt under `root`.
std::optional<std::string> NewestLastPt(const std::string& root);

// Loader options (imgsz, workers, seed, cache, augmentation) from the arguments.
LoaderOptions BaseLoaderOptions(const TrainArgs& args, int imgsz);

// The training loader's options: augmentation, shuffled (in order with rect, unpadded), mosaic
// closing at epochs - close_mosaic.
LoaderOptions TrainLoaderOptions(const TrainArgs& args, int imgsz, int batch, int epochs);

// imgsz rounded up to a multiple of 32 (at least 32), with a warning when it changes.
int CheckImgsz(const TrainArgs& args);

// One results.csv row (values as %.6g), with its newline.
std::string ResultsRow(int epoch, double time, const std::array<double, 3>& train_loss,
                       const MetricsSummary& metrics, const std::array<double, 3>& val_loss,
                       const std::array<double, 3>& lr);

// The `time` value of the last row of a results.csv text (0 if none).
double LastResultsTime(const std::string& csv);

// "YOLOv8n summary: 225 layers, 3,157,200 parameters, 3,157,184 gradients, 8.9 GFLOPs"
std::string ModelSummary(DetectionModel& model, int imgsz);

// Copies into `dst` every parameter and buffer of `src` with the same name and shape;
// returns how many.
int TransferWeights(DetectionModel& src, DetectionModel& dst);

// Local time as ISO 8601.
std::string NowIso();

}  // namespace yolo
