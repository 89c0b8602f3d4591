#include "server/worker/train/boxes.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace yolo {

at::Tensor XywhToXyxy(const at::Tensor& b) {
  at::Tensor xy = b.narrow(-1, 0, 2), half = b.narrow(-1, 2, 2) / 2;
  return at::cat({xy - half, xy + half}, -1);
}

at::Tensor BoxIou(const at::Tensor& box1, const at::Tensor& box2, bool ciou) {
  constexpr double kEps = 1e-7;
  std::vector<at::Tensor> a = box1.chunk(4, -1), b = box2.chunk(4, -1);
  const at::Tensor &b1x1 = a[0], &b1y1 = a[1], &b1x2 = a[2], &b1y2 = a[3];
  const at::Tensor &b2x1 = b[0], &b2y1 = b[1], &b2x2 = b[2], &b2y2 = b[3];
  at::Tensor w1 = b1x2 - b1x1, h1 = b1y2 - b1y1 + kEps;
  at::Tensor w2 = b2x2 - b2x1, h2 = b2y2 - b2y1 + kEps;
  at::Tensor inter = (at::minimum(b1x2, b2x2) - at::maximum(b1x1, b2x1)).clamp_min(0) *
                     (at::minimum(b1y2, b2y2) - at::maximum(b1y1, b2y1)).clamp_min(0);
  at::Tensor uni = w1 * h1 + w2 * h2 - inter + kEps;
  at::Tensor iou = inter / uni;
  if (!ciou) return iou;
  at::Tensor cw = at::maximum(b1x2, b2x2) - at::minimum(b1x1, b2x1);
  at::Tensor ch = at::maximum(b1y2, b2y2) - at::minimum(b1y1, b2y1);
  at::Tensor c2 = cw.pow(2) + ch.pow(2) + kEps;
  at::Tensor rho2 = ((b2x1 + b2x2 - b1x1 - b1x2).pow(2) + (b2y1 + b2y2 - b1y1 - b1y2).pow(2)) / 4;
  at::Tensor v = (4 / (M_PI * M_PI)) * (at::atan(w2 / h2) - at::atan(w1 / h1)).pow(2);
  at::Tensor alpha;
  {
    at::NoGradGuard no_grad;
    alpha = v / (v - iou + (1 + kEps));
  }
  return iou - (rho2 / c2 + v * alpha);
}

at::Tensor DistToBox(const at::Tensor& distance, const at::Tensor& anchor_points) {
  at::Tensor lt = distance.narrow(-1, 0, 2), rb = distance.narrow(-1, 2, 2);
  return at::cat({anchor_points - lt, anchor_points + rb}, -1);
}

at::Tensor BoxToDist(const at::Tensor& anchor_points, const at::Tensor& boxes, int reg_max) {
  at::Tensor x1y1 = boxes.narrow(-1, 0, 2), x2y2 = boxes.narrow(-1, 2, 2);
  return at::cat({anchor_points - x1y1, x2y2 - anchor_points}, -1).clamp(0, reg_max - 1 - 0.01);
}

}  // namespace yolo
