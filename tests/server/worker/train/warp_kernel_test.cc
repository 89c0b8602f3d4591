#include "server/worker/train/warp_kernel.h"

#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>
#include <random>

namespace yolo {
namespace {

cv::Mat OpenCvWarp(const cv::Mat& src, const cv::Matx23d& m, cv::Size out) {
  cv::Mat dst;
  cv::warpAffine(src, dst, cv::Mat(m), out, cv::INTER_LINEAR, cv::BORDER_CONSTANT,
                 cv::Scalar::all(114));
  return dst;
}

TEST(WarpKernelTest, MatchesOpenCvBitForBit) {
  // Mosaic-like canvases (odd sizes too) scaled by 0.5-1.5 and shifted, often past the edges;
  // also enlarged, mirrored, and sources of one or two pixels.
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(0, 1);
  for (int t = 0; t < 120; ++t) {
    const int s = t % 3 == 0 ? 64 : t % 3 == 1 ? 37 : 160;
    const int src_w = t % 17 == 0 ? 1 + t % 2 : 2 * s + t % 7;
    const int src_h = t % 17 == 0 ? 2 : 2 * s + t % 5;
    cv::Mat src(src_h, src_w, CV_8UC3);
    cv::randu(src, 0, 256);
    double scale = 0.5 + u(rng);
    if (t % 10 == 0) scale = 2.5;
    const double sx = t % 9 == 0 ? -scale : scale;  // mirrored
    const double tx = (0.3 + 0.4 * u(rng)) * s, ty = (0.3 + 0.4 * u(rng)) * s;
    const cv::Matx23d m(sx, 0, tx - sx * src_w / 2.0, 0, scale, ty - scale * src_h / 2.0);
    const cv::Size out(s, s + t % 4);
    cv::Mat mine;
    ASSERT_TRUE(WarpScaleShift(src, m, out, 114, &mine));
    ASSERT_EQ(mine.size(), out);
    EXPECT_EQ(cv::norm(mine, OpenCvWarp(src, m, out), cv::NORM_INF), 0) << "case " << t;
  }
}

TEST(WarpKernelTest, AnOutputOffTheSourceIsAllBorder) {
  cv::Mat src(40, 40, CV_8UC3, cv::Scalar::all(9));
  const cv::Matx23d far(1, 0, 500, 0, 1, -300);
  cv::Mat mine;
  ASSERT_TRUE(WarpScaleShift(src, far, cv::Size(32, 32), 114, &mine));
  EXPECT_EQ(cv::norm(mine, cv::Mat(32, 32, CV_8UC3, cv::Scalar::all(114)), cv::NORM_INF), 0);
}

TEST(WarpKernelTest, RefusesRotationAndShear) {
  cv::Mat src(16, 16, CV_8UC3, cv::Scalar::all(0)), dst;
  EXPECT_FALSE(WarpScaleShift(src, cv::Matx23d(1, 0.1, 0, 0, 1, 0), cv::Size(8, 8), 114, &dst));
  EXPECT_FALSE(WarpScaleShift(src, cv::Matx23d(1, 0, 0, -0.2, 1, 0), cv::Size(8, 8), 114, &dst));
  EXPECT_TRUE(dst.empty());
  cv::Mat gray(16, 16, CV_8UC1, cv::Scalar::all(0));
  EXPECT_FALSE(WarpScaleShift(gray, cv::Matx23d(1, 0, 0, 0, 1, 0), cv::Size(8, 8), 114, &dst));
}

}  // namespace
}  // namespace yolo
