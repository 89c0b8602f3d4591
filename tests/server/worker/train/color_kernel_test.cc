#include "server/worker/train/color_kernel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <random>

namespace yolo {
namespace {

// The five steps the pass replaces, as OpenCV and Ultralytics 8.1.47 perform them.
cv::Mat Reference(const cv::Mat& bgr, const PixelFinish& f) {
  cv::Mat out = bgr.clone();
  if (f.hsv) {
    cv::Mat hsv;
    cv::cvtColor(bgr, hsv, cv::COLOR_BGR2HSV);
    cv::Mat lut(1, 256, CV_8UC3);
    for (int i = 0; i < 256; ++i) {
      lut.at<cv::Vec3b>(0, i) = {static_cast<uchar>(std::fmod(i * f.hue, 180.0)),
                                 static_cast<uchar>(std::clamp(i * f.saturation, 0.0, 255.0)),
                                 static_cast<uchar>(std::clamp(i * f.value, 0.0, 255.0))};
    }
    cv::LUT(hsv, lut, hsv);
    cv::cvtColor(hsv, out, cv::COLOR_HSV2BGR);
  }
  if (f.flip_ud) cv::flip(out, out, 0);
  if (f.flip_lr) cv::flip(out, out, 1);
  const int h = bgr.rows;
  cv::Mat planes(3 * h, bgr.cols, CV_8U);
  cv::Mat rgb[3] = {planes.rowRange(2 * h, 3 * h), planes.rowRange(h, 2 * h),
                    planes.rowRange(0, h)};
  cv::split(out, rgb);
  return planes;
}

cv::Mat Planes(const cv::Mat& bgr, const PixelFinish& f) {
  cv::Mat planes(3 * bgr.rows, bgr.cols, CV_8U);
  WritePlanes(bgr, f, planes.data);
  return planes;
}

// Where OpenCV runs its AVX2 conversions, which the pass reproduces exactly.
bool OpenCvConvertsWithAvx2() {
  return cv::checkHardwareSupport(CV_CPU_AVX2) && cv::checkHardwareSupport(CV_CPU_FMA3);
}

TEST(ColorKernelTest, EveryColourMatchesOpenCv) {
  // All 2^24 colours, 4096 to a row, through gains that clip, wrap the hue and leave it alone.
  cv::Mat all(4096, 4096, CV_8UC3);
  for (int i = 0; i < 4096 * 4096; ++i) {
    all.data[3 * i] = i & 255, all.data[3 * i + 1] = (i >> 8) & 255;
    all.data[3 * i + 2] = (i >> 16) & 255;
  }
  PixelFinish gains[4];
  gains[0].hsv = true;  // the round trip alone
  gains[1].hsv = true, gains[1].hue = 1.013, gains[1].saturation = 1.62, gains[1].value = 0.71;
  gains[2].hsv = true, gains[2].hue = 0.988, gains[2].saturation = 0.35, gains[2].value = 1.39;
  gains[2].flip_lr = gains[2].flip_ud = true;
  // Gains whose tables no float multiplier reproduces (about one draw in 10^5): the vector
  // code looks the tables up instead.
  gains[3].hsv = true, gains[3].hue = 0.9930555537410104;
  gains[3].saturation = 0.8275862061247572, gains[3].flip_lr = true;
  for (const PixelFinish& f : gains) {
    const double worst = cv::norm(Planes(all, f), Reference(all, f), cv::NORM_INF);
    if (OpenCvConvertsWithAvx2()) {
      EXPECT_EQ(worst, 0) << "gains " << f.hue << " " << f.saturation << " " << f.value;
    } else {
      EXPECT_LE(worst, 1);
    }
  }
}

TEST(ColorKernelTest, TrainingSizedImagesMatchOpenCv) {
  std::mt19937 rng(3);
  for (int size : {64, 320}) {
    cv::Mat image(size, size + 32, CV_8UC3);
    cv::randu(image, 0, 256);
    for (int k = 0; k < 4; ++k) {
      std::uniform_real_distribution<double> u(-1, 1);
      PixelFinish f;
      f.hsv = k != 3;
      f.hue = 1 + 0.015 * u(rng), f.saturation = 1 + 0.7 * u(rng), f.value = 1 + 0.4 * u(rng);
      f.flip_ud = k & 1, f.flip_lr = k & 2;
      const double worst = cv::norm(Planes(image, f), Reference(image, f), cv::NORM_INF);
      EXPECT_LE(worst, OpenCvConvertsWithAvx2() ? 0 : 1) << size << " case " << k;
    }
  }
}

TEST(ColorKernelTest, OddWidthsAreWithinOneLevelAndFlipExactly) {
  // Rows that end in a partial vector: the pass's tail against OpenCV's own one-pixel rounding.
  for (int width : {1, 7, 37, 101}) {
    cv::Mat image(9, width, CV_8UC3);
    cv::randu(image, 0, 256);
    PixelFinish f;
    f.hsv = true, f.saturation = 1.3, f.value = 0.8, f.flip_lr = true;
    const cv::Mat mine = Planes(image, f), ref = Reference(image, f);
    EXPECT_LE(cv::norm(mine, ref, cv::NORM_INF), 1) << width;
    f.hsv = false;  // no colour: only the flips and the split, which are exact everywhere
    EXPECT_EQ(cv::norm(Planes(image, f), Reference(image, f), cv::NORM_INF), 0) << width;
  }
}

TEST(ColorKernelTest, ApplyWritesTheSamePixelsBackAsBgr) {
  cv::Mat image(32, 64, CV_8UC3);
  cv::randu(image, 0, 256);
  PixelFinish f;
  f.hsv = true, f.hue = 1.01, f.saturation = 0.5, f.flip_ud = true;
  const cv::Mat planes = Planes(image, f);
  cv::Mat bgr = image.clone();
  ApplyPixelFinish(f, &bgr);
  cv::Mat channels[3];
  cv::split(bgr, channels);
  EXPECT_EQ(cv::norm(channels[2], planes.rowRange(0, 32), cv::NORM_INF), 0);
  EXPECT_EQ(cv::norm(channels[1], planes.rowRange(32, 64), cv::NORM_INF), 0);
  EXPECT_EQ(cv::norm(channels[0], planes.rowRange(64, 96), cv::NORM_INF), 0);
}

}  // namespace
}  // namespace yolo
