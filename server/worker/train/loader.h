// Batches for training and validation, assembled on `workers` threads and handed to the one
// training thread through a bounded queue of at most `prefetch` ready batches, so that memory
// stays bounded whatever the dataset's size. Each sample's randomness comes from
// (seed, epoch, index) alone: results do not depend on thread timing.
#pragma once

#include <ATen/Tensor.h>
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "server/memory/cgroup_probe.h"
#include "server/memory/proc_probe.h"
#include "server/worker/train/augment.h"
#include "server/worker/train/dataset.h"
#include "server/worker/train/image_cache.h"
#include "server/worker/train/loss.h"

namespace yolo {

enum class CacheMode { kNone, kRam, kDisk };

struct LoaderOptions {
  int imgsz = 640;
  int batch = 16;
  int workers = 2;
  int prefetch = 0;      // ready batches at most; 0: 2 per worker (at least 2)
  bool augment = false;  // training augmentation; off: letterbox only
  bool rect = false;     // rectangular batches sorted by aspect ratio (validation)
  bool shuffle = false;
  double rect_pad = 0.5;  // in strides, for rect batch shapes
  AugmentParams hyp;
  CacheMode cache = CacheMode::kNone;
  uint64_t seed = 0;  // augmentation; the shuffle order does not depend on it (EpochPlanner)
  // The epoch at which mosaic closes (Ultralytics restarts its loader there, which moves the
  // shuffle order on by one draw); -1 for never.
  int close_mosaic_epoch = -1;
  // Speed-ups that leave the samples as they were (tests turn them off to show it): JPEGs much
  // larger than imgsz decoded at a reduced scale (DecodeForSize), and mosaic's partners taken
  // from the recent-image buffer instead of decoded again.
  bool reduced_decode = true;
  bool recent_buffer = true;
  // Data-parallel training: this rank's share of every epoch, as PyTorch's DistributedSampler
  // deals it (the order padded to a multiple of world_size, every world_size-th image from
  // `rank` on); `batch` is this rank's. Rectangular batches keep the shape of the whole batch
  // the ranks' parts make up, so that the ranks together see what one process would.
  int rank = 0;
  int world_size = 1;
  // Batches in page-locked memory, for an asynchronous copy to a CUDA device.
  bool pin_memory = false;
  // The effective RAM (host or cgroup, as the watchdog reads it) that cache=ram must fit in.
  std::shared_ptr<const ProcProbe> proc = std::make_shared<ProcProbe>();
  std::shared_ptr<const CgroupProbe> cgroup = std::make_shared<CgroupProbe>();
};

// Where a loader's time goes, summed over its threads, and how often mosaic found an image in
// memory.
struct LoaderProfile {
  enum Stage { kRead, kResize, kMosaic, kAffine, kFinish, kCollate, kStages };
  static const char* Name(int stage);
  int64_t ns[kStages] = {};
  int64_t images = 0;       // samples built
  int64_t recent_hits = 0;  // loads served by the recent-image buffer
  int64_t decodes = 0;      // images read from disk (or the disk cache) and decoded
};

// Images the recent-image buffer holds: Ultralytics' mosaic buffer (min(n, 8 x batch, 1000)),
// plus the images of the batches being built or queued ahead of training (the prefetch
// window), so that a partner is still there when a worker running ahead asks for it. 0 without
// mosaic.
int RecentImagesCapacity(const LoaderOptions& options, int n);

// The order in which each training epoch visits the images, and the images that a mosaic at
// each position may take its three partners from, as Ultralytics 8.1.47 trains in one loader
// process (its CPU default):
// - the order is the permutation torch.randperm(n) gives PyTorch's DataLoader, whose generator
//   Ultralytics seeds with 6148914691236517204 (6148914691236517205 + RANK) whatever the
//   training seed, drawn in the same sequence (a seed when the loader starts and when it
//   restarts at close_mosaic, a discarded permutation after each epoch's);
// - the partners come from a buffer of the images loaded most recently, at most
//   min(n, 8 x batch, 1000) - 1, the sample's own included; an image enters it when loaded
//   while not in it, and the oldest leaves when it is full.
// Epochs are planned in order; asking for an earlier one replays from the first.
class EpochPlanner {
 public:
  // With world_size > 1, the order is DistributedSampler's for `rank` (seeded with the epoch,
  // padded, sharded), and the buffer holds what this rank loaded.
  EpochPlanner(int n, int batch, bool shuffle, int close_mosaic_epoch, int rank = 0,
               int world_size = 1);
  struct Plan {
    std::vector<int> order;  // image indices, in the order visited
    // The buffer at position p is loaded[buffer_end[p] - size, buffer_end[p]) with size =
    // min(buffer_end[p], capacity): the images entered, oldest first (the tail of earlier epochs
    // included).
    std::vector<int> loaded;
    std::vector<int> buffer_end;
    int capacity = 0;
    int BufferSize(int position) const { return std::min(buffer_end[position], capacity); }
    int BufferImage(int position, int k) const {  // k-th of the buffer, 0 the oldest
      return loaded[buffer_end[position] - BufferSize(position) + k];
    }
  };
  std::shared_ptr<const Plan> ForEpoch(int epoch);

 private:
  void Restart();
  void Advance();  // plans epoch next_epoch_

  const int n_, batch_, capacity_, close_mosaic_epoch_, rank_, world_;
  const bool shuffle_;
  at::Generator generator_;
  int next_epoch_ = 0;
  std::vector<int64_t> last_entered_;  // per image: its index in the stream of entries, or -1
  std::vector<int> tail_;              // the buffer after the last planned epoch
  int64_t entered_ = 0;                // entries so far
  std::shared_ptr<const Plan> last_;
};

// Where a batch image came from, to map predictions back to the original pixels.
struct BatchImageInfo {
  int index = 0;
  int width = 0, height = 0;  // original size
  LetterboxInfo to_batch;     // original pixels -> batch pixels: x * gain + pad
};

struct Batch {
  at::Tensor images;  // (B, 3, H, W) uint8 RGB: a quarter of the float size while queued
  DetectionTargets targets;
  std::vector<BatchImageInfo> info;
  int instances = 0;
};

// The bytes a cache of `records` takes (cache=ram: images resized to imgsz; cache=disk: at
// their own size), estimated from a sample of them; 0 without a cache.
double CacheBytesEstimate(const std::vector<ImageRecord>& records, CacheMode mode, int imgsz);

class BatchLoader {
 public:
  BatchLoader(std::vector<ImageRecord> records, LoaderOptions options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Fills the image cache when options.cache asks for one. With too little RAM (or disk) for
  // it, the cache is turned off with a warning, as Ultralytics does.
  absl::Status PrepareCache();

  // Starts an epoch; any batches of the previous one still queued are discarded.
  void StartEpoch(int epoch, bool mosaic);
  // The next batch of the epoch, in order; nullopt at its end. Training thread only.
  std::optional<Batch> Next();

  // Frees the RAM image cache (cache=ram); images are read from disk from now on. Any thread.
  // Returns the bytes of image data dropped.
  int64_t DropRamCache();

  int BatchesPerEpoch() const;
  LoaderProfile Profile() const;
  int size() const { return static_cast<int>(records_.size()); }
  const std::vector<ImageRecord>& records() const { return records_; }

  // The training sample at `position` of the epoch's order (exposed for tests and the demo),
  // augmented as the epoch would augment it; its colour and flips are in `finish`, not yet in
  // the pixels.
  Sample TrainSample(int position, int epoch, bool mosaic) const;

 private:
  struct BatchPlan {
    std::vector<int> indices;
    int height = 0, width = 0;                        // batch image size
    int first_position = 0;                           // of indices[0] in the epoch's order
    std::shared_ptr<const EpochPlanner::Plan> epoch;  // null for rectangular batches
  };
  // Decoded (from the disk cache at original size; otherwise at a reduced size when the image
  // is much larger than imgsz).
  cv::Mat LoadImage(int index) const;
  // Resized to long side imgsz, from the RAM cache, the recent-image buffer (when `remember`:
  // mosaic is on) or disk; `remember` also keeps it in the buffer.
  Sample LoadResized(int index, double* gain, bool remember) const;
  Sample TrainSample(const EpochPlanner::Plan& plan, int position, int epoch, bool mosaic) const;
  // Mosaic (with probability hyp.mosaic when `mosaic`, partners from the plan's buffer at
  // `position`) or letterbox, then the random affine.
  Sample GeometricSample(int index, const EpochPlanner::Plan* plan, int position, bool mosaic,
                         std::mt19937& rng) const;
  Batch Build(const BatchPlan& plan, int epoch, bool mosaic) const;
  void WorkerLoop();

  std::vector<ImageRecord> records_;
  LoaderOptions options_;
  void Count(LoaderProfile::Stage stage, int64_t start_ns) const;
  mutable std::atomic<int64_t> stage_ns_[LoaderProfile::kStages] = {};
  mutable std::atomic<int64_t> images_{0}, recent_hits_{0}, decodes_{0};
  mutable RecentImages recent_;
  mutable std::shared_mutex cache_mu_;  // guards ram_cache_
  std::vector<cv::Mat> ram_cache_;      // resized images, when cache=ram
  bool disk_cache_ = false;
  std::vector<BatchPlan> rect_plans_;  // fixed batches when rect
  mutable std::mutex planner_mu_;      // guards planner_
  mutable EpochPlanner planner_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<BatchPlan> plan_;
  int epoch_ = 0;
  bool mosaic_ = false;
  uint64_t generation_ = 0;
  size_t next_to_build_ = 0;
  size_t next_to_hand_ = 0;
  std::map<size_t, Batch> ready_;
  // What a loader thread threw (OpenCV, LibTorch, an allocation): rethrown by Next() in the
  // training thread, whose caller turns it into an error, instead of ending the process.
  std::exception_ptr failure_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// The model's input for a batch: its uint8 images on `device`, which the model scales to
// [0, 1] (DetectionModelImpl::forward).
at::Tensor ModelInput(const Batch& batch, const c10::Device& device);

// Writes / reads a uint8 image as a .npy array (H, W, 3), the disk cache format.
absl::Status WriteNpy(const std::string& path, const cv::Mat& image);
cv::Mat ReadNpy(const std::string& path);

}  // namespace yolo
