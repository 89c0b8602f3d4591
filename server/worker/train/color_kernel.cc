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

// A table gain * i (truncated; hue modulo 180, the others clipped to 255) as one float multiply:
// the float nearest `gain` or a neighbour that gives every entry of `table` (i < n), else 0.
float MultiplierFor(double gain, const int32_t* table, int n, bool hue) {
  const float nearest = static_cast<float>(gain);
  for (float m : {nearest, std::nextafter(nearest, 0.0f), std::nextafter(nearest, 4.0f)}) {
    if (!(m > 0)) continue;
    bool all = true;
    for (int i = 0; i < n && all; ++i) {
      int t = static_cast<int>(static_cast<float>(i) * m);
      t = hue ? (t >= 180 ? t - 180 : t) : std::min(t, 255);
      all = t == table[i];
    }
    if (all) return m;
  }
  return 0;
}

// The tables of one image, and the float multipliers that reproduce them (all non-zero, or
// the vector code looks the tables up instead).
struct ImageTables {
  int32_t hue[256], saturation[256], value[256];
  const int32_t *sdiv, *hdiv;
  float hue_m = 0, saturation_m = 0, value_m = 0;
  bool multipliers = false;
  explicit ImageTables(const PixelFinish& f) : sdiv(Divisions().sdiv), hdiv(Divisions().hdiv) {
    for (int i = 0; i < 256; ++i) {
      const bool on = f.hsv;
      hue[i] = on ? static_cast<int32_t>(std::fmod(i * f.hue, 180.0)) : i;
      saturation[i] = on ? static_cast<int32_t>(std::clamp(i * f.saturation, 0.0, 255.0)) : i;
      value[i] = on ? static_cast<int32_t>(std::clamp(i * f.value, 0.0, 255.0)) : i;
    }
    if (!f.hsv) return;
    hue_m = MultiplierFor(f.hue, hue, 180, /*hue=*/true);  // OpenCV's hues are 0..179
    saturation_m = MultiplierFor(f.saturation, saturation, 256, /*hue=*/false);
    value_m = MultiplierFor(f.value, value, 256, /*hue=*/false);
    multipliers = hue_m > 0 && saturation_m > 0 && value_m > 0;
  }
};

struct Rgb {
  uint8_t r, g, b;
};

// One pixel: OpenCV's integer BGR -> HSV, the tables, its float HSV -> BGR.
inline Rgb OnePixel(int b, int g, int r, const ImageTables& t) {
  const int v = std::max(b, std::max(g, r));
  const int diff = v - std::min(b, std::min(g, r));
  const int s = (diff * t.sdiv[v] + kHalf) >> kShift;
  int h = v == r ? g - b : v == g ? b - r + 2 * diff : r - g + 4 * diff;
  h = (h * t.hdiv[diff] + kHalf) >> kShift;
  if (h < 0) h += 180;
  const float hf = static_cast<float>(t.hue[std::min(h, 255)]) * kHueScale;
  const float sf = static_cast<float>(t.saturation[s]) * (1.0f / 255.0f);
  const float vf = static_cast<float>(t.value[v]) * (1.0f / 255.0f);
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

// trunc(x * m), x an integer.
YOLO_AVX2 inline __m256i Times(__m256i x, __m256 m) {
  return _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(x), m));
}

YOLO_AVX2 inline __m256 Is(__m256 x, float k) {
  return _mm256_cmp_ps(x, _mm256_set1_ps(k), _CMP_EQ_OQ);
}
YOLO_AVX2 inline __m256 Below(__m256 x, float k) {
  return _mm256_cmp_ps(x, _mm256_set1_ps(k), _CMP_LT_OQ);
}

// The constants of the vector pass.
struct Avx2Constants {
  __m256i c180, half, zero, one_i, c179, c255i;
  __m256 sdiv_num, hdiv_num, hue_m, saturation_m, value_m, one, to_unit, c255, hue_scale;
  YOLO_AVX2 explicit Avx2Constants(const ImageTables& t)
      : c180(_mm256_set1_epi32(180)),
        half(_mm256_set1_epi32(kHalf)),
        zero(_mm256_setzero_si256()),
        one_i(_mm256_set1_epi32(1)),
        c179(_mm256_set1_epi32(179)),
        c255i(_mm256_set1_epi32(255)),
        sdiv_num(_mm256_set1_ps(255 << kShift)),
        hdiv_num(_mm256_set1_ps(122880.0f)),
        hue_m(_mm256_set1_ps(t.hue_m)),
        saturation_m(_mm256_set1_ps(t.saturation_m)),
        value_m(_mm256_set1_ps(t.value_m)),
        one(_mm256_set1_ps(1.0f)),
        to_unit(_mm256_set1_ps(1.0f / 255.0f)),
        c255(_mm256_set1_ps(255.0f)),
        hue_scale(_mm256_set1_ps(kHueScale)) {}
};

// 8 pixels (24 bytes at p, read as 16 then 8: never past them) to their output R, G, B as int32
// lanes in 0..255.
YOLO_AVX2 inline void Convert8(const uint8_t* p, bool hsv, const ImageTables& t,
                               const Avx2Constants& k, __m256i* r_out, __m256i* g_out,
                               __m256i* b_out) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 16));
  __m256i b, g, r;
  Deinterleave8(lo, hi, &b, &g, &r);
  if (!hsv) {
    *r_out = r, *g_out = g, *b_out = b;
    return;
  }
  const __m256i v = _mm256_max_epi32(b, _mm256_max_epi32(g, r));
  const __m256i diff = _mm256_sub_epi32(v, _mm256_min_epi32(b, _mm256_min_epi32(g, r)));
  // OpenCV's division tables, sdiv[v] = round(255 * 4096 / v) and hdiv[d] =
  // round(122880 / d): a float division rounded to nearest gives every entry exactly (an
  // index of 0 meets a factor of 0).
  const __m256i sdiv = _mm256_cvtps_epi32(
      _mm256_div_ps(k.sdiv_num, _mm256_cvtepi32_ps(_mm256_max_epi32(v, k.one_i))));
  const __m256i hdiv = _mm256_cvtps_epi32(
      _mm256_div_ps(k.hdiv_num, _mm256_cvtepi32_ps(_mm256_max_epi32(diff, k.one_i))));
  const __m256i s =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_mullo_epi32(diff, sdiv), k.half), kShift);
  const __m256i h_r = _mm256_sub_epi32(g, b);
  const __m256i h_g = _mm256_add_epi32(_mm256_sub_epi32(b, r), _mm256_slli_epi32(diff, 1));
  const __m256i h_b = _mm256_add_epi32(_mm256_sub_epi32(r, g), _mm256_slli_epi32(diff, 2));
  __m256i h = Select(_mm256_cmpeq_epi32(v, r), h_r, Select(_mm256_cmpeq_epi32(v, g), h_g, h_b));
  h = _mm256_srai_epi32(_mm256_add_epi32(_mm256_mullo_epi32(h, hdiv), k.half), kShift);
  h = _mm256_add_epi32(h, _mm256_and_si256(_mm256_cmpgt_epi32(k.zero, h), k.c180));
  // The image's tables (hue below 180 here: OpenCV's formula gives 0..179).
  __m256i h2, s2, v2;
  if (t.multipliers) {
    h2 = Times(h, k.hue_m);
    h2 = _mm256_sub_epi32(h2, _mm256_and_si256(_mm256_cmpgt_epi32(h2, k.c179), k.c180));
    s2 = _mm256_min_epi32(Times(s, k.saturation_m), k.c255i);
    v2 = _mm256_min_epi32(Times(v, k.value_m), k.c255i);
  } else {
    h2 = _mm256_i32gather_epi32(t.hue, h, 4);
    s2 = _mm256_i32gather_epi32(t.saturation, s, 4);
    v2 = _mm256_i32gather_epi32(t.value, v, 4);
  }
  const __m256 hf = _mm256_mul_ps(_mm256_cvtepi32_ps(h2), k.hue_scale);
  const __m256 sf = _mm256_mul_ps(_mm256_cvtepi32_ps(s2), k.to_unit);
  const __m256 vf = _mm256_mul_ps(_mm256_cvtepi32_ps(v2), k.to_unit);
  const __m256 sector_f = _mm256_round_ps(hf, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_sub_ps(hf, sector_f);
  const __m256 tab0 = vf;
  const __m256 tab1 = _mm256_mul_ps(vf, _mm256_sub_ps(k.one, sf));
  const __m256 tab2 = _mm256_mul_ps(vf, _mm256_fnmadd_ps(sf, frac, k.one));
  const __m256 tab3 = _mm256_mul_ps(vf, _mm256_fnmadd_ps(sf, _mm256_sub_ps(k.one, frac), k.one));
  // Sectors 0..5 take b, g, r from tab {1,3,0} {1,0,2} {3,0,1} {0,2,1} {0,1,3} {2,1,0}.
  const __m256 bf = Select(Below(sector_f, 2), tab1,
                           Select(Is(sector_f, 2), tab3, Select(Below(sector_f, 5), tab0, tab2)));
  const __m256 gf = Select(Is(sector_f, 0), tab3,
                           Select(Below(sector_f, 3), tab0, Select(Is(sector_f, 3), tab2, tab1)));
  const __m256 rf =
      Select(Is(sector_f, 0), tab0,
             Select(Is(sector_f, 1), tab2,
                    Select(Below(sector_f, 4), tab1, Select(Is(sector_f, 4), tab3, tab0))));
  *r_out = _mm256_cvttps_epi32(_mm256_mul_ps(rf, k.c255));
  *g_out = _mm256_cvttps_epi32(_mm256_mul_ps(gf, k.c255));
  *b_out = _mm256_cvttps_epi32(_mm256_mul_ps(bf, k.c255));
}

// Two channels of 16 pixels, each as two groups of 8 int32 lanes (0..255), as bytes in pixel
// order: the first channel in the low 128 bits, the second in the high.
YOLO_AVX2 inline __m256i Bytes16(__m256i first_0to7, __m256i first_8to15, __m256i second_0to7,
                                 __m256i second_8to15) {
  // The packs interleave the two 128-bit halves; the dword permute puts the pixels in order.
  const __m256i packed = _mm256_packus_epi16(_mm256_packus_epi32(first_0to7, first_8to15),
                                             _mm256_packus_epi32(second_0to7, second_8to15));
  return _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

YOLO_AVX2 inline void Store16(__m128i x, bool reverse, uint8_t* out) {
  if (reverse) {
    x = _mm_shuffle_epi8(x, _mm_setr_epi8(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), x);
}

// Pixels [0, cols - cols % 8) of a row, 16 then 8 at a time; returns where it stopped.
YOLO_AVX2 int RowAvx2(const uint8_t* src, int cols, bool hsv, bool flip_lr, const ImageTables& t,
                      uint8_t* r_out, uint8_t* g_out, uint8_t* b_out) {
  const Avx2Constants k(t);
  int x = 0;
  for (; x + 16 <= cols; x += 16) {
    __m256i r0, g0, b0, r1, g1, b1;
    Convert8(src + 3 * x, hsv, t, k, &r0, &g0, &b0);
    Convert8(src + 3 * x + 24, hsv, t, k, &r1, &g1, &b1);
    const __m256i rg = Bytes16(r0, r1, g0, g1);
    const __m256i bb = Bytes16(b0, b1, k.zero, k.zero);
    const int o = flip_lr ? cols - x - 16 : x;
    Store16(_mm256_castsi256_si128(rg), flip_lr, r_out + o);
    Store16(_mm256_extracti128_si256(rg, 1), flip_lr, g_out + o);
    Store16(_mm256_castsi256_si128(bb), flip_lr, b_out + o);
  }
  if (x + 8 <= cols) {
    __m256i r, g, b;
    Convert8(src + 3 * x, hsv, t, k, &r, &g, &b);
    const int o = flip_lr ? cols - x - 8 : x;
    Store8(r, flip_lr, r_out + o), Store8(g, flip_lr, g_out + o), Store8(b, flip_lr, b_out + o);
    x += 8;
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
