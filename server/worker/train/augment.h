// Image loading and the training augmentations (letterbox, mosaic, random affine, HSV, flips),
// on OpenCV BGR uint8 images with boxes in pixels. LibTorch-free; every random draw comes from
// the caller's generator so that a sample depends only on (seed, epoch, index).
#pragma once

#include <opencv2/core.hpp>
#include <random>
#include <string>
#include <vector>

#include "server/worker/train/color_kernel.h"
#include "server/worker/train/dataset.h"

namespace yolo {

// A box in pixels, corners (x1, y1) top-left and (x2, y2) bottom-right.
struct PixelBox {
  int cls = 0;
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

struct Sample {
  cv::Mat image;  // BGR uint8
  std::vector<PixelBox> boxes;
  // Colour and flips drawn but not yet applied to `image` (the boxes are already flipped): the
  // batch's collate applies them as it writes the planes (color_kernel.h).
  PixelFinish finish;
};

struct AugmentParams {
  double hsv_h = 0.015, hsv_s = 0.7, hsv_v = 0.4;
  double degrees = 0, translate = 0.1, scale = 0.5, shear = 0, perspective = 0;
  double flipud = 0, fliplr = 0.5;
  double mosaic = 1.0, mixup = 0;
};

// Resizes an image (bilinear) so that its long side is `imgsz`; an empty image stays empty.
cv::Mat ResizeLongSide(const cv::Mat& image, int imgsz);

// Boxes of a record in the pixels of an image of `width` x `height`.
std::vector<PixelBox> ToPixelBoxes(const std::vector<BoxLabel>& labels, int width, int height);

struct LetterboxInfo {
  double gain = 1;  // resize factor applied to the input
  double pad_left = 0, pad_top = 0;
};

// Resizes `image` to fit `out_h` x `out_w` keeping its aspect ratio (never enlarging unless
// `scaleup`), centres it and pads with grey 114. Boxes, if given, move as Ultralytics moves
// them: by the ratio and the half padding before rounding (up to half a pixel off the pixels).
cv::Mat Letterbox(const cv::Mat& image, int out_h, int out_w, bool scaleup, LetterboxInfo* info,
                  std::vector<PixelBox>* boxes = nullptr);

// Four images on a 2s x 2s canvas around a random centre; `images` are already resized to
// long side s. The first is the sample's own image. With `canvas`, its buffer is reused (the
// result's image is then that buffer: done with it before the next call); a new one otherwise.
Sample Mosaic4(const std::vector<Sample>& images, int s, std::mt19937& rng,
               cv::Mat* canvas = nullptr);

// Mosaic4 in two steps, for a caller that draws the affine before painting: the centre (the
// mosaic's only draws), then the canvas painted only inside `window` (elsewhere left as the
// buffer had it), with every box of the whole canvas.
cv::Point DrawMosaicCentre(int s, std::mt19937& rng);
Sample PaintMosaic(const std::vector<Sample>& images, int s, cv::Point centre, cv::Rect window,
                   cv::Mat* canvas = nullptr);

// Random rotation/scale/shear/translation (and perspective) about the input's centre, output
// `out` (a 2s mosaic canvas becomes s x s; a rectangular batch keeps its shape). Boxes that
// shrink away are dropped as Ultralytics does. A range of zero draws exactly zero, so that all
// gains at zero leave the sample as it was.
void RandomAffine(Sample* sample, const AugmentParams& p, cv::Size out, std::mt19937& rng);

// RandomAffine in two steps: its draws for an input of size `in`, then the warp and the boxes.
struct AffineDraw {
  cv::Matx33d matrix;  // input pixels to output pixels
  double scale = 1;    // the drawn scale, for the box-area criterion
};
AffineDraw DrawAffine(const AugmentParams& p, cv::Size in, cv::Size out, std::mt19937& rng);
void ApplyAffine(const AffineDraw& draw, const AugmentParams& p, cv::Size out, Sample* sample);

// The part of an input of size `in` that ApplyAffine's warp to `out` reads (all of it under
// perspective).
cv::Rect AffineSourceWindow(const AffineDraw& draw, const AugmentParams& p, cv::Size in,
                            cv::Size out);

// The last steps of Ultralytics 8.1.47's training pipeline, drawn in its order: random
// hue/saturation/value gains in OpenCV's 8-bit HSV (each 1 + U(-1, 1) x gain; no draws when all
// gains are 0), then a vertical flip with probability flipud, then a horizontal one with
// fliplr. The boxes move now; the pixels are left to `sample->finish` (WritePlanes, or
// ApplyPixelFinish for a BGR image).
void DrawColourAndFlips(const AugmentParams& p, std::mt19937& rng, Sample* sample);

// Uniform draw in [lo, hi); exactly lo when lo == hi (one draw from rng either way).
double Uniform(std::mt19937& rng, double lo, double hi);

}  // namespace yolo
