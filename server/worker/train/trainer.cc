#include "server/worker/train/trainer.h"

#include <ATen/ATen.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/utils.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/cpu_budget.h"
#include "common/status_macros.h"
#include "server/memory/effective_ram.h"
#include "server/worker/train/autobatch.h"
#include "server/worker/train/checkpoint.h"
#include "server/worker/train/cpu_allocator.h"
#include "server/worker/train/optim.h"
#include "server/worker/train/rounding.h"
#include "server/worker/train/run_support.h"

namespace yolo {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The arguments the epoch loop reads, read once from TrainArgs when a resume has settled them.
struct RunSettings {
  int imgsz = 640, batch = 16, epochs = 100;
  int nbs = 64;
  double warmup_epochs = 3, momentum = 0.937, warmup_momentum = 0.8;
  double lrf = 0.01;
  bool cos_lr = false;
  int close_mosaic_epoch = -1;  // -1: never
  int patience = 100;
  bool validate = true;  // every epoch (`val`); the last one always validates
  bool save = true;
  int64_t save_period = -1;
  bool verbose = true;
  NmsOptions nms;
};

// One epoch's training, as the epoch loop uses it.
struct EpochTraining {
  std::array<double, 3> loss{0, 0, 0};  // box, cls, dfl: means over the epoch
  int images = 0;
  int batches = 0;
  int last_instances = 0;
  double seconds = 0;
  std::array<double, 3> lr{0, 0, 0};  // of the three parameter groups, after the epoch
  bool stopped = false;               // a stop came during the epoch: its work is not kept
};

class TrainRun {
 public:
  TrainRun(TrainArgs args, const TrainHooks& hooks) : args_(std::move(args)), hooks_(hooks) {}
  // Setup, then the epoch loop: train one epoch, validate, record and checkpoint, decide.
  absl::StatusOr<TrainOutcome> Run();

 private:
  absl::Status PrepareResume();
  absl::Status Setup();
  void ReadSettings(int imgsz, int batch, int epochs);
  // The pre-flight memory estimate, before the loaders exist: with `autobatch` (a fraction of
  // the memory available) it chooses the batch; a fixed batch that cannot fit is refused.
  absl::Status PlanMemory(double autobatch, const std::vector<ImageRecord>& train_records);
  // The epoch loop's steps, in order.
  EpochTraining TrainEpoch(int epoch);
  ValidationResult ValidateEpoch(int epoch);
  absl::Status RecordEpoch(int epoch, const EpochTraining& trained, const ValidationResult& val);
  bool ShouldStopEarly(int epoch) const;
  // TrainEpoch, with an out-of-memory error that leaves a known state (CUDA's OutOfMemoryError,
  // LibTorch's CPU allocator, OpenCV's) as RESOURCE_EXHAUSTED; other errors go on up.
  absl::StatusOr<EpochTraining> TryTrainEpoch(int epoch);
  // After an out-of-memory error in `epoch`: frees what the step held, halves the batch
  // (accumulation doubled), puts the weights and optimizer back to the epoch's start (last.pt,
  // when the run has one) and rebuilds the loaders, so that the epoch runs again.
  absl::Status RecoverFromOom(int epoch, const absl::Status& error);
  // fault_leak_mb: memory kept at every epoch end, for tests of leak detection.
  void InjectLeak();
  // After the loop: strips the optimizer and validates best.pt.
  absl::Status Conclude(int epochs_done, TrainOutcome* outcome);
  absl::Status SaveEpoch(int epoch, bool is_best);
  absl::Status Finish();
  // The training and validation loaders for settings_.batch and the arguments as they are.
  absl::Status BuildLoaders();
  // The memory pressure policy, between two epochs: batch halved (accumulation doubled, so the
  // nominal batch holds), workers at most 2, cache off, save_period at least 20, plots off.
  absl::Status ApplyPressurePolicy(int epoch, const std::string& reason);
  bool StopRequested() const {
    return hooks_.stop_requested != nullptr && hooks_.stop_requested->load();
  }
  void ServeCleanup();  // a cleanup asked for through hooks_.cleanup_requested
  // Data-parallel training: joins the group (local rank 0 starts the node's other ranks first).
  absl::Status JoinRanks();
  // Whether any rank says `local`: a stop must end every rank at the same batch.
  bool AnyRank(bool local);
  // Rank 0's `value`, on every rank.
  int FromRankZero(int value);
  // This rank's share of settings_.batch (the whole batch, as Ultralytics' `batch` is).
  int RankBatch() const { return std::max(1, settings_.batch / dist_.world_size); }

  TrainArgs args_;
  TrainHooks hooks_;
  std::optional<LoadedCheckpoint> resume_from_;
  std::string run_dir_, weights_dir_;
  c10::Device device_{c10::kCPU};
  bool amp_ = false;
  RunSettings settings_;
  DataConfig data_;
  std::vector<ImageRecord> train_records_, val_records_;
  std::unique_ptr<BatchLoader> train_loader_, val_loader_;
  DetectionModel model_{nullptr};
  std::unique_ptr<ModelEma> ema_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<double> initial_lr_;
  OptimizerChoice choice_;
  std::unique_ptr<DetectionLoss> loss_;
  std::unique_ptr<DetectionLoss> val_loss_;  // data-parallel: loss_ sums over the ranks
  int start_epoch_ = 0;
  double best_fitness_ = -1;
  bool have_best_ = false;
  int best_epoch_ = -1;
  std::string results_csv_ = kResultsHeader;
  double time_offset_ = 0;
  double train_seconds_total_ = 0;
  int64_t train_images_total_ = 0;
  int first_batch_ = 0;  // the batch the run started with (fault_oom_epoch fires only at it)
  int64_t fault_leak_mb_ = 0;
  int fault_oom_epoch_ = 0;
  int round_end_ = 0;  // round_end: the last epoch (1-based) this process trains; 0: the run's
  bool finish_only_ = false;  // round_end at the epoch last.pt holds: no epoch, only Conclude
  int oom_retries_ = 0;
  bool measured_training_peak_ = false;      // VmHWM was reset after the memory estimate
  DistributedConfig dist_;                   // one process unless world_size > 1
  std::unique_ptr<DistributedGroup> group_;  // data-parallel only
  std::unique_ptr<DistributedGroup::GradientReducer> reducer_;
  bool main_ = true;  // rank 0: validates, writes results.csv and checkpoints, prints
  std::vector<std::unique_ptr<char[]>> leaked_;  // fault_leak_mb
  // The optimizer's step state, across epochs.
  int accumulate_ = 1;
  int64_t last_opt_step_ = -1;
  Clock::time_point run_start_;
};

absl::Status TrainRun::PrepareResume() {
  const std::string resume = args_.GetString("resume");
  if (resume == "false") return absl::OkStatus();
  std::string path;
  if (resume != "true") {
    path = resume;
  } else if (absl::EndsWith(args_.GetString("model"), ".pt")) {
    path = args_.GetString("model");
  } else {
    const std::string project =
        args_.IsNull("project") ? "runs/detect" : args_.GetString("project");
    auto found = NewestLastPt(project);
    if (!found) {
      return absl::NotFoundError(absl::StrCat("resume=True: no weights/last.pt under '", project,
                                              "'; pass model=path/to/last.pt"));
    }
    path = *found;
  }
  ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, LoadCheckpoint(path));
  if (ckpt.meta.epoch < 0 || !ckpt.has_optimizer) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", path,
                     "' is from a finished training run and cannot be resumed; start a new run "
                     "with model=",
                     path, " to fine-tune from it"));
  }
  ASSIGN_OR_RETURN(TrainArgs saved, TrainArgs::FromYaml(ckpt.meta.train_args));
  // Only these may change on resume, as in Ultralytics.
  for (const char* key :
       {"imgsz", "batch", "device", "close_mosaic", "workers", "threads", "round_end", "world_size",
        "master_addr", "master_port", "node_rank", "nnodes"}) {
    if (args_.WasSet(key)) RETURN_IF_ERROR(saved.Set(key, args_.GetString(key)));
  }
  RETURN_IF_ERROR(saved.Set("resume", path));
  args_ = saved;
  run_dir_ = fs::path(path).parent_path().parent_path().string();
  resume_from_ = std::move(ckpt);
  return absl::OkStatus();
}

absl::Status TrainRun::Setup() {
  RETURN_IF_ERROR(PrepareResume());
  if (args_.IsNull("data")) return absl::InvalidArgumentError("argument 'data' is required");
  ConfigureDeterminism(args_.GetBool("deterministic"));
  ASSIGN_OR_RETURN(dist_, ResolveDistributed(args_));
  main_ = dist_.is_main();
  if (!main_) spdlog::set_level(spdlog::level::warn);  // rank 0 speaks for the run
  ASSIGN_OR_RETURN(device_,
                   ResolveDevice(dist_.enabled() ? dist_.device() : args_.GetString("device")));
  amp_ = device_.is_cuda() && args_.GetBool("amp");
  int threads_arg = static_cast<int>(args_.GetInt("threads"));
  if (threads_arg == 0 && dist_.enabled() && device_.is_cpu()) {
    threads_arg = std::max(1, UsableCpus() / dist_.local_world_size);  // the node's CPUs shared
  }
  const int threads = ConfigureThreads(threads_arg);
  int batch = static_cast<int>(args_.GetInt("batch"));
  // batch=-1 or a fraction in (0, 1): AutoBatch chooses it once the model is built.
  const double batch_arg = args_.GetFloat("batch");
  const double autobatch = batch_arg >= 1  ? 0
                           : batch_arg > 0 ? batch_arg
                                           : kDefaultAutoBatchFraction;
  if (autobatch > 0) batch = 16;
  if (dist_.enabled()) {
    if (autobatch > 0) {
      return absl::InvalidArgumentError(
          "argument 'batch': AutoBatch (batch=-1 or a fraction) is for one process; give "
          "data-parallel training a whole batch, which the ranks split");
    }
    if (batch < dist_.world_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "argument 'batch': ", batch, " images cannot be split over ", dist_.world_size,
          " ranks; batch is the whole batch, at least one image per rank"));
    }
    RETURN_IF_ERROR(JoinRanks());
  }
  int epochs = static_cast<int>(args_.GetInt("epochs"));
  if (resume_from_) {
    start_epoch_ = static_cast<int>(resume_from_->meta.epoch) + 1;
    if (start_epoch_ >= epochs) {
      spdlog::info("{} was trained for {} epochs already; fine-tuning {} more", resume_from_->path,
                   start_epoch_, epochs);
      epochs += start_epoch_;
    }
  }
  ReadSettings(CheckImgsz(args_), batch, epochs);
  // This process's part of the run, not the run's: never saved into args.yaml or last.pt.
  round_end_ = static_cast<int>(args_.GetInt("round_end"));
  RETURN_IF_ERROR(args_.Set("round_end", "0"));
  fault_leak_mb_ = args_.GetInt("fault_leak_mb");
  fault_oom_epoch_ = static_cast<int>(args_.GetInt("fault_oom_epoch"));
  const int imgsz = settings_.imgsz;
  SeedLikeUltralytics(args_.GetInt("seed"));

  ASSIGN_OR_RETURN(data_, LoadDataConfig(args_.GetString("data")));
  const bool single_cls = args_.GetBool("single_cls");
  if (single_cls) data_.names = {"item"};
  const int nc = data_.nc();
  const int scan_threads = std::max(threads, static_cast<int>(args_.GetInt("workers")));
  ASSIGN_OR_RETURN(DatasetScan train_scan,
                   ScanDataset(data_.train, single_cls ? 1 << 30 : nc, single_cls, scan_threads,
                               hooks_.allowed_roots));
  ASSIGN_OR_RETURN(DatasetScan val_scan,
                   ScanDataset(data_.val, single_cls ? 1 << 30 : nc, single_cls, scan_threads,
                               hooks_.allowed_roots));
  spdlog::info("train: {}", train_scan.Summary());
  spdlog::info("val: {}", val_scan.Summary());
  const double fraction = args_.GetFloat("fraction");
  if (fraction < 1.0) {
    const size_t keep = std::max<int64_t>(1, RoundHalfEven(train_scan.images.size() * fraction));
    train_scan.images.resize(std::min(keep, train_scan.images.size()));
  }

  // Model: a fresh scale, a checkpoint to fine-tune from, or the run being resumed.
  const std::string model_arg = args_.IsNull("model") ? "yolov8n.yaml" : args_.GetString("model");
  if (resume_from_) {
    ASSIGN_OR_RETURN(ModelScale scale, ScaleFromName(resume_from_->meta.scale));
    model_ = DetectionModel(scale, nc);
    TransferWeights(resume_from_->raw, model_);
  } else if (absl::EndsWith(model_arg, ".pt")) {
    if (!fs::exists(model_arg)) {
      return absl::NotFoundError(absl::StrCat(
          "argument 'model': '", model_arg,
          "' does not exist (pretrained Ultralytics weights "
          "cannot be downloaded here; use a scale such as model=yolov8n to train from scratch, "
          "or one of our checkpoints)"));
    }
    ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, LoadCheckpoint(model_arg));
    ASSIGN_OR_RETURN(ModelScale scale, ScaleFromName(ckpt.meta.scale));
    model_ = DetectionModel(scale, nc);
    const int copied = TransferWeights(ckpt.model, model_);
    spdlog::info("Transferred {}/{} items from {}", copied,
                 model_->named_parameters().size() + model_->named_buffers().size(), model_arg);
  } else {
    ASSIGN_OR_RETURN(ModelScale scale, ScaleFromName(model_arg));
    model_ = DetectionModel(scale, nc);
  }
  spdlog::info("{}", ModelSummary(model_, imgsz));
  model_->to(device_);
  model_->train();
  if (group_) {
    // Every rank starts from rank 0's weights (DDP broadcasts them too), and BatchNorm counts
    // the images of every rank.
    std::vector<at::Tensor> state;
    for (const at::Tensor& t : model_->parameters()) state.push_back(t.detach());
    for (const at::Tensor& t : model_->buffers()) state.push_back(t);
    group_->Broadcast(state, 0);
    model_->SetSyncBatchNorm(group_->Summer());
  }
  finish_only_ = round_end_ > 0 && resume_from_ && start_epoch_ >= round_end_;
  if (!finish_only_) RETURN_IF_ERROR(PlanMemory(autobatch, train_scan.images));
  first_batch_ = settings_.batch;

  std::error_code ec;
  if (main_) {  // the other ranks write nothing
    if (run_dir_.empty()) run_dir_ = NewRunDir(args_);
    weights_dir_ = (fs::path(run_dir_) / "weights").string();
    fs::create_directories(weights_dir_, ec);
    if (ec)
      return absl::InternalError(absl::StrCat("cannot create ", weights_dir_, ": ", ec.message()));
    if (!resume_from_) {
      RETURN_IF_ERROR(args_.Set("name", fs::path(run_dir_).filename().string()));
      RETURN_IF_ERROR(args_.Set("project", fs::path(run_dir_).parent_path().string()));
      RETURN_IF_ERROR(args_.Set("model", model_arg));
    }
    RETURN_IF_ERROR(WriteFileAtomic((fs::path(run_dir_) / "args.yaml").string(), args_.ToYaml()));
  }

  train_records_ = std::move(train_scan.images);
  val_records_ = std::move(val_scan.images);
  RETURN_IF_ERROR(BuildLoaders());

  // Optimizer.
  const int nbs = settings_.nbs;
  accumulate_ = AccumulateCount(/*ni=*/0, /*nw=*/-1, nbs, settings_.batch);
  const double weight_decay = args_.GetFloat("weight_decay") * settings_.batch * accumulate_ / nbs;
  const int64_t iterations =
      static_cast<int64_t>(
          std::ceil(static_cast<double>(train_loader_->size()) / std::max(settings_.batch, nbs))) *
      epochs;
  choice_ =
      ChooseOptimizer(args_.GetString("optimizer"), args_.GetFloat("lr0"),
                      args_.GetFloat("momentum"), args_.GetFloat("warmup_bias_lr"), iterations, nc);
  ParamGroups groups = SplitParameters(*model_);
  optimizer_ = MakeOptimizer(choice_, groups, weight_decay);
  spdlog::info(
      "optimizer: {}(lr={}, momentum={}) with parameter groups {} weight(decay=0.0), {} "
      "weight(decay={}), {} bias(decay=0.0)",
      choice_.name, choice_.lr, choice_.momentum, groups.norm.size(), groups.weights.size(),
      weight_decay, groups.bias.size());
  for (size_t g = 0; g < optimizer_->param_groups().size(); ++g) {
    initial_lr_.push_back(GroupLr(*optimizer_, g));
  }
  LossGains gains{args_.GetFloat("box"), args_.GetFloat("cls"), args_.GetFloat("dfl")};
  loss_ = std::make_unique<DetectionLoss>(nc, model_->detect->strides, gains);
  if (group_) {
    // Validation (rank 0 alone) scores with a loss of its own: its normaliser is local.
    val_loss_ = std::make_unique<DetectionLoss>(nc, model_->detect->strides, gains);
    loss_->set_rank_sum(group_->Summer());
    std::vector<at::Tensor> trained;
    for (const at::Tensor& p : model_->parameters()) {
      if (p.requires_grad()) trained.push_back(p);
    }
    reducer_ = group_->MakeReducer(trained);
  }

  if (resume_from_) {
    RETURN_IF_ERROR(LoadOptimizerState(resume_from_->path, *optimizer_, device_));
    ema_ = std::make_unique<ModelEma>(resume_from_->model, resume_from_->meta.updates);
    ema_->model()->to(device_);
    best_fitness_ = resume_from_->meta.best_fitness;
    have_best_ = true;
    best_epoch_ = start_epoch_ - 1;  // patience counts from the resume at the latest
    results_csv_ = resume_from_->meta.results_csv;
    if (results_csv_.empty()) results_csv_ = kResultsHeader;
    time_offset_ = LastResultsTime(results_csv_);
    if (main_) {
      // The folder may hold a results.csv written after the checkpoint: the checkpoint wins.
      RETURN_IF_ERROR(WriteFileAtomic((fs::path(run_dir_) / "results.csv").string(), results_csv_));
      for (const auto& entry : fs::directory_iterator(weights_dir_, ec)) {
        if (absl::StrContains(entry.path().filename().string(), ".tmp."))
          fs::remove(entry.path(), ec);
      }
    }
    spdlog::info("Resuming training {} from epoch {} to {} total epochs", resume_from_->path,
                 start_epoch_ + 1, epochs);
  } else {
    ema_ = std::make_unique<ModelEma>(model_);
  }
  spdlog::info("Image sizes {} train, {} val; using {} dataloader workers, {} torch threads", imgsz,
               imgsz, args_.GetInt("workers"), at::get_num_threads());
  spdlog::info("Logging results to {}", run_dir_);
  return absl::OkStatus();
}

absl::Status TrainRun::PlanMemory(double autobatch, const std::vector<ImageRecord>& train_records) {
  const LoaderOptions loader = BaseLoaderOptions(args_, settings_.imgsz);
  const double pixels = 3.0 * settings_.imgsz * settings_.imgsz;
  int max_objects = 1;
  double largest_image = 0;
  for (const ImageRecord& r : train_records) {
    max_objects = std::max(max_objects, static_cast<int>(r.labels.size()));
    largest_image = std::max(largest_image, 3.0 * r.width * r.height);
  }
  // Mosaic puts up to four images' labels into one.
  if (args_.GetFloat("mosaic") > 0) max_objects *= 4;
  EstimateInputs in;
  // The loader never makes a batch larger than the training set.
  in.batch = std::min(RankBatch(), std::max(static_cast<int>(train_records.size()), 1));
  in.fraction = autobatch;
  in.max_batch = std::clamp(static_cast<int>(train_records.size()), 1, kMaxAutoBatch);
  const int workers = std::max(loader.workers, 1);
  const int queued = loader.prefetch > 0 ? loader.prefetch : std::max(2, 2 * loader.workers);
  in.loader_bytes_per_image = (queued + workers) * pixels;  // uint8 batches, queued and building
  in.cache_bytes = static_cast<int64_t>(CacheBytesEstimate(
      train_records, loader.cache == CacheMode::kRam ? CacheMode::kRam : CacheMode::kNone,
      settings_.imgsz));
  // Each worker holds a mosaic's four decoded images and its canvas; the EMA copies the model;
  // mosaic's recent-image buffer holds a fixed number of resized images.
  const LoaderOptions train_loader =
      TrainLoaderOptions(args_, settings_.imgsz, in.batch, settings_.epochs);  // per rank
  const double recent =
      RecentImagesCapacity(train_loader, static_cast<int>(train_records.size())) * pixels;
  in.fixed_bytes = static_cast<double>(ModelBytes(*model_) + in.cache_bytes) + recent +
                   workers * (4 * largest_image + 4 * pixels);
  int64_t gpu_free = 0, gpu_total = 0;
  if (device_.is_cuda() && GpuMemoryInfo(device_, &gpu_free, &gpu_total)) {
    // On the GPU: the steps and the EMA. The loader and the cache live in host RAM, which the
    // watchdog looks after.
    in.limit_bytes = gpu_total, in.available_bytes = gpu_free;
    in.loader_bytes_per_image = 0;
    in.fixed_bytes = static_cast<double>(ModelBytes(*model_));
    in.cache_bytes = 0;
  } else {
    const RamUse ram = ReadEffectiveRam(*hooks_.proc, *hooks_.cgroup);
    in.limit_bytes = ram.limit_bytes, in.available_bytes = ram.available_bytes;
  }
  if (in.limit_bytes <= 0) {
    if (autobatch > 0) {
      spdlog::warn("AutoBatch: the memory available cannot be read here; using batch=16");
    }
    return absl::OkStatus();
  }
  StepSpec spec;
  spec.scale = model_->scale;
  spec.nc = model_->nc;
  spec.imgsz = settings_.imgsz;
  spec.max_objects = max_objects;
  spec.device = device_;
  spec.amp = amp_;
  spec.optimizer = ChooseOptimizer(args_.GetString("optimizer"), args_.GetFloat("lr0"),
                                   args_.GetFloat("momentum"), args_.GetFloat("warmup_bias_lr"),
                                   /*iterations=*/0, model_->nc);
  spec.gains = {args_.GetFloat("box"), args_.GetFloat("cls"), args_.GetFloat("dfl")};
  spec.stop = hooks_.stop_requested;
  StepProfiler profiler(spec);
  auto estimate = EstimateMemory(profiler, in);
  // Once a stop is asked, the steps left answer at once: whatever the estimate made of that,
  // the run stops here (nothing is written yet).
  if (StopRequested()) return absl::CancelledError("stop requested during the memory estimate");
  if (!estimate.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(estimate.status().message(),
                     autobatch > 0 ? "" : ": it cannot fit (batch=-1 lets AutoBatch choose)"));
  }
  estimate->set_device(device_.str());
  const int64_t predicted = estimate->predicted_bytes();
  if (autobatch > 0) {
    settings_.batch = estimate->batch();
    RETURN_IF_ERROR(args_.Set("batch", std::to_string(settings_.batch)));  // resumes keep it
  } else if (predicted > in.available_bytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: it cannot fit; %s (batch=-1 lets AutoBatch choose)", estimate->message(),
        estimate->fits_batch() > 0
            ? absl::StrFormat("batch=%d would fit in %.0f %% of it", estimate->fits_batch(),
                              kDefaultAutoBatchFraction * 100)
            : std::string("even batch 1 would not fit: lower imgsz or use a smaller model")));
  }
  const double after = static_cast<double>(in.limit_bytes - in.available_bytes + predicted) /
                       static_cast<double>(in.limit_bytes);
  if (after > kPreflightWarnRatio) {
    estimate->set_warning(
        absl::StrFormat("this run would bring %s to about %.0f %% of its %.1f GB (above %.0f %%)",
                        device_.is_cuda() ? "the GPU's memory" : "RAM", after * 100,
                        in.limit_bytes / 1e9, kPreflightWarnRatio * 100));
    spdlog::warn("{}", estimate->warning());
  }
  spdlog::info("{} [{:.1f} s]", estimate->message(), estimate->seconds());
  if (hooks_.on_memory_estimate) hooks_.on_memory_estimate(*estimate);
  measured_training_peak_ = ResetPeakRss();  // from here on, the peak is the run's own
  return absl::OkStatus();
}

absl::StatusOr<EpochTraining> TrainRun::TryTrainEpoch(int epoch) {
  // std::bad_alloc is not retried here: it can come from any allocation, in the middle of any
  // update, and the state it leaves is unknown (a retry after one crashed under a capped address
  // space). The worker exits out of memory instead, and yolod resumes it from last.pt, in a
  // clean process, at half the batch.
  try {
    return TrainEpoch(epoch);
  } catch (const c10::Error& e) {
    if (IsOutOfMemory(e)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("out of memory: ", e.what_without_backtrace()));
    }
    throw;
  } catch (const cv::Exception& e) {
    if (e.code == cv::Error::StsNoMem) {
      return absl::ResourceExhaustedError(absl::StrCat("out of memory in OpenCV: ", e.what()));
    }
    throw;
  }
}

absl::Status TrainRun::RecoverFromOom(int epoch, const absl::Status& error) {
  ++oom_retries_;
  const int batch_before = settings_.batch;
  const int batch_after = std::max(1, batch_before / 2);
  // What the failed step held goes first: gradients, the loaders' batches, the caches.
  optimizer_->zero_grad();
  train_loader_.reset();
  val_loader_.reset();
  ResetCpuStepPlan();  // planned for the batch that failed
  EmptyCpuCache();
  EmptyDeviceCache(device_);
  malloc_trim(0);
  RETURN_IF_ERROR(args_.Set("batch", std::to_string(batch_after)));
  settings_.batch = batch_after;
  accumulate_ = AccumulateCount(/*ni=*/0, /*nw=*/-1, settings_.nbs, batch_after);
  // The epoch starts again from the weights it started with: those of last.pt.
  const std::string last = (fs::path(weights_dir_) / "last.pt").string();
  std::error_code ec;
  std::string from = "the weights as they are (the run has no checkpoint yet)";
  if (fs::exists(last, ec)) {
    ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, LoadCheckpoint(last));
    if (ckpt.raw && ckpt.has_optimizer && ckpt.meta.epoch == epoch - 1) {
      TransferWeights(ckpt.raw, model_);
      RETURN_IF_ERROR(LoadOptimizerState(last, *optimizer_, device_));
      ema_ = std::make_unique<ModelEma>(ckpt.model, ckpt.meta.updates);
      ema_->model()->to(device_);
      from = absl::StrCat("last.pt (epoch ", epoch, ")");
    }
  }
  RETURN_IF_ERROR(BuildLoaders());
  std::printf(
      "out of memory in epoch %d (%s): retry %d of %d from its start at batch %d -> %d "
      "(accumulate %d), from %s\n",
      epoch + 1, std::string(error.message()).c_str(), oom_retries_, kMaxOomRetries, batch_before,
      batch_after, accumulate_, from.c_str());
  std::fflush(stdout);
  if (hooks_.on_oom_retry) {
    hooks_.on_oom_retry(OomRetryReport{epoch + 1, oom_retries_, batch_before, batch_after,
                                       std::string(error.message())});
  }
  return absl::OkStatus();
}

void TrainRun::InjectLeak() {
  const int64_t mb = fault_leak_mb_;
  if (mb <= 0) return;
  auto block = std::make_unique<char[]>(static_cast<size_t>(mb) << 20);
  std::memset(block.get(), 1, static_cast<size_t>(mb) << 20);  // resident, not just reserved
  leaked_.push_back(std::move(block));
  spdlog::warn("fault_leak_mb: {} MB more kept ({} MB in all)", mb,
               static_cast<int64_t>(leaked_.size()) * mb);
}

absl::Status TrainRun::BuildLoaders() {
  const RunSettings& s = settings_;
  train_loader_.reset();  // its threads end before the new ones start
  val_loader_.reset();
  LoaderOptions train_opts = TrainLoaderOptions(args_, s.imgsz, RankBatch(), s.epochs);
  train_opts.rank = dist_.rank;
  train_opts.world_size = dist_.world_size;
  train_opts.proc = hooks_.proc;
  train_opts.cgroup = hooks_.cgroup;
  train_opts.pin_memory = device_.is_cuda();
  train_loader_ = std::make_unique<BatchLoader>(train_records_, train_opts);
  RETURN_IF_ERROR(train_loader_->PrepareCache());
  if (!main_) return absl::OkStatus();  // rank 0 alone validates
  LoaderOptions val_opts = BaseLoaderOptions(args_, s.imgsz);
  val_opts.batch = s.batch * 2;
  val_opts.rect = true;
  val_opts.cache = CacheMode::kNone;
  val_opts.pin_memory = device_.is_cuda();
  val_loader_ = std::make_unique<BatchLoader>(val_records_, val_opts);
  return absl::OkStatus();
}

absl::Status TrainRun::ApplyPressurePolicy(int epoch, const std::string& reason) {
  const int batch_before = settings_.batch;
  const int batch_after = std::max(1, batch_before / 2);
  // After warmup; during it the loop interpolates up to these.
  const int accumulate_before = AccumulateCount(/*ni=*/0, /*nw=*/-1, settings_.nbs, batch_before);
  const int64_t workers_before = args_.GetInt("workers");
  const int64_t workers_after = std::min<int64_t>(workers_before, 2);
  const std::string cache_before = args_.GetString("cache");
  const int64_t period_before = settings_.save_period;
  const int64_t period_after =
      period_before > 0 ? std::max<int64_t>(period_before, 20) : period_before;
  // In the arguments too, so that last.pt resumes with them.
  RETURN_IF_ERROR(args_.Set("batch", std::to_string(batch_after)));
  RETURN_IF_ERROR(args_.Set("workers", std::to_string(workers_after)));
  RETURN_IF_ERROR(args_.Set("cache", "False"));
  RETURN_IF_ERROR(args_.Set("save_period", std::to_string(period_after)));
  RETURN_IF_ERROR(args_.Set("plots", "False"));
  settings_.batch = batch_after;
  settings_.save_period = period_after;
  accumulate_ = AccumulateCount(/*ni=*/0, /*nw=*/-1, settings_.nbs, batch_after);
  RETURN_IF_ERROR(BuildLoaders());
  ResetCpuStepPlan();  // planned for the old batch
  EmptyCpuCache();
  malloc_trim(0);
  std::string detail =
      absl::StrFormat("batch %d -> %d (accumulate %d -> %d, nominal batch %d)", batch_before,
                      batch_after, accumulate_before, accumulate_, settings_.nbs);
  if (workers_after != workers_before) {
    absl::StrAppend(&detail, ", workers ", workers_before, " -> ", workers_after);
  }
  if (cache_before != "false") absl::StrAppend(&detail, ", cache ", cache_before, " -> off");
  if (period_after != period_before) {
    absl::StrAppend(&detail, ", save_period ", period_before, " -> ", period_after);
  }
  absl::StrAppend(&detail, ", plots off");
  std::printf("memory policy after epoch %d (%s): %s\n", epoch + 1, reason.c_str(), detail.c_str());
  std::fflush(stdout);
  if (hooks_.on_policy_applied) {
    hooks_.on_policy_applied(PolicyReport{epoch + 1, batch_before, batch_after, detail});
  }
  return absl::OkStatus();
}

void TrainRun::ReadSettings(int imgsz, int batch, int epochs) {
  RunSettings& s = settings_;
  s.imgsz = imgsz;
  s.batch = batch;
  s.epochs = epochs;
  s.nbs = static_cast<int>(args_.GetInt("nbs"));
  s.warmup_epochs = args_.GetFloat("warmup_epochs");
  s.momentum = args_.GetFloat("momentum");
  s.warmup_momentum = args_.GetFloat("warmup_momentum");
  s.lrf = args_.GetFloat("lrf");
  s.cos_lr = args_.GetBool("cos_lr");
  s.close_mosaic_epoch = CloseMosaicEpoch(epochs, args_.GetInt("close_mosaic"));
  s.patience = static_cast<int>(args_.GetInt("patience"));
  s.validate = args_.GetBool("val");
  s.save = args_.GetBool("save");
  s.save_period = args_.GetInt("save_period");
  s.verbose = args_.GetBool("verbose");
  s.nms.conf = args_.IsNull("conf") ? 0.001 : args_.GetFloat("conf");
  s.nms.iou = args_.GetFloat("iou");
  s.nms.max_det = static_cast<int>(args_.GetInt("max_det"));
  s.nms.agnostic = args_.GetBool("single_cls");
}

absl::Status TrainRun::SaveEpoch(int epoch, bool is_best) {
  CheckpointMeta meta;
  meta.epoch = epoch;
  meta.best_fitness = best_fitness_;
  meta.updates = ema_->updates();
  meta.train_args = args_.ToYaml();
  meta.results_csv = results_csv_;
  meta.names = absl::StrJoin(data_.names, "\n");
  meta.scale = std::string(1, model_->scale.letter);
  meta.nc = model_->nc;
  meta.date = NowIso();
  // results.csv first: if killed between the two writes, resume rewrites it from last.pt.
  RETURN_IF_ERROR(WriteFileAtomic((fs::path(run_dir_) / "results.csv").string(), results_csv_));
  const std::string last = (fs::path(weights_dir_) / "last.pt").string();
  RETURN_IF_ERROR(SaveCheckpoint(last, meta, model_, &ema_->model(), optimizer_.get()));
  if (is_best) {
    RETURN_IF_ERROR(SaveCheckpoint((fs::path(weights_dir_) / "best.pt").string(), meta, model_,
                                   &ema_->model(), optimizer_.get()));
  }
  const int64_t period = settings_.save_period;
  if (period > 0 && (epoch + 1) % period == 0) {
    RETURN_IF_ERROR(
        SaveCheckpoint((fs::path(weights_dir_) / absl::StrCat("epoch", epoch + 1, ".pt")).string(),
                       meta, model_, &ema_->model(), optimizer_.get()));
  }
  return absl::OkStatus();
}

void TrainRun::ServeCleanup() {
  if (hooks_.cleanup_requested == nullptr || !hooks_.cleanup_requested->exchange(false)) return;
  CleanupReport report;
  report.rss_before_bytes = CurrentRssBytes(*hooks_.proc);
  const int64_t cpu = EmptyCpuCache();
  const int64_t cuda = EmptyDeviceCache(device_);
  int64_t dataset = train_loader_ ? train_loader_->DropRamCache() : 0;
  if (val_loader_) dataset += val_loader_->DropRamCache();
  malloc_trim(0);
  report.rss_after_bytes = CurrentRssBytes(*hooks_.proc);
  report.detail = absl::StrFormat("cpu cache %.1f MB, cuda cache %.1f MB, dataset cache %.1f MB",
                                  cpu / 1e6, cuda / 1e6, dataset / 1e6);
  spdlog::info("cleanup: {}; RSS {:.0f} -> {:.0f} MB", report.detail, report.rss_before_bytes / 1e6,
               report.rss_after_bytes / 1e6);
  if (hooks_.on_cleanup) hooks_.on_cleanup(report);
}

// Rewrites last.pt and best.pt without optimizer state: the EMA weights become the model.
absl::Status TrainRun::Finish() {
  for (const char* name : {"last.pt", "best.pt"}) {
    const std::string path = (fs::path(weights_dir_) / name).string();
    if (!fs::exists(path)) continue;
    ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, LoadCheckpoint(path));
    ckpt.meta.epoch = -1;
    ckpt.meta.updates = 0;
    RETURN_IF_ERROR(SaveCheckpoint(path, ckpt.meta, ckpt.model, nullptr, nullptr));
    spdlog::info("Optimizer stripped from {}, {:.1f}MB", path, fs::file_size(path) / 1e6);
  }
  return absl::OkStatus();
}

absl::Status TrainRun::JoinRanks() {
  if (dist_.local_rank == 0) {
    if (!hooks_.launch_ranks) {
      return absl::FailedPreconditionError(
          "data-parallel training is started by yolo-worker train, which launches the ranks");
    }
    ASSIGN_OR_RETURN(dist_.master_port, hooks_.launch_ranks(dist_));
  }
  spdlog::info("DDP: rank {} of {} (node {} of {}), rendezvous {}:{}, {}", dist_.rank,
               dist_.world_size, dist_.node_rank, dist_.nnodes, dist_.master_addr,
               dist_.master_port, dist_.gpus.empty() ? "Gloo" : "NCCL");
  // The rendezvous waits this long for every rank; collectives wait as long as Ultralytics
  // lets them (3 hours), since rank 0 validates while the others wait.
  ASSIGN_OR_RETURN(group_, DistributedGroup::Join(dist_, std::chrono::seconds(10800)));
  return absl::OkStatus();
}

bool TrainRun::AnyRank(bool local) {
  if (!group_) return local;
  at::Tensor flag = at::full({1}, local ? 1.0 : 0.0, at::kDouble);
  group_->AllReduceMax(flag);
  return flag.item<double>() > 0;
}

int TrainRun::FromRankZero(int value) {
  if (!group_) return value;
  at::Tensor v = at::full({1}, static_cast<double>(value), at::kDouble);
  group_->Broadcast({v}, 0);
  return static_cast<int>(v.item<double>());
}

absl::StatusOr<TrainOutcome> TrainRun::Run() {
  RETURN_IF_ERROR(Setup());
  TrainOutcome outcome;
  outcome.run_dir = run_dir_;
  run_start_ = Clock::now();
  int epoch = start_epoch_;
  if (finish_only_) {
    spdlog::info("round_end={}: {} holds epoch {} already; finishing the run there", round_end_,
                 resume_from_->path, start_epoch_);
  } else {
    spdlog::info("Starting training for {} epochs...", settings_.epochs);
  }
  for (; !finish_only_ && epoch < settings_.epochs; ++epoch) {
    absl::StatusOr<EpochTraining> attempt = TryTrainEpoch(epoch);
    // Data-parallel ranks cannot retry alone: the run ends out of memory and yolod resumes it
    // from last.pt at half the batch.
    while (!attempt.ok() && attempt.status().code() == absl::StatusCode::kResourceExhausted &&
           oom_retries_ < kMaxOomRetries && settings_.batch > 1 && !group_) {
      RETURN_IF_ERROR(RecoverFromOom(epoch, attempt.status()));
      attempt = TryTrainEpoch(epoch);
    }
    if (!attempt.ok()) return attempt.status();
    const EpochTraining trained = *std::move(attempt);
    if (trained.stopped) {
      spdlog::warn("stop requested: ending in epoch {}; {} holds epoch {}", epoch + 1,
                   (fs::path(weights_dir_) / "last.pt").string(), epoch);
      outcome.stopped = true;
      break;
    }
    const ValidationResult val = main_ ? ValidateEpoch(epoch) : ValidationResult{};
    RETURN_IF_ERROR(RecordEpoch(epoch, trained, val));
    InjectLeak();
    outcome.epochs_completed = epoch + 1 - start_epoch_;
    if (FromRankZero(main_ && ShouldStopEarly(epoch))) {
      ++epoch;
      break;
    }
    if (epoch + 1 == round_end_ && epoch + 1 < settings_.epochs) {
      spdlog::info("round_end={}: this round is done; {} resumes the run at epoch {}", round_end_,
                   (fs::path(weights_dir_) / "last.pt").string(), epoch + 2);
      outcome.round_ended = true;
      ++epoch;
      break;
    }
    // The safe point: this epoch is checkpointed, the next has not begun.
    if (epoch + 1 < settings_.epochs) {
      std::optional<std::string> reason;
      if (hooks_.policy != nullptr) reason = hooks_.policy->Take();
      // yolod asks rank 0; every rank applies it, so that they keep splitting the same batch.
      if (FromRankZero(reason.has_value())) {
        RETURN_IF_ERROR(ApplyPressurePolicy(epoch, reason.value_or("rank 0's memory policy")));
      }
    }
  }
  if (group_) group_->Barrier();  // every rank is done before rank 0 concludes alone
  if (train_seconds_total_ > 0) {
    outcome.train_images_per_second = train_images_total_ / train_seconds_total_;
  }
  if (!outcome.stopped && !outcome.round_ended && main_) {
    RETURN_IF_ERROR(Conclude(epoch - start_epoch_, &outcome));
  }
  outcome.peak_rss_bytes = PeakRssBytes();
  if (auto self = hooks_.proc->Self(); self.ok() && measured_training_peak_) {
    outcome.training_peak_rss_bytes = self->peak_rss_bytes;
  }
  return outcome;
}

EpochTraining TrainRun::TrainEpoch(int epoch) {
  const RunSettings& s = settings_;
  const int nb = train_loader_->BatchesPerEpoch();
  const int64_t nw = WarmupIterations(s.warmup_epochs, nb);
  const double lf = LrFactor(epoch, s.epochs, s.lrf, s.cos_lr);
  for (size_t g = 0; g < initial_lr_.size(); ++g) SetGroupLr(*optimizer_, g, initial_lr_[g] * lf);
  const bool mosaic = s.close_mosaic_epoch < 0 || epoch < s.close_mosaic_epoch;
  if (epoch == s.close_mosaic_epoch) spdlog::info("Closing dataloader mosaic");
  train_loader_->StartEpoch(epoch, mosaic);
  model_->train();
  optimizer_->zero_grad();
  EpochTraining out;
  std::array<double, 3>& tloss = out.loss;
  const auto epoch_start = Clock::now();
  auto last_log = epoch_start;
  if (main_) {
    std::printf("\n%11s%11s%11s%11s%11s%11s%11s\n", "Epoch", "GPU_mem", "box_loss", "cls_loss",
                "dfl_loss", "Instances", "Size");
  }
  int& i = out.batches;
  const bool inject_oom = fault_oom_epoch_ == epoch + 1 && settings_.batch == first_batch_;
  bool stopped = false;
  while (auto batch = train_loader_->Next()) {
    if (AnyRank(StopRequested())) {
      stopped = true;
      break;
    }
    if (inject_oom && i == nb / 2) {  // mid-epoch, as a real one would come
      TORCH_CHECK(false, "DefaultCPUAllocator: not enough memory: you tried to allocate ",
                  static_cast<int64_t>(settings_.batch) << 30,
                  " bytes (injected by fault_oom_epoch=", fault_oom_epoch_, ")");
    }
    const int64_t ni = i + static_cast<int64_t>(nb) * epoch;
    if (ni <= nw) {
      accumulate_ = AccumulateCount(ni, nw, s.nbs, s.batch);
      for (size_t g = 0; g < initial_lr_.size(); ++g) {
        const double from = g == 0 ? choice_.warmup_bias_lr : 0.0;
        SetGroupLr(*optimizer_, g, Interp(ni, 0, nw, from, initial_lr_[g] * lf));
        SetGroupMomentum(*optimizer_, g, Interp(ni, 0, nw, s.warmup_momentum, s.momentum));
      }
    }
    CpuStepScope step;  // the allocator places this step's buffers as it placed the last's
    at::Tensor input = ModelInput(*batch, device_);
    if (reducer_) reducer_->BeforeForward();
    SetAutocast(amp_);
    std::vector<at::Tensor> raw = model_->forward(input);
    SetAutocast(false);
    if (amp_) {
      for (auto& r : raw) r = r.to(at::kFloat);  // the loss runs in fp32
    }
    LossOutput loss = (*loss_)(raw, batch->targets);
    at::Tensor items = loss.items.to(at::kCPU, at::kDouble);
    if (group_) {
      // Each rank's loss is its images' share of the whole batch's (the normaliser is summed
      // over the ranks), times this rank's batch. One process with the whole batch B = W x b
      // would back-propagate B x (the sum of the shares); the reducer averages the W ranks'
      // gradients, so each rank's loss is scaled by W x W: W for the average, W for b -> B.
      // (Ultralytics scales by W and normalises per rank, which is the same on average.)
      const double w = dist_.world_size;
      loss.total = loss.total * (w * w);
      group_->AllReduceSum(items);  // the whole batch's loss items, as one process logs them
      reducer_->BeforeBackward(raw);
    }
    loss.total.backward();
    for (int k = 0; k < 3; ++k) tloss[k] = (tloss[k] * i + items[k].item<double>()) / (i + 1);
    if (ni - last_opt_step_ >= accumulate_) {
      torch::nn::utils::clip_grad_norm_(model_->parameters(), 10.0);
      optimizer_->step();
      optimizer_->zero_grad();
      ema_->Update(model_);
      last_opt_step_ = ni;
    }
    input = at::Tensor();  // on a GPU, the batch's copy there
    raw.clear();
    step.Done();
    out.images += static_cast<int>(batch->info.size());
    out.last_instances = batch->instances;
    ++i;
    if (hooks_.on_batch) {
      BatchReport report;
      report.epoch = epoch + 1, report.epochs = s.epochs, report.batch = i, report.batches = nb;
      report.box_loss = tloss[0], report.cls_loss = tloss[1], report.dfl_loss = tloss[2];
      report.images_per_second =  // every rank's, each with about as many
          out.images * dist_.world_size / std::max(Since(epoch_start), 1e-9);
      report.gpu_reserved_bytes = GpuReservedBytes(device_);
      report.cuda = CudaAllocatorStatsOf(device_);
      hooks_.on_batch(report);
    }
    ServeCleanup();
    if (main_ && Since(last_log) > 10 && i < nb) {
      std::printf("%11s%11s%11.4g%11.4g%11.4g%11d%11d  %d/%d\n",
                  absl::StrCat(epoch + 1, "/", s.epochs).c_str(), GpuMem(device_).c_str(), tloss[0],
                  tloss[1], tloss[2], out.last_instances, s.imgsz, i, nb);
      std::fflush(stdout);
      last_log = Clock::now();
    }
  }
  out.stopped = AnyRank(stopped || StopRequested());
  if (out.stopped) return out;
  if (group_) {  // the images every rank trained on
    at::Tensor images = at::full({1}, static_cast<double>(out.images), at::kDouble);
    group_->AllReduceSum(images);
    out.images = static_cast<int>(images.item<double>());
  }
  out.seconds = Since(epoch_start);
  train_seconds_total_ += out.seconds;
  train_images_total_ += out.images;
  if (main_) {
    std::printf("%11s%11s%11.4g%11.4g%11.4g%11d%11d  %d/%d %.1fs %.1f img/s\n",
                absl::StrCat(epoch + 1, "/", s.epochs).c_str(), GpuMem(device_).c_str(), tloss[0],
                tloss[1], tloss[2], out.last_instances, s.imgsz, i, nb, out.seconds,
                out.images / out.seconds);
    std::fflush(stdout);
  }
  for (size_t g = 0; g < 3 && g < initial_lr_.size(); ++g) out.lr[g] = GroupLr(*optimizer_, g);
  return out;
}

ValidationResult TrainRun::ValidateEpoch(int epoch) {
  if (!settings_.validate && epoch + 1 != settings_.epochs) return {};  // the last one always
  // Validation allocates other shapes than training: give back the cached training blocks
  // before it and its own after it, so that peak memory is the larger of the two phases rather
  // than their sum. YOLO_EPOCH_CLEANUP=0 keeps them (bench/memory_tradeoffs.sh measures both).
  static const bool cleanup = [] {
    const char* v = std::getenv("YOLO_EPOCH_CLEANUP");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  if (cleanup) EmptyCpuCache();
  ValidationResult val =
      Validate(ema_->model(), *val_loader_, val_loss_ ? val_loss_.get() : loss_.get(),
               settings_.nms, device_);
  if (cleanup) EmptyCpuCache();
  std::printf("%s", FormatValidationTable(val.metrics, data_.names, false).c_str());
  std::fflush(stdout);
  return val;
}

absl::Status TrainRun::RecordEpoch(int epoch, const EpochTraining& trained,
                                   const ValidationResult& val) {
  const double fitness = val.metrics.Fitness();
  const bool is_best = !have_best_ || fitness >= best_fitness_;
  if (is_best) {
    best_fitness_ = fitness;
    have_best_ = true;
    best_epoch_ = epoch;
  }
  results_csv_ += ResultsRow(epoch + 1, time_offset_ + Since(run_start_), trained.loss, val.metrics,
                             val.loss, trained.lr);
  if (settings_.save && main_) RETURN_IF_ERROR(SaveEpoch(epoch, is_best));
  if (hooks_.on_epoch_end) {
    EpochReport report;
    report.epoch = epoch + 1;
    report.epochs = settings_.epochs;
    report.box_loss = trained.loss[0], report.cls_loss = trained.loss[1],
    report.dfl_loss = trained.loss[2];
    report.metrics = val.metrics;
    report.train_seconds = trained.seconds;
    report.images_per_second = trained.images / trained.seconds;
    report.fitness = fitness;
    hooks_.on_epoch_end(report);
  }
  ServeCleanup();
  return absl::OkStatus();
}

bool TrainRun::ShouldStopEarly(int epoch) const {
  if (best_epoch_ < 0 || epoch - best_epoch_ < settings_.patience) return false;
  spdlog::info(
      "Stopping training early as no improvement observed in last {} epochs. Best results "
      "observed at epoch {}",
      settings_.patience, best_epoch_ + 1);
  return true;
}

absl::Status TrainRun::Conclude(int epochs_done, TrainOutcome* outcome) {
  spdlog::info("{} epochs completed in {:.3f} hours.", epochs_done, Since(run_start_) / 3600);
  if (settings_.save) {
    RETURN_IF_ERROR(Finish());
    const std::string best = (fs::path(weights_dir_) / "best.pt").string();
    ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, LoadCheckpoint(best));
    spdlog::info("Validating {}...", best);
    ckpt.model->to(device_);
    ValidationResult val = Validate(ckpt.model, *val_loader_, nullptr, settings_.nms, device_);
    std::printf("%s", FormatValidationTable(val.metrics, data_.names, settings_.verbose).c_str());
    std::printf("Speed: %.1fms inference, %.1fms postprocess per image\n",
                val.inference_ms_per_image, val.postprocess_ms_per_image);
    outcome->best = val.metrics;
  }
  std::printf("Results saved to %s\n", run_dir_.c_str());
  std::fflush(stdout);
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<TrainOutcome> Train(const TrainArgs& args, const TrainHooks& hooks) {
  TrainRun run(args, hooks);
  try {
    return run.Run();
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    // CUDA's "CUDA out of memory" and the CPU allocator's "DefaultCPUAllocator: not enough
    // memory" are both c10 errors; they get their own code so that the exit says so.
    if (absl::StrContains(what, "out of memory") || absl::StrContains(what, "not enough memory")) {
      return absl::ResourceExhaustedError(absl::StrCat("out of memory: ", what));
    }
    return absl::InternalError(absl::StrCat("LibTorch: ", what));
  } catch (const cv::Exception& e) {
    if (e.code == cv::Error::StsNoMem) {
      return absl::ResourceExhaustedError(absl::StrCat("out of memory in OpenCV: ", e.what()));
    }
    return absl::InternalError(absl::StrCat("OpenCV: ", e.what()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory: an allocation failed (std::bad_alloc)");
  } catch (const std::exception& e) {  // std::filesystem and the rest of the standard library
    return absl::InternalError(e.what());
  }
}
}  // namespace yolo
