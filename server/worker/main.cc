// yolo-worker: the training process. Usable on its own with Ultralytics-style arguments:
//   yolo-worker train data=coco.yaml model=yolov8n epochs=100 imgsz=640
//   yolo-worker val model=runs/detect/train/weights/best.pt [data=...] [format=json]
//   yolo-worker info model=yolov8n nc=80 imgsz=640
//   yolo-worker make-dataset shapes out=DIR train=256 val=64 imgsz=320 seed=0
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/train_args.h"
#include "common/worker_exit.h"
#include "server/worker/ranks.h"
#include "server/worker/reporter.h"
#include "server/worker/train/checkpoint.h"
#include "server/worker/train/cpu_allocator.h"
#include "server/worker/train/model.h"
#include "server/worker/train/run_support.h"
#include "server/worker/train/shapes_dataset.h"
#include "server/worker/train/trainer.h"
#include "server/worker/train/val_command.h"

namespace {

using yolo::worker_exit::kError;
using yolo::worker_exit::kOutOfMemory;
using yolo::worker_exit::kRoundEnded;
using yolo::worker_exit::kStopped;
using yolo::worker_exit::kSucceeded;
using yolo::worker_exit::kUsage;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_cleanup{false};
yolo::PolicyRequest g_policy;

void OnSignal(int) { g_stop = true; }

void PrintUsage() {
  std::printf(
      "usage: yolo-worker <command> [key=value ...]\n\n"
      "commands:\n"
      "  train         train a detector: data=data.yaml model=yolov8n epochs=100 imgsz=640 ...\n"
      "  val           validate a checkpoint: model=.../best.pt [data=...] [format=json]\n"
      "  info          model summary: model=yolov8n nc=80 imgsz=640\n"
      "  make-dataset  make-dataset shapes out=DIR train=256 val=64 imgsz=320 seed=0\n"
      "                (mixed-shapes instead of shapes: 5 classes, mixed sizes and aspects,\n"
      "                JPEG and PNG, long side up to imgsz; width=W height=H: shapes images\n"
      "                of W x H instead of imgsz x imgsz, e.g. 4000x3000 photo-sized)\n"
      "  args          list every argument with its default\n\n"
      "Arguments use Ultralytics' names and defaults (default.yaml).\n");
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? kUsage : kError;
}

int RunMakeDataset(const std::vector<std::string>& tokens) {
  if (tokens.empty() || (tokens[0] != "shapes" && tokens[0] != "mixed-shapes")) {
    std::fprintf(stderr,
                 "error: make-dataset: the generated datasets are 'shapes' and 'mixed-shapes'\n");
    return kUsage;
  }
  yolo::ShapesOptions o;
  o.mixed = tokens[0] == "mixed-shapes";
  for (size_t i = 1; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    const size_t eq = t.find('=');
    const std::string key = t.substr(0, eq),
                      value = eq == std::string::npos ? "" : t.substr(eq + 1);
    int n = 0;
    uint64_t seed = 0;
    bool ok = true;
    if (key == "out" && !value.empty()) {
      o.out_dir = value;
    } else if (key == "train" || key == "val" || key == "imgsz" || key == "width" ||
               key == "height") {
      ok = absl::SimpleAtoi(value, &n);
      (key == "train"    ? o.train
       : key == "val"    ? o.val
       : key == "width"  ? o.width
       : key == "height" ? o.height
                         : o.imgsz) = n;
    } else if (key == "seed") {
      ok = absl::SimpleAtoi(value, &seed);
      o.seed = seed;
    } else {
      std::fprintf(stderr,
                   "error: make-dataset: unknown argument '%s' (out, train, val, imgsz, width, "
                   "height, seed)\n",
                   t.c_str());
      return kUsage;
    }
    if (!ok) {
      std::fprintf(stderr, "error: make-dataset: argument '%s': '%s' is not an integer\n",
                   key.c_str(), value.c_str());
      return kUsage;
    }
  }
  absl::Status s = yolo::MakeShapesDataset(o);
  if (!s.ok()) return Fail(s);
  std::printf("%s/data.yaml\n", o.out_dir.c_str());
  return 0;
}

int RunInfo(const yolo::TrainArgs& args) {
  const std::string model = args.IsNull("model") ? "yolov8n" : args.GetString("model");
  const int imgsz = static_cast<int>(args.GetInt("imgsz"));
  yolo::DetectionModel m{nullptr};
  if (model.size() > 3 && model.substr(model.size() - 3) == ".pt") {
    auto ckpt = yolo::LoadCheckpoint(model);
    if (!ckpt.ok()) return Fail(ckpt.status());
    m = ckpt->model;
  } else {
    auto scale = yolo::ScaleFromName(model);
    if (!scale.ok()) return Fail(scale.status());
    m = yolo::DetectionModel(*scale, static_cast<int>(args.GetInt("nc")));
  }
  std::printf("%s\n", yolo::ModelSummary(m, imgsz).c_str());
  return 0;
}

int RunVal(const yolo::TrainArgs& args) {
  auto out = yolo::Val(args);
  if (!out.ok()) return Fail(out.status());
  const yolo::MetricsSummary& m = out->result.metrics;
  if (args.GetString("format") == "json") {
    // Ultralytics' metric names; the keys in this order.
    nlohmann::ordered_json per_class = nlohmann::ordered_json::array();
    for (const auto& c : m.per_class) {
      const std::string name = c.cls < static_cast<int>(out->names.size()) ? out->names[c.cls] : "";
      per_class.push_back({{"class", c.cls},
                           {"name", name},
                           {"images", c.images},
                           {"instances", c.labels},
                           {"precision", c.precision},
                           {"recall", c.recall},
                           {"mAP50", c.ap50},
                           {"mAP50-95", c.ap}});
    }
    const nlohmann::ordered_json json = {
        {"metrics/precision(B)", m.precision},
        {"metrics/recall(B)", m.recall},
        {"metrics/mAP50(B)", m.map50},
        {"metrics/mAP50-95(B)", m.map},
        {"fitness", m.Fitness()},
        {"images", m.images},
        {"instances", m.instances},
        {"speed",
         {{"inference_ms", out->result.inference_ms_per_image},
          {"postprocess_ms", out->result.postprocess_ms_per_image}}},
        {"per_class", per_class}};
    std::printf("%s\n",
                json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s", yolo::FormatValidationTable(m, out->names, args.GetBool("verbose")).c_str());
    std::printf("Speed: %.1fms inference, %.1fms postprocess per image\n",
                out->result.inference_ms_per_image, out->result.postprocess_ms_per_image);
  }
  return 0;
}

// YOLOD_WORKER_SECRET, wiped from the environment block as well, so that /proc/<pid>/environ
// does not show it for the rest of the run.
std::string TakeSecret() {
  char* value = std::getenv("YOLOD_WORKER_SECRET");
  if (value == nullptr) return "";
  std::string secret(value);
  std::memset(value, 'x', secret.size());
  unsetenv("YOLOD_WORKER_SECRET");
  return secret;
}

// Data-parallel training: the node's other ranks, started when the trainer knows the layout.
struct Ranks {
  std::unique_ptr<yolo::RankLauncher> launcher;
  std::vector<std::string> argv;
};

// When a rank fails, rank 0's collectives fail too as soon as they notice the closed
// connection; should it sit elsewhere (validating, say), this ends it with the reason after a
// grace period.
void ExitAfterGrace(const yolo::RankLauncher::Failure& f) {
  std::thread([f] {
    std::this_thread::sleep_for(std::chrono::seconds(30));
    std::fprintf(stderr, "error: %s; the run stops (weights/last.pt resumes it)\n",
                 f.reason.c_str());
    std::fflush(stderr);
    _exit(f.exit_code);
  }).detach();
}

int RunTrain(const yolo::TrainArgs& args, const std::vector<std::string>& argv) {
  yolo::TrainHooks hooks;
  hooks.stop_requested = &g_stop;
  Ranks ranks;
  ranks.argv = argv;
  hooks.launch_ranks = [&ranks](const yolo::DistributedConfig& c) -> absl::StatusOr<int> {
    int port = c.master_port;
    if (port == 0) {
      ASSIGN_OR_RETURN(port, yolo::FreeLoopbackPort());
    }
    yolo::RankLauncher::Options o;
    o.first_rank = c.rank + 1;
    o.local_ranks = c.local_world_size;
    o.master_port = port;
    o.argv = ranks.argv;
    ASSIGN_OR_RETURN(ranks.launcher, yolo::RankLauncher::Start(o));
    ranks.launcher->set_on_failure(ExitAfterGrace);
    return port;
  };
  // Started by yolod: stop (with a checkpoint) if yolod goes away, report to it and obey its
  // commands.
  if (const char* parent = std::getenv("YOLOD_PID")) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (std::to_string(getppid()) != parent) g_stop = true;  // yolod died before prctl
    // Below yolod, before LibTorch's threads exist (they inherit it).
    if (const char* nice = std::getenv("YOLOD_WORKER_NICE")) {
      setpriority(PRIO_PROCESS, 0, std::atoi(nice));
    }
    if (const char* roots = std::getenv("YOLOD_ALLOWED_ROOTS"); roots && *roots) {
      hooks.allowed_roots = absl::StrSplit(roots, '\n');
    }
  }
  std::unique_ptr<yolo::WorkerReporter> reporter;
  const char* socket = std::getenv("YOLOD_WORKER_SOCKET");
  const char* experiment = std::getenv("YOLOD_EXPERIMENT_ID");
  if (socket != nullptr && experiment != nullptr) {
    auto connected = yolo::WorkerReporter::Connect(absl::StrCat("unix:", socket), experiment,
                                                   TakeSecret(), &g_stop, &g_cleanup, &g_policy);
    if (!connected.ok()) return Fail(connected.status());
    reporter = std::move(*connected);
    yolo::WorkerReporter* r = reporter.get();
    hooks.cleanup_requested = &g_cleanup;
    hooks.on_batch = [r](const yolo::BatchReport& b) { r->OnBatch(b); };
    hooks.on_epoch_end = [r](const yolo::EpochReport& e) { r->OnEpoch(e); };
    hooks.on_cleanup = [r](const yolo::CleanupReport& c) { r->OnCleanup(c); };
    hooks.policy = &g_policy;
    hooks.on_policy_applied = [r](const yolo::PolicyReport& p) { r->OnPolicyApplied(p); };
    hooks.on_oom_retry = [r](const yolo::OomRetryReport& o) { r->OnOomRetry(o); };
    hooks.on_memory_estimate = [r](const yolo::v1::MemoryEstimate& m) { r->OnMemoryEstimate(m); };
  }
  auto out = yolo::Train(args, hooks);
  if (ranks.launcher) {
    // The others end with rank 0; a rank that failed is the reason, whatever rank 0 then saw
    // (a closed connection, most often).
    ranks.launcher->Finish(out.ok() ? 60 : 0);
    if (auto failure = ranks.launcher->failure()) {
      reporter.reset();
      std::fprintf(stderr, "error: %s; the run stops (weights/last.pt resumes it)\n",
                   failure->reason.c_str());
      return failure->exit_code;
    }
  }
  reporter.reset();
  if (!out.ok()) {
    if (out.status().code() == absl::StatusCode::kResourceExhausted) {
      std::fprintf(stderr, "error: %s\n", std::string(out.status().message()).c_str());
      return kOutOfMemory;
    }
    if (out.status().code() == absl::StatusCode::kCancelled && g_stop) {
      std::fprintf(stderr, "stopped before the first epoch: %s\n",
                   std::string(out.status().message()).c_str());
      return kStopped;
    }
    return Fail(out.status());
  }
  std::printf("training: %.2f images/s (validation excluded), peak RSS %.0f MB",
              out->train_images_per_second, out->peak_rss_bytes / 1e6);
  if (out->training_peak_rss_bytes > 0) {
    std::printf(" (%.0f MB since the memory estimate)", out->training_peak_rss_bytes / 1e6);
  }
  std::printf("\n");
  return out->stopped ? kStopped : out->round_ended ? kRoundEnded : kSucceeded;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> tokens(argv + 1, argv + argc);
  if (!tokens.empty() && tokens[0] == "detect") tokens.erase(tokens.begin());
  if (tokens.empty() || tokens[0] == "help" || tokens[0] == "--help" || tokens[0] == "-h") {
    PrintUsage();
    return tokens.empty() ? kUsage : 0;
  }
  // Logs go to stderr so that stdout carries only results (val format=json).
  spdlog::set_default_logger(spdlog::stderr_color_mt("yolo-worker"));
  spdlog::set_pattern("%^%l%$: %v");
  const std::string command = tokens[0];
  if (command == "train") {
    // Before anything slow, so that a stop that comes while the run starts is not a kill.
    std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
  }
  tokens.erase(tokens.begin());
  if (command == "make-dataset") return RunMakeDataset(tokens);
  if (command == "args") {
    for (const auto& spec : yolo::AllArgSpecs()) {
      std::printf("%-16s %-10s %s\n", spec.key, spec.default_value[0] ? spec.default_value : "null",
                  spec.help);
    }
    return 0;
  }
  if (command != "train" && command != "val" && command != "info") {
    std::fprintf(stderr, "error: unknown command '%s'\n", command.c_str());
    PrintUsage();
    return kUsage;
  }
  yolo::InstallCachingCpuAllocator();
  // YOLO_STEP_PLAN=0 leaves every training step to best fit (for side-by-side measurements).
  if (const char* plan = std::getenv("YOLO_STEP_PLAN");
      plan != nullptr && std::strcmp(plan, "0") == 0) {
    yolo::EnableCpuStepPlans(false);
  }
  yolo::TrainArgs args;
  absl::Status parsed = args.ParseTokens(tokens);
  if (parsed.ok()) parsed = args.Set("mode", command == "info" ? "train" : command);
  if (!parsed.ok()) return Fail(parsed);
  // The last line of defence: whatever escaped the layers below ends the worker with a message
  // and a code that says what happened, never with SIGABRT.
  try {
    if (command == "info") return RunInfo(args);
    if (command == "val") return RunVal(args);
    return RunTrain(args, std::vector<std::string>(argv, argv + argc));
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory: an allocation failed (std::bad_alloc)\n");
    return kOutOfMemory;
  } catch (const cv::Exception& e) {
    std::fprintf(stderr, "error: OpenCV: %s\n", e.what());
    return e.code == cv::Error::StsNoMem ? kOutOfMemory : kError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kError;
  }
}
