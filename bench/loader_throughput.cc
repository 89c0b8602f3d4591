// The training data pipeline alone, no model: yolod's BatchLoader with the training
// augmentations (mosaic, random affine, HSV, flips) as `train` runs it, timed over a number of
// batches after a warm-up. Run by hand (bench/loader_throughput.sh prints the table):
//   build/bench/loader_throughput data=D imgsz=S workers=W [cache=ram] [batch=16] [batches=40]
//       [warmup=5] [profile=True] [any other train argument, e.g. mosaic=0]
// Prints "N images/s" on its first line; profile=True adds where the time went (summed over
// the loader's threads), the images decoded and the recent-image buffer's hits.
#include <chrono>
#include <cstdio>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/data_config.h"
#include "common/train_args.h"
#include "server/worker/train/dataset.h"
#include "server/worker/train/loader.h"
#include "server/worker/train/run_support.h"

namespace {

double PeakRssMb() {
  FILE* f = std::fopen("/proc/self/status", "r");
  double kb = 0;
  char line[256];
  while (f != nullptr && std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "VmHWM: %lf kB", &kb) == 1) break;
  }
  if (f != nullptr) std::fclose(f);
  return kb / 1024;
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "error: %s\nusage: loader_throughput data=D imgsz=S workers=W [cache=ram] "
               "[batch=16] [batches=40] [warmup=5] [profile=True] [train arguments]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  cv::setNumThreads(1);  // as in yolo-worker: parallelism comes from the loader's threads
  int batches = 40, warmup = 5;
  bool profile = false;
  std::vector<std::string> tokens;
  for (int i = 1; i < argc; ++i) {
    const std::string t = argv[i];
    const std::string key = t.substr(0, t.find('=')), value = t.substr(t.find('=') + 1);
    if (key == "batches" || key == "warmup") {
      if (!absl::SimpleAtoi(value, key == "batches" ? &batches : &warmup)) {
        return Usage((key + " must be an integer").c_str());
      }
    } else if (key == "profile") {
      profile = value == "True" || value == "true" || value == "1";
    } else {
      tokens.push_back(t);
    }
  }
  yolo::TrainArgs args;
  if (absl::Status s = args.ParseTokens(tokens); !s.ok()) return Usage(s.ToString().c_str());
  if (args.IsNull("data")) return Usage("data= is required");
  auto data = yolo::LoadDataConfig(args.GetString("data"));
  if (!data.ok()) return Usage(data.status().ToString().c_str());
  const int workers = static_cast<int>(args.GetInt("workers"));
  auto scan = yolo::ScanDataset(data->train, data->nc(), false, std::max(workers, 1));
  if (!scan.ok()) return Usage(scan.status().ToString().c_str());
  const int imgsz = static_cast<int>(args.GetInt("imgsz"));
  const int batch = static_cast<int>(args.GetInt("batch"));
  yolo::LoaderOptions options =
      yolo::TrainLoaderOptions(args, imgsz, batch, static_cast<int>(args.GetInt("epochs")));
  yolo::BatchLoader loader(scan->images, options);
  if (absl::Status s = loader.PrepareCache(); !s.ok()) return Usage(s.ToString().c_str());
  // Epoch after epoch, mosaic on, as training runs before close_mosaic.
  int epoch = 0;
  loader.StartEpoch(epoch, /*mosaic=*/true);
  auto next = [&] {
    std::optional<yolo::Batch> b = loader.Next();
    while (!b) {
      loader.StartEpoch(++epoch, true);
      b = loader.Next();
    }
    return static_cast<int>(b->images.size(0));
  };
  for (int i = 0; i < warmup; ++i) next();
  const yolo::LoaderProfile before = loader.Profile();
  const auto t0 = std::chrono::steady_clock::now();
  int images = 0;
  for (int i = 0; i < batches; ++i) images += next();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%.1f images/s\n", images / seconds);
  if (profile) {
    const yolo::LoaderProfile after = loader.Profile();
    const double built = static_cast<double>(after.images - before.images);
    std::printf("%d images in %.2f s, %d workers, peak RSS %.0f MB\n", images, seconds, workers,
                PeakRssMb());
    for (int s = 0; s < yolo::LoaderProfile::kStages; ++s) {
      std::printf("  %-18s %7.3f ms/image\n", yolo::LoaderProfile::Name(s),
                  (after.ns[s] - before.ns[s]) / 1e6 / built);
    }
    std::printf("  decodes per image %.2f, recent-buffer hits per image %.2f\n",
                (after.decodes - before.decodes) / built,
                (after.recent_hits - before.recent_hits) / built);
  }
  return 0;
}
