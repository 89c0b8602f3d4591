// The generated dataset of shapes, yolod's embedded default: filled circles, rectangles and
// triangles (1 to 6 per image) on gradient backgrounds with noise, in Ultralytics' layout
// (images/{train,val}, labels/{train,val}, data.yaml). LibTorch-free.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace yolo {

struct ShapesOptions {
  std::string out_dir;
  int train = 256;  // images per split
  int val = 64;
  int imgsz = 320;  // square images of this side
  uint64_t seed = 0;
};

// Writes the dataset; the same options always give the same files. Refuses to write into a
// folder that already holds a data.yaml unless it was made with the same options.
absl::Status MakeShapesDataset(const ShapesOptions& options);

}  // namespace yolo
