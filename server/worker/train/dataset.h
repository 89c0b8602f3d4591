// Ultralytics-format detection datasets: data.yaml, image folders or .txt lists, the
// images/ -> labels/ rule and `class cx cy w h` label lines. LibTorch-free.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data_config.h"

namespace yolo {

// One object, normalised to the image: centre x/y, width, height in [0, 1].
struct BoxLabel {
  int cls = 0;
  float cx = 0, cy = 0, w = 0, h = 0;
  bool operator==(const BoxLabel& o) const {
    return cls == o.cls && cx == o.cx && cy == o.cy && w == o.w && h == o.h;
  }
};

struct LabelParseResult {
  std::vector<BoxLabel> boxes;
  std::vector<std::string> warnings;  // one per skipped line, naming file and line
  int skipped_lines = 0;
  int duplicates = 0;
};

// Parses a label file's text. Bad lines (wrong column count, not numbers, coordinates outside
// [0, 1]) are skipped with a warning; polygon lines (class x1 y1 x2 y2 x3 y3 ...) become their
// bounding box; duplicate rows are dropped. A class id < 0 or >= nc is an error naming the
// file and line, since it means the data.yaml and the labels disagree.
absl::StatusOr<LabelParseResult> ParseLabels(const std::string& text, const std::string& path,
                                             int nc);

// The label file of an image: the last "/images/" component becomes "/labels/" and the
// extension ".txt".
std::string LabelPathForImage(const std::string& image_path);

struct ImageRecord {
  std::string path;
  int width = 0;  // original size in pixels
  int height = 0;
  std::vector<BoxLabel> labels;
};

struct DatasetScan {
  std::vector<ImageRecord> images;
  int found = 0;           // image files listed
  int corrupt_images = 0;  // unreadable or smaller than 10 px: skipped
  int skipped_lines = 0;   // bad label lines: skipped
  int duplicates = 0;      // duplicate label rows: dropped
  int backgrounds = 0;     // images without labels: kept as negatives
  int instances = 0;
  std::string Summary() const;
};

// Lists, verifies and labels every image of `sources`, on `threads` threads. Warnings (bad
// images and lines, each naming its file and line) go to the log. An error if nothing usable
// is left, a source is missing, an image lies outside `allowed_roots` (when not empty), or a
// class id is out of range.
absl::StatusOr<DatasetScan> ScanDataset(const std::vector<std::string>& sources, int nc,
                                        bool single_cls, int threads,
                                        const std::vector<std::string>& allowed_roots = {});

}  // namespace yolo
