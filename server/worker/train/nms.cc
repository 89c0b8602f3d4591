#include "server/worker/train/nms.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>

namespace yolo {

std::vector<Detection> NonMaxSuppression(const at::Tensor& pred, const NmsOptions& o) {
  at::Tensor p = pred.detach().to(at::kCPU, at::kFloat).t().contiguous();  // (A, 4 + nc)
  const int64_t nc = p.size(1) - 4;
  at::Tensor scores = p.narrow(1, 4, nc);
  at::Tensor keep_rows = std::get<0>(scores.max(1)).gt(o.conf).nonzero().squeeze(1);
  p = p.index_select(0, keep_rows).contiguous();
  const int64_t rows = p.size(0);
  const float* data = p.data_ptr<float>();
  const int64_t stride = 4 + nc;

  std::vector<Detection> candidates;
  for (int64_t i = 0; i < rows; ++i) {
    const float* r = data + i * stride;
    Detection d;
    d.x1 = r[0] - r[2] / 2, d.y1 = r[1] - r[3] / 2;
    d.x2 = r[0] + r[2] / 2, d.y2 = r[1] + r[3] / 2;
    if (nc > 1) {
      for (int64_t c = 0; c < nc; ++c) {
        if (r[4 + c] > o.conf) {
          d.conf = r[4 + c];
          d.cls = static_cast<int>(c);
          candidates.push_back(d);
        }
      }
    } else {
      d.conf = r[4];
      d.cls = 0;
      candidates.push_back(d);
    }
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Detection& a, const Detection& b) { return a.conf > b.conf; });
  if (static_cast<int>(candidates.size()) > o.max_candidates) candidates.resize(o.max_candidates);

  std::vector<Detection> kept;
  std::vector<bool> suppressed(candidates.size(), false);
  for (size_t i = 0; i < candidates.size() && static_cast<int>(kept.size()) < o.max_det; ++i) {
    if (suppressed[i]) continue;
    const Detection& a = candidates[i];
    kept.push_back(a);
    for (size_t j = i + 1; j < candidates.size(); ++j) {
      if (suppressed[j]) continue;
      const Detection& b = candidates[j];
      if (!o.agnostic && a.cls != b.cls) continue;
      if (IouXyxy(a.x1, a.y1, a.x2, a.y2, b.x1, b.y1, b.x2, b.y2) > o.iou) suppressed[j] = true;
    }
  }
  return kept;
}

}  // namespace yolo
