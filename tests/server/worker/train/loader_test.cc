#include "server/worker/train/loader.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/worker/train/shapes_dataset.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

class LoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("loader_test_" + std::to_string(::getpid()));
    ShapesOptions o;
    o.out_dir = root_.string();
    o.train = 12, o.val = 2, o.imgsz = 96;
    ASSERT_TRUE(MakeShapesDataset(o).ok());
    auto scan = ScanDataset({(root_ / "images/train").string()}, 3, false, 1);
    ASSERT_TRUE(scan.ok());
    records_ = scan->images;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static inline fs::path root_;
  static inline std::vector<ImageRecord> records_;
};

TEST(EpochPlannerTest, ShuffleOrderIsUltralyticsWhateverTheSeed) {
  // Ultralytics 8.1.47's InfiniteDataLoader (workers=0) over 10 images, batch 4, its generator
  // seeded as build_dataloader seeds it, reset() before epoch 2 (close_mosaic): PyTorch 1.13
  // gives these orders.
  EpochPlanner planner(10, 4, /*shuffle=*/true, /*close_mosaic_epoch=*/2);
  const std::vector<std::vector<int>> want = {{3, 6, 1, 0, 5, 7, 2, 8, 9, 4},
                                              {7, 3, 9, 5, 2, 4, 8, 0, 1, 6},
                                              {7, 1, 5, 3, 9, 8, 2, 0, 6, 4},
                                              {2, 1, 5, 6, 4, 0, 8, 7, 9, 3}};
  for (int e = 0; e < 4; ++e) EXPECT_EQ(planner.ForEpoch(e)->order, want[e]) << "epoch " << e;
  // Asking again for an earlier epoch replays the same orders.
  EXPECT_EQ(planner.ForEpoch(1)->order, want[1]);
  // 8 images in whole batches, restarted before epoch 2 and before epoch 0.
  EpochPlanner whole(8, 4, true, 2);
  EXPECT_EQ(whole.ForEpoch(3)->order, (std::vector<int>{4, 7, 5, 1, 6, 3, 2, 0}));
  EpochPlanner at_start(8, 4, true, 0);
  EXPECT_EQ(at_start.ForEpoch(0)->order, (std::vector<int>{4, 1, 3, 5, 0, 6, 7, 2}));
  EXPECT_EQ(at_start.ForEpoch(2)->order, (std::vector<int>{6, 5, 7, 3, 4, 2, 1, 0}));
  EXPECT_EQ(EpochPlanner(10, 4, false, -1).ForEpoch(3)->order,
            (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(EpochPlannerTest, MosaicBufferHoldsTheMostRecentlyLoadedImages) {
  // 20 images, batch 1: a buffer of min(20, 8, 1000) - 1 = 7 images, in file order.
  EpochPlanner planner(20, 1, /*shuffle=*/false, -1);
  auto epoch0 = planner.ForEpoch(0);
  auto buffer = [](const EpochPlanner::Plan& p, int position) {
    std::vector<int> out;
    for (int k = 0; k < p.BufferSize(position); ++k) out.push_back(p.BufferImage(position, k));
    return out;
  };
  EXPECT_EQ(buffer(*epoch0, 0), std::vector<int>{0});  // the first image's partners: itself
  EXPECT_EQ(buffer(*epoch0, 2), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(buffer(*epoch0, 12), (std::vector<int>{6, 7, 8, 9, 10, 11, 12}));
  // The next epoch starts from the previous one's last images, which are not loaded again
  // while they are in the buffer.
  auto epoch1 = planner.ForEpoch(1);
  EXPECT_EQ(buffer(*epoch1, 0), (std::vector<int>{14, 15, 16, 17, 18, 19, 0}));
  EXPECT_EQ(buffer(*epoch1, 6), (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
}

TEST_F(LoaderTest, TrainBatchesAreDeterministicWhateverTheWorkerCount) {
  LoaderOptions o;
  o.imgsz = 64, o.batch = 5, o.augment = true, o.shuffle = true, o.seed = 3;
  o.workers = 0;
  BatchLoader serial(records_, o);
  o.workers = 2;
  BatchLoader threaded(records_, o);
  EXPECT_EQ(serial.BatchesPerEpoch(), 3);
  for (int epoch = 0; epoch < 2; ++epoch) {
    serial.StartEpoch(epoch, /*mosaic=*/true);
    threaded.StartEpoch(epoch, /*mosaic=*/true);
    int batches = 0;
    while (auto a = serial.Next()) {
      auto b = threaded.Next();
      ASSERT_TRUE(b.has_value());
      EXPECT_EQ(a->images.scalar_type(), at::kByte);
      EXPECT_EQ(a->images.size(1), 3);
      EXPECT_EQ(a->images.size(2), 64);
      EXPECT_TRUE(at::equal(a->images, b->images));
      EXPECT_TRUE(at::equal(a->targets.boxes, b->targets.boxes));
      EXPECT_EQ(a->targets.batch_idx.numel(), a->instances);
      if (a->instances > 0) {
        EXPECT_LE(a->targets.boxes.max().item<float>(), 1.0f);
        EXPECT_GE(a->targets.boxes.min().item<float>(), 0.0f);
      }
      ++batches;
    }
    EXPECT_FALSE(threaded.Next().has_value());
    EXPECT_EQ(batches, 3);
  }
}

TEST_F(LoaderTest, RectValidationBatchesKeepOriginalGeometry) {
  LoaderOptions o;
  o.imgsz = 96, o.batch = 4, o.rect = true, o.workers = 1;
  BatchLoader loader(records_, o);
  loader.StartEpoch(0, false);
  auto batch = loader.Next();
  ASSERT_TRUE(batch.has_value());
  // Square 96 px images: ceil(96 / 32 + 0.5) * 32 = 128, centred with 16 px of pad.
  EXPECT_EQ(batch->images.size(2), 128);
  EXPECT_EQ(batch->images.size(3), 128);
  EXPECT_DOUBLE_EQ(batch->info[0].to_batch.gain, 1.0);
  EXPECT_EQ(batch->info[0].to_batch.pad_left, 16);
  EXPECT_EQ(batch->images[0][0][0][0].item<uint8_t>(), 114);
}

TEST_F(LoaderTest, MixUpAddsAnotherSamplesObjects) {
  LoaderOptions o;
  o.imgsz = 64, o.workers = 0, o.augment = true;
  o.hyp.scale = 0, o.hyp.translate = 0;
  BatchLoader plain(records_, o);
  o.hyp.mixup = 1.0;
  BatchLoader mixed(records_, o);
  size_t plain_boxes = 0, mixed_boxes = 0;
  for (int i = 0; i < plain.size(); ++i) {
    plain_boxes += plain.TrainSample(i, 0, true).boxes.size();
    mixed_boxes += mixed.TrainSample(i, 0, true).boxes.size();
  }
  EXPECT_GT(mixed_boxes, plain_boxes);
}

// cache=ram is turned off when the images would not fit in what the kernel says is available.
TEST_F(LoaderTest, RamCacheFollowsMemAvailable) {
  for (const int64_t available_kb : {int64_t{1}, int64_t{64} << 20}) {
    const fs::path proc = root_ / ("proc-" + std::to_string(available_kb));
    fs::create_directories(proc);
    std::ofstream(proc / "meminfo")
        << "MemTotal: 100000000 kB\nMemAvailable: " << available_kb << " kB\n";
    LoaderOptions o;
    o.imgsz = 64, o.batch = 4, o.workers = 0;
    o.cache = CacheMode::kRam;
    o.proc = std::make_shared<ProcProbe>(proc.string());
    BatchLoader loader(records_, o);
    ASSERT_TRUE(loader.PrepareCache().ok());
    loader.StartEpoch(0, /*mosaic=*/false);
    while (loader.Next()) {
    }
    if (available_kb == 1) {
      EXPECT_EQ(loader.DropRamCache(), 0) << "cached although 1 kB was available";
    } else {
      EXPECT_GT(loader.DropRamCache(), 0) << "not cached with 64 GB available";
    }
  }
}

// The memory cgroup's limit counts as the watchdog counts it: a cache that fits the host but
// not the container's limit is turned off.
TEST_F(LoaderTest, RamCacheFollowsTheCgroupLimit) {
  const fs::path tmp = root_ / "cgroup-limit";
  fs::create_directories(tmp / "proc/self");
  fs::create_directories(tmp / "sys");
  std::ofstream(tmp / "proc/meminfo") << "MemTotal: 100000000 kB\nMemAvailable: 90000000 kB\n";
  std::ofstream(tmp / "proc/self/cgroup") << "0::/\n";
  std::ofstream(tmp / "sys/memory.current") << "1000000\n";
  std::ofstream(tmp / "sys/memory.max") << "1001000\n";  // 1 kB left
  std::ofstream(tmp / "sys/memory.stat") << "inactive_file 0\n";
  LoaderOptions o;
  o.imgsz = 64, o.batch = 4, o.workers = 0;
  o.cache = CacheMode::kRam;
  o.proc = std::make_shared<ProcProbe>((tmp / "proc").string());
  o.cgroup = std::make_shared<CgroupProbe>((tmp / "sys").string(), (tmp / "proc").string());
  BatchLoader loader(records_, o);
  ASSERT_TRUE(loader.PrepareCache().ok());
  EXPECT_EQ(loader.DropRamCache(), 0) << "cached beyond the cgroup's limit";
}

// Every batch of two epochs, as bytes and targets.
std::vector<std::pair<std::vector<uint8_t>, std::vector<float>>> TwoEpochs(BatchLoader& loader) {
  std::vector<std::pair<std::vector<uint8_t>, std::vector<float>>> out;
  for (int epoch = 0; epoch < 2; ++epoch) {
    loader.StartEpoch(epoch, /*mosaic=*/true);
    while (auto b = loader.Next()) {
      const at::Tensor img = b->images.contiguous();
      const at::Tensor boxes = b->targets.boxes.contiguous();
      out.emplace_back(
          std::vector<uint8_t>(img.data_ptr<uint8_t>(), img.data_ptr<uint8_t>() + img.numel()),
          std::vector<float>(boxes.data_ptr<float>(), boxes.data_ptr<float>() + boxes.numel()));
    }
  }
  return out;
}

// The recent-image buffer serves mosaic's partners from memory: the same bytes as decoding them
// again, with about one decode per image instead of four.
TEST_F(LoaderTest, RecentBufferGivesTheSameBatchesWithFewerDecodes) {
  LoaderOptions o;
  o.imgsz = 64, o.batch = 4, o.augment = true, o.shuffle = true, o.seed = 5, o.workers = 2;
  o.recent_buffer = false;
  BatchLoader plain(records_, o);
  o.recent_buffer = true;
  BatchLoader buffered(records_, o);
  EXPECT_EQ(TwoEpochs(plain), TwoEpochs(buffered));
  const LoaderProfile p = plain.Profile(), b = buffered.Profile();
  ASSERT_EQ(p.images, 24);
  ASSERT_EQ(b.images, 24);
  EXPECT_GT(static_cast<double>(p.decodes) / p.images, 3.0);
  EXPECT_LT(static_cast<double>(b.decodes) / b.images, 1.5);
  EXPECT_GT(b.recent_hits, 0);
  EXPECT_EQ(RecentImagesCapacity(o, 12), 12);             // never more than the dataset
  EXPECT_EQ(RecentImagesCapacity(o, 10000), 31 + 4 * 4);  // prefetch 4 (2 x workers)
  o.rect = true;
  EXPECT_EQ(RecentImagesCapacity(o, 10000), 0);
}

// With a buffer smaller than the dataset, the loader decodes exactly what the epoch plan loads
// (an image visited while still in the buffer is not decoded again) and every partner comes
// from memory: the buffer lets images go in the order they came, as the plan assumes.
TEST_F(LoaderTest, RecentBufferDecodesWhatThePlanLoads) {
  LoaderOptions o;
  o.imgsz = 64, o.batch = 1, o.augment = true, o.shuffle = true, o.seed = 3, o.workers = 0;
  const int n = static_cast<int>(records_.size());
  ASSERT_GT(n, RecentImagesCapacity(o, n));  // a buffer that must let images go
  BatchLoader loader(records_, o);
  TwoEpochs(loader);
  const LoaderProfile p = loader.Profile();
  ASSERT_EQ(p.images, 2 * n);
  // Exactly the loads the plan counts: each epoch's entries into the buffer.
  EpochPlanner planner(n, o.batch, o.shuffle, o.close_mosaic_epoch);
  const size_t first = planner.ForEpoch(0)->loaded.size();
  const size_t second =
      planner.ForEpoch(1)->loaded.size() - std::min<size_t>(first, planner.ForEpoch(1)->capacity);
  EXPECT_EQ(p.decodes, static_cast<int64_t>(first + second));
  EXPECT_LT(p.decodes, 2 * n);
  EXPECT_EQ(p.decodes + p.recent_hits, 4 * p.images);  // four images a mosaic, each from one
}

// Images four times imgsz decode at 1/4 scale: the training samples keep their boxes exactly
// and their pixels up to resampling (per-channel means within half a level, mean absolute
// difference under 3 levels).
TEST_F(LoaderTest, ReducedDecodeKeepsTheSamples) {
  const fs::path dir = root_ / "large";
  ShapesOptions so;
  so.out_dir = dir.string();
  so.train = 8, so.val = 1, so.width = 320, so.height = 256;
  ASSERT_TRUE(MakeShapesDataset(so).ok());
  auto scan = ScanDataset({(dir / "images/train").string()}, 3, false, 1);
  ASSERT_TRUE(scan.ok());
  LoaderOptions o;
  o.imgsz = 64, o.batch = 4, o.augment = true, o.shuffle = true, o.seed = 1, o.workers = 0;
  o.reduced_decode = false;
  BatchLoader full(scan->images, o);
  o.reduced_decode = true;
  BatchLoader reduced(scan->images, o);
  const auto a = TwoEpochs(full), b = TwoEpochs(reduced);
  ASSERT_EQ(a.size(), b.size());
  double sum_a = 0, sum_b = 0, abs_diff = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].second, b[i].second) << "batch " << i << "'s boxes";
    ASSERT_EQ(a[i].first.size(), b[i].first.size());
    for (size_t k = 0; k < a[i].first.size(); ++k) {
      sum_a += a[i].first[k], sum_b += b[i].first[k];
      abs_diff += std::abs(a[i].first[k] - b[i].first[k]);
    }
    n += static_cast<double>(a[i].first.size());
  }
  EXPECT_NEAR(sum_a / n, sum_b / n, 0.5);
  EXPECT_LT(abs_diff / n, 3.0);
  EXPECT_GT(abs_diff, 0) << "the reduced decode did not run";
}

TEST(NpyTest, RoundTrip) {
  const std::string path =
      (fs::temp_directory_path() / ("npy_" + std::to_string(::getpid()) + ".npy")).string();
  cv::Mat image(7, 5, CV_8UC3);
  cv::randu(image, 0, 255);
  ASSERT_TRUE(WriteNpy(path, image).ok());
  cv::Mat back = ReadNpy(path);
  ASSERT_FALSE(back.empty());
  EXPECT_EQ(cv::norm(image, back, cv::NORM_INF), 0);
  fs::remove(path);
  EXPECT_TRUE(ReadNpy(path).empty());
}

}  // namespace
}  // namespace yolo
