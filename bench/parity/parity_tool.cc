// yolod's half of the parity harness (bench/parity/run.sh): writes what yolod computes as
// PyTorch-readable files (torch.load gives a dict of tensors named as Ultralytics names them),
// for peer_parity.py to compare with Ultralytics 8.1.47 on the same input.
//
//   parity_tool init   scale=n nc=3 seed=0 out=DIR
//       DIR/init.state: the model as `yolo-worker train seed=S` initialises it;
//       DIR/init.pt:    the same weights as a yolod checkpoint, to train from with model=
//   parity_tool step   data=YAML state=FILE out=FILE [imgsz=320] [batch=8]
//                      [batches=FILE index=K]
//       the first batch of the train split (no augmentation, file order), or batch K of a file
//       that `batches` wrote (augmented, mosaics with many overlapping boxes), through one training
//       step: the batch, the raw outputs, the loss terms, the assigner's result, the BatchNorm
//       statistics after the forward pass and every parameter's gradient
//   parity_tool export ckpt=FILE out=FILE
//       the training model ("model.*") and its EMA ("ema.*") of a yolod checkpoint
//   parity_tool augment data=YAML out=FILE [imgsz=320] [batch=16] [samples=2048] [seed=0]
//                       [key=value training arguments, e.g. mosaic=0]
//       statistics of the training loader's samples, with the default augmentation, epoch
//       after epoch: objects per image, every box's width and height (fractions of the image),
//       each image's mean R, G, B and H, S, V (OpenCV's 8-bit HSV)
//   parity_tool batches data=YAML out=DIR [epochs=30] [imgsz=320] [batch=16] [seed=0]
//                       [key=value training arguments]
//       every training batch of a whole run, as the trainer's loader makes them (shuffle,
//       augmentation, mosaic closing at close_mosaic): DIR/eN.pt for epoch N (0-based) holds
//       img.K (uint8 RGB), batch_idx.K, cls.K and bboxes.K (normalised xywh) of batch K, for
//       `peer_parity.py replay` to train Ultralytics on
//   parity_tool plan n=N out=FILE [epochs=2] [batch=16] [close_mosaic_epoch=-1]
//       the trainer's visiting order and the mosaic buffer at every position (order.E,
//       buffer.E.P), for `peer_parity.py plan` to compare with Ultralytics' loader
//   parity_tool geometry data=YAML out=FILE [imgsz=320] [cases=500] [mosaic=1]
//       a training sample's augmentation (mosaic, affine, HSV, flips) on chosen images (case c:
//       images c, 7c+1, 13c+2 and 29c+3 of the train split), with the random draws it made: the
//       mosaic's centre, the affine's eight parameters, the HSV gains and flips; the boxes before
//       and after the affine and at the end, and the final image, for `peer_parity.py geometry` to
//       put the same draws through Ultralytics' transforms
//
// The layout follows the trainer's: the blocked one with the fused BatchNorm+SiLU where the CPU
// allows; YOLO_BLOCKED_LAYOUT=0 and YOLO_FUSED_BN=0 select the others.
#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/data_config.h"
#include "common/status_macros.h"
#include "common/train_args.h"
#include "server/worker/train/blocked_ops.h"
#include "server/worker/train/checkpoint.h"
#include "server/worker/train/dataset.h"
#include "server/worker/train/loader.h"
#include "server/worker/train/loss.h"
#include "server/worker/train/model.h"
#include "server/worker/train/run_support.h"

namespace yolo {
namespace {

using Args = std::map<std::string, std::string>;
using TensorDict = c10::Dict<std::string, at::Tensor>;

std::string Get(const Args& a, const std::string& key, const std::string& fallback = "") {
  auto it = a.find(key);
  return it == a.end() ? fallback : it->second;
}

// The training arguments among `a` (Ultralytics' defaults for the rest), leaving out the verb's
// own keys.
absl::StatusOr<TrainArgs> TrainArgsOf(const Args& a, std::initializer_list<const char*> own) {
  TrainArgs args;
  for (const auto& [key, value] : a) {
    if (std::find(own.begin(), own.end(), key) == own.end()) RETURN_IF_ERROR(args.Set(key, value));
  }
  return args;
}

absl::StatusOr<int> GetInt(const Args& a, const std::string& key, int fallback) {
  const std::string v = Get(a, key);
  if (v.empty()) return fallback;
  int out = 0;
  if (!absl::SimpleAtoi(v, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", key, "' must be an integer, not '", v, "'"));
  }
  return out;
}

absl::Status WriteDict(const TensorDict& dict, const std::string& path) {
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<TensorDict> ReadDict(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  c10::IValue v = torch::jit::pickle_load(bytes);
  TensorDict out;
  for (const auto& item : v.toGenericDict()) {
    out.insert(item.key().toStringRef(), item.value().toTensor());
  }
  return out;
}

// Every parameter and buffer under its Ultralytics name, prefixed.
void AddState(torch::nn::Module& model, const std::string& prefix, TensorDict* dict) {
  for (const auto& p : model.named_parameters()) {
    dict->insert(prefix + p.key(), p.value().detach().clone());
  }
  for (const auto& b : model.named_buffers()) {
    dict->insert(prefix + b.key(), b.value().detach().clone());
  }
}

absl::Status LoadState(const TensorDict& dict, torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  int copied = 0;
  auto copy = [&](const std::string& name, at::Tensor dst) -> absl::Status {
    if (!dict.contains(name)) return absl::NotFoundError(absl::StrCat("state lacks ", name));
    at::Tensor src = dict.at(name);
    if (!src.sizes().equals(dst.sizes())) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": shape mismatch"));
    }
    dst.copy_(src);
    ++copied;
    return absl::OkStatus();
  };
  for (auto& p : model.named_parameters()) RETURN_IF_ERROR(copy(p.key(), p.value()));
  for (auto& b : model.named_buffers()) RETURN_IF_ERROR(copy(b.key(), b.value()));
  if (static_cast<size_t>(copied) != dict.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("state has ", dict.size(), " tensors, the model ", copied));
  }
  return absl::OkStatus();
}

absl::Status Init(const Args& a) {
  ASSIGN_OR_RETURN(ModelScale scale, ScaleFromName(Get(a, "scale", "n")));
  ASSIGN_OR_RETURN(int nc, GetInt(a, "nc", 3));
  ASSIGN_OR_RETURN(int seed, GetInt(a, "seed", 0));
  const std::string out = Get(a, "out");
  if (out.empty()) return absl::InvalidArgumentError("init: out=DIR is required");
  std::filesystem::create_directories(out);
  SeedLikeUltralytics(seed);
  DetectionModel model(scale, nc);
  TensorDict dict;
  AddState(*model, "", &dict);
  RETURN_IF_ERROR(WriteDict(dict, out + "/init.state"));
  CheckpointMeta meta;
  meta.epoch = -1;  // a finished run's format: trained from with model=, not resumed
  meta.scale = std::string(1, scale.letter);
  meta.nc = nc;
  for (int c = 0; c < nc; ++c) absl::StrAppend(&meta.names, c ? "\n" : "", "class", c);
  return SaveCheckpoint(out + "/init.pt", meta, model, nullptr, nullptr);
}

absl::Status Step(const Args& a) {
  ASSIGN_OR_RETURN(int imgsz, GetInt(a, "imgsz", 320));
  ASSIGN_OR_RETURN(int batch_size, GetInt(a, "batch", 8));
  ASSIGN_OR_RETURN(ModelScale scale, ScaleFromName(Get(a, "scale", "n")));
  ASSIGN_OR_RETURN(DataConfig data, LoadDataConfig(Get(a, "data")));
  ASSIGN_OR_RETURN(DatasetScan scan, ScanDataset(data.train, data.nc(), false, 2));
  ASSIGN_OR_RETURN(TensorDict init, ReadDict(Get(a, "state")));
  const std::string out = Get(a, "out");
  if (out.empty()) return absl::InvalidArgumentError("step: out=FILE is required");

  std::optional<Batch> batch;
  if (const std::string file = Get(a, "batches"); !file.empty()) {  // a training batch
    ASSIGN_OR_RETURN(TensorDict saved, ReadDict(file));
    const std::string k = Get(a, "index", "0");
    if (!saved.contains("img." + k)) return absl::NotFoundError("no batch " + k + " in " + file);
    batch.emplace();
    batch->images = saved.at("img." + k);
    batch->targets.batch_idx = saved.at("batch_idx." + k).view({-1}).to(at::kFloat);
    batch->targets.cls = saved.at("cls." + k).view({-1}).to(at::kFloat);
    batch->targets.boxes = saved.at("bboxes." + k).to(at::kFloat);
    batch->instances = static_cast<int>(batch->targets.cls.numel());
  } else {
    LoaderOptions o;
    o.imgsz = imgsz;
    o.batch = batch_size;
    o.workers = 0;
    BatchLoader loader(std::move(scan.images), o);
    loader.StartEpoch(0, /*mosaic=*/false);
    batch = loader.Next();
    if (!batch) return absl::FailedPreconditionError("the train split is empty");
  }

  DetectionModel model(scale, data.nc());
  RETURN_IF_ERROR(LoadState(init, *model));
  model->train();
  DetectionLoss loss(data.nc(), model->detect->strides, LossGains{});
  const at::Tensor input = ModelInput(*batch, c10::Device(c10::kCPU));
  std::vector<at::Tensor> raw = model->forward(input);
  Assignment assigned;
  LossOutput l = loss(raw, batch->targets, &assigned);
  l.total.backward();

  TensorDict d;
  d.insert("batch.img", batch->images);
  d.insert("batch.batch_idx", batch->targets.batch_idx);
  d.insert("batch.cls", batch->targets.cls);
  d.insert("batch.bboxes", batch->targets.boxes);
  for (size_t i = 0; i < raw.size(); ++i) d.insert(absl::StrCat("out.", i), raw[i].detach());
  d.insert("loss.total", l.total.detach());
  d.insert("loss.items", l.items);
  d.insert("assign.fg_mask", assigned.fg_mask);
  d.insert("assign.target_scores", assigned.target_scores);
  d.insert("assign.target_bboxes", assigned.target_boxes);
  for (const auto& b : model->named_buffers()) d.insert("after." + b.key(), b.value().clone());
  for (const auto& p : model->named_parameters()) {
    if (p.value().grad().defined()) d.insert("grad." + p.key(), p.value().grad());
  }
  const char* layout = !FusedBatchNormEnabled()          ? "NCHW, LibTorch's BatchNorm"
                       : model->UsesBlockedLayout(input) ? "blocked, fused BatchNorm"
                                                         : "NCHW, fused BatchNorm";
  std::printf("step: %lld images %dx%d, %d targets, layout %s%s, loss %.6f\n",
              static_cast<long long>(batch->images.size(0)), static_cast<int>(input.size(2)),
              static_cast<int>(input.size(3)), batch->instances, layout,
              FusedBatchNormEnabled() && FusedBatchNormKeepsBf16() ? " (bf16 x̂)" : "",
              l.total.item<double>());
  return WriteDict(d, out);
}

absl::Status Augment(const Args& a) {
  ASSIGN_OR_RETURN(TrainArgs args, TrainArgsOf(a, {"data", "out", "samples", "dump"}));
  ASSIGN_OR_RETURN(int samples, GetInt(a, "samples", 2048));
  const std::string dump = Get(a, "dump");  // a folder for PNGs of the first 8 samples
  ASSIGN_OR_RETURN(DataConfig data, LoadDataConfig(Get(a, "data")));
  ASSIGN_OR_RETURN(DatasetScan scan, ScanDataset(data.train, data.nc(), false, 2));
  const std::string out = Get(a, "out");
  if (out.empty()) return absl::InvalidArgumentError("augment: out=FILE is required");
  const int imgsz = CheckImgsz(args);
  BatchLoader loader(std::move(scan.images),
                     TrainLoaderOptions(args, imgsz, static_cast<int>(args.GetInt("batch")),
                                        static_cast<int>(args.GetInt("epochs"))));
  std::vector<float> objects, widths, heights, colour;
  for (int epoch = 0; static_cast<int>(objects.size()) < samples; ++epoch) {
    loader.StartEpoch(epoch, /*mosaic=*/true);
    while (auto batch = loader.Next()) {
      const int64_t b = batch->images.size(0);
      const at::Tensor idx = batch->targets.batch_idx.to(at::kLong);
      const at::Tensor boxes = batch->targets.boxes;
      for (int64_t i = 0; i < b && static_cast<int>(objects.size()) < samples; ++i) {
        const at::Tensor mine = idx.eq(i);
        objects.push_back(static_cast<float>(mine.sum().item<int64_t>()));
        const at::Tensor wh = boxes.index({mine}).narrow(1, 2, 2).contiguous();
        for (int64_t k = 0; k < wh.size(0); ++k) {
          widths.push_back(wh[k][0].item<float>());
          heights.push_back(wh[k][1].item<float>());
        }
        // (3, H, W) RGB planes -> an interleaved image, its channel means in RGB and in HSV.
        const at::Tensor hwc = batch->images[i].permute({1, 2, 0}).contiguous();
        cv::Mat rgb(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC3,
                    hwc.data_ptr<uint8_t>());
        cv::Mat hsv;
        cv::cvtColor(rgb, hsv, cv::COLOR_RGB2HSV);
        const cv::Scalar m = cv::mean(rgb), mh = cv::mean(hsv);
        if (!dump.empty() && objects.size() <= 8) {  // a look at the first samples
          cv::Mat bgr;
          cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
          const at::Tensor xywh = boxes.index({mine});
          for (int64_t k = 0; k < xywh.size(0); ++k) {
            const float cx = xywh[k][0].item<float>() * bgr.cols,
                        cy = xywh[k][1].item<float>() * bgr.rows;
            const float bw = xywh[k][2].item<float>() * bgr.cols,
                        bh = xywh[k][3].item<float>() * bgr.rows;
            cv::rectangle(bgr, cv::Point2f(cx - bw / 2, cy - bh / 2),
                          cv::Point2f(cx + bw / 2, cy + bh / 2), cv::Scalar(0, 0, 255), 1);
          }
          cv::imwrite(absl::StrCat(dump, "/sample", objects.size(), ".png"), bgr);
        }
        for (int c = 0; c < 3; ++c) colour.push_back(static_cast<float>(m[c]));
        for (int c = 0; c < 3; ++c) colour.push_back(static_cast<float>(mh[c]));
      }
      if (static_cast<int>(objects.size()) >= samples) break;
    }
  }
  auto tensor = [](std::vector<float>& v) {
    return at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kFloat).clone();
  };
  TensorDict d;
  d.insert("objects", tensor(objects));
  d.insert("box_w", tensor(widths));
  d.insert("box_h", tensor(heights));
  d.insert("colour", tensor(colour).view({-1, 6}));
  std::printf("augment: %zu samples, %zu boxes\n", objects.size(), widths.size());
  return WriteDict(d, out);
}

absl::Status Batches(const Args& a) {
  ASSIGN_OR_RETURN(TrainArgs args, TrainArgsOf(a, {"data", "out"}));
  ASSIGN_OR_RETURN(DataConfig data, LoadDataConfig(Get(a, "data")));
  ASSIGN_OR_RETURN(DatasetScan scan, ScanDataset(data.train, data.nc(), false, 2));
  const std::string out = Get(a, "out");
  if (out.empty()) return absl::InvalidArgumentError("batches: out=DIR is required");
  std::filesystem::create_directories(out);
  const int epochs = static_cast<int>(args.GetInt("epochs"));
  const int imgsz = CheckImgsz(args);
  const LoaderOptions o =  // as TrainRun sets up its train loader
      TrainLoaderOptions(args, imgsz, static_cast<int>(args.GetInt("batch")), epochs);
  BatchLoader loader(std::move(scan.images), o);
  for (int epoch = 0; epoch < epochs; ++epoch) {
    loader.StartEpoch(epoch, o.close_mosaic_epoch < 0 || epoch < o.close_mosaic_epoch);
    TensorDict d;
    int k = 0;
    while (auto batch = loader.Next()) {
      d.insert(absl::StrCat("img.", k), batch->images.clone());
      d.insert(absl::StrCat("batch_idx.", k), batch->targets.batch_idx.to(at::kFloat));
      d.insert(absl::StrCat("cls.", k), batch->targets.cls.to(at::kFloat).view({-1, 1}));
      d.insert(absl::StrCat("bboxes.", k), batch->targets.boxes);
      ++k;
    }
    RETURN_IF_ERROR(WriteDict(d, absl::StrCat(out, "/e", epoch, ".pt")));
  }
  std::printf("batches: %d epochs -> %s\n", epochs, out.c_str());
  return absl::OkStatus();
}

absl::Status Plan(const Args& a) {
  ASSIGN_OR_RETURN(int n, GetInt(a, "n", 0));
  ASSIGN_OR_RETURN(int epochs, GetInt(a, "epochs", 2));
  ASSIGN_OR_RETURN(int batch, GetInt(a, "batch", 16));
  ASSIGN_OR_RETURN(int close_at, GetInt(a, "close_mosaic_epoch", -1));
  const std::string out = Get(a, "out");
  if (n <= 0 || out.empty())
    return absl::InvalidArgumentError("plan: n=N and out=FILE are required");
  EpochPlanner planner(n, batch, /*shuffle=*/true, close_at);
  TensorDict d;
  for (int e = 0; e < epochs; ++e) {
    std::shared_ptr<const EpochPlanner::Plan> plan = planner.ForEpoch(e);
    d.insert(absl::StrCat("order.", e),
             at::tensor(std::vector<int64_t>(plan->order.begin(), plan->order.end())));
    for (int p = 0; p < n; ++p) {
      std::vector<int64_t> buffer;
      for (int k = 0; k < plan->BufferSize(p); ++k) buffer.push_back(plan->BufferImage(p, k));
      d.insert(absl::StrCat("buffer.", e, ".", p), at::tensor(buffer));
    }
  }
  return WriteDict(d, out);
}

absl::Status Geometry(const Args& a) {
  ASSIGN_OR_RETURN(TrainArgs args, TrainArgsOf(a, {"data", "out", "cases"}));
  ASSIGN_OR_RETURN(int cases, GetInt(a, "cases", 500));
  ASSIGN_OR_RETURN(DataConfig data, LoadDataConfig(Get(a, "data")));
  ASSIGN_OR_RETURN(DatasetScan scan, ScanDataset(data.train, data.nc(), false, 2));
  const std::string out = Get(a, "out");
  if (out.empty()) return absl::InvalidArgumentError("geometry: out=FILE is required");
  const int imgsz = CheckImgsz(args);
  const bool mosaic = args.GetFloat("mosaic") > 0;
  const AugmentParams hyp = BaseLoaderOptions(args, imgsz).hyp;
  const int n = static_cast<int>(scan.images.size());
  auto load = [&](int index) {
    const ImageRecord& r = scan.images[index];
    Sample s;
    s.image = ResizeLongSide(cv::imread(r.path, cv::IMREAD_COLOR), imgsz);
    s.boxes = ToPixelBoxes(r.labels, s.image.cols, s.image.rows);
    return s;
  };
  auto boxes_tensor = [](const std::vector<PixelBox>& boxes) {
    at::Tensor t = at::empty({static_cast<int64_t>(boxes.size()), 5}, at::kFloat);
    for (size_t k = 0; k < boxes.size(); ++k) {
      const PixelBox& b = boxes[k];
      const float row[5] = {static_cast<float>(b.cls), b.x1, b.y1, b.x2, b.y2};
      for (int j = 0; j < 5; ++j) t[static_cast<int64_t>(k)][j] = row[j];
    }
    return t;
  };
  TensorDict d;
  for (int c = 0; c < cases; ++c) {
    const int64_t ic = c;
    const at::Tensor images =
        at::tensor({ic % n, (7 * ic + 1) % n, (13 * ic + 2) % n, (29 * ic + 3) % n}, at::kLong);
    std::mt19937 rng(static_cast<uint32_t>(c));
    Sample sample;
    std::vector<double> draws;  // as the functions draw them, from a copy of the generator
    if (mosaic) {
      std::vector<Sample> four;
      for (int k = 0; k < 4; ++k) four.push_back(load(static_cast<int>(images[k].item<int64_t>())));
      std::mt19937 probe = rng;
      for (int k = 0; k < 2; ++k) draws.push_back(Uniform(probe, imgsz / 2.0, 1.5 * imgsz));
      sample = Mosaic4(four, imgsz, rng);
    } else {
      sample = load(static_cast<int>(images[0].item<int64_t>()));
      sample.image =
          Letterbox(sample.image, imgsz, imgsz, /*scaleup=*/true, nullptr, &sample.boxes);
    }
    std::mt19937 probe = rng;
    const double ranges[8][2] = {{-hyp.perspective, hyp.perspective},
                                 {-hyp.perspective, hyp.perspective},
                                 {-hyp.degrees, hyp.degrees},
                                 {1 - hyp.scale, 1 + hyp.scale},
                                 {-hyp.shear, hyp.shear},
                                 {-hyp.shear, hyp.shear},
                                 {0.5 - hyp.translate, 0.5 + hyp.translate},
                                 {0.5 - hyp.translate, 0.5 + hyp.translate}};
    for (const auto& r : ranges) draws.push_back(Uniform(probe, r[0], r[1]));
    const std::string key = absl::StrCat(c);
    d.insert("images." + key, images);
    d.insert("draws." + key, at::tensor(draws, at::kDouble));
    d.insert("before." + key, boxes_tensor(sample.boxes));
    RandomAffine(&sample, hyp, cv::Size(imgsz, imgsz), rng);
    d.insert("after." + key, boxes_tensor(sample.boxes));
    // Then colour and flips, in the order TrainSample applies them.
    probe = rng;
    std::vector<double> tail;
    const bool hsv = hyp.hsv_h != 0 || hyp.hsv_s != 0 || hyp.hsv_v != 0;  // else no draws
    for (int k = 0; k < 3; ++k) tail.push_back(hsv ? Uniform(probe, -1, 1) : std::nan(""));
    for (int k = 0; k < 2; ++k) tail.push_back(Uniform(probe, 0, 1));
    d.insert("tail." + key, at::tensor(tail, at::kDouble));
    DrawColourAndFlips(hyp, rng, &sample);
    ApplyPixelFinish(sample.finish, &sample.image);  // the pass the batch's collate makes
    d.insert("final." + key, boxes_tensor(sample.boxes));
    d.insert("img." + key,
             at::from_blob(sample.image.data, {sample.image.rows, sample.image.cols, 3}, at::kByte)
                 .clone());
  }
  std::printf("geometry: %d cases%s -> %s\n", cases, mosaic ? " (mosaic)" : "", out.c_str());
  return WriteDict(d, out);
}

absl::Status Export(const Args& a) {
  ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, LoadCheckpoint(Get(a, "ckpt")));
  const std::string out = Get(a, "out");
  if (out.empty()) return absl::InvalidArgumentError("export: out=FILE is required");
  TensorDict d;
  AddState(*ckpt.raw, "model.", &d);
  AddState(*ckpt.model, "ema.", &d);
  return WriteDict(d, out);
}

}  // namespace
}  // namespace yolo

int main(int argc, char** argv) {
  using Verb = absl::Status (*)(const yolo::Args&);
  const std::pair<std::string, Verb> verbs[] = {
      {"init", yolo::Init},        {"step", yolo::Step},       {"export", yolo::Export},
      {"augment", yolo::Augment},  {"batches", yolo::Batches}, {"plan", yolo::Plan},
      {"geometry", yolo::Geometry}};
  std::vector<std::string> names;
  for (const auto& v : verbs) names.push_back(v.first);
  if (argc < 2) {
    std::fprintf(stderr, "usage: parity_tool %s key=value ... (see the source)\n",
                 absl::StrJoin(names, "|").c_str());
    return 2;
  }
  yolo::ConfigureThreads(0);
  yolo::Args args;
  for (int i = 2; i < argc; ++i) {
    const std::string word = argv[i];
    const size_t eq = word.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "error: '%s' is not key=value\n", argv[i]);
      return 2;
    }
    args[word.substr(0, eq)] = word.substr(eq + 1);
  }
  const std::string verb = argv[1];
  absl::Status s = absl::InvalidArgumentError("the verbs are " + absl::StrJoin(names, ", "));
  try {
    for (const auto& [name, run] : verbs) {
      if (name == verb) s = run(args);
    }
  } catch (const std::exception& e) {
    s = absl::InternalError(e.what());
  }
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
