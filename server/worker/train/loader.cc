#include "server/worker/train/loader.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/atomic_file.h"
#include "server/memory/effective_ram.h"

namespace yolo {
namespace fs = std::filesystem;
namespace {

constexpr int kStride = 32;
constexpr int kLoaderNice = 10;  // below the training thread

std::mt19937 SampleRng(uint64_t seed, int epoch, int index) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(epoch), static_cast<uint32_t>(index)};
  return std::mt19937(seq);
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string NpyPath(const std::string& image_path) {
  return fs::path(image_path).replace_extension(".npy").string();
}

}  // namespace

absl::Status WriteNpy(const std::string& path, const cv::Mat& image) {
  std::string header =
      absl::StrFormat("{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d), }",
                      image.rows, image.cols, image.channels());
  // Magic (6) + version (2) + length (2) + header, padded with spaces to 64 bytes, ending '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  cv::Mat contiguous = image.isContinuous() ? image : image.clone();
  out.append(reinterpret_cast<const char*>(contiguous.data),
             contiguous.total() * contiguous.elemSize());
  return WriteFileAtomic(path, out);
}

constexpr int kMaxNpySide = 1 << 15;

cv::Mat ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[10];
  if (!in.read(magic, 10) || std::memcmp(magic, "\x93NUMPY", 6) != 0 || magic[6] != 1) return {};
  const size_t header_len = static_cast<unsigned char>(magic[8]) |
                            (static_cast<size_t>(static_cast<unsigned char>(magic[9])) << 8);
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) return {};
  int h = 0, w = 0, c = 0;
  const size_t at = header.find("'shape': (");
  if (header.find("'|u1'") == std::string::npos || at == std::string::npos ||
      std::sscanf(header.c_str() + at, "'shape': (%d, %d, %d)", &h, &w, &c) != 3 || c != 3 ||
      h <= 0 || w <= 0 || h > kMaxNpySide || w > kMaxNpySide) {
    return {};
  }
  cv::Mat image(h, w, CV_8UC3);
  if (!in.read(reinterpret_cast<char*>(image.data), static_cast<std::streamsize>(h) * w * 3)) {
    return {};
  }
  return image;
}

// Ultralytics' 6148914691236517205 + RANK, with RANK -1 outside distributed training.
constexpr uint64_t kShuffleSeed = 6148914691236517204ULL;

// DistributedSampler's share of `n` images for `rank`: every world-th of the (shuffled,
// epoch-seeded) order padded with its own first images to a multiple of world.
std::vector<int> ShardOrder(const std::vector<int>& order, int rank, int world) {
  const size_t n = order.size();
  const size_t total = (n + world - 1) / world * world;
  std::vector<int> out;
  out.reserve(total / world);
  for (size_t i = rank; i < total; i += world) out.push_back(order[i % n]);
  return out;
}

EpochPlanner::EpochPlanner(int n, int batch, bool shuffle, int close_mosaic_epoch, int rank,
                           int world_size)
    : n_(n),
      batch_(std::max(1, std::min(batch, n))),
      capacity_(static_cast<int>(
          std::max<int64_t>(0, std::min<int64_t>({n, 8 * static_cast<int64_t>(batch), 1000}) - 1))),
      close_mosaic_epoch_(close_mosaic_epoch),
      rank_(rank),
      world_(std::max(world_size, 1)),
      shuffle_(shuffle) {
  Restart();
}

void EpochPlanner::Restart() {
  generator_ = at::make_generator<at::CPUGeneratorImpl>(kShuffleSeed);
  // PyTorch's DataLoader draws one seed from the generator when its iterator starts.
  if (shuffle_) at::empty({}, at::kLong).random_(generator_);
  next_epoch_ = 0;
  last_entered_.assign(n_, -1);
  tail_.clear();
  entered_ = 0;
  last_.reset();
}

void EpochPlanner::Advance() {
  auto plan = std::make_shared<Plan>();
  plan->capacity = capacity_;
  plan->order.resize(n_);
  if (world_ > 1) {
    // DistributedSampler(seed=0) after set_epoch(epoch): its own generator, seeded seed + epoch.
    if (shuffle_) {
      at::Generator g = at::make_generator<at::CPUGeneratorImpl>(next_epoch_);
      const at::Tensor perm = at::randperm(n_, g, at::kLong);
      const int64_t* p = perm.data_ptr<int64_t>();
      for (int i = 0; i < n_; ++i) plan->order[i] = static_cast<int>(p[i]);
    } else {
      std::iota(plan->order.begin(), plan->order.end(), 0);
    }
    plan->order = ShardOrder(plan->order, rank_, world_);
  } else if (shuffle_) {
    // PyTorch's RandomSampler draws a second permutation at the end of each pass and discards
    // it: at the end of the epoch when the last batch is partial, when the next epoch asks for
    // its first batch otherwise, so not at all before a restart then.
    auto seed = [&] { at::empty({}, at::kLong).random_(generator_); };
    auto discard = [&] { at::randperm(n_, generator_, at::kLong); };
    if (next_epoch_ == close_mosaic_epoch_) {
      if (next_epoch_ > 0 && n_ % batch_ != 0) discard();
      seed();
    } else if (next_epoch_ > 0) {
      discard();
    }
    const at::Tensor perm = at::randperm(n_, generator_, at::kLong);
    const int64_t* p = perm.data_ptr<int64_t>();
    for (int i = 0; i < n_; ++i) plan->order[i] = static_cast<int>(p[i]);
  } else {
    std::iota(plan->order.begin(), plan->order.end(), 0);
  }
  plan->loaded = tail_;
  plan->buffer_end.reserve(n_);
  for (int index : plan->order) {
    const bool in_buffer =
        last_entered_[index] >= 0 && last_entered_[index] >= entered_ - capacity_;
    if (!in_buffer) {
      plan->loaded.push_back(index);
      last_entered_[index] = entered_++;
    }
    plan->buffer_end.push_back(static_cast<int>(plan->loaded.size()));
  }
  const size_t keep = std::min(plan->loaded.size(), static_cast<size_t>(capacity_));
  tail_.assign(plan->loaded.end() - static_cast<std::ptrdiff_t>(keep), plan->loaded.end());
  ++next_epoch_;
  last_ = std::move(plan);
}

std::shared_ptr<const EpochPlanner::Plan> EpochPlanner::ForEpoch(int epoch) {
  if (epoch < next_epoch_ - 1) Restart();
  while (next_epoch_ <= epoch) Advance();
  return last_;
}

const char* LoaderProfile::Name(int stage) {
  static const char* const kNames[kStages] = {"read+decode", "resize",          "mosaic/letterbox",
                                              "affine",      "hsv+flip+planes", "collate"};
  return stage >= 0 && stage < kStages ? kNames[stage] : "?";
}

int RecentImagesCapacity(const LoaderOptions& o, int n) {
  if (!o.recent_buffer || !o.augment || o.rect || o.hyp.mosaic <= 0 || n <= 0) return 0;
  const int64_t batch = std::clamp(o.batch, 1, n);
  const int64_t buffer = std::max<int64_t>(0, std::min<int64_t>({n, 8 * batch, 1000}) - 1);
  // Loader threads build or hold at most `prefetch` batches ahead of the one training takes
  // next (the window counts the batches in the making); without them, only the batch being
  // built is. A worker stalled while the others fill the window can find a partner gone and
  // decode it again: the same pixels, a decode more.
  const int64_t prefetch = o.prefetch > 0 ? o.prefetch : std::max(2, 2 * o.workers);
  const int64_t ahead = o.workers > 0 ? prefetch * batch : batch;
  return static_cast<int>(std::min<int64_t>(n, buffer + ahead));
}

BatchLoader::BatchLoader(std::vector<ImageRecord> records, LoaderOptions options)
    : records_(std::move(records)),
      options_(options),
      recent_(RecentImagesCapacity(options, static_cast<int>(records_.size())),
              static_cast<size_t>(options.imgsz) * options.imgsz * 3),
      planner_(static_cast<int>(records_.size()), options.batch, options.shuffle,
               options.close_mosaic_epoch, options.rank, options.world_size) {
  options_.batch = std::max(1, std::min(options_.batch, static_cast<int>(records_.size())));
  if (options_.prefetch <= 0) options_.prefetch = std::max(2, 2 * options_.workers);
  if (options_.rect) {
    // Batches of similar aspect ratio, each letterboxed to the smallest stride-multiple shape.
    std::vector<int> order(records_.size());
    std::iota(order.begin(), order.end(), 0);
    auto aspect = [&](int i) {
      return static_cast<double>(records_[i].height) / records_[i].width;
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return aspect(a) < aspect(b); });
    // The whole batch of every rank's k-th batch: its shape is the shape of each part.
    const int world = std::max(options_.world_size, 1);
    const size_t whole = static_cast<size_t>(options_.batch) * world;
    for (size_t n = order.size(), i = n; i % world != 0; ++i) order.push_back(order[i - n]);
    for (size_t start = 0; start < order.size(); start += whole) {
      BatchPlan plan;
      const size_t end = std::min(order.size(), start + whole);
      double lo = 1e18, hi = 0;
      for (size_t i = start; i < end; ++i)
        lo = std::min(lo, aspect(order[i])), hi = std::max(hi, aspect(order[i]));
      for (size_t i = start + options_.rank; i < end; i += world) plan.indices.push_back(order[i]);
      double sh = 1, sw = 1;  // shape as (h, w) relative to imgsz
      if (hi < 1) {
        sh = hi;
      } else if (lo > 1) {
        sw = 1 / lo;
      }
      plan.height =
          static_cast<int>(std::ceil(sh * options_.imgsz / kStride + options_.rect_pad)) * kStride;
      plan.width =
          static_cast<int>(std::ceil(sw * options_.imgsz / kStride + options_.rect_pad)) * kStride;
      rect_plans_.push_back(plan);
    }
  }
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

double CacheBytesEstimate(const std::vector<ImageRecord>& records, CacheMode mode, int imgsz) {
  if (mode == CacheMode::kNone || records.empty()) return 0;
  // From up to 30 images spread over the set, as Ultralytics estimates it.
  const size_t probe = std::min<size_t>(30, records.size());
  double bytes = 0;
  for (size_t i = 0; i < probe; ++i) {
    const ImageRecord& r = records[i * records.size() / probe];
    const double full = 3.0 * r.width * r.height;
    const double ratio = static_cast<double>(imgsz) / std::max(r.width, r.height);
    bytes += mode == CacheMode::kRam ? full * ratio * ratio : full;
  }
  return bytes / probe * records.size();
}

int BatchLoader::BatchesPerEpoch() const {
  if (options_.rect) return static_cast<int>(rect_plans_.size());
  const size_t world = std::max(options_.world_size, 1);
  const size_t share = (records_.size() + world - 1) / world;  // DistributedSampler's
  return static_cast<int>((share + options_.batch - 1) / options_.batch);
}

absl::Status BatchLoader::PrepareCache() {
  if (options_.cache == CacheMode::kNone || records_.empty()) return absl::OkStatus();
  // With a 50 % margin, as Ultralytics does.
  const double need = CacheBytesEstimate(records_, options_.cache, options_.imgsz) * 1.5;
  if (options_.cache == CacheMode::kRam) {
    // What the watchdog counts: the host's RAM or the cgroup's limit, whichever is tighter.
    const RamUse ram = ReadEffectiveRam(*options_.proc, *options_.cgroup);
    const double available = static_cast<double>(ram.available_bytes);
    if (ram.limit_bytes > 0 && need > available) {
      spdlog::warn(
          "cache=ram needs {:.1f} GB but {:.1f} GB of the {:.1f} GB limit is available: "
          "caching off",
          need / 1e9, available / 1e9, ram.limit_bytes / 1e9);
      options_.cache = CacheMode::kNone;
      return absl::OkStatus();
    }
    ram_cache_.assign(records_.size(), cv::Mat());
  } else {
    std::error_code ec;
    const auto space = fs::space(fs::path(records_[0].path).parent_path(), ec);
    if (!ec && need > static_cast<double>(space.available)) {
      spdlog::warn("cache=disk needs {:.1f} GB but {:.1f} GB is free: caching off", need / 1e9,
                   space.available / 1e9);
      options_.cache = CacheMode::kNone;
      return absl::OkStatus();
    }
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::string first_error;
  std::mutex error_mu;
  auto work = [&] {
    for (size_t i = next++; i < records_.size(); i = next++) {
      if (options_.cache == CacheMode::kRam) {
        double gain = 1;
        ram_cache_[i] = LoadResized(static_cast<int>(i), &gain, /*remember=*/false).image;
      } else {
        const std::string npy = NpyPath(records_[i].path);
        if (fs::exists(npy)) continue;
        cv::Mat image = cv::imread(records_[i].path, cv::IMREAD_COLOR);
        absl::Status s = image.empty()
                             ? absl::DataLossError(absl::StrCat("cannot decode ", records_[i].path))
                             : WriteNpy(npy, image);
        if (!s.ok() && !failed.exchange(true)) {
          std::lock_guard<std::mutex> lock(error_mu);
          first_error = std::string(s.message());
        }
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, options_.workers); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (failed) {
    spdlog::warn("cache=disk: {}; caching off", first_error);
    options_.cache = CacheMode::kNone;
    return absl::OkStatus();
  }
  disk_cache_ = options_.cache == CacheMode::kDisk;
  spdlog::info("cached {} images ({})", records_.size(),
               options_.cache == CacheMode::kRam ? "ram" : "disk");
  return absl::OkStatus();
}

void BatchLoader::Count(LoaderProfile::Stage stage, int64_t start_ns) const {
  stage_ns_[stage].fetch_add(NowNs() - start_ns, std::memory_order_relaxed);
}

LoaderProfile BatchLoader::Profile() const {
  LoaderProfile p;
  for (int i = 0; i < LoaderProfile::kStages; ++i) p.ns[i] = stage_ns_[i].load();
  p.images = images_.load();
  p.recent_hits = recent_hits_.load();
  p.decodes = decodes_.load();
  return p;
}

cv::Mat BatchLoader::LoadImage(int index) const {
  const int64_t start = NowNs();
  decodes_.fetch_add(1, std::memory_order_relaxed);
  const ImageRecord& r = records_[index];
  cv::Mat image;
  if (disk_cache_) image = ReadNpy(NpyPath(r.path));
  if (image.empty()) {
    image = DecodeForSize(r.path, options_.reduced_decode ? std::max(r.width, r.height) : 0,
                          options_.imgsz);
  }
  Count(LoaderProfile::kRead, start);
  return image;
}

Sample BatchLoader::LoadResized(int index, double* gain, bool remember) const {
  const ImageRecord& r = records_[index];
  Sample s;
  {
    std::shared_lock<std::shared_mutex> lock(cache_mu_);
    if (index < static_cast<int>(ram_cache_.size())) s.image = ram_cache_[index];
  }
  if (s.image.empty() && remember) {
    s.image = recent_.Find(index);
    if (!s.image.empty()) recent_hits_.fetch_add(1, std::memory_order_relaxed);
  }
  if (s.image.empty()) {
    cv::Mat image = LoadImage(index);
    if (image.empty()) {
      // The file changed since the scan: use a grey image without labels rather than crash.
      spdlog::warn("{}: cannot be decoded any more, using a blank image", r.path);
      image = cv::Mat(r.height, r.width, CV_8UC3, cv::Scalar::all(114));
    }
    const int64_t start = NowNs();
    s.image = ResizeLongSide(image, options_.imgsz);
    Count(LoaderProfile::kResize, start);
    if (remember) s.image = recent_.Insert(index, s.image);
  }
  *gain = static_cast<double>(s.image.cols) / r.width;
  s.boxes = ToPixelBoxes(r.labels, s.image.cols, s.image.rows);
  return s;
}

Sample BatchLoader::GeometricSample(int index, const EpochPlanner::Plan* plan, int position,
                                    bool mosaic, std::mt19937& rng) const {
  const AugmentParams& hyp = options_.hyp;
  const int s = options_.imgsz;
  double gain = 1;
  Sample sample;
  if (mosaic && Uniform(rng, 0, 1) < hyp.mosaic) {
    // Each loader thread reuses its mosaic canvas (a new 2s x 2s image every time costs page
    // faults); the affine warps it into a new s x s image, so no sample keeps it.
    thread_local cv::Mat canvas;
    std::vector<Sample> four;
    four.push_back(LoadResized(index, &gain, /*remember=*/true));
    // Partners from the images loaded most recently (Ultralytics' buffer), the image itself
    // when that is empty (a one-image dataset).
    const int buffered = plan != nullptr ? plan->BufferSize(position) : 0;
    std::uniform_int_distribution<int> pick(0, std::max(buffered, 1) - 1);
    for (int k = 0; k < 3; ++k) {
      const int partner = buffered > 0 ? plan->BufferImage(position, pick(rng)) : index;
      four.push_back(LoadResized(partner, &gain, /*remember=*/true));
    }
    int64_t start = NowNs();
    // The affine is drawn before the canvas is painted, so that only the part it reads is.
    const cv::Point centre = DrawMosaicCentre(s, rng);
    const cv::Size canvas_size(2 * s, 2 * s), out(s, s);
    const AffineDraw affine = DrawAffine(hyp, canvas_size, out, rng);
    sample =
        PaintMosaic(four, s, centre, AffineSourceWindow(affine, hyp, canvas_size, out), &canvas);
    Count(LoaderProfile::kMosaic, start);
    start = NowNs();
    ApplyAffine(affine, hyp, out, &sample);  // a new s x s image: the canvas stays here
    Count(LoaderProfile::kAffine, start);
    return sample;
  }
  sample = LoadResized(index, &gain, /*remember=*/mosaic);
  int64_t start = NowNs();
  sample.image = Letterbox(sample.image, s, s, /*scaleup=*/true, nullptr, &sample.boxes);
  Count(LoaderProfile::kMosaic, start);
  start = NowNs();
  RandomAffine(&sample, hyp, cv::Size(s, s), rng);
  Count(LoaderProfile::kAffine, start);
  return sample;
}

Sample BatchLoader::TrainSample(int position, int epoch, bool mosaic) const {
  std::shared_ptr<const EpochPlanner::Plan> plan;
  {
    std::lock_guard<std::mutex> lock(planner_mu_);
    plan = planner_.ForEpoch(epoch);
  }
  return TrainSample(*plan, position, epoch, mosaic);
}

Sample BatchLoader::TrainSample(const EpochPlanner::Plan& plan, int position, int epoch,
                                bool mosaic) const {
  const int index = plan.order[position];
  std::mt19937 rng = SampleRng(options_.seed, epoch, index);
  const AugmentParams& hyp = options_.hyp;
  Sample sample = GeometricSample(index, &plan, position, mosaic, rng);
  // MixUp, while mosaic is on: blend with another sample (any image, itself a mosaic), ratio
  // ~ Beta(32, 32).
  if (mosaic && hyp.mixup > 0 && Uniform(rng, 0, 1) < hyp.mixup) {
    std::uniform_int_distribution<int> pick(0, size() - 1);
    Sample other = GeometricSample(pick(rng), &plan, position, mosaic, rng);
    std::gamma_distribution<double> gamma(32.0, 1.0);
    const double a = gamma(rng), b = gamma(rng);
    const double r = a / (a + b);
    cv::addWeighted(sample.image, r, other.image, 1 - r, 0, sample.image);
    sample.boxes.insert(sample.boxes.end(), other.boxes.begin(), other.boxes.end());
  }
  DrawColourAndFlips(hyp, rng, &sample);  // the pixels follow as the batch is written
  return sample;
}

Batch BatchLoader::Build(const BatchPlan& plan, int epoch, bool mosaic) const {
  std::vector<Sample> samples;
  Batch batch;
  for (size_t k = 0; k < plan.indices.size(); ++k) {
    const int index = plan.indices[k];
    const ImageRecord& r = records_[index];
    BatchImageInfo info;
    info.index = index;
    info.width = r.width;
    info.height = r.height;
    if (options_.augment && !options_.rect) {
      samples.push_back(
          TrainSample(*plan.epoch, plan.first_position + static_cast<int>(k), epoch, mosaic));
    } else {
      double gain = 1;
      Sample s = LoadResized(index, &gain, /*remember=*/false);
      LetterboxInfo lb;
      const int h = options_.rect ? plan.height : options_.imgsz;
      const int w = options_.rect ? plan.width : options_.imgsz;
      s.image = Letterbox(s.image, h, w, /*scaleup=*/options_.augment, &lb, &s.boxes);
      if (options_.augment) {  // rectangular training: no mosaic, the rest as usual
        std::mt19937 rng = SampleRng(options_.seed, epoch, index);
        RandomAffine(&s, options_.hyp, cv::Size(w, h), rng);
        DrawColourAndFlips(options_.hyp, rng, &s);
      }
      info.to_batch = {gain * lb.gain, lb.pad_left, lb.pad_top};
      samples.push_back(std::move(s));
    }
    batch.info.push_back(info);
  }
  int64_t start = NowNs();
  const int64_t b = static_cast<int64_t>(samples.size());
  const int h = samples[0].image.rows, w = samples[0].image.cols;
  batch.images =
      at::empty({b, 3, h, w}, at::TensorOptions(at::kByte).pinned_memory(options_.pin_memory));
  uint8_t* dst = batch.images.data_ptr<uint8_t>();
  // Colour, flips and BGR pixels -> RGB planes in one pass, straight into the batch (every
  // sample of a batch has its size).
  for (int64_t i = 0; i < b; ++i) {
    CV_Assert(samples[i].image.size() == cv::Size(w, h));
    WritePlanes(samples[i].image, samples[i].finish, dst + i * 3 * h * w);
  }
  Count(LoaderProfile::kFinish, start);
  start = NowNs();
  std::vector<float> idx, cls, boxes;
  for (int64_t i = 0; i < b; ++i) {
    for (const PixelBox& pb : samples[i].boxes) {
      idx.push_back(static_cast<float>(i));
      cls.push_back(static_cast<float>(pb.cls));
      boxes.push_back((pb.x1 + pb.x2) / 2 / w);
      boxes.push_back((pb.y1 + pb.y2) / 2 / h);
      boxes.push_back((pb.x2 - pb.x1) / w);
      boxes.push_back((pb.y2 - pb.y1) / h);
    }
  }
  const int64_t n = static_cast<int64_t>(idx.size());
  batch.targets.batch_idx = at::from_blob(idx.data(), {n}, at::kFloat).clone();
  batch.targets.cls = at::from_blob(cls.data(), {n}, at::kFloat).clone();
  batch.targets.boxes = at::from_blob(boxes.data(), {n, 4}, at::kFloat).clone();
  batch.instances = static_cast<int>(n);
  images_.fetch_add(b, std::memory_order_relaxed);
  Count(LoaderProfile::kCollate, start);
  return batch;
}

at::Tensor ModelInput(const Batch& batch, const c10::Device& device) {
  return batch.images.to(device, /*non_blocking=*/true);
}

int64_t BatchLoader::DropRamCache() {
  std::vector<cv::Mat> dropped;
  {
    std::unique_lock<std::shared_mutex> lock(cache_mu_);
    dropped.swap(ram_cache_);
  }
  int64_t bytes = 0;
  for (const cv::Mat& m : dropped) bytes += static_cast<int64_t>(m.total() * m.elemSize());
  return bytes;  // the pixels are freed here, or by the loader thread still holding one
}

void BatchLoader::StartEpoch(int epoch, bool mosaic) {
  std::vector<BatchPlan> plan;
  if (options_.rect) {
    plan = rect_plans_;
  } else {
    std::shared_ptr<const EpochPlanner::Plan> epoch_plan;
    {
      std::lock_guard<std::mutex> lock(planner_mu_);
      epoch_plan = planner_.ForEpoch(epoch);
    }
    const std::vector<int>& order = epoch_plan->order;
    for (size_t start = 0; start < order.size(); start += options_.batch) {
      BatchPlan p;
      p.indices.assign(order.begin() + start,
                       order.begin() + std::min(order.size(), start + options_.batch));
      p.height = p.width = options_.imgsz;
      p.first_position = static_cast<int>(start);
      p.epoch = epoch_plan;
      plan.push_back(std::move(p));
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    plan_ = std::move(plan);
    epoch_ = epoch;
    mosaic_ = mosaic;
    ++generation_;
    next_to_build_ = 0;
    next_to_hand_ = 0;
    ready_.clear();
  }
  cv_.notify_all();
}

std::optional<Batch> BatchLoader::Next() {
  if (options_.workers == 0) {
    // Load in the calling thread.
    if (next_to_hand_ >= plan_.size()) return std::nullopt;
    return Build(plan_[next_to_hand_++], epoch_, mosaic_);
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (next_to_hand_ >= plan_.size()) return std::nullopt;
  cv_.wait(lock, [&] { return ready_.count(next_to_hand_) > 0 || failure_ != nullptr; });
  if (failure_ != nullptr) std::rethrow_exception(failure_);
  Batch batch = std::move(ready_[next_to_hand_]);
  ready_.erase(next_to_hand_);
  ++next_to_hand_;
  lock.unlock();
  cv_.notify_all();  // room for one more
  return batch;
}

void BatchLoader::WorkerLoop() {
  // Below the training thread's priority: LibTorch's OpenMP team waits at barriers for its
  // slowest member, so a loader thread that preempts one of them stalls all of them. The
  // prefetch queue keeps a lower-priority loader ahead anyway.
  // Relative to the thread that made it, which yolod may have lowered already.
  errno = 0;
  const int base = getpriority(PRIO_PROCESS, 0);
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)),
              std::min(19, (errno == 0 ? base : 0) + kLoaderNice));
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] {
      return stop_ || (next_to_build_ < plan_.size() &&
                       next_to_build_ < next_to_hand_ + static_cast<size_t>(options_.prefetch));
    });
    if (stop_) return;
    const size_t slot = next_to_build_++;
    const BatchPlan plan = plan_[slot];
    const uint64_t generation = generation_;
    const int epoch = epoch_;
    const bool mosaic = mosaic_;
    lock.unlock();
    Batch batch;
    try {
      batch = Build(plan, epoch, mosaic);
    } catch (...) {
      lock.lock();
      failure_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    lock.lock();
    if (generation == generation_) {
      ready_[slot] = std::move(batch);
      cv_.notify_all();
    }
  }
}

}  // namespace yolo
