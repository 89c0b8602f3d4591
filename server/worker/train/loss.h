// The YOLOv8 detection loss: task-aligned assignment, BCE classification, CIoU and DFL box
// terms, with Ultralytics' gains and normalisation.
#pragma once

#include <ATen/Tensor.h>

#include <utility>
#include <vector>

#include "server/worker/train/rank_sum.h"

namespace yolo {

struct Assignment {
  at::Tensor target_labels;  // (B, A) int64
  at::Tensor target_boxes;   // (B, A, 4) xyxy, in the units of the GT boxes given
  at::Tensor target_scores;  // (B, A, C) soft, 0 for background
  at::Tensor fg_mask;        // (B, A) bool
};

struct AssignerOptions {
  int topk = 10;
  int nc = 80;
  double alpha = 0.5;
  double beta = 6.0;
  double eps = 1e-9;
};

// Task-aligned assignment (no gradient). pd_scores (B, A, C) probabilities, pd_boxes (B, A, 4)
// xyxy pixels, anchors (A, 2) pixels, gt_labels (B, M, 1), gt_boxes (B, M, 4) xyxy pixels,
// mask_gt (B, M, 1) true for real (non-padding) GTs. Computed image by image on (M_i, A) tensors
// of each image's real GTs; a background anchor takes its image's first real GT's label and box
// (zeros in an image with none).
Assignment AssignTaskAligned(const at::Tensor& pd_scores, const at::Tensor& pd_boxes,
                             const at::Tensor& anchors, const at::Tensor& gt_labels,
                             const at::Tensor& gt_boxes, const at::Tensor& mask_gt,
                             const AssignerOptions& options);

// DFL per anchor: pred (n, reg_max) logits, target (n) distances in [0, reg_max - 1.01];
// returns (n) the interpolated cross-entropy of the two neighbouring bins.
at::Tensor DistributionFocalLoss(const at::Tensor& pred, const at::Tensor& target);

// The head's levels (B, no, H_i, W_i) as (B, A, split) and (B, A, no - split) (box bins and
// class logits), anchors in level order, as cat, narrow, permute and contiguous would give them.
// One copy each way: autograd's own ops would give backward a zeroed (B, no, A) for each of the
// two narrows and their sum, three tensors the size of the head's output at the step's peak
// (the start of backward, while every x̂ is still live).
std::pair<at::Tensor, at::Tensor> SplitHeadOutputs(const std::vector<at::Tensor>& raw,
                                                   int64_t split);

// Decodes (B, A, 4 * reg_max) bin logits into distances (B, A, 4) by softmax expectation.
at::Tensor DecodeDistances(const at::Tensor& pred_dist, int reg_max);

struct LossGains {
  double box = 7.5, cls = 0.5, dfl = 1.5;
};

struct LossOutput {
  at::Tensor total;  // scalar: (gain-weighted sum) x batch size, for backward
  at::Tensor items;  // (3) box, cls, dfl: gain-weighted, detached, without the batch factor
};

// Targets as collated: batch_idx (N), cls (N), boxes (N, 4) normalised centre-xywh.
struct DetectionTargets {
  at::Tensor batch_idx;
  at::Tensor cls;
  at::Tensor boxes;
};

class DetectionLoss {
 public:
  DetectionLoss(int nc, std::vector<double> strides, LossGains gains, int reg_max = 16);
  // `raw`: the Detect head's per-level outputs (B, 4 * reg_max + nc, H, W).
  // `assignment`, when given, receives the assigner's result (boxes in input pixels).
  LossOutput operator()(const std::vector<at::Tensor>& raw, const DetectionTargets& targets,
                        Assignment* assignment = nullptr) const;
  // Data-parallel training: the normaliser (the sum of the target scores) is summed over every
  // rank's batch, so that each rank's losses are its share of the whole batch's; the ranks'
  // items then add up to the loss one process would compute for all their images.
  void set_rank_sum(RankSum sum) { rank_sum_ = std::move(sum); }

 private:
  int nc_;
  std::vector<double> strides_;
  LossGains gains_;
  int reg_max_;
  AssignerOptions assigner_;
  RankSum rank_sum_;
};

}  // namespace yolo
