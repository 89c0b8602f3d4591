#include "server/train/shapes_dataset.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/atomic_file.h"
#include "server/train/dataset.h"

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

}  // namespace
}  // namespace yolo
