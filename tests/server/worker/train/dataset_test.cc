#include "server/worker/train/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>

#include "absl/strings/str_cat.h"
#include "tests/temp_dir.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

// A plain image of w x h pixels at `rel` under `d`.
void WriteImage(const TempDir& d, const std::string& rel, int w = 32, int h = 24) {
  fs::create_directories((d / rel).parent_path());
  cv::imwrite((d / rel).string(), cv::Mat(h, w, CV_8UC3, cv::Scalar(10, 20, 30)));
}

TEST(LabelsTest, ParsesBoxes) {
  auto r = ParseLabels("0 0.5 0.5 0.2 0.4\n2 0.1 0.2 0.1 0.1\n", "a.txt", 3);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->boxes.size(), 2u);
  EXPECT_EQ(r->boxes[1].cls, 2);
  EXPECT_FLOAT_EQ(r->boxes[0].h, 0.4f);
  EXPECT_EQ(r->skipped_lines, 0);
}

TEST(LabelsTest, SkipsEveryKindOfBadLineNamingFileAndLine) {
  const std::string text =
      "0 0.5 0.5 0.2 0.2\n"      // 1 good
      "0 0.5 0.5 0.2\n"          // 2 too few values
      "0 0.5 0.5 0.2 0.2 0.3\n"  // 3 six values
      "x 0.5 0.5 0.2 0.2\n"      // 4 not a number
      "0 1.5 0.5 0.2 0.2\n"      // 5 out of range
      "0 0.5 -0.1 0.2 0.2\n"     // 6 negative
      "1.5 0.5 0.5 0.2 0.2\n"    // 7 fractional class
      "0 0.5 0.5 0 0.2\n"        // 8 zero width
      "0 0.5 0.5 nan 0.2\n"      // 9 nan
      "\n"                       // 10 blank: ignored
      "1 0.3 0.3 0.1 0.1\n";     // 11 good
  auto r = ParseLabels(text, "dir/img.txt", 2);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->boxes.size(), 2u);
  EXPECT_EQ(r->skipped_lines, 8);
  ASSERT_EQ(r->warnings.size(), 8u);
  EXPECT_NE(r->warnings[0].find("dir/img.txt:2"), std::string::npos) << r->warnings[0];
  EXPECT_NE(r->warnings[7].find("dir/img.txt:9"), std::string::npos) << r->warnings[7];
}

TEST(LabelsTest, ClassIdAtOrAboveNcIsAnError) {
  auto r = ParseLabels("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n", "l.txt", 3);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("l.txt:2"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("nc=3"), std::string::npos);
  EXPECT_FALSE(ParseLabels("-1 0.5 0.5 0.2 0.2\n", "l.txt", 3).ok());
}

TEST(LabelsTest, AHugeClassIdIsAnErrorNotAnOverflow) {
  // Once cast to int before the range check (undefined behaviour, found by labels_fuzzer).
  for (const char* id : {"11111111111111", "-1e300", "1e300"}) {
    auto r = ParseLabels(absl::StrCat(id, " 0.5 0.5 0.2 0.2\n"), "l.txt", 3);
    ASSERT_FALSE(r.ok()) << id;
    EXPECT_NE(r.status().message().find("out of range"), absl::string_view::npos) << r.status();
  }
}

TEST(LabelsTest, PolygonBecomesItsBoundingBox) {
  auto r = ParseLabels("1 0.1 0.2 0.5 0.2 0.3 0.6\n", "p.txt", 2);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->boxes.size(), 1u);
  EXPECT_NEAR(r->boxes[0].cx, 0.3, 1e-6);
  EXPECT_NEAR(r->boxes[0].cy, 0.4, 1e-6);
  EXPECT_NEAR(r->boxes[0].w, 0.4, 1e-6);
  EXPECT_NEAR(r->boxes[0].h, 0.4, 1e-6);
}

TEST(LabelsTest, DuplicatesAreDropped) {
  auto r = ParseLabels("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n", "d.txt", 1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->boxes.size(), 1u);
  EXPECT_EQ(r->duplicates, 1);
}

TEST(LabelsTest, LabelPathRule) {
  EXPECT_EQ(LabelPathForImage("/d/images/train/a.jpg"), "/d/labels/train/a.txt");
  EXPECT_EQ(LabelPathForImage("/images/x/images/b.png"), "/images/x/labels/b.txt");
  EXPECT_EQ(LabelPathForImage("/d/imgs/c.jpeg"), "/d/imgs/c.txt");
}

TEST(ScanTest, FoldersListsCorruptImagesAndBackgrounds) {
  TempDir d;
  WriteImage(d, "images/train/a.jpg");
  WriteImage(d, "images/train/sub/b.png");
  WriteImage(d, "images/train/tiny.png", 5, 5);
  d.Write("images/train/broken.jpg", "not an image");
  d.Write("labels/train/a.txt", "0 0.5 0.5 0.2 0.2\n0 9 9\n");
  d.Write("list.txt", "./images/train/a.jpg\nimages/train/sub/b.png\n");
  auto scan = ScanDataset({(d / "images/train").string()}, 1, false, 2);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->found, 4);
  EXPECT_EQ(scan->images.size(), 2u);
  EXPECT_EQ(scan->corrupt_images, 2);
  EXPECT_EQ(scan->skipped_lines, 1);
  EXPECT_EQ(scan->backgrounds, 1);
  EXPECT_EQ(scan->instances, 1);
  auto listed = ScanDataset({(d / "list.txt").string()}, 1, false, 1);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->images.size(), 2u);
}

TEST(ScanTest, NoUsableImageOrMissingSourceIsAnError) {
  TempDir d;
  d.Write("images/x/broken.jpg", "nope");
  EXPECT_EQ(ScanDataset({(d / "images/x").string()}, 1, false, 1).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ScanDataset({(d / "nothing").string()}, 1, false, 1).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ScanTest, ClassOutOfRangeFailsTheScan) {
  TempDir d;
  WriteImage(d, "images/a.jpg");
  d.Write("labels/a.txt", "5 0.5 0.5 0.2 0.2\n");
  auto scan = ScanDataset({(d / "images").string()}, 3, false, 1);
  ASSERT_FALSE(scan.ok());
  EXPECT_NE(scan.status().message().find("a.txt:1"), std::string::npos);
}

}  // namespace
}  // namespace yolo
