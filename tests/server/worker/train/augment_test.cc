#include "server/worker/train/augment.h"

#include <gtest/gtest.h>

#include <cmath>
#include <opencv2/imgproc.hpp>

namespace yolo {
namespace {

TEST(LetterboxTest, BoxesRoundTripThroughLetterbox) {
  cv::Mat image(200, 400, CV_8UC3, cv::Scalar::all(0));
  std::vector<PixelBox> boxes = {{1, 100, 50, 300, 150}};
  const std::vector<PixelBox> original = boxes;
  LetterboxInfo info;
  cv::Mat out = Letterbox(image, 320, 320, /*scaleup=*/true, &info, &boxes);
  EXPECT_EQ(out.rows, 320);
  EXPECT_EQ(out.cols, 320);
  EXPECT_DOUBLE_EQ(info.gain, 0.8);
  EXPECT_EQ(info.pad_left, 0);
  EXPECT_EQ(info.pad_top, 80);
  // Pad is grey 114.
  EXPECT_EQ(out.at<cv::Vec3b>(0, 0)[0], 114);
  EXPECT_EQ(out.at<cv::Vec3b>(160, 160)[0], 0);
  for (size_t i = 0; i < boxes.size(); ++i) {
    EXPECT_NEAR((boxes[i].x1 - info.pad_left) / info.gain, original[i].x1, 1e-3);
    EXPECT_NEAR((boxes[i].y1 - info.pad_top) / info.gain, original[i].y1, 1e-3);
    EXPECT_NEAR((boxes[i].x2 - info.pad_left) / info.gain, original[i].x2, 1e-3);
    EXPECT_NEAR((boxes[i].y2 - info.pad_top) / info.gain, original[i].y2, 1e-3);
  }
}

TEST(LetterboxTest, BoxesMoveByTheRatioAndTheUnroundedHalfPadding) {
  // 51 x 100 into 64: r = 0.64, the image becomes 33 x 64 (32.64 rounded), padding 31 split
  // 15 | 16. Ultralytics moves the labels by r and 15.5, not by 33/51 and 15.
  cv::Mat image(100, 51, CV_8UC3, cv::Scalar::all(0));
  std::vector<PixelBox> boxes = {{0, 0, 10, 51, 60}};
  LetterboxInfo info;
  Letterbox(image, 64, 64, /*scaleup=*/true, &info, &boxes);
  EXPECT_EQ(info.pad_left, 15);
  EXPECT_FLOAT_EQ(boxes[0].x1, 15.5f);
  EXPECT_FLOAT_EQ(boxes[0].x2, 51 * 0.64f + 15.5f);
  EXPECT_FLOAT_EQ(boxes[0].y1, 6.4f);
  EXPECT_FLOAT_EQ(boxes[0].y2, 38.4f);
}

TEST(LetterboxTest, NoScaleUpWhenNotAllowed) {
  cv::Mat image(100, 50, CV_8UC3, cv::Scalar::all(0));
  LetterboxInfo info;
  cv::Mat out = Letterbox(image, 352, 352, /*scaleup=*/false, &info);
  EXPECT_DOUBLE_EQ(info.gain, 1.0);
  EXPECT_EQ(out.rows, 352);
  EXPECT_EQ(info.pad_left, 151);  // round(151 - 0.1)
  EXPECT_EQ(info.pad_top, 126);
}

TEST(AugmentTest, NormalisedLabelsToPixels) {
  auto px = ToPixelBoxes({{2, 0.5f, 0.5f, 0.5f, 0.25f}}, 200, 100);
  ASSERT_EQ(px.size(), 1u);
  EXPECT_FLOAT_EQ(px[0].x1, 50);
  EXPECT_FLOAT_EQ(px[0].x2, 150);
  EXPECT_FLOAT_EQ(px[0].y1, 37.5f);
  EXPECT_FLOAT_EQ(px[0].y2, 62.5f);
  EXPECT_EQ(px[0].cls, 2);
}

TEST(AugmentTest, FlipsMoveBoxesAndLeaveThePixelsToTheFinish) {
  Sample s;
  s.image = cv::Mat(10, 100, CV_8UC3, cv::Scalar::all(0));
  s.image.at<cv::Vec3b>(0, 0) = {255, 255, 255};
  s.boxes = {{0, 10, 1, 30, 5}};
  AugmentParams p;
  p.hsv_h = p.hsv_s = p.hsv_v = 0;
  p.flipud = p.fliplr = 1;
  std::mt19937 rng(1);
  DrawColourAndFlips(p, rng, &s);
  EXPECT_FALSE(s.finish.hsv);
  EXPECT_TRUE(s.finish.flip_ud);
  EXPECT_TRUE(s.finish.flip_lr);
  EXPECT_EQ(s.image.at<cv::Vec3b>(0, 0)[0], 255);  // untouched until the finish
  EXPECT_FLOAT_EQ(s.boxes[0].x1, 70);
  EXPECT_FLOAT_EQ(s.boxes[0].x2, 90);
  EXPECT_FLOAT_EQ(s.boxes[0].y1, 5);
  EXPECT_FLOAT_EQ(s.boxes[0].y2, 9);
  ApplyPixelFinish(s.finish, &s.image);
  EXPECT_EQ(s.image.at<cv::Vec3b>(9, 99)[0], 255);
  EXPECT_EQ(s.image.at<cv::Vec3b>(0, 0)[0], 0);
}

TEST(AugmentTest, ColourDrawsFollowUltralyticsOrder) {
  // Three gains, then flipud, then fliplr, from the same stream; none for colour when its gains
  // are all zero.
  AugmentParams p;
  p.flipud = 0.5;
  Sample s;
  s.image = cv::Mat(8, 8, CV_8UC3, cv::Scalar::all(0));
  std::mt19937 rng(7), expect(7);
  DrawColourAndFlips(p, rng, &s);
  EXPECT_DOUBLE_EQ(s.finish.hue, Uniform(expect, -1, 1) * p.hsv_h + 1);
  EXPECT_DOUBLE_EQ(s.finish.saturation, Uniform(expect, -1, 1) * p.hsv_s + 1);
  EXPECT_DOUBLE_EQ(s.finish.value, Uniform(expect, -1, 1) * p.hsv_v + 1);
  EXPECT_EQ(s.finish.flip_ud, Uniform(expect, 0, 1) < p.flipud);
  EXPECT_EQ(s.finish.flip_lr, Uniform(expect, 0, 1) < p.fliplr);
  EXPECT_EQ(rng(), expect());
  p.hsv_h = p.hsv_s = p.hsv_v = 0;
  Sample t;
  t.image = s.image;
  std::mt19937 rng2(7), expect2(7);
  DrawColourAndFlips(p, rng2, &t);
  EXPECT_FALSE(t.finish.hsv);
  EXPECT_EQ(t.finish.flip_ud, Uniform(expect2, 0, 1) < p.flipud);
}

TEST(AugmentTest, MosaicAndAffineKeepBoxesInsideTheOutput) {
  std::mt19937 rng(1);
  std::vector<Sample> four(4);
  for (auto& s : four) {
    s.image = cv::Mat(64, 64, CV_8UC3, cv::Scalar::all(50));
    s.boxes = {{1, 8, 8, 40, 40}};
  }
  AugmentParams p;
  for (int i = 0; i < 20; ++i) {
    Sample m = Mosaic4(four, 64, rng);
    EXPECT_EQ(m.image.rows, 128);
    RandomAffine(&m, p, cv::Size(64, 64), rng);
    EXPECT_EQ(m.image.rows, 64);
    EXPECT_EQ(m.image.cols, 64);
    for (const auto& b : m.boxes) {
      EXPECT_GE(b.x1, 0);
      EXPECT_LE(b.x2, 64);
      EXPECT_GT(b.x2 - b.x1, 2);
      EXPECT_GT(b.y2 - b.y1, 2);
    }
  }
}

TEST(AugmentTest, AReusedMosaicCanvasGivesTheSameImage) {
  // Images of different sizes (a small one leaves grey around it) on a canvas left dirty by
  // the previous call: every pixel the images do not cover must be grey again.
  std::vector<Sample> four(4);
  const cv::Size sizes[4] = {{64, 40}, {30, 64}, {20, 16}, {64, 64}};  // bottom left small
  for (int k = 0; k < 4; ++k) {
    four[k].image = cv::Mat(sizes[k], CV_8UC3);
    cv::randu(four[k].image, 0, 256);
  }
  cv::Mat canvas(128, 128, CV_8UC3, cv::Scalar::all(7));
  for (int seed = 0; seed < 20; ++seed) {
    std::mt19937 fresh_rng(seed), reused_rng(seed);
    const Sample fresh = Mosaic4(four, 64, fresh_rng);
    const Sample reused = Mosaic4(four, 64, reused_rng, &canvas);
    EXPECT_EQ(reused.image.data, canvas.data);
    EXPECT_EQ(cv::norm(fresh.image, reused.image, cv::NORM_INF), 0) << "seed " << seed;
    EXPECT_EQ(fresh.image.at<cv::Vec3b>(127, 0), cv::Vec3b(114, 114, 114));  // never covered
    canvas.setTo(cv::Scalar::all(3));
  }
}

TEST(AugmentTest, PaintingOnlyWhatTheWarpReadsGivesTheSameSample) {
  // The loader's order (centre, affine, paint the window the warp reads, warp) against the whole
  // canvas, on a dirty canvas, for the default augmentation and with rotation and shear.
  std::vector<Sample> four(4);
  std::mt19937 fill(9);
  for (int k = 0; k < 4; ++k) {
    four[k].image = cv::Mat(k == 2 ? 40 : 64, k == 1 ? 48 : 64, CV_8UC3);
    cv::randu(four[k].image, 0, 256);
    four[k].boxes = {{k, 4, 6, 30, 28}};
  }
  AugmentParams rotated;
  rotated.degrees = 10, rotated.shear = 5, rotated.scale = 0.9, rotated.translate = 0.2;
  cv::Mat canvas(128, 128, CV_8UC3, cv::Scalar::all(1));
  for (const AugmentParams& p : {AugmentParams(), rotated}) {
    for (int seed = 0; seed < 30; ++seed) {
      std::mt19937 a(seed), b(seed);
      Sample whole = Mosaic4(four, 64, a);
      RandomAffine(&whole, p, cv::Size(64, 64), a);
      const cv::Point centre = DrawMosaicCentre(64, b);
      const AffineDraw draw = DrawAffine(p, cv::Size(128, 128), cv::Size(64, 64), b);
      const cv::Rect window = AffineSourceWindow(draw, p, cv::Size(128, 128), cv::Size(64, 64));
      Sample part = PaintMosaic(four, 64, centre, window, &canvas);
      ApplyAffine(draw, p, cv::Size(64, 64), &part);
      ASSERT_EQ(cv::norm(whole.image, part.image, cv::NORM_INF), 0) << "seed " << seed;
      ASSERT_EQ(whole.boxes.size(), part.boxes.size());
      for (size_t i = 0; i < whole.boxes.size(); ++i)
        EXPECT_EQ(whole.boxes[i].x1, part.boxes[i].x1);
      EXPECT_EQ(a(), b());  // the same draws
      canvas.setTo(cv::Scalar::all(seed));
    }
  }
}

TEST(AugmentTest, AffineWithoutChangeIsIdentity) {
  std::mt19937 rng(3);
  AugmentParams p;
  p.translate = 0, p.scale = 0;
  Sample s;
  s.image = cv::Mat(32, 32, CV_8UC3, cv::Scalar::all(7));
  s.boxes = {{0, 4, 4, 20, 20}};
  RandomAffine(&s, p, cv::Size(32, 32), rng);
  ASSERT_EQ(s.boxes.size(), 1u);
  EXPECT_NEAR(s.boxes[0].x1, 4, 1e-4);
  EXPECT_NEAR(s.boxes[0].y2, 20, 1e-4);
}

TEST(AugmentTest, HueIsScaledNotShifted) {
  // Hues 0, 30, 60 and 120 at full saturation and value; only the hue gain is on.
  const int hues[] = {0, 30, 60, 120};
  cv::Mat hsv(1, 4, CV_8UC3);
  for (int i = 0; i < 4; ++i) hsv.at<cv::Vec3b>(0, i) = cv::Vec3b(hues[i], 255, 255);
  Sample s;
  cv::cvtColor(hsv, s.image, cv::COLOR_HSV2BGR);
  AugmentParams p;
  p.hsv_h = 0.5, p.hsv_s = p.hsv_v = 0, p.fliplr = 0;
  std::mt19937 rng(5);
  DrawColourAndFlips(p, rng, &s);
  ApplyPixelFinish(s.finish, &s.image);
  cv::cvtColor(s.image, hsv, cv::COLOR_BGR2HSV);
  EXPECT_EQ(hsv.at<cv::Vec3b>(0, 0)[0], 0);  // red stays red: 0 x r = 0
  const double r = hsv.at<cv::Vec3b>(0, 3)[0] / 120.0;
  EXPECT_GT(std::abs(r - 1), 0.01);  // the draw did change the hue
  for (int i = 1; i < 4; ++i) {
    EXPECT_NEAR(hsv.at<cv::Vec3b>(0, i)[0], hues[i] * r, 2.0) << "hue " << hues[i];
  }
}

TEST(AugmentTest, ZeroGainsLeaveTheSampleAsItWas) {
  Sample s;
  s.image = cv::Mat(48, 64, CV_8UC3);
  cv::randu(s.image, 0, 255);
  s.boxes = {{1, 10.5f, 8.25f, 30.0f, 40.0f}};
  const cv::Mat before = s.image.clone();
  AugmentParams p;
  p.degrees = p.translate = p.scale = p.shear = p.perspective = 0;
  std::mt19937 rng(1);
  p.hsv_h = p.hsv_s = p.hsv_v = p.fliplr = 0;
  RandomAffine(&s, p, cv::Size(64, 48), rng);
  DrawColourAndFlips(p, rng, &s);
  ApplyPixelFinish(s.finish, &s.image);
  EXPECT_EQ(cv::norm(s.image, before, cv::NORM_INF), 0);
  ASSERT_EQ(s.boxes.size(), 1u);
  EXPECT_EQ(s.boxes[0].x1, 10.5f);
  EXPECT_EQ(s.boxes[0].y2, 40.0f);
}

}  // namespace
}  // namespace yolo
