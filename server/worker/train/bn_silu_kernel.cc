#include "server/worker/train/bn_silu_kernel.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace yolo {
namespace {

// Rows are summed in float over blocks of this many elements, blocks in double.
constexpr int64_t kSumBlock = 512;

float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t FloatToBf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float Sigmoid(float u) { return 1.0f / (1.0f + std::exp(-u)); }

// The saved normalised input x̂ is bfloat16 bits (uint16_t) or float.
inline float FromX(uint16_t b) { return Bf16ToFloat(b); }
inline float FromX(float f) { return f; }
inline void StoreX(uint16_t* p, float x) { *p = FloatToBf16(x); }
inline void StoreX(float* p, float x) { *p = x; }

// The row operations, one element at a time; also the tails of the vectorised rows.
struct ScalarRows {
  static void Sums(const float* z, int64_t len, float shift, double* sum, double* sumsq) {
    double s = 0, q = 0;
    for (int64_t i = 0; i < len; ++i) {
      const double d = z[i] - shift;
      s += d;
      q += d * d;
    }
    *sum += s;
    *sumsq += q;
  }
  template <class X>
  static void Forward(const float* z, int64_t len, float mean, float invstd, float gamma,
                      float beta, X* xhat, float* y) {
    for (int64_t i = 0; i < len; ++i) {
      const float x = (z[i] - mean) * invstd;
      StoreX(xhat + i, x);
      const float u = gamma * x + beta;
      y[i] = u * Sigmoid(u);
    }
  }
  // d silu(u) / du, at u = gamma * xhat + beta, times the output gradient.
  static float Gu(float g, float x, float gamma, float beta) {
    const float u = gamma * x + beta;
    const float s = Sigmoid(u);
    return g * s * (1.0f + u * (1.0f - s));
  }
  // The first pass writes gu, d loss / du, to `gu_out` (the input gradient's buffer), so that the
  // second computes no sigmoid.
  template <class X>
  static void BackwardSums(const float* gy, const X* xhat, int64_t len, float gamma, float beta,
                           float* gu_out, double* sum_gu, double* sum_gu_x) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < len; ++i) {
      const float x = FromX(xhat[i]);
      const float gu = Gu(gy[i], x, gamma, beta);
      gu_out[i] = gu;
      a += gu;
      b += static_cast<double>(gu) * x;
    }
    *sum_gu += a;
    *sum_gu_x += b;
  }
  // gz = scale * (gu - k1 - x̂ k2), in place over the first pass's gu.
  template <class X>
  static void BackwardApply(const X* xhat, int64_t len, float scale, float k1, float k2,
                            float* gz) {
    for (int64_t i = 0; i < len; ++i) {
      const float x = FromX(xhat[i]);
      gz[i] = scale * (gz[i] - k1 - x * k2);
    }
  }
};

#define YOLO_AVX2 __attribute__((target("avx2,fma")))

// exp(x) for 8 floats (Cephes' polynomial; relative error ~2e-7 in the range used).
YOLO_AVX2 inline __m256 Exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// 1 / (1 + exp(-u)): the reciprocal estimate refined by one Newton step (~1e-7 relative).
YOLO_AVX2 inline __m256 Sigmoid8(__m256 u) {
  const __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), Exp8(_mm256_sub_ps(_mm256_setzero_ps(), u)));
  const __m256 r = _mm256_rcp_ps(d);
  return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

YOLO_AVX2 inline __m256 LoadBf16x8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

YOLO_AVX2 inline void StoreBf16x8(uint16_t* p, __m256 v) {  // round to nearest even
  const __m256i b = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  const __m256i r =
      _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}

YOLO_AVX2 inline __m256 LoadX8(const uint16_t* p) { return LoadBf16x8(p); }
YOLO_AVX2 inline __m256 LoadX8(const float* p) { return _mm256_loadu_ps(p); }
YOLO_AVX2 inline void StoreX8(uint16_t* p, __m256 v) { StoreBf16x8(p, v); }
YOLO_AVX2 inline void StoreX8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }

YOLO_AVX2 inline double HorizontalSum(__m256 v) {
  const __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                                  _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  alignas(32) double t[4];
  _mm256_store_pd(t, d);
  return (t[0] + t[1]) + (t[2] + t[3]);
}

struct Avx2Rows {
  YOLO_AVX2 static void Sums(const float* z, int64_t len, float shift, double* sum, double* sumsq) {
    const __m256 k = _mm256_set1_ps(shift);
    int64_t i = 0;
    for (; i + 8 <= len;) {
      const int64_t end = std::min(len, i + kSumBlock) / 8 * 8;
      __m256 s = _mm256_setzero_ps(), q = _mm256_setzero_ps();
      for (; i < end; i += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(z + i), k);
        s = _mm256_add_ps(s, d);
        q = _mm256_fmadd_ps(d, d, q);
      }
      *sum += HorizontalSum(s);
      *sumsq += HorizontalSum(q);
    }
    ScalarRows::Sums(z + i, len - i, shift, sum, sumsq);
  }
  template <class X>
  YOLO_AVX2 static void Forward(const float* z, int64_t len, float mean, float invstd, float gamma,
                                float beta, X* xhat, float* y) {
    const __m256 m = _mm256_set1_ps(mean), is = _mm256_set1_ps(invstd);
    const __m256 g = _mm256_set1_ps(gamma), b = _mm256_set1_ps(beta);
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
      const __m256 x = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(z + i), m), is);
      StoreX8(xhat + i, x);
      const __m256 u = _mm256_fmadd_ps(g, x, b);
      _mm256_storeu_ps(y + i, _mm256_mul_ps(u, Sigmoid8(u)));
    }
    ScalarRows::Forward(z + i, len - i, mean, invstd, gamma, beta, xhat + i, y + i);
  }
  YOLO_AVX2 static __m256 Gu8(__m256 gy, __m256 x, __m256 gamma, __m256 beta) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 u = _mm256_fmadd_ps(gamma, x, beta);
    const __m256 s = Sigmoid8(u);
    return _mm256_mul_ps(_mm256_mul_ps(gy, s), _mm256_fmadd_ps(u, _mm256_sub_ps(one, s), one));
  }
  template <class X>
  YOLO_AVX2 static void BackwardSums(const float* gy, const X* xhat, int64_t len, float gamma,
                                     float beta, float* gu_out, double* sum_gu, double* sum_gu_x) {
    const __m256 g = _mm256_set1_ps(gamma), b = _mm256_set1_ps(beta);
    int64_t i = 0;
    for (; i + 8 <= len;) {
      const int64_t end = std::min(len, i + kSumBlock) / 8 * 8;
      __m256 a = _mm256_setzero_ps(), c = _mm256_setzero_ps();
      for (; i < end; i += 8) {
        const __m256 x = LoadX8(xhat + i);
        const __m256 gu = Gu8(_mm256_loadu_ps(gy + i), x, g, b);
        _mm256_storeu_ps(gu_out + i, gu);
        a = _mm256_add_ps(a, gu);
        c = _mm256_fmadd_ps(gu, x, c);
      }
      *sum_gu += HorizontalSum(a);
      *sum_gu_x += HorizontalSum(c);
    }
    ScalarRows::BackwardSums(gy + i, xhat + i, len - i, gamma, beta, gu_out + i, sum_gu, sum_gu_x);
  }
  template <class X>
  YOLO_AVX2 static void BackwardApply(const X* xhat, int64_t len, float scale, float k1, float k2,
                                      float* gz) {
    const __m256 sc = _mm256_set1_ps(scale), v1 = _mm256_set1_ps(k1), v2 = _mm256_set1_ps(k2);
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
      const __m256 x = LoadX8(xhat + i);
      const __m256 gu = _mm256_loadu_ps(gz + i);
      _mm256_storeu_ps(
          gz + i, _mm256_mul_ps(sc, _mm256_sub_ps(_mm256_sub_ps(gu, v1), _mm256_mul_ps(x, v2))));
    }
    ScalarRows::BackwardApply(xhat + i, len - i, scale, k1, k2, gz + i);
  }
};

template <class Rows, class X>
void Forward(const float* z, const BnSiluShape& s, int64_t c0, int64_t c1, double eps,
             const float* gamma, const float* beta, float* mean, float* invstd, float* var_unbiased,
             X* xhat, float* y) {
  const double count = static_cast<double>(s.n * s.hw);
  for (int64_t c = c0; c < c1; ++c) {
    // Sums of z - z[first] keep the variance exact when the mean is large beside the spread.
    const float shift = z[c * s.hw];
    double sum = 0, sumsq = 0;
    for (int64_t n = 0; n < s.n; ++n)
      Rows::Sums(z + (n * s.c + c) * s.hw, s.hw, shift, &sum, &sumsq);
    const double m = sum / count;
    const double var = std::max(sumsq / count - m * m, 0.0);
    mean[c] = static_cast<float>(m + shift);
    invstd[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
    var_unbiased[c] = static_cast<float>(count > 1 ? var * count / (count - 1) : var);
    for (int64_t n = 0; n < s.n; ++n) {
      const int64_t off = (n * s.c + c) * s.hw;
      Rows::Forward(z + off, s.hw, mean[c], invstd[c], gamma[c], beta[c], xhat + off, y + off);
    }
  }
}

template <class Rows, class X>
void Backward(const float* gy, const X* xhat, const BnSiluShape& s, int64_t c0, int64_t c1,
              const float* gamma, const float* beta, const float* invstd, float* gz, float* ggamma,
              float* gbeta) {
  const double count = static_cast<double>(s.n * s.hw);
  for (int64_t c = c0; c < c1; ++c) {
    double sum_gu = 0, sum_gu_x = 0;
    for (int64_t n = 0; n < s.n; ++n) {
      const int64_t off = (n * s.c + c) * s.hw;
      Rows::BackwardSums(gy + off, xhat + off, s.hw, gamma[c], beta[c], gz + off, &sum_gu,
                         &sum_gu_x);
    }
    gbeta[c] = static_cast<float>(sum_gu);
    ggamma[c] = static_cast<float>(sum_gu_x);
    const float k1 = static_cast<float>(sum_gu / count);
    const float k2 = static_cast<float>(sum_gu_x / count);
    const float scale = gamma[c] * invstd[c];
    for (int64_t n = 0; n < s.n; ++n) {
      const int64_t off = (n * s.c + c) * s.hw;
      Rows::BackwardApply(xhat + off, s.hw, scale, k1, k2, gz + off);
    }
  }
}

// The blocked layout [n][c / W][hw][W]: one vector holds one position of 8 channels (W / 8
// vectors a position), so every statistic is a lane of a vector and nothing is summed across
// lanes.
YOLO_AVX2 inline void AddLanes(double* acc, __m256 v) {  // acc[0..7] += v
  _mm256_storeu_pd(acc,
                   _mm256_add_pd(_mm256_loadu_pd(acc), _mm256_cvtps_pd(_mm256_castps256_ps128(v))));
  _mm256_storeu_pd(acc + 4, _mm256_add_pd(_mm256_loadu_pd(acc + 4),
                                          _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
}

// A block's gamma and beta as its W / 8 vectors.
template <int W>
struct BlockParams {
  __m256 gamma[W / 8], beta[W / 8];
  YOLO_AVX2 BlockParams(const float* g, const float* b, int64_t c0) {
    for (int h = 0; h < W / 8; ++h) {
      gamma[h] = _mm256_loadu_ps(g + c0 + h * 8), beta[h] = _mm256_loadu_ps(b + c0 + h * 8);
    }
  }
};

// The forward's output from x̂, silu(gamma x̂ + beta): the forward and its recomputation
// (BnSiluOutputBlocked) both call this, so they give the same bits.
YOLO_AVX2 inline __m256 SiluOfAffine8(__m256 gamma, __m256 x, __m256 beta) {
  const __m256 u = _mm256_fmadd_ps(gamma, x, beta);
  return _mm256_mul_ps(u, Sigmoid8(u));
}

// A block of W channels (8 or 16) is W / 8 vectors at each position.
template <int W, class X>
YOLO_AVX2 void ForwardBlockedW(const float* z, const BnSiluShape& s, int64_t b, double eps,
                               const float* gamma, const float* beta, float* mean, float* invstd,
                               float* var_unbiased, X* xhat, float* y) {
  constexpr int H = W / 8;
  const int64_t blocks = s.c / W, row = s.hw * W, c0 = b * W;
  __m256 shift[H];
  for (int h = 0; h < H; ++h) shift[h] = _mm256_loadu_ps(z + b * row + h * 8);
  double sums[W] = {}, squares[W] = {};
  for (int64_t n = 0; n < s.n; ++n) {
    const float* zr = z + (n * blocks + b) * row;
    for (int64_t i = 0; i < s.hw;) {
      const int64_t end = std::min(s.hw, i + kSumBlock / 8);
      __m256 a[H], q[H];
      for (int h = 0; h < H; ++h) a[h] = q[h] = _mm256_setzero_ps();
      for (; i < end; ++i) {
        for (int h = 0; h < H; ++h) {
          const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(zr + i * W + h * 8), shift[h]);
          a[h] = _mm256_add_ps(a[h], d);
          q[h] = _mm256_fmadd_ps(d, d, q[h]);
        }
      }
      for (int h = 0; h < H; ++h) {
        AddLanes(sums + h * 8, a[h]);
        AddLanes(squares + h * 8, q[h]);
      }
    }
  }
  float shifts[W];
  for (int h = 0; h < H; ++h) _mm256_storeu_ps(shifts + h * 8, shift[h]);
  const double count = static_cast<double>(s.n * s.hw);
  for (int l = 0; l < W; ++l) {
    const double m = sums[l] / count;
    const double var = std::max(squares[l] / count - m * m, 0.0);
    mean[c0 + l] = static_cast<float>(m + shifts[l]);
    invstd[c0 + l] = static_cast<float>(1.0 / std::sqrt(var + eps));
    var_unbiased[c0 + l] = static_cast<float>(count > 1 ? var * count / (count - 1) : var);
  }
  __m256 m[H], is[H];
  for (int h = 0; h < H; ++h) {
    m[h] = _mm256_loadu_ps(mean + c0 + h * 8), is[h] = _mm256_loadu_ps(invstd + c0 + h * 8);
  }
  const BlockParams<W> p(gamma, beta, c0);
  for (int64_t n = 0; n < s.n; ++n) {
    const int64_t off = (n * blocks + b) * row;
    for (int64_t i = 0; i < row; i += W) {
      for (int h = 0; h < H; ++h) {
        const int64_t at = off + i + h * 8;
        const __m256 x = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(z + at), m[h]), is[h]);
        StoreX8(xhat + at, x);
        _mm256_storeu_ps(y + at, SiluOfAffine8(p.gamma[h], x, p.beta[h]));
      }
    }
  }
}

template <int W>
YOLO_AVX2 void OutputBlockedW(const float* xhat, const BnSiluShape& s, int64_t b,
                              const float* gamma, const float* beta, float* y) {
  const int64_t blocks = s.c / W, row = s.hw * W;
  const BlockParams<W> p(gamma, beta, b * W);
  for (int64_t n = 0; n < s.n; ++n) {
    const int64_t off = (n * blocks + b) * row;
    for (int64_t i = 0; i < row; i += W) {
      for (int h = 0; h < W / 8; ++h) {
        const int64_t at = off + i + h * 8;
        _mm256_storeu_ps(y + at, SiluOfAffine8(p.gamma[h], _mm256_loadu_ps(xhat + at), p.beta[h]));
      }
    }
  }
}

template <int W, class X>
YOLO_AVX2 void BackwardBlockedW(const float* gy, const X* xhat, const BnSiluShape& s, int64_t b,
                                const float* gamma, const float* beta, const float* invstd,
                                float* gz, float* ggamma, float* gbeta) {
  constexpr int H = W / 8;
  const int64_t blocks = s.c / W, row = s.hw * W, c0 = b * W;
  __m256 g[H], bt[H];
  for (int h = 0; h < H; ++h) {
    g[h] = _mm256_loadu_ps(gamma + c0 + h * 8), bt[h] = _mm256_loadu_ps(beta + c0 + h * 8);
  }
  double a[W] = {}, c[W] = {};
  for (int64_t n = 0; n < s.n; ++n) {
    const int64_t off = (n * blocks + b) * row;
    for (int64_t i = 0; i < row;) {
      const int64_t end = std::min(row, i + kSumBlock * H);  // kSumBlock / 8 positions
      __m256 va[H], vc[H];
      for (int h = 0; h < H; ++h) va[h] = vc[h] = _mm256_setzero_ps();
      for (; i < end; i += W) {
        for (int h = 0; h < H; ++h) {
          const int64_t at = off + i + h * 8;
          const __m256 x = LoadX8(xhat + at);
          const __m256 gu = Avx2Rows::Gu8(_mm256_loadu_ps(gy + at), x, g[h], bt[h]);
          _mm256_storeu_ps(gz + at, gu);  // kept for the second pass: one sigmoid per element
          va[h] = _mm256_add_ps(va[h], gu);
          vc[h] = _mm256_fmadd_ps(gu, x, vc[h]);
        }
      }
      for (int h = 0; h < H; ++h) {
        AddLanes(a + h * 8, va[h]);
        AddLanes(c + h * 8, vc[h]);
      }
    }
  }
  const double count = static_cast<double>(s.n * s.hw);
  float k1[W], k2[W];
  for (int l = 0; l < W; ++l) {
    gbeta[c0 + l] = static_cast<float>(a[l]);
    ggamma[c0 + l] = static_cast<float>(c[l]);
    k1[l] = static_cast<float>(a[l] / count);
    k2[l] = static_cast<float>(c[l] / count);
  }
  __m256 v1[H], v2[H], sc[H];
  for (int h = 0; h < H; ++h) {
    v1[h] = _mm256_loadu_ps(k1 + h * 8), v2[h] = _mm256_loadu_ps(k2 + h * 8);
    sc[h] = _mm256_mul_ps(g[h], _mm256_loadu_ps(invstd + c0 + h * 8));
  }
  for (int64_t n = 0; n < s.n; ++n) {
    const int64_t off = (n * blocks + b) * row;
    for (int64_t i = 0; i < row; i += W) {
      for (int h = 0; h < H; ++h) {
        const int64_t at = off + i + h * 8;
        const __m256 x = LoadX8(xhat + at);
        const __m256 gu = _mm256_loadu_ps(gz + at);
        _mm256_storeu_ps(gz + at, _mm256_mul_ps(sc[h], _mm256_sub_ps(_mm256_sub_ps(gu, v1[h]),
                                                                     _mm256_mul_ps(x, v2[h]))));
      }
    }
  }
}

template <class X>
void ForwardAny(const float* z, const BnSiluShape& s, int64_t c0, int64_t c1, double eps,
                const float* gamma, const float* beta, float* mean, float* invstd,
                float* var_unbiased, X* xhat, float* y) {
  (BnSiluVectorised() ? Forward<Avx2Rows, X> : Forward<ScalarRows, X>)(z, s, c0, c1, eps, gamma,
                                                                       beta, mean, invstd,
                                                                       var_unbiased, xhat, y);
}

template <class X>
void BackwardAny(const float* gy, const X* xhat, const BnSiluShape& s, int64_t c0, int64_t c1,
                 const float* gamma, const float* beta, const float* invstd, float* gz,
                 float* ggamma, float* gbeta) {
  (BnSiluVectorised() ? Backward<Avx2Rows, X> : Backward<ScalarRows, X>)(gy, xhat, s, c0, c1, gamma,
                                                                         beta, invstd, gz, ggamma,
                                                                         gbeta);
}

template <class X>
void ForwardBlockedAny(const float* z, const BnSiluShape& s, int64_t b0, int64_t b1, double eps,
                       const float* gamma, const float* beta, float* mean, float* invstd,
                       float* var_unbiased, X* xhat, float* y) {
  auto* one = s.block == 16 ? ForwardBlockedW<16, X> : ForwardBlockedW<8, X>;
  for (int64_t b = b0; b < b1; ++b)
    one(z, s, b, eps, gamma, beta, mean, invstd, var_unbiased, xhat, y);
}

template <class X>
void BackwardBlockedAny(const float* gy, const X* xhat, const BnSiluShape& s, int64_t b0,
                        int64_t b1, const float* gamma, const float* beta, const float* invstd,
                        float* gz, float* ggamma, float* gbeta) {
  auto* one = s.block == 16 ? BackwardBlockedW<16, X> : BackwardBlockedW<8, X>;
  for (int64_t b = b0; b < b1; ++b) one(gy, xhat, s, b, gamma, beta, invstd, gz, ggamma, gbeta);
}

}  // namespace

bool BnSiluVectorised() {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return avx2;
}

void BnSiluForward(const float* z, const BnSiluShape& s, int64_t c0, int64_t c1, double eps,
                   const float* gamma, const float* beta, float* mean, float* invstd,
                   float* var_unbiased, uint16_t* xhat, float* y) {
  ForwardAny(z, s, c0, c1, eps, gamma, beta, mean, invstd, var_unbiased, xhat, y);
}
void BnSiluForward(const float* z, const BnSiluShape& s, int64_t c0, int64_t c1, double eps,
                   const float* gamma, const float* beta, float* mean, float* invstd,
                   float* var_unbiased, float* xhat, float* y) {
  ForwardAny(z, s, c0, c1, eps, gamma, beta, mean, invstd, var_unbiased, xhat, y);
}
void BnSiluBackward(const float* gy, const uint16_t* xhat, const BnSiluShape& s, int64_t c0,
                    int64_t c1, const float* gamma, const float* beta, const float* invstd,
                    float* gz, float* ggamma, float* gbeta) {
  BackwardAny(gy, xhat, s, c0, c1, gamma, beta, invstd, gz, ggamma, gbeta);
}
void BnSiluBackward(const float* gy, const float* xhat, const BnSiluShape& s, int64_t c0,
                    int64_t c1, const float* gamma, const float* beta, const float* invstd,
                    float* gz, float* ggamma, float* gbeta) {
  BackwardAny(gy, xhat, s, c0, c1, gamma, beta, invstd, gz, ggamma, gbeta);
}
void BnSiluForwardBlocked(const float* z, const BnSiluShape& s, int64_t b0, int64_t b1, double eps,
                          const float* gamma, const float* beta, float* mean, float* invstd,
                          float* var_unbiased, uint16_t* xhat, float* y) {
  ForwardBlockedAny(z, s, b0, b1, eps, gamma, beta, mean, invstd, var_unbiased, xhat, y);
}
void BnSiluForwardBlocked(const float* z, const BnSiluShape& s, int64_t b0, int64_t b1, double eps,
                          const float* gamma, const float* beta, float* mean, float* invstd,
                          float* var_unbiased, float* xhat, float* y) {
  ForwardBlockedAny(z, s, b0, b1, eps, gamma, beta, mean, invstd, var_unbiased, xhat, y);
}
void BnSiluOutputBlocked(const float* xhat, const BnSiluShape& s, int64_t b0, int64_t b1,
                         const float* gamma, const float* beta, float* y) {
  auto* one = s.block == 16 ? OutputBlockedW<16> : OutputBlockedW<8>;
  for (int64_t b = b0; b < b1; ++b) one(xhat, s, b, gamma, beta, y);
}
void BnSiluBackwardBlocked(const float* gy, const uint16_t* xhat, const BnSiluShape& s, int64_t b0,
                           int64_t b1, const float* gamma, const float* beta, const float* invstd,
                           float* gz, float* ggamma, float* gbeta) {
  BackwardBlockedAny(gy, xhat, s, b0, b1, gamma, beta, invstd, gz, ggamma, gbeta);
}
void BnSiluBackwardBlocked(const float* gy, const float* xhat, const BnSiluShape& s, int64_t b0,
                           int64_t b1, const float* gamma, const float* beta, const float* invstd,
                           float* gz, float* ggamma, float* gbeta) {
  BackwardBlockedAny(gy, xhat, s, b0, b1, gamma, beta, invstd, gz, ggamma, gbeta);
}

}  // namespace yolo
