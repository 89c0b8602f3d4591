#include "server/worker/train/shapes_dataset.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/atomic_file.h"
#include "server/worker/train/dataset.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

TEST(ShapesDatasetTest, WritesAValidDeterministicDataset) {
  const fs::path root = fs::temp_directory_path() / ("shapes_test_" + std::to_string(::getpid()));
  ShapesOptions o;
  o.train = 6, o.val = 3, o.imgsz = 64, o.seed = 5;
  o.out_dir = (root / "a").string();
  ASSERT_TRUE(MakeShapesDataset(o).ok());
  o.out_dir = (root / "b").string();
  ASSERT_TRUE(MakeShapesDataset(o).ok());
  auto config = LoadDataConfig((root / "a" / "data.yaml").string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->names, (std::vector<std::string>{"circle", "rectangle", "triangle"}));
  auto scan = ScanDataset(config->train, config->nc(), false, 1);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->images.size(), 6u);
  EXPECT_EQ(scan->skipped_lines, 0);
  EXPECT_GE(scan->instances, 6);
  EXPECT_LE(scan->instances, 36);
  std::string a, b;
  ASSERT_TRUE(ReadFile((root / "a/labels/train/train_00004.txt").string(), &a).ok());
  ASSERT_TRUE(ReadFile((root / "b/labels/train/train_00004.txt").string(), &b).ok());
  EXPECT_EQ(a, b);
  // Re-running with the same options is a no-op; other options in the same folder are refused.
  o.out_dir = (root / "a").string();
  EXPECT_TRUE(MakeShapesDataset(o).ok());
  o.seed = 6;
  EXPECT_EQ(MakeShapesDataset(o).code(), absl::StatusCode::kAlreadyExists);
  fs::remove_all(root);
}

TEST(ShapesDatasetTest, MixedKindHasFiveClassesAndImagesOfMixedSizesAndFormats) {
  const fs::path root = fs::temp_directory_path() / ("mixed_test_" + std::to_string(::getpid()));
  ShapesOptions o;
  o.train = 12, o.val = 2, o.imgsz = 160, o.mixed = true;
  o.out_dir = root.string();
  ASSERT_TRUE(MakeShapesDataset(o).ok());
  auto config = LoadDataConfig((root / "data.yaml").string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->nc(), 5);
  auto scan = ScanDataset(config->train, config->nc(), false, 1);
  ASSERT_TRUE(scan.ok()) << scan.status();
  ASSERT_EQ(scan->images.size(), 12u);
  EXPECT_EQ(scan->skipped_lines, 0);
  int png = 0, non_square = 0;
  for (const ImageRecord& r : scan->images) {
    png += fs::path(r.path).extension() == ".png";
    non_square += r.width != r.height;
    EXPECT_LE(std::max(r.width, r.height), 160) << r.path;
    EXPECT_GE(std::max(r.width, r.height), 59) << r.path;  // 3/8 of 160, rounded
    EXPECT_LE(std::max(r.width, r.height), 2 * std::min(r.width, r.height) + 1) << r.path;
  }
  EXPECT_EQ(png, 6);
  EXPECT_GE(non_square, 10);
  fs::remove_all(root);
}

}  // namespace
}  // namespace yolo
