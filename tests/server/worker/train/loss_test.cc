#include "server/worker/train/loss.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <filesystem>

#include "server/worker/train/loader.h"
#include "server/worker/train/model.h"
#include "server/worker/train/optim.h"
#include "server/worker/train/shapes_dataset.h"

namespace yolo {
namespace {

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

TEST(AssignerTest, NoGtMeansAllBackground) {
  AssignerOptions o;
  o.nc = 2;
  Assignment a = AssignTaskAligned(at::full({2, 4, 2}, 0.5f), at::zeros({2, 4, 4}), Anchors(),
                                   at::zeros({2, 0, 1}), at::zeros({2, 0, 4}),
                                   at::zeros({2, 0, 1}, at::kBool), o);
  EXPECT_EQ(a.fg_mask.sum().item<int64_t>(), 0);
  EXPECT_EQ(a.target_scores.sum().item<float>(), 0);
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
