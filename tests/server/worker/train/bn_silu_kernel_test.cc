#include "server/worker/train/bn_silu_kernel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace yolo {
namespace {

double Bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
double Sigmoid(double u) { return 1.0 / (1.0 + std::exp(-u)); }

// 2 × 3 channels of 37 values (a length that is not a multiple of the vector width), channel 1
// far from zero so that a variance computed as E[z²] - E[z]² would lose its digits in float.
struct Case {
  BnSiluShape s{2, 3, 37};
  std::vector<float> z, gy, gamma{0.7f, 1.3f, -0.4f}, beta{0.1f, -0.2f, 0.5f};
  Case() {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    for (int64_t i = 0; i < s.n * s.c * s.hw; ++i) {
      const int64_t c = i / s.hw % s.c;
      z.push_back((c == 1 ? 1000.0f : 0.0f) + (c + 1) * normal(rng));
      gy.push_back(normal(rng));
    }
  }
  const float* Row(const std::vector<float>& v, int64_t n, int64_t c) const {
    return v.data() + (n * s.c + c) * s.hw;
  }
};

TEST(BnSiluKernelTest, ForwardMatchesADoublePrecisionReference) {
  Case k;
  const int64_t size = k.s.n * k.s.c * k.s.hw;
  std::vector<float> mean(3), invstd(3), var(3), y(size);
  std::vector<uint16_t> xhat(size);
  BnSiluForward(k.z.data(), k.s, 0, 3, 1e-3, k.gamma.data(), k.beta.data(), mean.data(),
                invstd.data(), var.data(), xhat.data(), y.data());
  for (int64_t c = 0; c < 3; ++c) {
    double sum = 0, sq = 0;
    const double count = static_cast<double>(k.s.n * k.s.hw);
    for (int64_t n = 0; n < k.s.n; ++n) {
      for (int64_t i = 0; i < k.s.hw; ++i) sum += k.Row(k.z, n, c)[i];
    }
    const double m = sum / count;
    for (int64_t n = 0; n < k.s.n; ++n) {
      for (int64_t i = 0; i < k.s.hw; ++i) sq += std::pow(k.Row(k.z, n, c)[i] - m, 2);
    }
    const double istd = 1.0 / std::sqrt(sq / count + 1e-3);
    EXPECT_NEAR(mean[c], m, 1e-4 * std::abs(m) + 1e-6) << "channel " << c;
    EXPECT_NEAR(invstd[c], istd, 1e-5 * istd) << "channel " << c;
    EXPECT_NEAR(var[c], sq / (count - 1), 1e-5 * sq / count) << "channel " << c;
    for (int64_t n = 0; n < k.s.n; ++n) {
      for (int64_t i = 0; i < k.s.hw; ++i) {
        const int64_t at = (n * k.s.c + c) * k.s.hw + i;
        const double x = (k.z[at] - m) * istd;
        const double u = k.gamma[c] * x + k.beta[c];
        EXPECT_NEAR(y[at], u * Sigmoid(u), 1e-4) << "element " << at;
        EXPECT_NEAR(Bf16(xhat[at]), x, std::abs(x) / 256 + 1e-6) << "element " << at;
      }
    }
  }
}

TEST(BnSiluKernelTest, BackwardMatchesADoublePrecisionReferenceFromTheSavedInput) {
  Case k;
  const int64_t size = k.s.n * k.s.c * k.s.hw;
  std::vector<float> mean(3), invstd(3), var(3), y(size), gz(size), ggamma(3), gbeta(3);
  std::vector<uint16_t> xhat(size);
  BnSiluForward(k.z.data(), k.s, 0, 3, 1e-3, k.gamma.data(), k.beta.data(), mean.data(),
                invstd.data(), var.data(), xhat.data(), y.data());
  // Two calls over different channel ranges, as two threads would make them.
  BnSiluBackward(k.gy.data(), xhat.data(), k.s, 0, 1, k.gamma.data(), k.beta.data(), invstd.data(),
                 gz.data(), ggamma.data(), gbeta.data());
  BnSiluBackward(k.gy.data(), xhat.data(), k.s, 1, 3, k.gamma.data(), k.beta.data(), invstd.data(),
                 gz.data(), ggamma.data(), gbeta.data());
  const double count = static_cast<double>(k.s.n * k.s.hw);
  for (int64_t c = 0; c < 3; ++c) {
    std::vector<double> gu(size);
    double sum_gu = 0, sum_gu_x = 0;
    for (int64_t n = 0; n < k.s.n; ++n) {
      for (int64_t i = 0; i < k.s.hw; ++i) {
        const int64_t at = (n * k.s.c + c) * k.s.hw + i;
        const double x = Bf16(xhat[at]);
        const double u = k.gamma[c] * x + k.beta[c];
        const double s = Sigmoid(u);
        gu[at] = k.gy[at] * s * (1 + u * (1 - s));
        sum_gu += gu[at];
        sum_gu_x += gu[at] * x;
      }
    }
    EXPECT_NEAR(gbeta[c], sum_gu, 1e-4 * (1 + std::abs(sum_gu))) << "channel " << c;
    EXPECT_NEAR(ggamma[c], sum_gu_x, 1e-4 * (1 + std::abs(sum_gu_x))) << "channel " << c;
    for (int64_t n = 0; n < k.s.n; ++n) {
      for (int64_t i = 0; i < k.s.hw; ++i) {
        const int64_t at = (n * k.s.c + c) * k.s.hw + i;
        const double x = Bf16(xhat[at]);
        const double want =
            k.gamma[c] * invstd[c] * (gu[at] - sum_gu / count - x * sum_gu_x / count);
        EXPECT_NEAR(gz[at], want, 1e-5 * (1 + std::abs(want))) << "element " << at;
      }
    }
  }
}

TEST(BnSiluKernelTest, FloatSavedInputGivesTheExactGradientUpToRounding) {
  // With x̂ kept as float, backward matches BatchNorm + SiLU computed in double from z itself.
  Case k;
  const int64_t size = k.s.n * k.s.c * k.s.hw;
  std::vector<float> mean(3), invstd(3), var(3), y(size), xhat(size), gz(size), ggamma(3), gbeta(3);
  BnSiluForward(k.z.data(), k.s, 0, 3, 1e-3, k.gamma.data(), k.beta.data(), mean.data(),
                invstd.data(), var.data(), xhat.data(), y.data());
  BnSiluBackward(k.gy.data(), xhat.data(), k.s, 0, 3, k.gamma.data(), k.beta.data(), invstd.data(),
                 gz.data(), ggamma.data(), gbeta.data());
  const double count = static_cast<double>(k.s.n * k.s.hw);
  for (int64_t c = 0; c < 3; ++c) {
    double m = 0, sq = 0;
    for (int64_t n = 0; n < k.s.n; ++n) {
      for (int64_t i = 0; i < k.s.hw; ++i) m += k.Row(k.z, n, c)[i];
    }
    m /= count;
    for (int64_t n = 0; n < k.s.n; ++n) {
      for (int64_t i = 0; i < k.s.hw; ++i) sq += std::pow(k.Row(k.z, n, c)[i] - m, 2);
    }
    const double istd = 1.0 / std::sqrt(sq / count + 1e-3);
    std::vector<double> x(size), gu(size);
    double sum_gu = 0, sum_gu_x = 0;
    for (int64_t n = 0; n < k.s.n; ++n) {
      for (int64_t i = 0; i < k.s.hw; ++i) {
        const int64_t at = (n * k.s.c + c) * k.s.hw + i;
        x[at] = (k.z[at] - m) * istd;
        EXPECT_NEAR(xhat[at], x[at], 1e-5 * std::abs(x[at]) + 1e-5) << "element " << at;
        const double u = k.gamma[c] * x[at] + k.beta[c];
        const double s = Sigmoid(u);
        gu[at] = k.gy[at] * s * (1 + u * (1 - s));
        sum_gu += gu[at];
        sum_gu_x += gu[at] * x[at];
      }
    }
    EXPECT_NEAR(gbeta[c], sum_gu, 1e-5 * (1 + std::abs(sum_gu))) << "channel " << c;
    EXPECT_NEAR(ggamma[c], sum_gu_x, 1e-5 * (1 + std::abs(sum_gu_x))) << "channel " << c;
    for (int64_t n = 0; n < k.s.n; ++n) {
      for (int64_t i = 0; i < k.s.hw; ++i) {
        const int64_t at = (n * k.s.c + c) * k.s.hw + i;
        const double want =
            k.gamma[c] * istd * (gu[at] - sum_gu / count - x[at] * sum_gu_x / count);
        EXPECT_NEAR(gz[at], want, 1e-4 * (1 + std::abs(want))) << "element " << at;
      }
    }
  }
}

// The blocked kernels, 8 and 16 channels a block, give what the NCHW kernel gives for the same
// values (32 channels of 2 x 45 positions; each layout's element is found by its coordinates).
TEST(BnSiluKernelTest, BlockedLayoutsOf8And16MatchNchw) {
  if (!BnSiluVectorised()) GTEST_SKIP() << "the blocked kernels need AVX2";
  const BnSiluShape nchw{2, 32, 45};
  const int64_t size = nchw.n * nchw.c * nchw.hw;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> z(size), gy(size), gamma(32), beta(32);
  for (int64_t i = 0; i < size; ++i) z[i] = 3 + 2 * normal(rng), gy[i] = normal(rng);
  for (int c = 0; c < 32; ++c) gamma[c] = 1 + 0.1f * normal(rng), beta[c] = 0.1f * normal(rng);
  std::vector<float> mean(32), invstd(32), var(32), y(size), xhat(size), gz(size), gg(32), gb(32);
  BnSiluForward(z.data(), nchw, 0, 32, 1e-3, gamma.data(), beta.data(), mean.data(), invstd.data(),
                var.data(), xhat.data(), y.data());
  BnSiluBackward(gy.data(), xhat.data(), nchw, 0, 32, gamma.data(), beta.data(), invstd.data(),
                 gz.data(), gg.data(), gb.data());
  for (const int64_t block : {8, 16}) {
    SCOPED_TRACE(testing::Message() << "block " << block);
    const BnSiluShape s{2, 32, 45, block};
    auto at = [&](int64_t n, int64_t c, int64_t i) {  // [n][c / B][hw][B]
      return ((n * (32 / block) + c / block) * 45 + i) * block + c % block;
    };
    std::vector<float> zb(size), gyb(size);
    for (int64_t n = 0; n < 2; ++n) {
      for (int64_t c = 0; c < 32; ++c) {
        for (int64_t i = 0; i < 45; ++i) {
          zb[at(n, c, i)] = z[(n * 32 + c) * 45 + i];
          gyb[at(n, c, i)] = gy[(n * 32 + c) * 45 + i];
        }
      }
    }
    std::vector<float> bm(32), bi(32), bv(32), by(size), bx(size), bgz(size), bgg(32), bgb(32);
    BnSiluForwardBlocked(zb.data(), s, 0, 32 / block, 1e-3, gamma.data(), beta.data(), bm.data(),
                         bi.data(), bv.data(), bx.data(), by.data());
    BnSiluBackwardBlocked(gyb.data(), bx.data(), s, 0, 32 / block, gamma.data(), beta.data(),
                          bi.data(), bgz.data(), bgg.data(), bgb.data());
    for (int64_t c = 0; c < 32; ++c) {
      EXPECT_NEAR(bm[c], mean[c], 1e-5) << "channel " << c;
      EXPECT_NEAR(bi[c], invstd[c], 1e-5) << "channel " << c;
      EXPECT_NEAR(bv[c], var[c], 1e-4) << "channel " << c;
      EXPECT_NEAR(bgg[c], gg[c], 1e-3) << "channel " << c;
      EXPECT_NEAR(bgb[c], gb[c], 1e-3) << "channel " << c;
      for (int64_t n = 0; n < 2; ++n) {
        for (int64_t i = 0; i < 45; ++i) {
          const int64_t want = (n * 32 + c) * 45 + i;
          ASSERT_NEAR(by[at(n, c, i)], y[want], 1e-5) << n << "," << c << "," << i;
          ASSERT_NEAR(bgz[at(n, c, i)], gz[want], 1e-5) << n << "," << c << "," << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace yolo
