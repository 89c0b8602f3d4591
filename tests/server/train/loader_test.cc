#include "server/train/loader.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "server/train/shapes_dataset.h"

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
