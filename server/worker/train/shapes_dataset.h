// The generated dataset of shapes, yolod's embedded default: filled circles, rectangles and
// triangles (1 to 6 per image) on gradient backgrounds with noise, square JPEG images, in
// Ultralytics' layout (images/{train,val}, labels/{train,val}, data.yaml). The mixed kind is a
// set of another sort for accuracy comparisons: five classes (rings and crosses besides), images
// of mixed sizes and shapes (long side 3/8 to 1 x imgsz, aspect 1:2 to 2:1), JPEG and PNG.
// LibTorch-free.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace yolo {

struct ShapesOptions {
  std::string out_dir;
  int train = 256;  // images per split
  int val = 64;
  int imgsz = 320;  // square images of this side; for the mixed kind, the longest side
  // Images of width x height instead of imgsz x imgsz (both set; not for the mixed kind): large
  // photo-like sources, e.g. 4000 x 3000, for the loader benchmarks.
  int width = 0, height = 0;
  uint64_t seed = 0;
  bool mixed = false;  // the mixed kind ("mixed-shapes")
};

// Writes the dataset; the same options always give the same files. Refuses to write into a
// folder that already holds a data.yaml unless it was made with the same options.
absl::Status MakeShapesDataset(const ShapesOptions& options);

}  // namespace yolo
