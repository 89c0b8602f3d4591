#include "server/worker/train/validator.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_format.h"

namespace yolo {
namespace {
using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

ValidationResult Validate(DetectionModel& model, BatchLoader& loader, const DetectionLoss* loss,
                          const NmsOptions& nms, const c10::Device& device) {
  at::NoGradGuard no_grad;
  model->eval();
  ValidationResult result;
  DetectionMetrics metrics(model->nc);
  const auto start = Clock::now();
  double infer_s = 0, post_s = 0;
  int batches = 0, images = 0;
  at::Tensor loss_sum = at::zeros({3});
  loader.StartEpoch(0, /*mosaic=*/false);
  while (auto batch = loader.Next()) {
    const auto t0 = Clock::now();
    at::Tensor input = ModelInput(*batch, device);
    std::vector<at::Tensor> raw = model->forward(input);
    if (loss != nullptr) {
      loss_sum += (*loss)(raw, batch->targets).items.to(at::kCPU, at::kFloat);
    }
    at::Tensor pred = model->detect->Decode(raw).to(at::kCPU, at::kFloat);
    const auto t1 = Clock::now();
    for (size_t i = 0; i < batch->info.size(); ++i) {
      const BatchImageInfo& info = batch->info[i];
      std::vector<Detection> dets = NonMaxSuppression(pred[i], nms);
      const float gain = static_cast<float>(info.to_batch.gain);
      const float px = static_cast<float>(info.to_batch.pad_left);
      const float py = static_cast<float>(info.to_batch.pad_top);
      const float w = static_cast<float>(info.width), h = static_cast<float>(info.height);
      for (Detection& d : dets) {
        d.x1 = std::clamp((d.x1 - px) / gain, 0.0f, w);
        d.x2 = std::clamp((d.x2 - px) / gain, 0.0f, w);
        d.y1 = std::clamp((d.y1 - py) / gain, 0.0f, h);
        d.y2 = std::clamp((d.y2 - py) / gain, 0.0f, h);
      }
      std::vector<GroundTruth> gts;
      for (const BoxLabel& l : loader.records()[info.index].labels) {
        gts.push_back({(l.cx - l.w / 2) * w, (l.cy - l.h / 2) * h, (l.cx + l.w / 2) * w,
                       (l.cy + l.h / 2) * h, l.cls});
      }
      metrics.AddImage(dets, gts);
    }
    post_s += Seconds(t1, Clock::now());
    infer_s += Seconds(t0, t1);
    ++batches;
    images += static_cast<int>(batch->info.size());
  }
  result.metrics = metrics.Compute();
  if (batches > 0) {
    for (int k = 0; k < 3; ++k) result.loss[k] = loss_sum[k].item<double>() / batches;
  }
  result.seconds = Seconds(start, Clock::now());
  if (images > 0) {
    result.inference_ms_per_image = 1000 * infer_s / images;
    result.postprocess_ms_per_image = 1000 * post_s / images;
  }
  return result;
}

std::string FormatValidationTable(const MetricsSummary& m, const std::vector<std::string>& names,
                                  bool per_class) {
  std::string out = absl::StrFormat("%22s%11s%11s%11s%11s%11s%11s\n", "Class", "Images",
                                    "Instances", "Box(P", "R", "mAP50", "mAP50-95)");
  out += absl::StrFormat("%22s%11d%11d%11.3g%11.3g%11.3g%11.3g\n", "all", m.images, m.instances,
                         m.precision, m.recall, m.map50, m.map);
  if (per_class && names.size() > 1) {
    for (const ClassMetrics& c : m.per_class) {
      const std::string name = c.cls < static_cast<int>(names.size())
                                   ? names[c.cls]
                                   : absl::StrFormat("class_%d", c.cls);
      out += absl::StrFormat("%22s%11d%11d%11.3g%11.3g%11.3g%11.3g\n", name, c.images, c.labels,
                             c.precision, c.recall, c.ap50, c.ap);
    }
  }
  return out;
}

}  // namespace yolo
