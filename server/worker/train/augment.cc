#include "server/worker/train/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <opencv2/imgproc.hpp>

#include "server/worker/train/rounding.h"
#include "server/worker/train/warp_kernel.h"

namespace yolo {

constexpr int kPadValue = 114;

double Uniform(std::mt19937& rng, double lo, double hi) {
  const double u = std::uniform_real_distribution<double>(0, 1)(rng);
  return lo == hi ? lo : lo + (hi - lo) * u;  // a draw either way: the stream stays in step
}

cv::Mat ResizeLongSide(const cv::Mat& image, int imgsz) {
  if (image.empty()) return image;
  const double r = static_cast<double>(imgsz) / std::max(image.rows, image.cols);
  if (r == 1.0) return image;
  const int w = std::min(static_cast<int>(std::ceil(image.cols * r)), imgsz);
  const int h = std::min(static_cast<int>(std::ceil(image.rows * r)), imgsz);
  cv::Mat out;
  cv::resize(image, out, cv::Size(std::max(w, 1), std::max(h, 1)), 0, 0, cv::INTER_LINEAR);
  return out;
}

std::vector<PixelBox> ToPixelBoxes(const std::vector<BoxLabel>& labels, int width, int height) {
  std::vector<PixelBox> out;
  out.reserve(labels.size());
  for (const BoxLabel& l : labels) {
    out.push_back({l.cls, (l.cx - l.w / 2) * width, (l.cy - l.h / 2) * height,
                   (l.cx + l.w / 2) * width, (l.cy + l.h / 2) * height});
  }
  return out;
}

cv::Mat Letterbox(const cv::Mat& image, int out_h, int out_w, bool scaleup, LetterboxInfo* info,
                  std::vector<PixelBox>* boxes) {
  double r =
      std::min(static_cast<double>(out_h) / image.rows, static_cast<double>(out_w) / image.cols);
  if (!scaleup) r = std::min(r, 1.0);
  const int new_w = static_cast<int>(RoundHalfEven(image.cols * r));
  const int new_h = static_cast<int>(RoundHalfEven(image.rows * r));
  const double dw = (out_w - new_w) / 2.0;
  const double dh = (out_h - new_h) / 2.0;
  cv::Mat resized = image;
  if (new_w != image.cols || new_h != image.rows) {
    cv::resize(image, resized, cv::Size(new_w, new_h), 0, 0, cv::INTER_LINEAR);
  }
  const int top = static_cast<int>(std::lround(dh - 0.1));
  const int bottom = out_h - new_h - top;
  const int left = static_cast<int>(std::lround(dw - 0.1));
  const int right = out_w - new_w - left;
  cv::Mat out;
  cv::copyMakeBorder(resized, out, top, bottom, left, right, cv::BORDER_CONSTANT,
                     cv::Scalar::all(kPadValue));
  if (info != nullptr) {
    info->gain = r;
    info->pad_left = left;
    info->pad_top = top;
  }
  if (boxes != nullptr) {
    // As Ultralytics moves labels: by the ratio r and the half padding before it is rounded to
    // whole pixels, so they may sit up to half a pixel (plus the resize's rounding) off the
    // pixels. Training matches it; validation scores against the original labels.
    for (PixelBox& b : *boxes) {
      b.x1 = static_cast<float>(b.x1 * r + dw);
      b.x2 = static_cast<float>(b.x2 * r + dw);
      b.y1 = static_cast<float>(b.y1 * r + dh);
      b.y2 = static_cast<float>(b.y2 * r + dh);
    }
  }
  return out;
}

namespace {

// Grey over every pixel of `canvas` (a mosaic's canvas or a window of it) outside `placed` (the
// images' rectangles in it, which meet at the mosaic's centre): one memset a row segment, since
// the grey is one byte value.
void FillAroundPlaced(const std::vector<cv::Rect>& placed, cv::Mat* canvas) {
  const int cols = canvas->cols;
  for (int y = 0; y < canvas->rows; ++y) {
    // The covered part of a row is one interval: the placed rectangles of a row touch.
    int from = cols, to = 0;
    for (const cv::Rect& r : placed) {
      if (y >= r.y && y < r.y + r.height)
        from = std::min(from, r.x), to = std::max(to, r.x + r.width);
    }
    uchar* row = canvas->ptr<uchar>(y);
    if (from >= to) {
      std::memset(row, kPadValue, 3 * static_cast<size_t>(cols));
      continue;
    }
    std::memset(row, kPadValue, 3 * static_cast<size_t>(from));
    std::memset(row + 3 * to, kPadValue, 3 * static_cast<size_t>(cols - to));
  }
}

}  // namespace

cv::Point DrawMosaicCentre(int s, std::mt19937& rng) {
  const int xc = static_cast<int>(Uniform(rng, s / 2.0, 1.5 * s));
  const int yc = static_cast<int>(Uniform(rng, s / 2.0, 1.5 * s));
  return {xc, yc};
}

Sample PaintMosaic(const std::vector<Sample>& images, int s, cv::Point centre, cv::Rect window,
                   cv::Mat* canvas) {
  Sample out;
  if (canvas != nullptr) {
    canvas->create(2 * s, 2 * s, CV_8UC3);
    out.image = *canvas;
  } else {
    out.image = cv::Mat(2 * s, 2 * s, CV_8UC3);
  }
  window &= cv::Rect(0, 0, 2 * s, 2 * s);
  const int xc = centre.x, yc = centre.y;
  std::vector<cv::Rect> placed;
  for (size_t i = 0; i < images.size() && i < 4; ++i) {
    const cv::Mat& img = images[i].image;
    const int h = img.rows, w = img.cols;
    // Where the image lands on the canvas, [x1a, x2a) x [y1a, y2a), and where that part starts in
    // the image, (x1b, y1b).
    int x1a, y1a, x2a, y2a, x1b, y1b;
    if (i == 0) {  // top left
      x1a = std::max(xc - w, 0), y1a = std::max(yc - h, 0), x2a = xc, y2a = yc;
      x1b = w - (x2a - x1a), y1b = h - (y2a - y1a);
    } else if (i == 1) {  // top right
      x1a = xc, y1a = std::max(yc - h, 0), x2a = std::min(xc + w, 2 * s), y2a = yc;
      x1b = 0, y1b = h - (y2a - y1a);
    } else if (i == 2) {  // bottom left
      x1a = std::max(xc - w, 0), y1a = yc, x2a = xc, y2a = std::min(2 * s, yc + h);
      x1b = w - (x2a - x1a), y1b = 0;
    } else {  // bottom right
      x1a = xc, y1a = yc, x2a = std::min(xc + w, 2 * s), y2a = std::min(2 * s, yc + h);
      x1b = 0, y1b = 0;
    }
    const cv::Rect to = cv::Rect(x1a, y1a, x2a - x1a, y2a - y1a) & window;
    if (!to.empty()) {
      placed.push_back(to);
      // The part of the placed image inside the window: `to` shifted back into the image.
      img(to - cv::Point(x1a - x1b, y1a - y1b)).copyTo(out.image(to));
    }
    const float padw = static_cast<float>(x1a - x1b), padh = static_cast<float>(y1a - y1b);
    for (const PixelBox& b : images[i].boxes) {
      PixelBox m{b.cls, b.x1 + padw, b.y1 + padh, b.x2 + padw, b.y2 + padh};
      const float lim = 2.0f * s;
      m.x1 = std::clamp(m.x1, 0.0f, lim), m.x2 = std::clamp(m.x2, 0.0f, lim);
      m.y1 = std::clamp(m.y1, 0.0f, lim), m.y2 = std::clamp(m.y2, 0.0f, lim);
      if (m.x2 > m.x1 && m.y2 > m.y1) out.boxes.push_back(m);
    }
  }
  cv::Mat inside = out.image(window);
  for (cv::Rect& r : placed) r -= window.tl();
  FillAroundPlaced(placed, &inside);
  return out;
}

Sample Mosaic4(const std::vector<Sample>& images, int s, std::mt19937& rng, cv::Mat* canvas) {
  const cv::Point centre = DrawMosaicCentre(s, rng);
  return PaintMosaic(images, s, centre, cv::Rect(0, 0, 2 * s, 2 * s), canvas);
}

AffineDraw DrawAffine(const AugmentParams& p, cv::Size in, cv::Size out, std::mt19937& rng) {
  const int in_h = in.height, in_w = in.width;
  // Centre, perspective, rotation+scale, shear, translation; applied right to left.
  cv::Matx33d C = cv::Matx33d::eye();
  C(0, 2) = -in_w / 2.0;
  C(1, 2) = -in_h / 2.0;
  cv::Matx33d P = cv::Matx33d::eye();
  P(2, 0) = Uniform(rng, -p.perspective, p.perspective);
  P(2, 1) = Uniform(rng, -p.perspective, p.perspective);
  const double angle = Uniform(rng, -p.degrees, p.degrees);
  const double s = Uniform(rng, 1 - p.scale, 1 + p.scale);
  cv::Mat rot = cv::getRotationMatrix2D(cv::Point2f(0, 0), angle, s);
  cv::Matx33d R = cv::Matx33d::eye();
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) R(r, c) = rot.at<double>(r, c);
  cv::Matx33d S = cv::Matx33d::eye();
  S(0, 1) = std::tan(Uniform(rng, -p.shear, p.shear) * M_PI / 180);
  S(1, 0) = std::tan(Uniform(rng, -p.shear, p.shear) * M_PI / 180);
  cv::Matx33d T = cv::Matx33d::eye();
  T(0, 2) = Uniform(rng, 0.5 - p.translate, 0.5 + p.translate) * out.width;
  T(1, 2) = Uniform(rng, 0.5 - p.translate, 0.5 + p.translate) * out.height;
  return {T * S * R * P * C, s};
}

void ApplyAffine(const AffineDraw& draw, const AugmentParams& p, cv::Size out, Sample* sample) {
  const int in_h = sample->image.rows, in_w = sample->image.cols;
  const cv::Matx33d& M = draw.matrix;
  const double s = draw.scale;

  const bool identity = (M == cv::Matx33d::eye()) && in_w == out.width && in_h == out.height;
  if (!identity) {
    cv::Mat warped;
    if (p.perspective != 0) {
      cv::warpPerspective(sample->image, warped, cv::Mat(M), out, cv::INTER_LINEAR,
                          cv::BORDER_CONSTANT, cv::Scalar::all(kPadValue));
    } else {
      const cv::Matx23d affine(M(0, 0), M(0, 1), M(0, 2), M(1, 0), M(1, 1), M(1, 2));
      // Scale and shift only (no rotation or shear, the default): the separable warp, which
      // gives OpenCV's pixels in a fraction of its time.
      if (!WarpScaleShift(sample->image, affine, out, kPadValue, &warped)) {
        cv::warpAffine(sample->image, warped, cv::Mat(affine), out, cv::INTER_LINEAR,
                       cv::BORDER_CONSTANT, cv::Scalar::all(kPadValue));
      }
    }
    sample->image = warped;
  }

  std::vector<PixelBox> kept;
  for (const PixelBox& b : sample->boxes) {
    const double xs[4] = {b.x1, b.x2, b.x2, b.x1};
    const double ys[4] = {b.y1, b.y1, b.y2, b.y2};
    double nx1 = 1e18, ny1 = 1e18, nx2 = -1e18, ny2 = -1e18;
    for (int k = 0; k < 4; ++k) {
      double x = M(0, 0) * xs[k] + M(0, 1) * ys[k] + M(0, 2);
      double y = M(1, 0) * xs[k] + M(1, 1) * ys[k] + M(1, 2);
      if (p.perspective != 0) {
        const double z = M(2, 0) * xs[k] + M(2, 1) * ys[k] + M(2, 2);
        x /= z;
        y /= z;
      }
      nx1 = std::min(nx1, x), nx2 = std::max(nx2, x);
      ny1 = std::min(ny1, y), ny2 = std::max(ny2, y);
    }
    nx1 = std::clamp(nx1, 0.0, static_cast<double>(out.width));
    nx2 = std::clamp(nx2, 0.0, static_cast<double>(out.width));
    ny1 = std::clamp(ny1, 0.0, static_cast<double>(out.height));
    ny2 = std::clamp(ny2, 0.0, static_cast<double>(out.height));
    // Keep boxes that stay > 2 px, keep > 10 % of their scaled area, aspect ratio < 100.
    const double w0 = (b.x2 - b.x1) * s, h0 = (b.y2 - b.y1) * s;
    const double w1 = nx2 - nx1, h1 = ny2 - ny1;
    const double eps = 1e-16;
    const double ar = std::max(w1 / (h1 + eps), h1 / (w1 + eps));
    if (w1 > 2 && h1 > 2 && w1 * h1 / (w0 * h0 + eps) > 0.1 && ar < 100) {
      kept.push_back({b.cls, static_cast<float>(nx1), static_cast<float>(ny1),
                      static_cast<float>(nx2), static_cast<float>(ny2)});
    }
  }
  sample->boxes = std::move(kept);
}

cv::Rect AffineSourceWindow(const AffineDraw& draw, const AugmentParams& p, cv::Size in,
                            cv::Size out) {
  const cv::Rect all(0, 0, in.width, in.height);
  if (p.perspective != 0) return all;
  const cv::Matx33d inv = draw.matrix.inv();
  double x0 = 1e18, y0 = 1e18, x1 = -1e18, y1 = -1e18;
  for (const cv::Point2d corner :
       {cv::Point2d(0, 0), cv::Point2d(out.width - 1, 0), cv::Point2d(0, out.height - 1),
        cv::Point2d(out.width - 1, out.height - 1)}) {
    const double x = inv(0, 0) * corner.x + inv(0, 1) * corner.y + inv(0, 2);
    const double y = inv(1, 0) * corner.x + inv(1, 1) * corner.y + inv(1, 2);
    x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  }
  // The bilinear taps reach one pixel past the mapped position, which OpenCV rounds to 1/32 of
  // a pixel: two pixels of margin cover both.
  const double lo = -1e9, hi = 1e9;
  const int left = static_cast<int>(std::floor(std::clamp(x0, lo, hi))) - 2;
  const int top = static_cast<int>(std::floor(std::clamp(y0, lo, hi))) - 2;
  const int right = static_cast<int>(std::floor(std::clamp(x1, lo, hi))) + 3;
  const int bottom = static_cast<int>(std::floor(std::clamp(y1, lo, hi))) + 3;
  return cv::Rect(cv::Point(left, top), cv::Point(right, bottom)) & all;
}

void RandomAffine(Sample* sample, const AugmentParams& p, cv::Size out, std::mt19937& rng) {
  ApplyAffine(DrawAffine(p, sample->image.size(), out, rng), p, out, sample);
}

void DrawColourAndFlips(const AugmentParams& p, std::mt19937& rng, Sample* sample) {
  PixelFinish& f = sample->finish;
  f.hsv = p.hsv_h != 0 || p.hsv_s != 0 || p.hsv_v != 0;
  if (f.hsv) {
    f.hue = Uniform(rng, -1, 1) * p.hsv_h + 1;
    f.saturation = Uniform(rng, -1, 1) * p.hsv_s + 1;
    f.value = Uniform(rng, -1, 1) * p.hsv_v + 1;
  }
  const float w = static_cast<float>(sample->image.cols);
  const float h = static_cast<float>(sample->image.rows);
  if (Uniform(rng, 0, 1) < p.flipud) {
    f.flip_ud = !f.flip_ud;
    for (PixelBox& b : sample->boxes) {
      const float y1 = h - b.y2, y2 = h - b.y1;
      b.y1 = y1, b.y2 = y2;
    }
  }
  if (Uniform(rng, 0, 1) < p.fliplr) {
    f.flip_lr = !f.flip_lr;
    for (PixelBox& b : sample->boxes) {
      const float x1 = w - b.x2, x2 = w - b.x1;
      b.x1 = x1, b.x2 = x2;
    }
  }
}

}  // namespace yolo
