// The random affine's warp when it only scales and shifts (no rotation, shear or perspective:
// Ultralytics' default augmentation), as a separable bilinear resampling. LibTorch-free.
#pragma once

#include <opencv2/core.hpp>

namespace yolo {

// cv::warpAffine(src, dst, matrix, out, INTER_LINEAR, BORDER_CONSTANT, Scalar::all(border)) for
// a CV_8UC3 `src`, bit for bit, when the 2x3 `matrix` (source to output pixels) has zeros off
// its diagonal; returns false, leaving `dst` alone, otherwise. OpenCV's bilinear weights are
// products of 5-bit fractions, exact integers, so interpolating along rows and then columns
// gives its sums exactly: each source row is interpolated once, not once per output pixel.
bool WarpScaleShift(const cv::Mat& src, const cv::Matx23d& matrix, cv::Size out, uchar border,
                    cv::Mat* dst);

}  // namespace yolo
