#include "server/worker/train/loss.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <vector>

#include "server/worker/train/boxes.h"
#include "server/worker/train/model.h"

namespace yolo {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// SplitHeadOutputs (loss.h) in one copy each way.
class SplitHeadFunction : public torch::autograd::Function<SplitHeadFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, at::TensorList levels, int64_t split) {
    const int64_t b = levels[0].size(0), no = levels[0].size(1);
    std::vector<int64_t> sizes;
    int64_t a = 0;
    for (const at::Tensor& level : levels) {
      sizes.insert(sizes.end(), {level.size(2), level.size(3)});
      a += level.size(2) * level.size(3);
    }
    at::Tensor first = at::empty({b, a, split}, levels[0].options());
    at::Tensor second = at::empty({b, a, no - split}, levels[0].options());
    int64_t offset = 0;
    for (const at::Tensor& level : levels) {
      const int64_t n = level.size(2) * level.size(3);
      const at::Tensor rows = level.reshape({b, no, n}).permute({0, 2, 1});  // (B, n, no)
      first.narrow(1, offset, n).copy_(rows.narrow(2, 0, split));
      second.narrow(1, offset, n).copy_(rows.narrow(2, split, no - split));
      offset += n;
    }
    ctx->saved_data["sizes"] = sizes;
    ctx->saved_data["split"] = split;
    return {first, second};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // Both defined: undefined gradients come materialised as zeros.
    const std::vector<int64_t> sizes = ctx->saved_data["sizes"].toIntVector();
    const int64_t split = ctx->saved_data["split"].toInt();
    const int64_t b = grads[0].size(0), no = split + grads[1].size(2);
    variable_list out;
    int64_t offset = 0;
    for (size_t i = 0; i < sizes.size(); i += 2) {
      const int64_t h = sizes[i], w = sizes[i + 1], n = h * w;
      at::Tensor level = at::empty({b, no, h, w}, grads[0].options());
      const at::Tensor rows = level.view({b, no, n}).permute({0, 2, 1});  // (B, n, no)
      rows.narrow(2, 0, split).copy_(grads[0].narrow(1, offset, n));
      rows.narrow(2, split, no - split).copy_(grads[1].narrow(1, offset, n));
      out.push_back(level);
      offset += n;
    }
    out.emplace_back();  // split
    return out;
  }
};

// One image's assignment, written into its rows of the batch's outputs (which start zeroed):
// pd_scores (A, C), pd_boxes (A, 4), anchors (A, 2), labels (M) int64 and gt_boxes (M, 4) of its
// M >= 1 real GTs. Image by image, the (M, A) intermediates stay a batch's share of the size
// that (B, M_max, A) ones would have, with M each image's own count rather than the batch's
// largest.
void AssignImage(const at::Tensor& pd_scores, const at::Tensor& pd_boxes, const at::Tensor& anchors,
                 const at::Tensor& labels, const at::Tensor& gt_boxes, const AssignerOptions& o,
                 at::Tensor target_labels, at::Tensor target_boxes, at::Tensor target_scores,
                 at::Tensor fg_mask) {
  const int64_t a = pd_scores.size(0);
  // Anchors whose centre lies strictly inside a GT box.
  at::Tensor anc = anchors.unsqueeze(0);                         // (1, A, 2)
  at::Tensor lt = anc - gt_boxes.narrow(-1, 0, 2).unsqueeze(1);  // (M, A, 2)
  at::Tensor rb = gt_boxes.narrow(-1, 2, 2).unsqueeze(1) - anc;  // (M, A, 2)
  at::Tensor valid = at::minimum(lt, rb).amin(-1).gt(o.eps);     // (M, A)
  lt.reset();
  rb.reset();

  at::Tensor scores = pd_scores.t().index_select(0, labels);  // (M, A)
  at::Tensor overlaps =
      BoxIou(gt_boxes.unsqueeze(1), pd_boxes.unsqueeze(0), /*ciou=*/true).squeeze(-1).clamp_min(0);
  at::Tensor validf = valid.to(overlaps.scalar_type());
  overlaps.mul_(validf);
  scores.mul_(validf);
  at::Tensor align = scores.pow_(o.alpha).mul_(overlaps.pow(o.beta));  // (M, A)
  scores.reset();

  const int64_t k = std::min<int64_t>(o.topk, a);
  at::Tensor topk_idx = std::get<1>(align.topk(k, -1, /*largest=*/true));  // (M, k)
  at::Tensor count = at::zeros_like(align);
  count.scatter_add_(-1, topk_idx, at::ones_like(topk_idx, align.options()));
  at::Tensor mask_pos = count.eq(1).logical_and_(valid);  // (M, A)
  count.reset();

  // An anchor claimed by several GTs goes to the one it overlaps most.
  at::Tensor multi = mask_pos.sum(0).gt(1).unsqueeze(0);  // (1, A)
  at::Tensor best =
      at::zeros_like(mask_pos).scatter_(0, overlaps.argmax(0, /*keepdim=*/true), true);
  mask_pos = at::where(multi, best, mask_pos);
  best.reset();
  at::Tensor fg = mask_pos.any(0);                        // (A)
  at::Tensor gt_idx = mask_pos.to(at::kFloat).argmax(0);  // (A)

  at::Tensor assigned_labels = labels.index_select(0, gt_idx);
  target_labels.copy_(assigned_labels);
  target_boxes.copy_(gt_boxes.index_select(0, gt_idx));

  at::Tensor mask_posf = mask_pos.to(align.scalar_type());
  align.mul_(mask_posf);
  at::Tensor pos_align_max = align.amax(-1, /*keepdim=*/true);                     // (M, 1)
  at::Tensor pos_overlaps = overlaps.mul_(mask_posf).amax(-1, /*keepdim=*/true);   // (M, 1)
  at::Tensor norm = align.mul_(pos_overlaps).div_(pos_align_max + o.eps).amax(0);  // (A)
  // The one-hot of the assigned class, scaled by the normalised alignment, foreground only.
  target_scores.scatter_(
      1, assigned_labels.unsqueeze(1),
      norm.mul_(fg.to(norm.scalar_type())).unsqueeze(1).to(target_scores.scalar_type()));
  fg_mask.copy_(fg);
}

}  // namespace

Assignment AssignTaskAligned(const at::Tensor& pd_scores, const at::Tensor& pd_boxes,
                             const at::Tensor& anchors, const at::Tensor& gt_labels,
                             const at::Tensor& gt_boxes, const at::Tensor& mask_gt,
                             const AssignerOptions& o) {
  at::NoGradGuard no_grad;
  const int64_t b = pd_scores.size(0), a = pd_scores.size(1), m = gt_boxes.size(1);
  Assignment out;
  out.target_labels = at::zeros({b, a}, pd_scores.options().dtype(at::kLong));
  out.target_boxes = at::zeros({b, a, 4}, pd_boxes.options());
  out.target_scores = at::zeros_like(pd_scores);
  out.fg_mask = at::zeros({b, a}, pd_scores.options().dtype(at::kBool));
  if (m == 0) return out;
  at::Tensor labels = gt_labels.to(at::kLong).squeeze(-1).clamp_min(0);  // (B, M)
  // Which rows are real, read once (one device-to-host copy), wherever the padding sits.
  at::Tensor real = mask_gt.to(at::kCPU, at::kBool).reshape({b, m}).contiguous();
  const bool* r = real.data_ptr<bool>();
  for (int64_t i = 0; i < b; ++i) {
    std::vector<int64_t> rows;
    for (int64_t j = 0; j < m; ++j)
      if (r[i * m + j]) rows.push_back(j);
    if (rows.empty()) continue;
    at::Tensor index = at::tensor(rows, at::kLong).to(labels.device());
    at::Tensor img_labels = labels[i].index_select(0, index);
    at::Tensor img_boxes = gt_boxes[i].index_select(0, index);
    AssignImage(pd_scores[i], pd_boxes[i], anchors, img_labels, img_boxes, o, out.target_labels[i],
                out.target_boxes[i], out.target_scores[i], out.fg_mask[i]);
  }
  return out;
}

at::Tensor DistributionFocalLoss(const at::Tensor& pred, const at::Tensor& target) {
  at::Tensor tl = target.to(at::kLong);
  at::Tensor tr = tl + 1;
  at::Tensor wl = tr.to(target.scalar_type()) - target;
  at::Tensor wr = 1 - wl;
  at::Tensor logp = at::log_softmax(pred, -1);
  at::Tensor ce_l = -logp.gather(-1, tl.unsqueeze(-1)).squeeze(-1);
  at::Tensor ce_r = -logp.gather(-1, tr.unsqueeze(-1)).squeeze(-1);
  return ce_l * wl + ce_r * wr;
}

std::pair<at::Tensor, at::Tensor> SplitHeadOutputs(const std::vector<at::Tensor>& raw,
                                                   int64_t split) {
  variable_list parts = SplitHeadFunction::apply(at::TensorList(raw), split);
  return {std::move(parts[0]), std::move(parts[1])};
}

at::Tensor DecodeDistances(const at::Tensor& pred_dist, int reg_max) {
  const int64_t b = pred_dist.size(0), a = pred_dist.size(1);
  at::Tensor proj = at::arange(reg_max, pred_dist.options());
  return pred_dist.view({b, a, 4, reg_max}).softmax(3).matmul(proj);
}

DetectionLoss::DetectionLoss(int nc, std::vector<double> strides, LossGains gains, int reg_max)
    : nc_(nc), strides_(std::move(strides)), gains_(gains), reg_max_(reg_max) {
  assigner_.nc = nc;
}

LossOutput DetectionLoss::operator()(const std::vector<at::Tensor>& raw,
                                     const DetectionTargets& targets,
                                     Assignment* assignment) const {
  const int64_t b = raw[0].size(0);
  const int64_t no = 4 * reg_max_ + nc_;
  TORCH_CHECK(raw[0].size(1) == no, "DetectionLoss: the head gives ", raw[0].size(1),
              " channels, not ", no);
  const auto [pred_dist, pred_scores] =
      SplitHeadOutputs(raw, 4 * reg_max_);  // (B, A, 4 reg_max), (B, A, nc)
  const auto dtype = pred_scores.scalar_type();
  const double img_h = raw[0].size(2) * strides_[0], img_w = raw[0].size(3) * strides_[0];

  at::Tensor anchors, stride_t;
  MakeAnchors(raw, strides_, &anchors, &stride_t);

  // Targets regrouped per image: (B, M, 1) labels and (B, M, 4) xyxy pixel boxes, zero-padded.
  at::Tensor bidx = targets.batch_idx.to(at::kCPU, at::kLong);
  const int64_t n = bidx.numel();
  std::vector<int64_t> per_image(b, 0);
  const int64_t* bi = bidx.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) per_image[bi[i]]++;
  const int64_t m = n == 0 ? 0 : *std::max_element(per_image.begin(), per_image.end());
  at::Tensor gt = at::zeros({b, m, 5}, at::kFloat);
  if (n > 0) {
    at::Tensor cls = targets.cls.to(at::kCPU, at::kFloat).view({-1});
    at::Tensor boxes = targets.boxes.to(at::kCPU, at::kFloat).view({-1, 4});
    at::Tensor scale = at::tensor({img_w, img_h, img_w, img_h}, at::kFloat);
    boxes = XywhToXyxy(boxes * scale);
    std::vector<int64_t> fill(b, 0);
    auto g = gt.accessor<float, 3>();
    auto bx = boxes.accessor<float, 2>();
    auto c = cls.accessor<float, 1>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t img = bi[i], j = fill[img]++;
      g[img][j][0] = c[i];
      for (int k = 0; k < 4; ++k) g[img][j][k + 1] = bx[i][k];
    }
  }
  gt = gt.to(pred_dist.device());
  at::Tensor gt_labels = gt.narrow(-1, 0, 1);
  at::Tensor gt_boxes = gt.narrow(-1, 1, 4);
  at::Tensor mask_gt = gt_boxes.sum(-1, /*keepdim=*/true).gt(0);

  // Every anchor's box, for the assigner only: the box and DFL losses below read the foreground
  // anchors alone, and decode them again from their own rows, so that backward brings pred_dist
  // one gradient through one gather instead of the softmax's (B, A, 4 reg_max) tensors.
  at::Tensor pred_boxes;  // grid units
  {
    at::NoGradGuard no_grad;
    pred_boxes = DistToBox(DecodeDistances(pred_dist, reg_max_), anchors);
  }
  Assignment assigned = AssignTaskAligned(
      pred_scores.detach().sigmoid(), (pred_boxes * stride_t).to(gt_boxes.scalar_type()),
      anchors * stride_t, gt_labels, gt_boxes, mask_gt, assigner_);
  pred_boxes.reset();

  at::Tensor target_scores = assigned.target_scores.to(dtype);
  at::Tensor tss = target_scores.sum();
  if (rank_sum_) {
    at::Tensor all = tss.detach().to(at::kCPU, at::kDouble).reshape({1});
    rank_sum_(all);
    tss = all.to(tss.device(), tss.scalar_type()).reshape({});
  }
  tss = tss.clamp_min(1);
  at::Tensor loss_cls =
      at::binary_cross_entropy_with_logits(pred_scores, target_scores, {}, {}, at::Reduction::None)
          .sum() /
      tss;
  at::Tensor loss_box = at::zeros({}, pred_dist.options());
  at::Tensor loss_dfl = at::zeros({}, pred_dist.options());
  at::Tensor fg = assigned.fg_mask;
  if (fg.any().item<bool>()) {
    at::Tensor target_boxes = assigned.target_boxes / stride_t;
    at::Tensor weight = target_scores.sum(-1).index({fg}).unsqueeze(-1);
    const at::Tensor fg_dist = pred_dist.index({fg});                       // (F, 4 reg_max)
    const at::Tensor fg_anchors = anchors.expand({b, -1, -1}).index({fg});  // (F, 2)
    const at::Tensor fg_boxes =
        DistToBox(DecodeDistances(fg_dist.unsqueeze(0), reg_max_).squeeze(0), fg_anchors);
    at::Tensor iou = BoxIou(fg_boxes, target_boxes.index({fg}), /*ciou=*/true);
    loss_box = ((1.0 - iou) * weight).sum() / tss;
    at::Tensor target_ltrb = BoxToDist(anchors, target_boxes, reg_max_).index({fg});  // (F, 4)
    at::Tensor dfl = DistributionFocalLoss(fg_dist.view({-1, reg_max_}), target_ltrb.reshape({-1}))
                         .view({-1, 4})
                         .mean(-1, /*keepdim=*/true);
    loss_dfl = (dfl * weight).sum() / tss;
  }
  loss_box = loss_box * gains_.box;
  loss_cls = loss_cls * gains_.cls;
  loss_dfl = loss_dfl * gains_.dfl;
  if (assignment != nullptr) *assignment = std::move(assigned);
  LossOutput out;
  out.items = at::stack({loss_box, loss_cls, loss_dfl}).detach();
  out.total = (loss_box + loss_cls + loss_dfl) * static_cast<double>(b);
  return out;
}

}  // namespace yolo
