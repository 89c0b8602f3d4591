#include "server/worker/train/color_kernel.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

namespace yolo {
namespace {

constexpr int kShift = 12;  // OpenCV's fixed-point HSV divisions
constexpr int kHalf = 1 << (kShift - 1);
constexpr float kHueScale = 6.0f / 180;  // hue units per sector

// OpenCV's division tables: 255 / v and 180 / (6 diff) in 12-bit fixed point.
struct DivisionTables {
  int32_t sdiv[256], hdiv[256];
  DivisionTables() {
    sdiv[0] = hdiv[0] = 0;
    for (int i = 1; i < 256; ++i) {
      sdiv[i] = static_cast<int32_t>(std::lrint((255 << kShift) / (1.0 * i)));
      hdiv[i] = static_cast<int32_t>(std::lrint((180 << kShift) / (6.0 * i)));
    }
  }
};
const DivisionTables& Divisions() {
  static const DivisionTables tables;
  return tables;
}

// The tables of one image. `value` holds the value's table in its top byte and sdiv[v] (below
// 2^21) underneath, so that one lookup by v serves both.
struct ImageTables {
  int32_t hue[256], saturation[256], value[256];
  const int32_t* hdiv;
  explicit ImageTables(const PixelFinish& f) : hdiv(Divisions().hdiv) {
    const int32_t* sdiv = Divisions().sdiv;
    for (int i = 0; i < 256; ++i) {
      const bool on = f.hsv;
      hue[i] = on ? static_cast<int32_t>(std::fmod(i * f.hue, 180.0)) : i;
      saturation[i] = on ? static_cast<int32_t>(std::clamp(i * f.saturation, 0.0, 255.0)) : i;
      const uint32_t v = on ? static_cast<uint32_t>(std::clamp(i * f.value, 0.0, 255.0)) : i;
      value[i] = static_cast<int32_t>((v << 24) | static_cast<uint32_t>(sdiv[i]));
    }
  }
};

struct Rgb {
  uint8_t r, g, b;
};

// One pixel: OpenCV's integer BGR -> HSV, the tables, its float HSV -> BGR.
inline Rgb OnePixel(int b, int g, int r, const ImageTables& t) {
  const int v = std::max(b, std::max(g, r));
  const int diff = v - std::min(b, std::min(g, r));
  const int32_t tv = t.value[v];
  const int s = (diff * (tv & 0xffffff) + kHalf) >> kShift;
  int h = v == r ? g - b : v == g ? b - r + 2 * diff : r - g + 4 * diff;
  h = (h * t.hdiv[diff] + kHalf) >> kShift;
  if (h < 0) h += 180;
  const float hf = static_cast<float>(t.hue[std::min(h, 255)]) * kHueScale;
  const float sf = static_cast<float>(t.saturation[s]) * (1.0f / 255.0f);
  const float vf = static_cast<float>(static_cast<uint32_t>(tv) >> 24) * (1.0f / 255.0f);
  const float sector_f = std::trunc(hf);
  const float frac = hf - sector_f;
  const float tab[4] = {vf, vf * (1.0f - sf), vf * std::fma(-sf, frac, 1.0f),
                        vf * std::fma(-sf, 1.0f - frac, 1.0f)};
  static constexpr int kPick[6][3] = {{1, 3, 0}, {1, 0, 2}, {3, 0, 1},
                                      {0, 2, 1}, {0, 1, 3}, {2, 1, 0}};  // b, g, r
  const int* pick = kPick[static_cast<int>(sector_f) % 6];
  auto byte = [](float x) { return static_cast<uint8_t>(static_cast<int>(x * 255.0f)); };
  return {byte(tab[pick[2]]), byte(tab[pick[1]]), byte(tab[pick[0]])};
}

// Pixels [from, cols) of a row, one at a time; `out_x(x)` is where pixel x lands.
void RowScalar(const uint8_t* src, int from, int cols, bool hsv, bool flip_lr, const ImageTables& t,
               uint8_t* r, uint8_t* g, uint8_t* b) {
  for (int x = from; x < cols; ++x) {
    const uint8_t* p = src + 3 * x;
    const int o = flip_lr ? cols - 1 - x : x;
    if (hsv) {
      const Rgb c = OnePixel(p[0], p[1], p[2], t);
      r[o] = c.r, g[o] = c.g, b[o] = c.b;
    } else {
      r[o] = p[2], g[o] = p[1], b[o] = p[0];
    }
  }
}

#define YOLO_AVX2 __attribute__((target("avx2,fma")))

// Bytes of `lo` picked by `from_lo` or-ed with bytes of `hi` picked by `from_hi`, the first 8
// widened to int32 (a -1 index picks zero).
YOLO_AVX2 inline __m256i Pick8(__m128i lo, __m128i hi, __m128i from_lo, __m128i from_hi) {
  return _mm256_cvtepu8_epi32(
      _mm_or_si128(_mm_shuffle_epi8(lo, from_lo), _mm_shuffle_epi8(hi, from_hi)));
}

// The blue, green and red bytes of 8 interleaved pixels (24 bytes: `lo` the first 16, `hi` the
// next 8), each as 8 int32.
YOLO_AVX2 inline void Deinterleave8(__m128i lo, __m128i hi, __m256i* b, __m256i* g, __m256i* r) {
  constexpr char z = -1;
  *b = Pick8(lo, hi, _mm_setr_epi8(0, 3, 6, 9, 12, 15, z, z, z, z, z, z, z, z, z, z),
             _mm_setr_epi8(z, z, z, z, z, z, 2, 5, z, z, z, z, z, z, z, z));
  *g = Pick8(lo, hi, _mm_setr_epi8(1, 4, 7, 10, 13, z, z, z, z, z, z, z, z, z, z, z),
             _mm_setr_epi8(z, z, z, z, z, 0, 3, 6, z, z, z, z, z, z, z, z));
  *r = Pick8(lo, hi, _mm_setr_epi8(2, 5, 8, 11, 14, z, z, z, z, z, z, z, z, z, z, z),
             _mm_setr_epi8(z, z, z, z, z, 1, 4, 7, z, z, z, z, z, z, z, z));
}

// The low byte of each of 8 int32 lanes (all in 0..255), lane order reversed when `reverse`,
// stored as 8 bytes at `out`.
YOLO_AVX2 inline void Store8(__m256i x, bool reverse, uint8_t* out) {
  if (reverse) x = _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0));
  const __m256i low_bytes = _mm256_shuffle_epi8(
      x, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12,
                          -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  const __m128i both =
      _mm_unpacklo_epi32(_mm256_castsi256_si128(low_bytes), _mm256_extracti128_si256(low_bytes, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), both);
}

YOLO_AVX2 inline __m256i Select(__m256i mask, __m256i yes, __m256i no) {
  return _mm256_blendv_epi8(no, yes, mask);
}
YOLO_AVX2 inline __m256 Select(__m256 mask, __m256 yes, __m256 no) {
  return _mm256_blendv_ps(no, yes, mask);
}

YOLO_AVX2 inline __m256 Is(__m256 x, float k) {
  return _mm256_cmp_ps(x, _mm256_set1_ps(k), _CMP_EQ_OQ);
}
YOLO_AVX2 inline __m256 Below(__m256 x, float k) {
  return _mm256_cmp_ps(x, _mm256_set1_ps(k), _CMP_LT_OQ);
}

// Pixels [0, cols - cols % 8) of a row, 8 at a time; returns where it stopped.
YOLO_AVX2 int RowAvx2(const uint8_t* src, int cols, bool hsv, bool flip_lr, const ImageTables& t,
                      uint8_t* r_out, uint8_t* g_out, uint8_t* b_out) {
  // Each group reads 24 bytes: 16 then 8 (never past the row's end).
  const __m256i c180 = _mm256_set1_epi32(180), half = _mm256_set1_epi32(kHalf);
  const __m256i low24 = _mm256_set1_epi32(0xffffff), zero = _mm256_setzero_si256();
  const __m256 one = _mm256_set1_ps(1.0f), to_unit = _mm256_set1_ps(1.0f / 255.0f);
  const __m256 c255 = _mm256_set1_ps(255.0f), hue_scale = _mm256_set1_ps(kHueScale);
  int x = 0;
  for (; x + 8 <= cols; x += 8) {
    const uint8_t* p = src + 3 * x;
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 16));
    __m256i b, g, r;
    Deinterleave8(lo, hi, &b, &g, &r);
    const int o = flip_lr ? cols - x - 8 : x;
    if (!hsv) {
      Store8(r, flip_lr, r_out + o), Store8(g, flip_lr, g_out + o), Store8(b, flip_lr, b_out + o);
      continue;
    }
    const __m256i v = _mm256_max_epi32(b, _mm256_max_epi32(g, r));
    const __m256i diff = _mm256_sub_epi32(v, _mm256_min_epi32(b, _mm256_min_epi32(g, r)));
    const __m256i tv = _mm256_i32gather_epi32(t.value, v, 4);
    const __m256i s = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_mullo_epi32(diff, _mm256_and_si256(tv, low24)), half), kShift);
    const __m256i h_r = _mm256_sub_epi32(g, b);
    const __m256i h_g = _mm256_add_epi32(_mm256_sub_epi32(b, r), _mm256_slli_epi32(diff, 1));
    const __m256i h_b = _mm256_add_epi32(_mm256_sub_epi32(r, g), _mm256_slli_epi32(diff, 2));
    __m256i h = Select(_mm256_cmpeq_epi32(v, r), h_r, Select(_mm256_cmpeq_epi32(v, g), h_g, h_b));
    h = _mm256_srai_epi32(
        _mm256_add_epi32(_mm256_mullo_epi32(h, _mm256_i32gather_epi32(t.hdiv, diff, 4)), half),
        kShift);
    h = _mm256_add_epi32(h, _mm256_and_si256(_mm256_cmpgt_epi32(zero, h), c180));
    // Hue below 180 here (OpenCV's formula gives 0..179), so no clamp is needed for the table.
    const __m256 hf =
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_i32gather_epi32(t.hue, h, 4)), hue_scale);
    const __m256 sf =
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_i32gather_epi32(t.saturation, s, 4)), to_unit);
    const __m256 vf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(tv, 24)), to_unit);
    const __m256 sector_f = _mm256_round_ps(hf, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_sub_ps(hf, sector_f);
    const __m256 tab0 = vf;
    const __m256 tab1 = _mm256_mul_ps(vf, _mm256_sub_ps(one, sf));
    const __m256 tab2 = _mm256_mul_ps(vf, _mm256_fnmadd_ps(sf, frac, one));
    const __m256 tab3 = _mm256_mul_ps(vf, _mm256_fnmadd_ps(sf, _mm256_sub_ps(one, frac), one));
    // Sectors 0..5 take b, g, r from tab {1,3,0} {1,0,2} {3,0,1} {0,2,1} {0,1,3} {2,1,0}.
    const __m256 bf = Select(Below(sector_f, 2), tab1,
                             Select(Is(sector_f, 2), tab3, Select(Below(sector_f, 5), tab0, tab2)));
    const __m256 gf = Select(Is(sector_f, 0), tab3,
                             Select(Below(sector_f, 3), tab0, Select(Is(sector_f, 3), tab2, tab1)));
    const __m256 rf =
        Select(Is(sector_f, 0), tab0,
               Select(Is(sector_f, 1), tab2,
                      Select(Below(sector_f, 4), tab1, Select(Is(sector_f, 4), tab3, tab0))));
    Store8(_mm256_cvttps_epi32(_mm256_mul_ps(rf, c255)), flip_lr, r_out + o);
    Store8(_mm256_cvttps_epi32(_mm256_mul_ps(gf, c255)), flip_lr, g_out + o);
    Store8(_mm256_cvttps_epi32(_mm256_mul_ps(bf, c255)), flip_lr, b_out + o);
  }
  return x;
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

}  // namespace

void WritePlanes(const cv::Mat& bgr, const PixelFinish& finish, uint8_t* planes) {
  CV_Assert(bgr.type() == CV_8UC3);
  const int rows = bgr.rows, cols = bgr.cols;
  const size_t plane = static_cast<size_t>(rows) * cols;
  const ImageTables tables(finish);
  const bool avx2 = HasAvx2();
  for (int y = 0; y < rows; ++y) {
    const uint8_t* src = bgr.ptr<uint8_t>(y);
    const size_t row = static_cast<size_t>(finish.flip_ud ? rows - 1 - y : y) * cols;
    uint8_t* r = planes + row;
    uint8_t* g = planes + plane + row;
    uint8_t* b = planes + 2 * plane + row;
    const int done = avx2 ? RowAvx2(src, cols, finish.hsv, finish.flip_lr, tables, r, g, b) : 0;
    RowScalar(src, done, cols, finish.hsv, finish.flip_lr, tables, r, g, b);
  }
}

void ApplyPixelFinish(const PixelFinish& finish, cv::Mat* image) {
  if (image->empty()) return;
  cv::Mat planes(3 * image->rows, image->cols, CV_8U);
  WritePlanes(*image, finish, planes.data);
  const int h = image->rows;
  cv::Mat bgr[3] = {planes.rowRange(2 * h, 3 * h), planes.rowRange(h, 2 * h),
                    planes.rowRange(0, h)};
  cv::merge(bgr, 3, *image);
}

}  // namespace yolo
