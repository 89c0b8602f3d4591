// Label files (class cx cy w h per line): parsed boxes are finite, normalised and of a known
// class; bad lines are skipped with a warning, never a crash.
#include <cmath>

#include "fuzz/fuzz_util.h"
#include "server/worker/train/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  constexpr int kClasses = 5;
  auto parsed = yolo::ParseLabels(text, "labels/fuzz.txt", kClasses);
  if (!parsed.ok()) return 0;
  for (const yolo::BoxLabel& b : parsed->boxes) {
    yolo::fuzz::Require(b.cls >= 0 && b.cls < kClasses);
    for (float v : {b.cx, b.cy, b.w, b.h}) yolo::fuzz::Require(std::isfinite(v));
  }
  return 0;
}
