// Activation quantizers: the reference and exact grids, round-half-to-even, per-cluster static and dynamic
// matrix quantization against a scalar loop, and the fixed 8-bit softmax grid.
#include "rptq/base/quantizer.h"

#include <cmath>
#include <limits>
#include <random>

#include "rptq/base/error.h"
#include "test_support.h"

namespace {

using rptq::QuantGrid;
using rptq::QuantParams;

TEST(Quantizer, RoundHalfEvenMatchesNearbyint) {
  for (float v : {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.49999997f, 3.0f, -7.25f, 8388607.5f, 4194303.5f, 1e9f,
                  -1e9f, 0.0f, -0.0f, 1e-30f})
    EXPECT_EQ(rptq::round_half_even(v), std::nearbyint(v)) << v;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-3000.0f, 3000.0f);
  for (int i = 0; i < 100000; ++i) {
    const float v = i % 3 ? d(rng) : std::floor(d(rng)) + 0.5f;  // a third of them exact ties
    ASSERT_EQ(rptq::round_half_even(v), std::nearbyint(v)) << v;
  }
}

TEST(Quantizer, ReferenceGridHandComputed) {
  // [-1, 1], 4 bits: scale = 2 / 16 = 0.125, zp = round(0) = 0, codes -8..7.
  QuantParams p = rptq::quant_params(-1.0f, 1.0f, 4, QuantGrid::Reference);
  EXPECT_EQ(p.scale, 0.125f);
  EXPECT_EQ(p.zero_point, 0.0f);
  EXPECT_EQ(p.bits, 4);
  EXPECT_EQ(rptq::quantize(0.3f, p), 2);       // round(2.4)
  EXPECT_EQ(rptq::quantize(0.0625f, p), 0);    // round(0.5) = 0: half to even
  EXPECT_EQ(rptq::quantize(0.1875f, p), 2);    // round(1.5) = 2
  EXPECT_EQ(rptq::quantize(-0.1875f, p), -2);  // round(-1.5) = -2
  EXPECT_EQ(rptq::quantize(1.0f, p), 7);       // round(8) saturates: the reference's top step
  EXPECT_EQ(rptq::quantize(-1.0f, p), -8);
  EXPECT_EQ(rptq::quantize(-5.0f, p), -8);
  EXPECT_EQ(rptq::fake_quant(0.3f, p), 0.25f);
  EXPECT_EQ(rptq::fake_quant(1.0f, p), 0.875f);
  EXPECT_EQ(rptq::dequantize(-3, p), -0.375f);

  // An all-positive range, [2, 6], 3 bits: scale = 4 / 8 = 0.5, zp = round(-8 / 1) = -8.
  p = rptq::quant_params(2.0f, 6.0f, 3, QuantGrid::Reference);
  EXPECT_EQ(p.scale, 0.5f);
  EXPECT_EQ(p.zero_point, -8.0f);
  EXPECT_EQ(rptq::quantize(2.0f, p), -4);
  EXPECT_EQ(rptq::quantize(3.3f, p), -1);  // round(6.6) - 8
  EXPECT_EQ(rptq::fake_quant(3.3f, p), 3.5f);
  EXPECT_EQ(rptq::quantize(6.0f, p), 3);  // round(12) - 8 = 4 saturates at 3
  EXPECT_EQ(rptq::fake_quant(6.0f, p), 5.5f);

  // [-1, 1.5], 2 bits: scale 0.625, zp = round(-0.4) = 0: the top grid point 0.625 lies 1.4 steps below max.
  p = rptq::quant_params(-1.0f, 1.5f, 2, QuantGrid::Reference);
  EXPECT_EQ(p.scale, 0.625f);
  EXPECT_EQ(p.zero_point, 0.0f);
  EXPECT_EQ(rptq::fake_quant(1.5f, p), 0.625f);

  // Scale clamps: a wide range hits 1e4, a point range 1e-4.
  EXPECT_EQ(rptq::quant_params(-1e7f, 1e7f, 8, QuantGrid::Reference).scale, 1e4f);
  EXPECT_EQ(rptq::quant_params(3.0f, 3.0f, 8, QuantGrid::Reference).scale, 1e-4f);
}

TEST(Quantizer, ExactGridHandComputed) {
  // [-1, 2], 2 bits: scale = 3 / 3 = 1, zp = round(-2 + 1) = -1, codes -2..1 <-> -1, 0, 1, 2.
  QuantParams p = rptq::quant_params(-1.0f, 2.0f, 2, QuantGrid::Exact);
  EXPECT_EQ(p.scale, 1.0f);
  EXPECT_EQ(p.zero_point, -1.0f);
  EXPECT_EQ(rptq::quantize(-1.0f, p), -2);
  EXPECT_EQ(rptq::quantize(2.0f, p), 1);
  EXPECT_EQ(rptq::quantize(0.5f, p), -1);  // round(0.5) = 0
  EXPECT_EQ(rptq::quantize(1.5f, p), 1);   // round(1.5) = 2
  EXPECT_EQ(rptq::fake_quant(0.5f, p), 0.0f);
  EXPECT_EQ(rptq::fake_quant(2.0f, p), 2.0f);
  EXPECT_EQ(rptq::fake_quant(9.0f, p), 2.0f);

  // [0, 2.55], 8 bits: scale = 0.01, zp = -128; 1.0 -> code -28.
  p = rptq::quant_params(0.0f, 2.55f, 8, QuantGrid::Exact);
  EXPECT_FLOAT_EQ(p.scale, 0.01f);
  EXPECT_EQ(p.zero_point, -128.0f);
  EXPECT_EQ(rptq::quantize(1.0f, p), -28);
  EXPECT_EQ(rptq::quantize(0.0f, p), -128);
  EXPECT_EQ(rptq::quantize(2.55f, p), 127);

  // [10, 12], 3 bits, all positive: scale 2/7, min -> -4, max -> 3.
  p = rptq::quant_params(10.0f, 12.0f, 3, QuantGrid::Exact);
  EXPECT_FLOAT_EQ(p.scale, 2.0f / 7.0f);
  EXPECT_EQ(rptq::quantize(10.0f, p), -4);
  EXPECT_EQ(rptq::quantize(12.0f, p), 3);
  EXPECT_NEAR(rptq::fake_quant(12.0f, p), 12.0f, 1e-5f);

  // min == max: the scale is the lower clamp and the value survives.
  p = rptq::quant_params(5.0f, 5.0f, 4, QuantGrid::Exact);
  EXPECT_EQ(p.scale, 1e-4f);
  EXPECT_NEAR(rptq::fake_quant(5.0f, p), 5.0f, 1e-4f);
  p = rptq::quant_params(0.0f, 0.0f, 4, QuantGrid::Exact);
  EXPECT_EQ(rptq::fake_quant(0.0f, p), 0.0f);
}

// |fake_quant(x) - x| <= scale / 2 on [min, max] for every width and grid; the reference grid's documented
// exception: above its top grid point the value saturates there (the point lies 0.5 to 1.5 steps below max).
TEST(Quantizer, RoundTripErrorBound) {
  const std::pair<float, float> ranges[] = {{-1.0f, 1.0f},   {-3.7f, 0.2f},  {0.5f, 9.25f}, {-120.0f, -80.0f},
                                            {-0.01f, 0.03f}, {-50.0f, 7.0f}, {80.0f, 100.0f}};
  std::mt19937 rng(1);
  for (QuantGrid grid : {QuantGrid::Exact, QuantGrid::Reference})
    for (int bits = 2; bits <= 8; ++bits)
      for (auto [mn, mx] : ranges) {
        const QuantParams p = rptq::quant_params(mn, mx, bits, grid);
        const float eps = 4.0f * std::numeric_limits<float>::epsilon() * std::max(std::fabs(mn), std::fabs(mx));
        const float top = rptq::dequantize(rptq::code_max(bits), p);
        if (grid == QuantGrid::Reference) {
          EXPECT_GE(top, mx - 1.5f * p.scale - eps);
          EXPECT_LE(top, mx - 0.5f * p.scale + eps);
        }
        std::uniform_real_distribution<float> d(mn, mx);
        for (int i = 0; i < 2000; ++i) {
          const float x = i == 0 ? mn : i == 1 ? mx : d(rng);
          const float err = std::fabs(rptq::fake_quant(x, p) - x);
          const float bound = grid == QuantGrid::Reference && x > top ? x - top : 0.5f * p.scale;
          ASSERT_LE(err, bound + eps) << rptq::grid_name(grid) << " bits " << bits << " [" << mn << ", " << mx
                                      << "] x " << x;
          const std::int32_t q = rptq::quantize(x, p);
          ASSERT_GE(q, rptq::code_min(bits));
          ASSERT_LE(q, rptq::code_max(bits));
        }
        // Exact: min lands on the lowest code and max on the highest, or one below when min / scale is (nearly)
        // half-way between integers (then zp's rounding and max's go opposite ways; the error is still <= s / 2).
        if (grid == QuantGrid::Exact) {
          EXPECT_EQ(rptq::quantize(mn, p), rptq::code_min(bits)) << bits << " [" << mn << ", " << mx << "]";
          const float a = mn / p.scale;
          const bool tie = std::fabs(std::fabs(a - std::trunc(a)) - 0.5f) < 1e-3f;
          EXPECT_GE(rptq::quantize(mx, p), rptq::code_max(bits) - (tie ? 1 : 0))
              << bits << " [" << mn << ", " << mx << "]";
        }
      }
}

TEST(Quantizer, SoftmaxEightBitGrid) {
  std::vector<float> p = {0.0f, 1.0f, 0.2f, 0.25f, 0.01f, 0.5f, -0.1f, 1.2f};
  rptq::fake_quant_softmax(p);
  EXPECT_EQ(p[0], 0.0f);
  EXPECT_EQ(p[1], 1.0f);
  EXPECT_EQ(p[2], 51.0f / 255.0f);
  EXPECT_EQ(p[3], 64.0f / 255.0f);   // round(63.75)
  EXPECT_EQ(p[4], 3.0f / 255.0f);    // round(2.55)
  EXPECT_EQ(p[5], 128.0f / 255.0f);  // round(127.5) = 128, half to even
  EXPECT_EQ(p[6], 0.0f);             // clamped to [0, 1]
  EXPECT_EQ(p[7], 1.0f);

  // Random probabilities against the formula, over a strided matrix whose padding stays untouched.
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(0.0f, 1.0f);
  const std::int64_t rows = 300, cols = 70, ld = 75;
  std::vector<float> m(static_cast<std::size_t>(rows * ld));
  for (float& v : m) v = d(rng);
  const std::vector<float> orig = m;
  rptq::fake_quant_softmax(m.data(), rows, cols, ld);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < ld; ++c) {
      const float x = orig[static_cast<std::size_t>(r * ld + c)], y = m[static_cast<std::size_t>(r * ld + c)];
      if (c >= cols) {
        ASSERT_EQ(y, x);
        continue;
      }
      ASSERT_EQ(y, std::nearbyint(x * 255.0f) / 255.0f);
      ASSERT_LE(std::fabs(y - x), 0.5f / 255.0f + 1e-7f);
    }
}

std::vector<float> random_activations(std::int64_t rows, std::int64_t ld, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(rows * ld));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto c = static_cast<std::int64_t>(i) % ld;
    x[i] = d(rng) * (1.0f + static_cast<float>(c % 5) * 3.0f) + (c % 3 == 0 ? 20.0f : 0.0f);  // outliers, offsets
  }
  return x;
}

TEST(Quantizer, StaticClustersMatchScalarLoop) {
  const std::vector<std::int64_t> b = {0, 7, 7, 20, 64};  // one empty cluster
  for (std::int64_t rows : {std::int64_t{5}, std::int64_t{400}}) {  // below and above the parallel threshold
    const std::int64_t cols = 64, ld = 67;
    std::vector<float> x = random_activations(rows, ld, 11);
    const std::vector<float> orig = x;
    const std::vector<QuantParams> params = {rptq::quant_params(-2.0f, 21.0f, 4, QuantGrid::Exact),
                                             rptq::quant_params(0.0f, 1.0f, 8, QuantGrid::Exact),
                                             rptq::quant_params(-5.0f, 5.0f, 3, QuantGrid::Reference),
                                             rptq::quant_params(1.0f, 30.0f, 8, QuantGrid::Reference)};
    rptq::fake_quant_clusters(x.data(), rows, cols, ld, b, params);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < ld; ++c) {
        const auto i = static_cast<std::size_t>(r * ld + c);
        if (c >= cols) {
          ASSERT_EQ(x[i], orig[i]);
          continue;
        }
        std::size_t k = 0;
        while (c >= b[k + 1]) ++k;
        ASSERT_EQ(x[i], rptq::fake_quant(orig[i], params[k])) << "row " << r << " col " << c;
      }
  }
}

TEST(Quantizer, DynamicClustersMatchScalarLoop) {
  const std::vector<std::int64_t> b = {0, 3, 30, 31, 50};
  for (QuantGrid grid : {QuantGrid::Exact, QuantGrid::Reference})
    for (int bits : {3, 4, 8})
      for (std::int64_t rows : {std::int64_t{1}, std::int64_t{9}, std::int64_t{700}}) {
        const std::int64_t cols = 50, ld = 50;
        std::vector<float> x = random_activations(rows, ld, static_cast<std::uint32_t>(bits * 100 + rows));
        const std::vector<float> orig = x;
        const std::vector<QuantParams> got =
            rptq::fake_quant_clusters_dynamic(x.data(), rows, cols, ld, b, bits, grid);
        ASSERT_EQ(got.size(), 4u);
        for (std::size_t k = 0; k + 1 < b.size(); ++k) {
          float mn = INFINITY, mx = -INFINITY;
          for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = b[k]; c < b[k + 1]; ++c) {
              mn = std::min(mn, orig[static_cast<std::size_t>(r * ld + c)]);
              mx = std::max(mx, orig[static_cast<std::size_t>(r * ld + c)]);
            }
          const QuantParams want = rptq::quant_params(mn, mx, bits, grid);
          EXPECT_EQ(got[k].scale, want.scale);
          EXPECT_EQ(got[k].zero_point, want.zero_point);
          for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = b[k]; c < b[k + 1]; ++c) {
              const auto i = static_cast<std::size_t>(r * ld + c);
              ASSERT_EQ(x[i], rptq::fake_quant(orig[i], want)) << "row " << r << " col " << c;
            }
        }
      }
}

// Per token: every (row, cluster) quantized with that row's own min/max over the cluster, by a scalar loop; a
// padded row stride is left alone; a non-finite value is refused.
TEST(Quantizer, PerTokenClustersMatchScalarLoop) {
  const std::vector<std::int64_t> b = {0, 3, 30, 31, 50};
  for (QuantGrid grid : {QuantGrid::Exact, QuantGrid::Reference})
    for (int bits : {3, 8})
      for (std::int64_t rows : {std::int64_t{1}, std::int64_t{700}}) {
        const std::int64_t cols = 50, ld = 53;
        std::vector<float> x = random_activations(rows, ld, static_cast<std::uint32_t>(bits * 10 + rows));
        const std::vector<float> orig = x;
        rptq::fake_quant_clusters_per_token(x.data(), rows, cols, ld, b, bits, grid);
        for (std::int64_t r = 0; r < rows; ++r) {
          for (std::size_t k = 0; k + 1 < b.size(); ++k) {
            float mn = INFINITY, mx = -INFINITY;
            for (std::int64_t c = b[k]; c < b[k + 1]; ++c) {
              mn = std::min(mn, orig[static_cast<std::size_t>(r * ld + c)]);
              mx = std::max(mx, orig[static_cast<std::size_t>(r * ld + c)]);
            }
            const QuantParams want = rptq::quant_params(mn, mx, bits, grid);
            for (std::int64_t c = b[k]; c < b[k + 1]; ++c) {
              const auto i = static_cast<std::size_t>(r * ld + c);
              ASSERT_EQ(x[i], rptq::fake_quant(orig[i], want)) << "row " << r << " col " << c;
            }
          }
          for (std::int64_t c = cols; c < ld; ++c)
            ASSERT_EQ(x[static_cast<std::size_t>(r * ld + c)], orig[static_cast<std::size_t>(r * ld + c)]);
        }
      }
  std::vector<float> bad = random_activations(4, 50, 1);
  bad[2 * 50 + 7] = NAN;
  EXPECT_THROW(rptq::fake_quant_clusters_per_token(bad.data(), 4, 50, 50, b, 8, QuantGrid::Exact), rptq::InputError);
}

TEST(Quantizer, ClusterParamsFromChannelRanges) {
  const std::vector<float> mn = {-1.0f, -3.0f, 0.5f, 2.0f, 4.0f}, mx = {1.0f, 0.0f, 0.7f, 5.0f, 4.5f};
  const std::vector<std::int64_t> b = {0, 2, 2, 5};
  const auto p = rptq::cluster_params(mn, mx, b, 4, QuantGrid::Reference);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].scale, 4.0f / 16.0f);  // [-3, 1]
  EXPECT_EQ(p[0].zero_point, 4.0f);     // round(2 / 0.5)
  EXPECT_EQ(p[1].scale, 1e-4f);         // empty cluster: [0, 0]
  EXPECT_EQ(p[1].zero_point, 0.0f);
  EXPECT_EQ(p[2].scale, 4.5f / 16.0f);  // [0.5, 5]
  EXPECT_EQ(p[2].zero_point, -10.0f);   // round(-5.5 / 0.5625) = round(-9.78)
  EXPECT_THROW(rptq::cluster_params(mn, mx, {0, 2, 6}, 4, QuantGrid::Exact), rptq::InputError);
}

TEST(Quantizer, BadInputsThrow) {
  EXPECT_THROW(rptq::quant_params(0.0f, 1.0f, 1, QuantGrid::Exact), rptq::InputError);
  EXPECT_THROW(rptq::quant_params(0.0f, 1.0f, 9, QuantGrid::Exact), rptq::InputError);
  EXPECT_THROW(rptq::quant_params(1.0f, 0.0f, 4, QuantGrid::Exact), rptq::InputError);
  EXPECT_THROW(rptq::quant_params(NAN, 1.0f, 4, QuantGrid::Exact), rptq::InputError);
  EXPECT_THROW(rptq::quant_params(0.0f, INFINITY, 4, QuantGrid::Reference), rptq::InputError);
  std::vector<float> x(12, 1.0f);
  const auto p = rptq::quant_params(0.0f, 1.0f, 4, QuantGrid::Exact);
  EXPECT_THROW(rptq::fake_quant_clusters(x.data(), 3, 4, 4, {0, 4}, {p, p}), rptq::InputError);   // count
  EXPECT_THROW(rptq::fake_quant_clusters(x.data(), 3, 4, 4, {0, 3}, {p}), rptq::InputError);      // end != cols
  EXPECT_THROW(rptq::fake_quant_clusters(x.data(), 3, 4, 4, {1, 4}, {p}), rptq::InputError);      // start != 0
  EXPECT_THROW(rptq::fake_quant_clusters(x.data(), 3, 4, 4, {0, 3, 2, 4}, {p, p, p}), rptq::InputError);
  EXPECT_THROW(rptq::fake_quant_clusters(x.data(), 3, 4, 3, {0, 4}, {p}), rptq::InputError);      // ld < cols
  EXPECT_THROW(rptq::fake_quant_clusters(x.data(), 3, 4, 4, {0, 4}, {QuantParams{0.0f, 0.0f, 4}}),
               rptq::InputError);
  EXPECT_THROW(rptq::fake_quant_clusters_dynamic(x.data(), 3, 4, 4, {0, 4}, 12, QuantGrid::Exact), rptq::InputError);
  x[5] = INFINITY;
  EXPECT_THROW(rptq::fake_quant_clusters_dynamic(x.data(), 3, 4, 4, {0, 4}, 4, QuantGrid::Exact), rptq::InputError);
  try {
    rptq::quant_params(0.0f, 1.0f, 12, QuantGrid::Exact);
    FAIL();
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("12"), std::string::npos) << e.what();
  }
}

}  // namespace
