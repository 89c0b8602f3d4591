#include "server/worker/train/image_cache.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "server/worker/train/augment.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

TEST(DecodeScaleTest, LargestScaleThatKeepsTheLongSideAtImgsz) {
  EXPECT_EQ(DecodeScale(640, 320), 2);
  EXPECT_EQ(DecodeScale(639, 320), 2);  // libjpeg rounds up: 320
  EXPECT_EQ(DecodeScale(638, 320), 1);  // 319 would be below imgsz
  EXPECT_EQ(DecodeScale(4000, 320), 8);
  EXPECT_EQ(DecodeScale(4000, 640), 4);
  EXPECT_EQ(DecodeScale(320, 320), 1);
  EXPECT_EQ(DecodeScale(100, 640), 1);
  EXPECT_EQ(DecodeScale(0, 320), 1);  // unknown size: full decode
}

// A smooth test picture with some edges, as a photo would have.
cv::Mat Picture(int w, int h) {
  cv::Mat m(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      m.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uchar>(255.0 * x / w), static_cast<uchar>(255.0 * y / h),
                    static_cast<uchar>(128 + 100 * std::sin(x * 0.01)));
    }
  }
  cv::circle(m, {w / 3, h / 2}, h / 5, cv::Scalar(20, 200, 40), -1);
  cv::rectangle(m, {w / 2, h / 4}, {w * 3 / 4, h * 3 / 4}, cv::Scalar(240, 30, 90), -1);
  return m;
}

// Decoding a large JPEG at a reduced scale and resizing gives the picture a full decode and
// resize give, up to the resampling's rounding; a PNG is decoded in full.
TEST(DecodeForSizeTest, ReducedDecodeMatchesFullDecodeAfterResize) {
  const fs::path dir = fs::temp_directory_path() / ("decode_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const cv::Mat picture = Picture(2000, 1500);
  const std::string jpg = (dir / "a.jpg").string(), png = (dir / "a.png").string();
  ASSERT_TRUE(cv::imwrite(jpg, picture, {cv::IMWRITE_JPEG_QUALITY, 95}));
  ASSERT_TRUE(cv::imwrite(png, picture));
  for (int imgsz : {320, 640}) {
    const cv::Mat reduced = DecodeForSize(jpg, 2000, imgsz);
    ASSERT_FALSE(reduced.empty());
    EXPECT_EQ(reduced.cols, (2000 + DecodeScale(2000, imgsz) - 1) / DecodeScale(2000, imgsz));
    const cv::Mat a = ResizeLongSide(reduced, imgsz);
    const cv::Mat b = ResizeLongSide(cv::imread(jpg, cv::IMREAD_COLOR), imgsz);
    ASSERT_EQ(a.size(), b.size());
    cv::Mat diff;
    cv::absdiff(a, b, diff);
    const cv::Scalar mean_diff = cv::mean(diff);
    for (int c = 0; c < 3; ++c) EXPECT_LT(mean_diff[c], 2.0) << "imgsz " << imgsz << " ch " << c;
    const cv::Scalar ma = cv::mean(a), mb = cv::mean(b);
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(ma[c], mb[c], 0.5);
  }
  EXPECT_EQ(DecodeForSize(png, 2000, 320).cols, 2000);
  EXPECT_TRUE(DecodeForSize((dir / "missing.jpg").string(), 2000, 320).empty());
  fs::remove_all(dir);
}

// Direct decoding gives OpenCV's pixels up to IDCT rounding; an EXIF orientation is applied as
// OpenCV applies it; CheckImage reports the size training will see.
TEST(DecodeForSizeTest, FullSizeAndOrientationAsOpenCv) {
  const fs::path dir = fs::temp_directory_path() / ("orient_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<uchar> jpeg;
  ASSERT_TRUE(cv::imencode(".jpg", Picture(200, 100), jpeg, {cv::IMWRITE_JPEG_QUALITY, 95}));
  const std::string plain = (dir / "plain.jpg").string();
  ASSERT_TRUE(cv::imwrite(plain, cv::imdecode(jpeg, cv::IMREAD_COLOR)));
  const cv::Mat ours = DecodeForSize(plain, 0, 640), opencv = cv::imread(plain, cv::IMREAD_COLOR);
  ASSERT_EQ(ours.size(), opencv.size());
  EXPECT_LE(cv::norm(ours, opencv, cv::NORM_INF), 2);
  // An APP1 Exif segment with orientation 6 (rotate 90 degrees clockwise) after SOI.
  const uchar app1[] = {0xFF, 0xE1, 0x00, 0x22, 'E',  'x',  'i',  'f',  0,    0,    'I',  'I',
                        0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x01, 0x03, 0x00,
                        0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  std::vector<uchar> rotated(jpeg.begin(), jpeg.begin() + 2);
  rotated.insert(rotated.end(), std::begin(app1), std::end(app1));
  rotated.insert(rotated.end(), jpeg.begin() + 2, jpeg.end());
  const std::string path = (dir / "rotated.jpg").string();
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(rotated.data()),
              static_cast<std::streamsize>(rotated.size()));
  }
  const cv::Mat want = cv::imread(path, cv::IMREAD_COLOR);
  ASSERT_EQ(want.size(), cv::Size(100, 200)) << "OpenCV did not apply the orientation";
  const cv::Mat got = DecodeForSize(path, 200, 64);
  EXPECT_EQ(got.cols * 2, got.rows) << got.cols << "x" << got.rows;
  cv::Size size;
  ASSERT_TRUE(CheckImage(path, &size));
  EXPECT_EQ(size, cv::Size(100, 200));
  ASSERT_TRUE(CheckImage(plain, &size));
  EXPECT_EQ(size, cv::Size(200, 100));
  const std::string junk = (dir / "junk.jpg").string();
  {
    std::ofstream out(junk, std::ios::binary);
    out.write("\xFF\xD8\xFF\xE0not a jpeg at all", 21);
  }
  EXPECT_FALSE(CheckImage(junk, &size));
  EXPECT_TRUE(DecodeForSize(junk, 0, 320).empty());
  fs::remove_all(dir);
}

TEST(RecentImagesTest, LetsTheFirstLoadedGoFirst) {
  RecentImages recent(2);
  const cv::Mat a(4, 4, CV_8UC3, cv::Scalar::all(1)), b(4, 4, CV_8UC3, cv::Scalar::all(2)),
      c(4, 4, CV_8UC3, cv::Scalar::all(3));
  recent.Insert(1, a);
  recent.Insert(2, b);
  EXPECT_EQ(recent.bytes(), 2 * 48);
  EXPECT_FALSE(recent.Find(1).empty());  // a use does not keep 1 longer: it leaves first
  recent.Insert(3, c);
  EXPECT_EQ(recent.size(), 2u);
  EXPECT_TRUE(recent.Find(1).empty());
  EXPECT_EQ(recent.Find(3).at<cv::Vec3b>(0, 0)[0], 3);
  EXPECT_EQ(recent.Find(2).at<cv::Vec3b>(0, 0)[0], 2);
  recent.Insert(2, c);  // already there: kept as it was, in its place
  EXPECT_EQ(recent.Find(2).at<cv::Vec3b>(0, 0)[0], 2);
  recent.Insert(1, a);
  EXPECT_TRUE(recent.Find(2).empty());
  recent.Clear();
  EXPECT_EQ(recent.size(), 0u);
  EXPECT_EQ(recent.bytes(), 0);
  RecentImages none(0);
  none.Insert(1, a);
  EXPECT_TRUE(none.Find(1).empty());
}

TEST(RecentImagesTest, SlotsHoldCopiesThatOutliveEvictionWhileInUse) {
  const int side = 8;
  cv::Mat in_use;
  {
    auto recent = std::make_unique<RecentImages>(2, static_cast<size_t>(side) * side * 3);
    std::vector<cv::Mat> images;
    for (int i = 0; i < 4; ++i) {
      cv::Mat image(side, side - i, CV_8UC3);  // narrower ones fit a slot too
      cv::randu(image, 0, 255);
      images.push_back(image);
    }
    const cv::Mat kept = recent->Insert(0, images[0]);
    EXPECT_NE(kept.data, images[0].data);  // a copy, in a slot
    EXPECT_EQ(cv::norm(kept, images[0], cv::NORM_INF), 0);
    EXPECT_EQ(recent->slotted(), 1u);
    in_use = recent->Find(0);
    recent->Insert(1, images[1]);
    recent->Insert(2, images[2]);  // 0 leaves the buffer, but its slot is still in use
    EXPECT_TRUE(recent->Find(0).empty());
    EXPECT_EQ(recent->slotted(), 3u);
    recent->Insert(3, images[3]);
    EXPECT_EQ(cv::norm(recent->Find(3), images[3], cv::NORM_INF), 0);
    EXPECT_EQ(cv::norm(in_use, images[0], cv::NORM_INF), 0);
    // Too large for a slot (a page, at the least): kept as it is.
    const cv::Mat large(40, 40, CV_8UC3, cv::Scalar::all(9));
    EXPECT_EQ(recent->Insert(4, large).data, large.data);
    recent.reset();  // the buffer goes; the image in use keeps its slot until it goes too
    EXPECT_EQ(cv::norm(in_use, images[0], cv::NORM_INF), 0);
  }
  in_use.release();
}

}  // namespace
}  // namespace yolo
