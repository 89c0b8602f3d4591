// Non-maximum suppression as Ultralytics' validator runs it: multi-label candidates above
// `conf`, at most 30000 by score, greedy per-class IoU suppression, at most `max_det` kept.
#pragma once

#include <ATen/Tensor.h>

#include <vector>

#include "server/worker/train/metrics.h"

namespace yolo {

struct NmsOptions {
  double conf = 0.001;
  double iou = 0.7;
  int max_det = 300;
  bool agnostic = false;  // suppress across classes
  int max_candidates = 30000;
};

// `pred`: one image's decoded predictions (4 + nc, A): centre-xywh pixels, class probabilities.
// Returns detections in the same pixels, by descending confidence.
std::vector<Detection> NonMaxSuppression(const at::Tensor& pred, const NmsOptions& options);

}  // namespace yolo
