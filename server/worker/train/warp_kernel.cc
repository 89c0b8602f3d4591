#include "server/worker/train/warp_kernel.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace yolo {
namespace {

// OpenCV's warp arithmetic: coordinates in 1/1024 pixel, then 1/32 (the interpolation table).
constexpr int kAbScale = 1 << 10;
constexpr int kFracBits = 5;
constexpr int kFrac = 1 << kFracBits;  // 32
constexpr int kRoundDelta = kAbScale / kFrac / 2;

int Round(double v) { return static_cast<int>(std::lrint(v)); }  // cvRound

// Where one output column (or row) reads: the first tap and the fraction towards the next.
struct Tap {
  int at = 0, frac = 0;
};

Tap TapOf(int fixed) {  // `fixed` in 1/1024 pixel, rounding delta included
  const int x = fixed >> (10 - kFracBits);
  return {static_cast<int16_t>(std::clamp(x >> kFracBits, -32768, 32767)), x & (kFrac - 1)};
}

// One source row interpolated along x for every output column: per column 4 int16 (B, G, R, 0),
// each (32 - f) * left + f * right, a tap outside the row giving `border`.
class RowInterpolator {
 public:
  RowInterpolator(const cv::Mat& src, const std::vector<Tap>& cols, uchar border)
      : src_(src), cols_(cols), border_(border) {
    const int w = static_cast<int>(cols.size());
    // The columns whose 8-byte load of both taps stays inside the row: a contiguous run, since
    // the taps only move right.
    simple_begin_ = w, simple_end_ = w;
    for (int x = 0; x < w; ++x) {
      if (cols[x].at >= 0 && cols[x].at <= src.cols - 3) {
        if (simple_begin_ == w) simple_begin_ = x;
        simple_end_ = x + 1;
      }
    }
    weights_.resize(8 * static_cast<size_t>(w) + 16);
    for (int x = 0; x < w; ++x) {
      const int16_t f = static_cast<int16_t>(cols[x].frac), g = static_cast<int16_t>(kFrac - f);
      const int16_t v[8] = {g, f, g, f, g, f, 0, 0};
      std::copy(v, v + 8, weights_.begin() + 8 * x);
    }
  }

  // Row `y` of the source (any y: a row outside is all border) into `out` (4 int16 a column).
  void Run(int y, int16_t* out) const;

 private:
  void Scalar(const uchar* row, int from, int to, int16_t* out) const;

  const cv::Mat& src_;
  const std::vector<Tap>& cols_;
  const uchar border_;
  int simple_begin_, simple_end_;
  std::vector<int16_t> weights_;  // per column: 32 - f, f three times, then 0, 0
};

void RowInterpolator::Scalar(const uchar* row, int from, int to, int16_t* out) const {
  const int ws = src_.cols;
  for (int x = from; x < to; ++x) {
    const Tap t = cols_[x];
    const bool left_in = row != nullptr && t.at >= 0 && t.at < ws;
    const bool right_in = row != nullptr && t.at + 1 >= 0 && t.at + 1 < ws;
    for (int c = 0; c < 3; ++c) {
      const int left = left_in ? row[3 * t.at + c] : border_;
      const int right = right_in ? row[3 * (t.at + 1) + c] : border_;
      out[4 * x + c] = static_cast<int16_t>((kFrac - t.frac) * left + t.frac * right);
    }
    out[4 * x + 3] = 0;
  }
}

#define YOLO_AVX2 __attribute__((target("avx2")))

// Columns x and x + 1 (both taps inside the row): [B G R 0] as int32 in each 128-bit half.
YOLO_AVX2 inline __m256i TwoColumns(const uchar* row, const Tap* cols, const int16_t* weights,
                                    int x) {
  // Bytes B0 G0 R0 B1 G1 R1 (the two taps) to int16 pairs (B0, B1), (G0, G1), (R0, R1), (0, 0).
  const __m256i pairs = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
                                         0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
  const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 3 * cols[x].at));
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 3 * cols[x + 1].at));
  const __m256i taps = _mm256_shuffle_epi8(_mm256_set_m128i(b, a), pairs);
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(weights + 8 * x));
  return _mm256_madd_epi16(taps, w);
}

// Columns [from, to) of a row whose taps are all inside, 4 at a time; returns where it stopped.
YOLO_AVX2 int SimpleAvx2(const uchar* row, const Tap* cols, const int16_t* weights, int from,
                         int to, int16_t* out) {
  int x = from;
  for (; x + 4 <= to; x += 4) {
    // packs keeps the halves apart: [x, x+2 | x+1, x+3]; the permute puts them in order.
    const __m256i packed = _mm256_packs_epi32(TwoColumns(row, cols, weights, x),
                                              TwoColumns(row, cols, weights, x + 2));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * x),
                        _mm256_permute4x64_epi64(packed, 0xd8));
  }
  return x;
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

void RowInterpolator::Run(int y, int16_t* out) const {
  const int w = static_cast<int>(cols_.size());
  const uchar* row = y >= 0 && y < src_.rows ? src_.ptr<uchar>(y) : nullptr;
  if (row == nullptr || simple_begin_ >= simple_end_ || !HasAvx2()) {
    Scalar(row, 0, w, out);
    return;
  }
  Scalar(row, 0, simple_begin_, out);
  const int done = SimpleAvx2(row, cols_.data(), weights_.data(), simple_begin_, simple_end_, out);
  Scalar(row, done, w, out);
}

// Output row = ((32 - f) * upper + f * lower + 512) >> 10 for the 3 channels of each column.
void BlendScalar(const int16_t* upper, const int16_t* lower, int f, int from, int to, uchar* out) {
  for (int x = from; x < to; ++x) {
    for (int c = 0; c < 3; ++c) {
      const int v = (kFrac - f) * upper[4 * x + c] + f * lower[4 * x + c];
      out[3 * x + c] = static_cast<uchar>((v + 512) >> 10);
    }
  }
}

YOLO_AVX2 int BlendAvx2(const int16_t* upper, const int16_t* lower, int f, int w, uchar* out) {
  const __m256i weight = _mm256_set1_epi32((f << 16) | (kFrac - f));
  const __m256i half = _mm256_set1_epi32(512);
  // Per half, the B G R bytes of its two columns (dropping each fourth byte).
  const __m256i compact =
      _mm256_setr_epi8(0, 1, 2, 4, 5, 6, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6,
                       -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  int x = 0;
  // Each group of 4 columns writes 12 bytes with two 8-byte stores: stop while a column
  // follows, so that the last store's 2 spare bytes land on pixels written after it.
  for (; x + 4 < w; x += 4) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(upper + 4 * x));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lower + 4 * x));
    // Halves: lo = columns x, x+2; hi = columns x+1, x+3 (unpack works within halves).
    const __m256i lo = _mm256_srai_epi32(
        _mm256_add_epi32(_mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), weight), half), 10);
    const __m256i hi = _mm256_srai_epi32(
        _mm256_add_epi32(_mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), weight), half), 10);
    const __m256i words = _mm256_packs_epi32(lo, hi);  // [x, x+1 | x+2, x+3]
    const __m256i bytes = _mm256_packus_epi16(words, words);
    const __m256i bgr = _mm256_shuffle_epi8(bytes, compact);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + 3 * x), _mm256_castsi256_si128(bgr));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + 3 * x + 6), _mm256_extracti128_si256(bgr, 1));
  }
  return x;
}

}  // namespace

bool WarpScaleShift(const cv::Mat& src, const cv::Matx23d& matrix, cv::Size out, uchar border,
                    cv::Mat* dst) {
  if (src.type() != CV_8UC3 || src.empty() || matrix(0, 1) != 0 || matrix(1, 0) != 0 ||
      out.width <= 0 || out.height <= 0) {
    return false;
  }
  // The inverse map (output to source), computed as cv::warpAffine computes it.
  double m[6] = {matrix(0, 0), matrix(0, 1), matrix(0, 2),
                 matrix(1, 0), matrix(1, 1), matrix(1, 2)};
  double d = m[0] * m[4] - m[1] * m[3];
  d = d != 0 ? 1. / d : 0;
  const double a11 = m[4] * d, a22 = m[0] * d;
  m[0] = a11, m[1] *= -d, m[3] *= -d, m[4] = a22;
  const double b1 = -m[0] * m[2] - m[1] * m[5], b2 = -m[3] * m[2] - m[4] * m[5];
  m[2] = b1, m[5] = b2;

  // Coordinates of 1/1024 pixel must fit an int, as OpenCV's do for any sane warp: a map that
  // reaches 2^20 pixels away (a drawn scale near zero) is left to OpenCV.
  const double reach = 1 << 20;
  const double far_x = std::abs(m[0]) * out.width + std::abs(m[2]);
  const double far_y = std::abs(m[4]) * out.height + std::abs(m[5]);
  if (!(far_x < reach && far_y < reach)) return false;
  if (dst->data == src.data) return false;  // in place: OpenCV copies the source first

  std::vector<Tap> cols(out.width);
  // OpenCV's (m[1] y + m[2]) * 1024 for every row, m[1] being zero.
  const int x0 = Round(m[2] * kAbScale) + kRoundDelta;
  for (int x = 0; x < out.width; ++x) cols[x] = TapOf(x0 + Round(m[0] * x * kAbScale));

  dst->create(out, CV_8UC3);
  const RowInterpolator rows(src, cols, border);
  const size_t row_len = 4 * static_cast<size_t>(out.width) + 16;
  std::vector<int16_t> buffers(2 * row_len);
  int16_t* line[2] = {buffers.data(), buffers.data() + row_len};
  int have[2] = {INT32_MIN, INT32_MIN};  // the source row each buffer holds
  const bool avx2 = HasAvx2();
  for (int y = 0; y < out.height; ++y) {
    const Tap t = TapOf(Round((m[4] * y + m[5]) * kAbScale) + kRoundDelta);  // m[3] is zero
    int16_t* rows_for[2];
    for (int k = 0; k < 2; ++k) {
      const int want = t.at + k;
      int slot = have[0] == want ? 0 : have[1] == want ? 1 : -1;
      if (slot < 0) {
        const int other = k == 0 ? t.at + 1 : t.at;  // keep the buffer the other tap needs
        slot = have[0] == other ? 1 : 0;
        rows.Run(want, line[slot]);
        have[slot] = want;
      }
      rows_for[k] = line[slot];
    }
    uchar* o = dst->ptr<uchar>(y);
    const int done = avx2 ? BlendAvx2(rows_for[0], rows_for[1], t.frac, out.width, o) : 0;
    BlendScalar(rows_for[0], rows_for[1], t.frac, done, out.width, o);
  }
  return true;
}

}  // namespace yolo
