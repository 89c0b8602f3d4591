#include "server/worker/train/shapes_dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/atomic_file.h"

namespace yolo {
namespace fs = std::filesystem;
namespace {

const char* const kNames[] = {"circle", "rectangle", "triangle", "ring", "cross"};

double U(std::mt19937_64& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

cv::Scalar RandomColor(std::mt19937_64& rng) {
  return cv::Scalar(U(rng, 0, 255), U(rng, 0, 255), U(rng, 0, 255));
}

double ColorDistance(const cv::Scalar& a, const cv::Scalar& b) {
  return std::sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) +
                   (a[2] - b[2]) * (a[2] - b[2]));
}

struct Box {
  double x1, y1, x2, y2;
};

double Iou(const Box& a, const Box& b) {
  const double iw = std::max(0.0, std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
  const double ih = std::max(0.0, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
  const double inter = iw * ih;
  const double uni = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return uni > 0 ? inter / uni : 0;
}

// One image of width x height with shapes of `classes` kinds, and its label text.
void DrawImage(int width, int height, int classes, std::mt19937_64& rng, cv::Mat* image,
               std::string* labels) {
  const int size = std::min(width, height);  // shapes are sized against the short side
  // Background: a linear gradient between two colours in a random direction.
  const cv::Scalar c0 = RandomColor(rng), c1 = RandomColor(rng);
  const double angle = U(rng, 0, 2 * M_PI);
  const double dx = std::cos(angle), dy = std::sin(angle);
  cv::Mat img(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    auto* row = img.ptr<cv::Vec3b>(y);
    for (int x = 0; x < width; ++x) {
      double t = ((x - width / 2.0) * dx + (y - height / 2.0) * dy) / size + 0.5;
      t = std::clamp(t, 0.0, 1.0);
      for (int c = 0; c < 3; ++c) {
        row[x][c] = cv::saturate_cast<uchar>(c0[c] * (1 - t) + c1[c] * t);
      }
    }
  }
  const cv::Scalar mean_bg = (c0 + c1) * 0.5;

  const int count = std::uniform_int_distribution<int>(1, 6)(rng);
  std::vector<Box> placed;
  labels->clear();
  for (int n = 0, tries = 0; n < count && tries < 100; ++tries) {
    const int cls = std::uniform_int_distribution<int>(0, classes - 1)(rng);
    const double side = U(rng, 0.08, 0.4) * size;
    const double aspect = cls == 0 || cls == 3 ? 1.0 : std::exp(U(rng, -0.5, 0.5));
    const double w = side * std::sqrt(aspect), h = side / std::sqrt(aspect);
    if (w >= width - 2 || h >= height - 2) continue;
    const double x1 = U(rng, 1, width - 1 - w), y1 = U(rng, 1, height - 1 - h);
    Box box{x1, y1, x1 + w, y1 + h};
    bool crowded = false;
    for (const Box& other : placed) crowded = crowded || Iou(box, other) > 0.2;
    if (crowded) continue;
    cv::Scalar color = RandomColor(rng);
    for (int k = 0; k < 10 && ColorDistance(color, mean_bg) < 80; ++k) color = RandomColor(rng);

    if (cls == 0 || cls == 3) {  // a disc, or a ring a fifth of its radius thick
      const cv::Point centre(static_cast<int>(std::lround(x1 + w / 2)),
                             static_cast<int>(std::lround(y1 + h / 2)));
      const int r = static_cast<int>(std::lround(w / 2));
      if (cls == 0) {
        cv::circle(img, centre, r, color, cv::FILLED, cv::LINE_AA);
      } else {
        const int thick = std::max(2, r / 5);
        cv::circle(img, centre, r - thick / 2, color, thick, cv::LINE_AA);
      }
      box = {centre.x - r + 0.0, centre.y - r + 0.0, centre.x + r + 1.0, centre.y + r + 1.0};
    } else if (cls == 4) {  // a cross: two bars a third of the box wide
      const int ax = static_cast<int>(std::lround(x1)), ay = static_cast<int>(std::lround(y1));
      const int bx = static_cast<int>(std::lround(x1 + w)),
                by = static_cast<int>(std::lround(y1 + h));
      const int bar_w = std::max(1, (bx - ax) / 3), bar_h = std::max(1, (by - ay) / 3);
      const int mx = (ax + bx) / 2, my = (ay + by) / 2;
      cv::rectangle(img, cv::Point(mx - bar_w / 2, ay), cv::Point(mx + bar_w / 2, by), color,
                    cv::FILLED, cv::LINE_AA);
      cv::rectangle(img, cv::Point(ax, my - bar_h / 2), cv::Point(bx, my + bar_h / 2), color,
                    cv::FILLED, cv::LINE_AA);
      box = {ax + 0.0, ay + 0.0, bx + 1.0, by + 1.0};
    } else if (cls == 1) {
      const cv::Point a(static_cast<int>(std::lround(x1)), static_cast<int>(std::lround(y1)));
      const cv::Point b(static_cast<int>(std::lround(x1 + w)),
                        static_cast<int>(std::lround(y1 + h)));
      cv::rectangle(img, a, b, color, cv::FILLED, cv::LINE_AA);
      box = {a.x + 0.0, a.y + 0.0, b.x + 1.0, b.y + 1.0};
    } else {
      // A triangle with one vertex on each of three sides of its box, so the box is tight.
      std::vector<cv::Point> pts;
      const int variant = std::uniform_int_distribution<int>(0, 3)(rng);
      auto P = [](double x, double y) {
        return cv::Point(static_cast<int>(std::lround(x)), static_cast<int>(std::lround(y)));
      };
      const double t = U(rng, 0.1, 0.9);
      if (variant == 0) pts = {P(x1 + t * w, y1), P(x1, y1 + h), P(x1 + w, y1 + h)};
      if (variant == 1) pts = {P(x1 + t * w, y1 + h), P(x1, y1), P(x1 + w, y1)};
      if (variant == 2) pts = {P(x1, y1 + t * h), P(x1 + w, y1), P(x1 + w, y1 + h)};
      if (variant == 3) pts = {P(x1 + w, y1 + t * h), P(x1, y1), P(x1, y1 + h)};
      cv::fillConvexPoly(img, pts, color, cv::LINE_AA);
      double bx1 = 1e9, by1 = 1e9, bx2 = -1e9, by2 = -1e9;
      for (const auto& p : pts) {
        bx1 = std::min<double>(bx1, p.x), by1 = std::min<double>(by1, p.y);
        bx2 = std::max<double>(bx2, p.x + 1), by2 = std::max<double>(by2, p.y + 1);
      }
      box = {bx1, by1, bx2, by2};
    }
    box = {std::clamp(box.x1, 0.0, double(width)), std::clamp(box.y1, 0.0, double(height)),
           std::clamp(box.x2, 0.0, double(width)), std::clamp(box.y2, 0.0, double(height))};
    placed.push_back(box);
    absl::StrAppend(labels,
                    absl::StrFormat("%d %.6f %.6f %.6f %.6f\n", cls, (box.x1 + box.x2) / 2 / width,
                                    (box.y1 + box.y2) / 2 / height, (box.x2 - box.x1) / width,
                                    (box.y2 - box.y1) / height));
    ++n;
  }
  // Sensor-like noise over everything.
  cv::Mat noise(height, width, CV_16SC3);
  cv::randn(noise, cv::Scalar::all(0), cv::Scalar::all(U(rng, 3, 15)));
  cv::Mat noisy;
  img.convertTo(noisy, CV_16SC3);
  noisy += noise;
  noisy.convertTo(*image, CV_8UC3);
}

absl::Status WriteSplit(const ShapesOptions& o, const std::string& split, int count,
                        uint64_t stream) {
  const fs::path images = fs::path(o.out_dir) / "images" / split;
  const fs::path labels = fs::path(o.out_dir) / "labels" / split;
  std::error_code ec;
  fs::create_directories(images, ec);
  fs::create_directories(labels, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", images.string(), ": ", ec.message()));
  for (int i = 0; i < count; ++i) {
    // Each image has its own generator so that train=N is a prefix of train=N+1.
    std::mt19937_64 rng(o.seed * 1000003ULL + stream * 7919ULL + static_cast<uint64_t>(i));
    cv::theRNG().state = rng();
    int width = o.width > 0 ? o.width : o.imgsz, height = o.height > 0 ? o.height : o.imgsz;
    if (o.mixed) {  // long side 3/8 to 1 x imgsz, aspect 1:2 to 2:1
      const double long_side = U(rng, 0.375, 1.0) * o.imgsz;
      const double aspect = std::exp(U(rng, -std::log(2.0), std::log(2.0)));  // width / height
      width = static_cast<int>(std::lround(aspect >= 1 ? long_side : long_side * aspect));
      height = static_cast<int>(std::lround(aspect >= 1 ? long_side / aspect : long_side));
    }
    cv::Mat image;
    std::string text;
    DrawImage(width, height, o.mixed ? 5 : 3, rng, &image, &text);
    const bool png = o.mixed && i % 2 == 1;
    std::vector<uchar> encoded;
    if (png) {
      cv::imencode(".png", image, encoded);
    } else {
      cv::imencode(".jpg", image, encoded, {cv::IMWRITE_JPEG_QUALITY, 95});
    }
    const std::string stem = absl::StrFormat("%s_%05d", split, i);
    absl::Status s = WriteFileAtomic((images / (stem + (png ? ".png" : ".jpg"))).string(),
                                     std::string(encoded.begin(), encoded.end()));
    if (!s.ok()) return s;
    s = WriteFileAtomic((labels / (stem + ".txt")).string(), text);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

constexpr int kMaxGeneratedSide = 8192;

absl::Status MakeShapesDataset(const ShapesOptions& o) {
  if (o.out_dir.empty()) return absl::InvalidArgumentError("make-dataset: 'out' is required");
  if (o.train < 1 || o.val < 1) {
    return absl::InvalidArgumentError("make-dataset: 'train' and 'val' must be >= 1");
  }
  if (o.imgsz < 32) return absl::InvalidArgumentError("make-dataset: 'imgsz' must be >= 32");
  if ((o.width > 0) != (o.height > 0) || o.width < 0 || o.height < 0) {
    return absl::InvalidArgumentError("make-dataset: 'width' and 'height' go together, both > 0");
  }
  if (o.width > 0 && (o.mixed || std::min(o.width, o.height) < 32 ||
                      std::max(o.width, o.height) > kMaxGeneratedSide)) {
    return absl::InvalidArgumentError(
        absl::StrCat("make-dataset: 'width' and 'height' must be 32 to ", kMaxGeneratedSide,
                     o.mixed ? " and are for the 'shapes' kind only" : ""));
  }
  std::string size = o.width > 0 ? absl::StrCat(" width=", o.width, " height=", o.height) : "";
  std::string yaml =
      absl::StrCat("# Generated ", o.mixed ? "mixed-shapes" : "shapes", " dataset: train=", o.train,
                   " val=", o.val, " imgsz=", o.imgsz, size, " seed=", o.seed,
                   "\npath: .\ntrain: images/train\nval: images/val\nnames:\n");
  for (int c = 0; c < (o.mixed ? 5 : 3); ++c)
    absl::StrAppend(&yaml, "  ", c, ": ", kNames[c], "\n");
  const fs::path yaml_path = fs::path(o.out_dir) / "data.yaml";
  if (fs::exists(yaml_path)) {
    std::string existing;
    absl::Status read = ReadFile(yaml_path.string(), &existing);
    if (read.ok() && existing == yaml) return absl::OkStatus();  // already there
    return absl::AlreadyExistsError(absl::StrCat(
        yaml_path.string(), " already exists with other contents; choose another 'out'"));
  }
  absl::Status s = WriteSplit(o, "train", o.train, 1);
  if (!s.ok()) return s;
  s = WriteSplit(o, "val", o.val, 2);
  if (!s.ok()) return s;
  // data.yaml last: its presence means the dataset is complete.
  return WriteFileAtomic(yaml_path.string(), yaml);
}

}  // namespace yolo
