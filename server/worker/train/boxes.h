// Box geometry on tensors: IoU and CIoU, xywh <-> xyxy, and the DFL distance encoding.
#pragma once

#include <ATen/Tensor.h>

namespace yolo {

// Centre-xywh -> corner-xyxy along the last dimension.
at::Tensor XywhToXyxy(const at::Tensor& boxes);

// IoU of boxes (..., 4) xyxy, broadcast over the leading dimensions; result (..., 1).
// With `ciou`, the complete IoU: IoU - (centre distance^2 / enclosing diagonal^2 + v * alpha),
// alpha taken without gradient. eps 1e-7 as Ultralytics.
at::Tensor BoxIou(const at::Tensor& box1, const at::Tensor& box2, bool ciou);

// Distances (l, t, r, b) from anchor points (A, 2) to boxes: (..., A, 4) -> xyxy (..., A, 4).
at::Tensor DistToBox(const at::Tensor& distance, const at::Tensor& anchor_points);

// Boxes xyxy (..., A, 4) -> distances (l, t, r, b) from anchor points, clamped to
// [0, reg_max - 1 - 0.01].
at::Tensor BoxToDist(const at::Tensor& anchor_points, const at::Tensor& boxes, int reg_max);

}  // namespace yolo
