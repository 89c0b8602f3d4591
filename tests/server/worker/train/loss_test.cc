#include "server/worker/train/loss.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <filesystem>

#include "server/worker/train/boxes.h"
#include "server/worker/train/loader.h"
#include "server/worker/train/model.h"
#include "server/worker/train/optim.h"
#include "server/worker/train/shapes_dataset.h"

namespace yolo {
namespace {

// The assignment computed for the whole batch at once on (B, M, A) tensors, the formulation
// the image-by-image assigner must agree with.
Assignment AssignBatched(const at::Tensor& pd_scores, const at::Tensor& pd_boxes,
                         const at::Tensor& anchors, const at::Tensor& gt_labels,
                         const at::Tensor& gt_boxes, const at::Tensor& mask_gt,
                         const AssignerOptions& o) {
  at::NoGradGuard no_grad;
  const int64_t b = pd_scores.size(0), a = pd_scores.size(1), m = gt_boxes.size(1);
  Assignment out;
  if (m == 0) {
    out.target_labels = at::zeros({b, a}, pd_scores.options().dtype(at::kLong));
    out.target_boxes = at::zeros({b, a, 4}, pd_boxes.options());
    out.target_scores = at::zeros_like(pd_scores);
    out.fg_mask = at::zeros({b, a}, pd_scores.options().dtype(at::kBool));
    return out;
  }
  // Anchors whose centre lies strictly inside a GT box.
  at::Tensor anc = anchors.view({1, 1, a, 2});
  at::Tensor lt = anc - gt_boxes.narrow(-1, 0, 2).unsqueeze(2);
  at::Tensor rb = gt_boxes.narrow(-1, 2, 2).unsqueeze(2) - anc;
  at::Tensor mask_in = at::cat({lt, rb}, -1).amin(-1).gt(o.eps);  // (B, M, A)
  at::Tensor valid = mask_in.logical_and(mask_gt.to(at::kBool));  // (B, M, A)

  at::Tensor labels = gt_labels.to(at::kLong).squeeze(-1).clamp_min(0);  // (B, M)
  at::Tensor scores =
      pd_scores.permute({0, 2, 1}).gather(1, labels.unsqueeze(-1).expand({b, m, a}));
  at::Tensor overlaps =
      BoxIou(gt_boxes.unsqueeze(2), pd_boxes.unsqueeze(1), /*ciou=*/true).squeeze(-1).clamp_min(0);
  at::Tensor validf = valid.to(overlaps.scalar_type());
  overlaps = overlaps * validf;
  scores = scores * validf;
  at::Tensor align = scores.pow(o.alpha) * overlaps.pow(o.beta);  // (B, M, A)

  const int64_t k = std::min<int64_t>(o.topk, a);
  at::Tensor topk_idx = std::get<1>(align.topk(k, -1, /*largest=*/true));  // (B, M, k)
  at::Tensor count = at::zeros({b, m, a}, align.options());
  count.scatter_add_(-1, topk_idx, at::ones_like(topk_idx, align.options()));
  at::Tensor mask_pos = count.eq(1).logical_and(valid);  // (B, M, A)

  // An anchor claimed by several GTs goes to the one it overlaps most.
  at::Tensor fg = mask_pos.sum(1);  // (B, A)
  if (fg.max().item<int64_t>() > 1) {
    at::Tensor multi = fg.unsqueeze(1).gt(1).expand({b, m, a});
    at::Tensor best = at::one_hot(overlaps.argmax(1), m).permute({0, 2, 1}).to(at::kBool);
    mask_pos = at::where(multi, best, mask_pos);
  }
  at::Tensor fg_mask = mask_pos.any(1);                   // (B, A)
  at::Tensor gt_idx = mask_pos.to(at::kFloat).argmax(1);  // (B, A)

  at::Tensor flat = gt_idx + at::arange(b, gt_idx.options()).unsqueeze(-1) * m;
  out.target_labels = labels.flatten().index_select(0, flat.flatten()).view({b, a});
  out.target_boxes = gt_boxes.reshape({-1, 4}).index_select(0, flat.flatten()).view({b, a, 4});
  at::Tensor one_hot = at::one_hot(out.target_labels, o.nc).to(pd_scores.scalar_type());
  one_hot = one_hot * fg_mask.unsqueeze(-1).to(one_hot.scalar_type());

  at::Tensor mask_posf = mask_pos.to(align.scalar_type());
  align = align * mask_posf;
  at::Tensor pos_align_max = align.amax(-1, /*keepdim=*/true);                  // (B, M, 1)
  at::Tensor pos_overlaps = (overlaps * mask_posf).amax(-1, /*keepdim=*/true);  // (B, M, 1)
  at::Tensor norm = (align * pos_overlaps / (pos_align_max + o.eps)).amax(1).unsqueeze(-1);
  out.target_scores = one_hot * norm;
  out.fg_mask = fg_mask;
  return out;
}

// Four anchors of a 2x2 grid at stride 8, in pixels.
// Each anchor predicts exactly its own 8x8 cell.
at::Tensor CellBoxes() {
  return at::tensor(
             {0.f, 0.f, 8.f, 8.f, 8.f, 0.f, 16.f, 8.f, 0.f, 8.f, 8.f, 16.f, 8.f, 8.f, 16.f, 16.f})
      .view({1, 4, 4});
}

at::Tensor Anchors() {
  return at::tensor({4.f, 4.f, 12.f, 4.f, 4.f, 12.f, 12.f, 12.f}).view({4, 2});
}

// Assigns two GTs (labels, xyxy boxes, real-or-padding flags) on the 2x2 grid, every anchor
// predicting its own cell with probability 0.5 for both classes.
Assignment AssignTwoGts(std::vector<float> labels, std::vector<float> boxes,
                        std::vector<int> real) {
  AssignerOptions o;
  o.nc = 2;
  return AssignTaskAligned(at::full({1, 4, 2}, 0.5f), CellBoxes(), Anchors(),
                           at::tensor(labels).view({1, 2, 1}), at::tensor(boxes).view({1, 2, 4}),
                           at::tensor(real).to(at::kBool).view({1, 2, 1}), o);
}

TEST(AssignerTest, AnchorInsideTheBoxGetsItsClassAndBox) {
  // One real GT (class 1) and one padding row.
  Assignment a = AssignTwoGts({1, 0}, {0, 0, 8, 8, 0, 0, 0, 0}, {1, 0});
  at::Tensor gt = at::tensor({0.f, 0.f, 8.f, 8.f});
  EXPECT_TRUE(a.fg_mask[0][0].item<bool>());
  EXPECT_EQ(a.fg_mask.sum().item<int64_t>(), 1);
  EXPECT_EQ(a.target_labels[0][0].item<int64_t>(), 1);
  EXPECT_TRUE(at::allclose(a.target_boxes[0][0], gt));
  // Normalised by the GT's best alignment and overlap: exactly its IoU, here 1.
  EXPECT_NEAR(a.target_scores[0][0][1].item<float>(), 1.0, 1e-4);
  EXPECT_NEAR(a.target_scores[0][0][0].item<float>(), 0.0, 1e-7);
  EXPECT_NEAR(a.target_scores[0][1].sum().item<float>(), 0.0, 1e-7);
}

TEST(AssignerTest, SharedAnchorGoesToTheBestOverlappingGt) {
  Assignment a = AssignTwoGts({0, 1}, {8, 0, 16, 8, 6, 0, 20, 10}, {1, 1});
  at::Tensor first_gt = at::tensor({8.f, 0.f, 16.f, 8.f});
  EXPECT_EQ(a.fg_mask.sum().item<int64_t>(), 1);
  EXPECT_TRUE(a.fg_mask[0][1].item<bool>());
  EXPECT_EQ(a.target_labels[0][1].item<int64_t>(), 0);
  EXPECT_TRUE(at::allclose(a.target_boxes[0][1], first_gt));
}

TEST(AssignerTest, ImageByImageAgreesWithTheWholeBatchAtOnce) {
  // Three images with 5, 0 and 2 real GTs among 5 rows, padding trailing; random predictions
  // on a 16x16 grid at stride 4.
  at::manual_seed(3);
  const int64_t b = 3, m = 5, g = 16, c = 4;
  at::Tensor ys = at::arange(g, at::kFloat).add_(0.5).mul_(4);
  at::Tensor anchors = at::stack({ys.repeat({g}), ys.repeat_interleave(g)}, -1);  // (A, 2)
  const int64_t a = anchors.size(0);
  at::Tensor centre = anchors.unsqueeze(0).expand({b, a, 2});
  at::Tensor half = at::rand({b, a, 2}) * 12 + 1;
  at::Tensor pd_boxes = at::cat({centre - half, centre + half}, -1);
  at::Tensor pd_scores = at::rand({b, a, c});
  at::Tensor xy = at::rand({b, m, 2}) * 40, wh = at::rand({b, m, 2}) * 24 + 4;
  at::Tensor gt_boxes = at::cat({xy, xy + wh}, -1);
  at::Tensor gt_labels = at::randint(c, {b, m, 1}).to(at::kFloat);
  at::Tensor real =
      at::tensor({1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0}).to(at::kBool).view({b, m, 1});
  gt_boxes = gt_boxes * real;
  gt_labels = gt_labels * real;
  AssignerOptions o;
  o.nc = c;
  Assignment got = AssignTaskAligned(pd_scores, pd_boxes, anchors, gt_labels, gt_boxes, real, o);
  Assignment want = AssignBatched(pd_scores, pd_boxes, anchors, gt_labels, gt_boxes, real, o);
  ASSERT_GT(want.fg_mask.sum().item<int64_t>(), 10);
  EXPECT_TRUE(got.fg_mask.equal(want.fg_mask));
  EXPECT_TRUE(got.target_labels.equal(want.target_labels));
  EXPECT_TRUE(at::allclose(got.target_boxes, want.target_boxes));
  EXPECT_TRUE(at::allclose(got.target_scores, want.target_scores, 1e-5, 1e-7));
  EXPECT_GT(got.target_scores.sum().item<float>(), 0);
}

TEST(AssignerTest, NoGtMeansAllBackground) {
  AssignerOptions o;
  o.nc = 2;
  Assignment a = AssignTaskAligned(at::full({2, 4, 2}, 0.5f), at::zeros({2, 4, 4}), Anchors(),
                                   at::zeros({2, 0, 1}), at::zeros({2, 0, 4}),
                                   at::zeros({2, 0, 1}, at::kBool), o);
  EXPECT_EQ(a.fg_mask.sum().item<int64_t>(), 0);
  EXPECT_EQ(a.target_scores.sum().item<float>(), 0);
}

// The head's levels split into box bins and class logits: the values and the levels' gradients
// of cat, narrow, permute and contiguous, exactly.
TEST(DetectionLossTest, SplitHeadOutputsIsCatNarrowAndPermute) {
  torch::manual_seed(8);
  const int64_t b = 2, no = 64 + 3;
  std::vector<at::Tensor> raw, ref;
  for (int64_t s : {8, 4, 2}) {
    raw.push_back(torch::randn({b, no, s, s + 1}, torch::requires_grad()));
    ref.push_back(raw.back().detach().clone().set_requires_grad(true));
  }
  auto [dist, scores] = SplitHeadOutputs(raw, 64);
  std::vector<at::Tensor> flat;
  for (const at::Tensor& r : ref) flat.push_back(r.reshape({b, no, -1}));
  const at::Tensor all = at::cat(flat, 2);
  const at::Tensor ref_dist = all.narrow(1, 0, 64).permute({0, 2, 1}).contiguous();
  const at::Tensor ref_scores = all.narrow(1, 64, 3).permute({0, 2, 1}).contiguous();
  ASSERT_TRUE(dist.is_contiguous() && scores.is_contiguous());
  EXPECT_TRUE(at::equal(dist, ref_dist));
  EXPECT_TRUE(at::equal(scores, ref_scores));
  const at::Tensor up_dist = at::randn(dist.sizes()), up_scores = at::randn(scores.sizes());
  ((dist * up_dist).sum() + (scores * up_scores).sum()).backward();
  ((ref_dist * up_dist).sum() + (ref_scores * up_scores).sum()).backward();
  for (size_t i = 0; i < raw.size(); ++i) {
    EXPECT_TRUE(at::equal(raw[i].grad(), ref[i].grad())) << "level " << i;
  }
}

TEST(DetectionLossTest, LossFallsOnAMicroSet) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("loss_micro_" + std::to_string(::getpid()));
  ShapesOptions so;
  so.out_dir = dir.string();
  so.train = 4, so.val = 1, so.imgsz = 64;
  ASSERT_TRUE(MakeShapesDataset(so).ok());
  auto scan = ScanDataset({(dir / "images/train").string()}, 3, false, 1);
  ASSERT_TRUE(scan.ok());
  LoaderOptions lo;
  lo.imgsz = 64, lo.batch = 4, lo.workers = 0;
  BatchLoader loader(scan->images, lo);
  loader.StartEpoch(0, false);
  auto batch = loader.Next();
  ASSERT_TRUE(batch.has_value());
  ASSERT_GT(batch->instances, 0);

  torch::manual_seed(0);
  auto scale = ScaleFromName("yolov8n");
  DetectionModel model(*scale, 3);
  model->train();
  auto opt = MakeOptimizer({"AdamW", 0.002, 0.9, 0}, SplitParameters(*model), 0.0);
  DetectionLoss loss(3, model->detect->strides, LossGains{});
  at::Tensor input = ModelInput(*batch, c10::Device(c10::kCPU));
  // YOLOv8's loss is normalised by the sum of the assigner's target scores, which start near
  // zero while predicted boxes are random: the loss rises over the first steps, then falls.
  std::vector<double> losses;
  for (int step = 0; step < 40; ++step) {
    LossOutput out = loss(model->forward(input), batch->targets);
    ASSERT_TRUE(std::isfinite(out.total.item<double>()));
    losses.push_back(out.items.sum().item<double>());
    opt->zero_grad();
    out.total.backward();
    opt->step();
  }
  const double early = *std::max_element(losses.begin(), losses.begin() + 10);
  const double late = (losses[35] + losses[36] + losses[37] + losses[38] + losses[39]) / 5;
  EXPECT_LT(late, 0.5 * early) << "early peak " << early << ", last five " << late;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace yolo
