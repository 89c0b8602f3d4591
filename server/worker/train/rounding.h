// Rounding as Python's round() and numpy's rint do it: halves go to the even neighbour
// (0.5 -> 0, 2.5 -> 2, 3.5 -> 4). Ultralytics rounds its schedule and geometry this way;
// std::lround (halves away from zero) gives other counts at exact halves, such as the
// accumulation count 2.5 at batch 50.
#pragma once

#include <cmath>
#include <cstdint>

namespace yolo {

inline int64_t RoundHalfEven(double x) {
  const double r = std::round(x);  // halves away from zero
  if (std::fabs(x - std::trunc(x)) == 0.5 && std::fmod(r, 2.0) != 0.0) {
    return static_cast<int64_t>(r - std::copysign(1.0, x));
  }
  return static_cast<int64_t>(r);
}

}  // namespace yolo
