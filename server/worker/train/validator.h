// Validation: runs a model over a loader's batches, NMS, maps detections back to the original
// image pixels and computes the metrics; optionally the validation loss.
#pragma once

#include <c10/core/Device.h>

#include <array>
#include <string>
#include <vector>

#include "server/worker/train/loader.h"
#include "server/worker/train/loss.h"
#include "server/worker/train/metrics.h"
#include "server/worker/train/model.h"
#include "server/worker/train/nms.h"

namespace yolo {

struct ValidationResult {
  MetricsSummary metrics;
  std::array<double, 3> loss{};  // box, cls, dfl: mean over batches (when a loss was given)
  double seconds = 0;
  double inference_ms_per_image = 0;
  double postprocess_ms_per_image = 0;
};

// Puts `model` in eval mode (the caller restores training mode). `loss` may be null.
ValidationResult Validate(DetectionModel& model, BatchLoader& loader, const DetectionLoss* loss,
                          const NmsOptions& nms, const c10::Device& device);

// Ultralytics' table: header, the "all" row and, if `per_class`, a row per class.
std::string FormatValidationTable(const MetricsSummary& m, const std::vector<std::string>& names,
                                  bool per_class);

}  // namespace yolo
