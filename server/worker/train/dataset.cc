#include "server/worker/train/dataset.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "server/worker/train/image_cache.h"

namespace yolo {
namespace fs = std::filesystem;

namespace {

constexpr int kMinImageSide = 10;
constexpr size_t kMaxLabelFileBytes = 16u << 20;

}  // namespace

std::string LabelPathForImage(const std::string& image_path) {
  std::string path = image_path;
  const std::string images = "/images/";
  size_t at = path.rfind(images);
  if (at != std::string::npos) path.replace(at, images.size(), "/labels/");
  return fs::path(path).replace_extension(".txt").string();
}

absl::StatusOr<LabelParseResult> ParseLabels(const std::string& text, const std::string& path,
                                             int nc) {
  LabelParseResult result;
  std::set<std::tuple<int, float, float, float, float>> seen;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    auto skip = [&](const std::string& why) {
      result.warnings.push_back(absl::StrCat(path, ":", line_no, ": ", why, ", line skipped"));
      ++result.skipped_lines;
    };
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    std::vector<double> v;
    bool numeric = true;
    for (absl::string_view f : fields) {
      double d = 0;
      if (!absl::SimpleAtod(f, &d) || !std::isfinite(d)) {
        numeric = false;
        break;
      }
      v.push_back(d);
    }
    if (!numeric) {
      skip("not all values are numbers");
      continue;
    }
    const bool polygon = v.size() >= 7 && v.size() % 2 == 1;
    if (v.size() != 5 && !polygon) {
      skip(absl::StrCat("expected 5 values (class cx cy w h), got ", v.size()));
      continue;
    }
    if (v[0] != std::floor(v[0])) {
      skip("class id is not an integer");
      continue;
    }
    if (v[0] < 0 || v[0] >= nc) {  // compared as a double: an int cast could overflow
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": class id ", v[0],
                                                     " is out of range for nc=", nc,
                                                     " (valid ids are 0..", nc - 1, ")"));
    }
    BoxLabel box;
    box.cls = static_cast<int>(v[0]);
    bool in_range = true;
    for (size_t i = 1; i < v.size(); ++i) in_range = in_range && v[i] >= 0.0 && v[i] <= 1.0;
    if (!in_range) {
      skip("coordinates must be normalised to [0, 1]");
      continue;
    }
    if (polygon) {
      double x1 = 1, y1 = 1, x2 = 0, y2 = 0;
      for (size_t i = 1; i + 1 < v.size(); i += 2) {
        x1 = std::min(x1, v[i]);
        x2 = std::max(x2, v[i]);
        y1 = std::min(y1, v[i + 1]);
        y2 = std::max(y2, v[i + 1]);
      }
      box.cx = static_cast<float>((x1 + x2) / 2);
      box.cy = static_cast<float>((y1 + y2) / 2);
      box.w = static_cast<float>(x2 - x1);
      box.h = static_cast<float>(y2 - y1);
    } else {
      box.cx = static_cast<float>(v[1]);
      box.cy = static_cast<float>(v[2]);
      box.w = static_cast<float>(v[3]);
      box.h = static_cast<float>(v[4]);
    }
    if (box.w <= 0 || box.h <= 0) {
      skip("box has zero width or height");
      continue;
    }
    if (!seen.insert({box.cls, box.cx, box.cy, box.w, box.h}).second) {
      ++result.duplicates;
      continue;
    }
    result.boxes.push_back(box);
  }
  if (result.duplicates > 0) {
    result.warnings.push_back(
        absl::StrCat(path, ": ", result.duplicates, " duplicate label rows removed"));
  }
  return result;
}

std::string DatasetScan::Summary() const {
  return absl::StrCat(images.size(), " images, ", instances, " instances, ", backgrounds,
                      " backgrounds, ", corrupt_images, " corrupt images, ", skipped_lines,
                      " bad label lines, ", duplicates, " duplicate labels");
}

namespace {

// What the scan found for one image.
struct ScanSlot {
  bool ok = false;
  ImageRecord record;
  LabelParseResult labels;
  std::string warning;  // skipped, and why
  absl::Status error;   // the whole scan fails
};

void ScanImage(const std::string& path, int nc, bool single_cls, ScanSlot* slot) {
  slot->record.path = path;
  cv::Size size;
  if (!CheckImage(path, &size)) {
    slot->warning = absl::StrCat(path, ": cannot be decoded as an image, skipped");
    return;
  }
  if (size.width < kMinImageSide || size.height < kMinImageSide) {
    slot->warning = absl::StrCat(path, ": image is ", size.width, "x", size.height,
                                 ", smaller than 10 px, skipped");
    return;
  }
  slot->record.width = size.width;
  slot->record.height = size.height;
  const std::string label_path = LabelPathForImage(path);
  std::string text;
  std::error_code ec;
  if (fs::exists(label_path, ec)) {
    absl::Status read = ReadFile(label_path, &text, kMaxLabelFileBytes);
    if (!read.ok()) {
      slot->error = read;
      return;
    }
  }
  auto parsed = ParseLabels(text, label_path, nc);
  if (!parsed.ok()) {
    slot->error = parsed.status();
    return;
  }
  slot->labels = std::move(*parsed);
  slot->record.labels = slot->labels.boxes;
  if (single_cls) {
    for (BoxLabel& b : slot->record.labels) b.cls = 0;
  }
  slot->ok = true;
}

// ScanImage, with whatever OpenCV or the allocator throws as the slot's error: an exception
// thrown on a pool thread would end the process.
void ScanImageCatching(const std::string& path, int nc, bool single_cls, ScanSlot* slot) {
  try {
    ScanImage(path, nc, single_cls, slot);
  } catch (const std::bad_alloc&) {
    slot->error = absl::ResourceExhaustedError(
        absl::StrCat("out of memory reading ", path, " (std::bad_alloc)"));
  } catch (const cv::Exception& e) {
    slot->error = e.code == cv::Error::StsNoMem
                      ? absl::ResourceExhaustedError(
                            absl::StrCat("out of memory reading ", path, ": ", e.what()))
                      : absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  } catch (const std::exception& e) {
    slot->error = absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
}

}  // namespace

absl::StatusOr<DatasetScan> ScanDataset(const std::vector<std::string>& sources, int nc,
                                        bool single_cls, int threads,
                                        const std::vector<std::string>& allowed_roots) {
  auto listed = ListImages(sources, allowed_roots);
  if (!listed.ok()) return listed.status();
  const std::vector<std::string>& paths = *listed;

  std::vector<ScanSlot> slots(paths.size());
  std::atomic<size_t> next{0};
  auto work = [&]() {
    for (size_t i = next++; i < paths.size(); i = next++) {
      ScanImageCatching(paths[i], nc, single_cls, &slots[i]);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(threads, 1); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();

  DatasetScan scan;
  scan.found = static_cast<int>(paths.size());
  for (ScanSlot& slot : slots) {
    if (!slot.error.ok()) return slot.error;
    for (const std::string& w : slot.labels.warnings) spdlog::warn("{}", w);
    scan.skipped_lines += slot.labels.skipped_lines;
    scan.duplicates += slot.labels.duplicates;
    if (!slot.ok) {
      spdlog::warn("{}", slot.warning);
      ++scan.corrupt_images;
      continue;
    }
    if (slot.record.labels.empty()) ++scan.backgrounds;
    scan.instances += static_cast<int>(slot.record.labels.size());
    scan.images.push_back(std::move(slot.record));
  }
  if (scan.images.empty()) {
    std::string where;
    for (const auto& s : sources) where += (where.empty() ? "" : ", ") + s;
    return absl::FailedPreconditionError(absl::StrCat("no usable images in ", where, " (",
                                                      scan.found, " found, ", scan.corrupt_images,
                                                      " corrupt)"));
  }
  return scan;
}

}  // namespace yolo
