// The last pass over a training image: Ultralytics' HSV jitter, the flips, and BGR pixels to the
// RGB planes a batch holds, in one pass instead of five (two colour conversions, the tables,
// each flip, the split). LibTorch-free.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>

namespace yolo {

// What the pass does to an image; the default does nothing but the split.
struct PixelFinish {
  // HSV gains: each of OpenCV's 8-bit hue, saturation and value multiplied by its gain, hue
  // modulo 180 and truncated, the others clipped to 255 (Ultralytics 8.1.47's RandomHSV).
  bool hsv = false;
  double hue = 1, saturation = 1, value = 1;
  bool flip_ud = false, flip_lr = false;
};

// Writes `bgr` (CV_8UC3, any step) with `finish` applied as three planes R, G, B of
// rows x cols bytes each, starting at `planes`: what OpenCV 4.6's cvtColor BGR2HSV, the three
// tables, cvtColor HSV2BGR, cv::flip and cv::split give, bit for bit where OpenCV converts with
// its AVX2 code (rows of a multiple of 32 pixels, as every training image is). In the last
// cols % 32 pixels of other rows OpenCV rounds one pixel at a time and differs by a level here
// and there; this pass keeps the vector arithmetic throughout. AVX2 where the CPU has it, the
// same arithmetic one pixel at a time otherwise. Thread-safe.
void WritePlanes(const cv::Mat& bgr, const PixelFinish& finish, uint8_t* planes);

// The same pass written back into `image` as BGR (for tools that want an image, not planes).
void ApplyPixelFinish(const PixelFinish& finish, cv::Mat* image);

}  // namespace yolo
