// Weight quantization: RTN against a scalar reimplementation, the Hessian accumulation, and GPTQ against RTN (it
// must lower the layer's output error on correlated inputs) and against a plain double-precision GPTQ.
#include "rptq/method/weight_quant.h"
#include "rptq/model/packed_weight.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "rptq/base/error.h"
#include "rptq/model/ops.h"
#include "test_support.h"

namespace {

using rptq::QuantGrid;

std::vector<float> gaussian(std::size_t n, std::uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Inputs with strongly correlated channels (rank-8 signal plus noise) and uneven channel scales, like LLM
// activations: x = z B + 0.1 noise, channel c scaled by 1 + (c % 7).
std::vector<float> correlated_inputs(std::int64_t rows, std::int64_t in, std::uint32_t seed) {
  const std::int64_t rank = 8;
  const std::vector<float> z = gaussian(static_cast<std::size_t>(rows * rank), seed);
  const std::vector<float> b = gaussian(static_cast<std::size_t>(rank * in), seed + 1);
  const std::vector<float> noise = gaussian(static_cast<std::size_t>(rows * in), seed + 2, 0.1f);
  std::vector<float> x(static_cast<std::size_t>(rows * in));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < in; ++c) {
      float v = noise[static_cast<std::size_t>(r * in + c)];
      for (std::int64_t k = 0; k < rank; ++k)
        v += z[static_cast<std::size_t>(r * rank + k)] * b[static_cast<std::size_t>(k * in + c)];
      x[static_cast<std::size_t>(r * in + c)] = v * static_cast<float>(1 + c % 7);
    }
  return x;
}

std::vector<float> dequantized(const rptq::QuantizedWeight& q) {
  std::vector<float> w(static_cast<std::size_t>(q.out * q.in));
  q.dequantize(w.data());
  return w;
}

// ||X W^T - X Q^T||_F in double.
double output_error(const std::vector<float>& x, std::int64_t rows, const std::vector<float>& w,
                    const std::vector<float>& q, std::int64_t out, std::int64_t in) {
  double sum = 0.0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t o = 0; o < out; ++o) {
      double d = 0.0;
      for (std::int64_t c = 0; c < in; ++c)
        d += static_cast<double>(x[static_cast<std::size_t>(r * in + c)]) *
             (static_cast<double>(w[static_cast<std::size_t>(o * in + c)]) - q[static_cast<std::size_t>(o * in + c)]);
      sum += d * d;
    }
  return std::sqrt(sum);
}

// The formulas written out once more, independently of quantizer.cpp and weight_quant.cpp.
float raw_scale(float mn, float mx, int bits, QuantGrid grid) {
  const float levels = std::ldexp(1.0f, bits);
  return std::max((mx - mn) / (grid == QuantGrid::Exact ? levels - 1.0f : levels), 1e-8f);
}

// A scale on its row's storable grid: relative to 2^e with e = floor(log2(row's largest scale)) - 14, rounded to
// FP16 precision (10 fraction bits for values >= 2^-14, steps of 2^-24 below, never zero), ties to even.
float storable(float s, float row_max) {
  const int e = static_cast<int>(std::floor(std::log2(static_cast<double>(row_max)))) - 14;
  const double v = std::ldexp(static_cast<double>(s), -e);
  double r;
  if (v >= std::ldexp(1.0, -14)) {
    const int k = static_cast<int>(std::floor(std::log2(v)));
    r = std::ldexp(std::nearbyint(std::ldexp(v, 10 - k)), k - 10);
  } else {
    r = std::max(std::nearbyint(std::ldexp(v, 24)), 1.0) * std::ldexp(1.0, -24);
  }
  return static_cast<float>(std::ldexp(r, e));
}

struct ScalarQuantizer {
  float scale, zp, lo, hi;
  ScalarQuantizer(float mn, float mx, int bits, QuantGrid grid, float row_max_scale) {
    const float levels = std::ldexp(1.0f, bits);
    scale = storable(raw_scale(mn, mx, bits, grid), row_max_scale);
    zp = grid == QuantGrid::Exact ? std::nearbyint(-levels / 2.0f - mn / scale)
                                  : std::nearbyint(-(mx + mn) / (2.0f * scale));
    lo = -levels / 2.0f;
    hi = levels / 2.0f - 1.0f;
  }
  float code(float x) const { return std::clamp(std::nearbyint(x / scale) + zp, lo, hi); }
};

TEST(WeightQuant, FixedGroupBoundaries) {
  EXPECT_EQ(rptq::fixed_group_boundaries(10, 4), (std::vector<std::int64_t>{0, 4, 8, 10}));
  EXPECT_EQ(rptq::fixed_group_boundaries(8, 8), (std::vector<std::int64_t>{0, 8}));
  EXPECT_EQ(rptq::fixed_group_boundaries(5, 100), (std::vector<std::int64_t>{0, 5}));
  EXPECT_EQ(rptq::fixed_group_boundaries(6, 2), (std::vector<std::int64_t>{0, 2, 4, 6}));
  EXPECT_THROW(rptq::fixed_group_boundaries(0, 4), rptq::InputError);
  EXPECT_THROW(rptq::fixed_group_boundaries(8, 0), rptq::InputError);
}

TEST(WeightQuant, ZeroGroupDoesNotBlowUp) {
  for (QuantGrid grid : {QuantGrid::Exact, QuantGrid::Reference}) {
    const rptq::QuantParams p = rptq::weight_quant_params(0.0f, 0.0f, 4, grid);
    EXPECT_EQ(p.scale, rptq::kMinWeightScale);
    EXPECT_EQ(rptq::fake_quant(0.0f, p), 0.0f);
  }
  // No upper clamp for weights (activations stop at 1e4).
  EXPECT_EQ(rptq::weight_quant_params(-1e7f, 1e7f, 8, QuantGrid::Reference).scale, 2e7f / 256.0f);
}

TEST(WeightQuant, RtnMatchesScalarReimplementation) {
  const std::int64_t out = 13, in = 40;
  std::vector<float> w = gaussian(static_cast<std::size_t>(out * in), 21, 0.05f);
  for (std::int64_t c = 0; c < in; ++c) {
    w[static_cast<std::size_t>(2 * in + c)] = 0.0f;   // an all-zero row
    w[static_cast<std::size_t>(5 * in + c)] = 0.3f;   // a constant row
    w[static_cast<std::size_t>(7 * in + c)] += 1.0f;  // an all-positive row
  }
  const std::vector<std::int64_t> b = {0, 5, 17, 17, 40};  // one empty group
  for (QuantGrid grid : {QuantGrid::Exact, QuantGrid::Reference})
    for (int bits = 2; bits <= 8; ++bits) {
      const rptq::QuantizedWeight q = rptq::quantize_rtn(w.data(), out, in, bits, grid, b);
      ASSERT_EQ(q.out, out);
      ASSERT_EQ(q.in, in);
      ASSERT_EQ(q.bits, bits);
      ASSERT_EQ(q.group_boundaries, b);
      ASSERT_EQ(q.scales.size(), static_cast<std::size_t>(out * 4));
      ASSERT_EQ(q.codes.size(), static_cast<std::size_t>(out * in));
      const std::vector<float> deq = dequantized(q);
      for (std::int64_t r = 0; r < out; ++r) {
        std::vector<float> mns(b.size() - 1, 0.0f), mxs(b.size() - 1, 0.0f);
        float row_max = 0.0f;
        for (std::size_t k = 0; k + 1 < b.size(); ++k) {
          if (b[k] < b[k + 1]) {
            mns[k] = mxs[k] = w[static_cast<std::size_t>(r * in + b[k])];
            for (std::int64_t c = b[k]; c < b[k + 1]; ++c) {
              mns[k] = std::min(mns[k], w[static_cast<std::size_t>(r * in + c)]);
              mxs[k] = std::max(mxs[k], w[static_cast<std::size_t>(r * in + c)]);
            }
          }
          if (mns[k] == mxs[k]) {  // no range: widened to include 0
            mns[k] = std::min(mns[k], 0.0f);
            mxs[k] = std::max(mxs[k], 0.0f);
          }
          row_max = std::max(row_max, raw_scale(mns[k], mxs[k], bits, grid));
        }
        for (std::size_t k = 0; k + 1 < b.size(); ++k) {
          const ScalarQuantizer s(mns[k], mxs[k], bits, grid, row_max);
          ASSERT_EQ(q.scales[static_cast<std::size_t>(r) * 4 + k], s.scale);
          ASSERT_EQ(q.zero_points[static_cast<std::size_t>(r) * 4 + k], s.zp);
          for (std::int64_t c = b[k]; c < b[k + 1]; ++c) {
            const auto i = static_cast<std::size_t>(r * in + c);
            const float code = s.code(w[i]);
            ASSERT_EQ(q.codes[i], static_cast<std::int8_t>(code)) << "row " << r << " col " << c;
            ASSERT_EQ(deq[i], (code - s.zp) * s.scale);
            if (grid == QuantGrid::Exact) {
              // Half a step; plus what the storable scale (up to 2^-11 smaller than the range's) leaves of the
              // range's ends outside the grid: at most (2^bits - 1) * 2^-11 steps.
              const float clip = (std::ldexp(1.0f, bits) - 1.0f) * std::ldexp(1.0f, -11) * s.scale;
              ASSERT_LE(std::fabs(deq[i] - w[i]), 0.5f * s.scale * 1.0001f + clip + 1e-7f);
            }
          }
        }
      }
      // The zero row comes back exactly.
      for (std::int64_t c = 0; c < in; ++c) ASSERT_EQ(deq[static_cast<std::size_t>(2 * in + c)], 0.0f);
    }
}

TEST(WeightQuant, HessianAccumulatesAsGptq) {
  // Wider than one accumulation block of H's rows; batches before and after a read, and past the float sums'
  // fold into double (every 2048 rows).
  const std::int64_t in = 300, ld = 305;
  const std::vector<std::vector<std::int64_t>> rounds = {{100, 1, 57}, {2100, 30}};
  rptq::HessianAccumulator h(in);
  std::vector<double> want(static_cast<std::size_t>(in * in), 0.0);
  std::int64_t n = 0;
  std::uint32_t seed = 40;
  for (const auto& batches : rounds) {
    for (std::int64_t rows : batches) {
      const std::vector<float> x = gaussian(static_cast<std::size_t>(rows * ld), seed++);
      h.add(x.data(), rows, ld);
      n += rows;
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t i = 0; i < in; ++i) {
          const double xi = x[static_cast<std::size_t>(r * ld + i)];
          double* wi = want.data() + i * in;
          const float* xr = x.data() + r * ld;
          for (std::int64_t j = 0; j < in; ++j) wi[j] += xi * xr[j];
        }
    }
    EXPECT_EQ(h.samples(), n);
    EXPECT_EQ(h.in(), in);
    const std::vector<double>& H = h.hessian();
    ASSERT_EQ(H.size(), static_cast<std::size_t>(in * in));
    for (std::int64_t i = 0; i < in; ++i)
      for (std::int64_t j = 0; j < in; ++j) {
        const double expect = 2.0 / static_cast<double>(n) * want[static_cast<std::size_t>(i * in + j)];
        ASSERT_NEAR(H[static_cast<std::size_t>(i * in + j)], expect, 1e-5 * (1.0 + std::fabs(expect)))
            << "after " << n << " rows: " << i << "," << j;
        ASSERT_EQ(H[static_cast<std::size_t>(i * in + j)], H[static_cast<std::size_t>(j * in + i)]);  // symmetric
      }
  }
  EXPECT_EQ(n, 2288);
  h.add(nullptr, 0, in);  // an empty batch changes nothing
  EXPECT_EQ(h.samples(), n);
}

// permuted() is the Hessian of the inputs with their columns reordered.
TEST(WeightQuant, HessianPermutedIsTheReorderedInputsHessian) {
  const std::int64_t in = 37, rows = 90;
  const std::vector<float> x = gaussian(static_cast<std::size_t>(rows * in), 7);
  std::vector<std::int32_t> order(static_cast<std::size_t>(in));
  for (std::int64_t i = 0; i < in; ++i) order[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 10) % in);
  std::vector<float> xp(x.size());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t i = 0; i < in; ++i) xp[r * in + i] = x[r * in + order[static_cast<std::size_t>(i)]];
  rptq::HessianAccumulator a(in), b(in);
  a.add(x.data(), rows, in);
  b.add(xp.data(), rows, in);
  const rptq::HessianAccumulator p = a.permuted(order);
  EXPECT_EQ(p.samples(), rows);
  for (std::size_t k = 0; k < p.hessian().size(); ++k)
    ASSERT_NEAR(p.hessian()[k], b.hessian()[k], 1e-5 * (1.0 + std::fabs(b.hessian()[k]))) << k;
  order[3] = order[4];  // not a permutation
  EXPECT_THROW(a.permuted(order), rptq::InputError);
  EXPECT_THROW(a.permuted(std::span(order).first(5)), rptq::InputError);
}

// GPTQ as the paper writes it, column by column in double, with its own Cholesky: the reference for the blocked,
// BLAS-based implementation.
std::vector<float> gptq_plain(const std::vector<float>& w, std::int64_t out, std::int64_t n,
                              const rptq::QuantizedWeight& params, const std::vector<double>& hess, double damp,
                              const std::vector<std::int32_t>& order = {});

// The same, with the columns quantized in `order` (act-order): W's columns and H's rows and columns permuted, each
// column keeping its own group's quantizer, and the result permuted back.
std::vector<float> gptq_plain(const std::vector<float>& w, std::int64_t out, std::int64_t n,
                              const rptq::QuantizedWeight& params, const std::vector<double>& hess, double damp,
                              const std::vector<std::int32_t>& order) {
  if (!order.empty()) {
    std::vector<float> wp(w.size());
    std::vector<double> hp(hess.size());
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t r = 0; r < out; ++r) wp[static_cast<std::size_t>(r * n + i)] = w[static_cast<std::size_t>(r * n + order[static_cast<std::size_t>(i)])];
      for (std::int64_t j = 0; j < n; ++j)
        hp[static_cast<std::size_t>(i * n + j)] =
            hess[static_cast<std::size_t>(order[static_cast<std::size_t>(i)] * n + order[static_cast<std::size_t>(j)])];
    }
    // The quantizers as one group per (permuted) column.
    rptq::QuantizedWeight pp;
    pp.out = out;
    pp.in = n;
    pp.bits = params.bits;
    pp.group_boundaries.resize(static_cast<std::size_t>(n + 1));
    for (std::int64_t i = 0; i <= n; ++i) pp.group_boundaries[static_cast<std::size_t>(i)] = i;
    pp.scales.resize(static_cast<std::size_t>(out * n));
    pp.zero_points.resize(static_cast<std::size_t>(out * n));
    for (std::int64_t i = 0; i < n; ++i) {
      std::int64_t g = 0;
      while (order[static_cast<std::size_t>(i)] >= params.group_boundaries[static_cast<std::size_t>(g + 1)]) ++g;
      for (std::int64_t r = 0; r < out; ++r) {
        pp.scales[static_cast<std::size_t>(r * n + i)] = params.params(r, g).scale;
        pp.zero_points[static_cast<std::size_t>(r * n + i)] = params.params(r, g).zero_point;
      }
    }
    const std::vector<float> qp = gptq_plain(wp, out, n, pp, hp, damp);
    std::vector<float> q(qp.size());
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t r = 0; r < out; ++r)
        q[static_cast<std::size_t>(r * n + order[static_cast<std::size_t>(i)])] = qp[static_cast<std::size_t>(r * n + i)];
    return q;
  }
  std::vector<double> H = hess;
  std::vector<double> W(w.begin(), w.end());
  double mean = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (H[static_cast<std::size_t>(i * n + i)] == 0.0) {
      H[static_cast<std::size_t>(i * n + i)] = 1.0;
      for (std::int64_t r = 0; r < out; ++r) W[static_cast<std::size_t>(r * n + i)] = 0.0;
    }
    mean += H[static_cast<std::size_t>(i * n + i)] / static_cast<double>(n);
  }
  for (std::int64_t i = 0; i < n; ++i) H[static_cast<std::size_t>(i * n + i)] += damp * mean;
  auto at = [n](std::vector<double>& a, std::int64_t i, std::int64_t j) -> double& {
    return a[static_cast<std::size_t>(i * n + j)];
  };
  auto cholesky_lower = [&](std::vector<double> a) {
    std::vector<double> l(a.size(), 0.0);
    for (std::int64_t j = 0; j < n; ++j) {
      double d = at(a, j, j);
      for (std::int64_t k = 0; k < j; ++k) d -= at(l, j, k) * at(l, j, k);
      at(l, j, j) = std::sqrt(d);
      for (std::int64_t i = j + 1; i < n; ++i) {
        double s = at(a, i, j);
        for (std::int64_t k = 0; k < j; ++k) s -= at(l, i, k) * at(l, j, k);
        at(l, i, j) = s / at(l, j, j);
      }
    }
    return l;
  };
  // H^-1 = L^-T L^-1; then U = (chol_lower(H^-1))^T.
  std::vector<double> L = cholesky_lower(H), Li(H.size(), 0.0), Hi(H.size(), 0.0);
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t i = j; i < n; ++i) {
      double s = i == j ? 1.0 : 0.0;
      for (std::int64_t k = j; k < i; ++k) s -= at(L, i, k) * at(Li, k, j);
      at(Li, i, j) = s / at(L, i, i);
    }
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (std::int64_t k = std::max(i, j); k < n; ++k) s += at(Li, k, i) * at(Li, k, j);
      at(Hi, i, j) = s;
    }
  std::vector<double> L2 = cholesky_lower(Hi);
  std::vector<float> q(w.size());
  for (std::int64_t c = 0; c < n; ++c) {
    std::int64_t g = 0;
    while (c >= params.group_boundaries[static_cast<std::size_t>(g + 1)]) ++g;
    const double d = at(L2, c, c);
    for (std::int64_t r = 0; r < out; ++r) {
      const auto i = static_cast<std::size_t>(r * n + c);
      const float qv = rptq::fake_quant(static_cast<float>(W[i]), params.params(r, g));
      q[i] = qv;
      const double err = (W[i] - qv) / d;
      for (std::int64_t j = c + 1; j < n; ++j) W[static_cast<std::size_t>(r * n + j)] -= err * at(L2, j, c);
    }
  }
  return q;
}

struct Layer {
  std::int64_t out = 48, in = 96, rows = 512;
  std::vector<float> w, x;
  Layer(std::uint32_t seed) {
    w = gaussian(static_cast<std::size_t>(out * in), seed, 0.02f);
    x = correlated_inputs(rows, in, seed + 10);
  }
  rptq::HessianAccumulator hessian() const {
    rptq::HessianAccumulator h(in);
    h.add(x.data(), 200, in);  // two batches, as calibration adds them
    h.add(x.data() + 200 * in, rows - 200, in);
    return h;
  }
};

TEST(WeightQuant, GptqLowersOutputErrorVersusRtn) {
  const Layer layer(3);
  const rptq::HessianAccumulator h = layer.hessian();
  const std::vector<std::vector<std::int64_t>> groupings = {
      {0, 10, 40, 41, 96},                             // input clusters, one of a single channel
      rptq::fixed_group_boundaries(layer.in, 32),      // fixed groups
      {0, layer.in}};                                  // per row
  for (QuantGrid grid : {QuantGrid::Exact, QuantGrid::Reference})
    for (int bits : {2, 3, 4, 8})
      for (const auto& b : groupings) {
        const auto rtn = rptq::quantize_rtn(layer.w.data(), layer.out, layer.in, bits, grid, b);
        const auto gptq = rptq::quantize_gptq(layer.w.data(), layer.out, layer.in, bits, grid, b, h, 32);
        // Group quantizers are those of the unmodified weight: the same as RTN's.
        EXPECT_EQ(gptq.scales, rtn.scales);
        EXPECT_EQ(gptq.zero_points, rtn.zero_points);
        const double e_rtn = output_error(layer.x, layer.rows, layer.w, dequantized(rtn), layer.out, layer.in);
        const double e_gptq = output_error(layer.x, layer.rows, layer.w, dequantized(gptq), layer.out, layer.in);
        EXPECT_LT(e_gptq, 0.6 * e_rtn) << rptq::grid_name(grid) << " bits " << bits << " groups " << b.size() - 1;
      }
}

TEST(WeightQuant, GptqMatchesPlainDoubleImplementation) {
  const Layer layer(8);
  const rptq::HessianAccumulator h = layer.hessian();
  const std::vector<std::int64_t> b = {0, 20, 50, 96};
  for (int bits : {3, 4})
    for (int block : {1, 7, 32, 128}) {  // one column per block, uneven blocks, several blocks, one block
      const auto gptq = rptq::quantize_gptq(layer.w.data(), layer.out, layer.in, bits, QuantGrid::Exact, b, h, block);
      const std::vector<float> got = dequantized(gptq);
      const std::vector<float> want = gptq_plain(layer.w, layer.out, layer.in, gptq, h.hessian(), 0.01);
      std::size_t same = 0;
      for (std::size_t i = 0; i < got.size(); ++i) same += got[i] == want[i];
      // Float against double: a rare weight may round the other way near a decision boundary.
      EXPECT_GE(static_cast<double>(same), 0.99 * static_cast<double>(got.size())) << "bits " << bits << " block "
                                                                                    << block;
      const double e_got = output_error(layer.x, layer.rows, layer.w, got, layer.out, layer.in);
      const double e_want = output_error(layer.x, layer.rows, layer.w, want, layer.out, layer.in);
      EXPECT_NEAR(e_got, e_want, 0.005 * e_want) << "bits " << bits << " block " << block;
    }
}

// Act-order (a remedy): the columns go by decreasing Hessian diagonal, each keeps its group's quantizer (the same
// as without act-order: from the original weight), and the result equals the plain implementation run on the
// permuted problem. On these inputs (channel scales 1..7) it lowers the output error below plain GPTQ's.
TEST(WeightQuant, GptqActOrderMatchesPlainImplementationOnThePermutedProblem) {
  const Layer layer(8);
  const rptq::HessianAccumulator h = layer.hessian();
  const std::vector<std::int64_t> b = {0, 20, 50, 96};
  const rptq::GptqFactor f = rptq::gptq_factor(h, 0.01, true);
  ASSERT_EQ(f.order.size(), static_cast<std::size_t>(layer.in));
  const std::vector<double>& H = h.hessian();
  std::vector<char> seen(static_cast<std::size_t>(layer.in), 0);
  for (std::size_t i = 0; i < f.order.size(); ++i) {
    seen[static_cast<std::size_t>(f.order[i])] = 1;
    if (i > 0) {
      const double prev = H[static_cast<std::size_t>(f.order[i - 1] * (layer.in + 1))];
      const double cur = H[static_cast<std::size_t>(f.order[i] * (layer.in + 1))];
      EXPECT_GE(prev, cur) << i;
    }
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), layer.in);
  EXPECT_TRUE(rptq::gptq_factor(h, 0.01, false).order.empty());
  for (int bits : {3, 4}) {
    const auto plain = rptq::quantize_gptq(layer.w.data(), layer.out, layer.in, bits, QuantGrid::Exact, b, h, 32);
    const auto act = rptq::quantize_gptq(layer.w.data(), layer.out, layer.in, bits, QuantGrid::Exact, b, f, 32);
    EXPECT_EQ(act.scales, plain.scales);
    EXPECT_EQ(act.zero_points, plain.zero_points);
    const std::vector<float> got = dequantized(act);
    const std::vector<float> want = gptq_plain(layer.w, layer.out, layer.in, act, H, 0.01, f.order);
    std::size_t same = 0;
    for (std::size_t i = 0; i < got.size(); ++i) same += got[i] == want[i];
    EXPECT_GE(static_cast<double>(same), 0.99 * static_cast<double>(got.size())) << "bits " << bits;
    const double e_act = output_error(layer.x, layer.rows, layer.w, got, layer.out, layer.in);
    EXPECT_NEAR(e_act, output_error(layer.x, layer.rows, layer.w, want, layer.out, layer.in), 0.005 * e_act);
    EXPECT_LT(e_act, output_error(layer.x, layer.rows, layer.w, dequantized(plain), layer.out, layer.in))
        << "bits " << bits;
  }
}

// The MSE range search (a remedy): a group with one outlier gets a shrunk range (the outlier clipped) and less
// squared error than min/max; a large importance on the outlier's column keeps the full range instead. Each row's
// chosen range is the candidate a scalar search over p = 1, 0.99, ..., 0.5 finds.
TEST(WeightQuant, MseRangeSearch) {
  const std::int64_t out = 6, in = 512;
  std::vector<float> w = gaussian(static_cast<std::size_t>(out * in), 21, 0.1f);
  for (std::int64_t r = 0; r < out; ++r) w[static_cast<std::size_t>(r * in + 5)] = 0.9f + 0.05f * static_cast<float>(r);
  const std::vector<std::int64_t> b = {0, in};
  auto sq_error = [&](const rptq::QuantizedWeight& q, std::int64_t r, const std::vector<float>& imp) {
    double e = 0.0;
    for (std::int64_t c = 0; c < in; ++c) {
      const double d = w[static_cast<std::size_t>(r * in + c)] - rptq::fake_quant(w[static_cast<std::size_t>(r * in + c)], q.params(r, 0));
      e += (imp.empty() ? 1.0 : imp[static_cast<std::size_t>(c)]) * d * d;
    }
    return e;
  };
  for (int bits : {3, 4}) {
    const auto mm = rptq::quantize_rtn(w.data(), out, in, bits, QuantGrid::Exact, b);
    const auto mse = rptq::quantize_rtn(w.data(), out, in, bits, QuantGrid::Exact, b, rptq::WeightClip::Mse);
    std::vector<float> heavy(static_cast<std::size_t>(in), 1.0f);
    heavy[5] = 1e6f;
    const auto kept = rptq::quantize_rtn(w.data(), out, in, bits, QuantGrid::Exact, b, rptq::WeightClip::Mse, heavy);
    for (std::int64_t r = 0; r < out; ++r) {
      SCOPED_TRACE("bits " + std::to_string(bits) + " row " + std::to_string(r));
      EXPECT_LT(mse.params(r, 0).scale, 0.95f * mm.params(r, 0).scale);
      EXPECT_LT(sq_error(mse, r, {}), 0.9 * sq_error(mm, r, {}));
      EXPECT_LE(sq_error(kept, r, heavy), sq_error(mm, r, heavy) * (1.0 + 1e-6));
      const float outlier = w[static_cast<std::size_t>(r * in + 5)];
      EXPECT_GT(std::fabs(outlier - rptq::fake_quant(outlier, mse.params(r, 0))), 0.05f * outlier);  // clipped
      EXPECT_LE(std::fabs(outlier - rptq::fake_quant(outlier, kept.params(r, 0))),
                std::fabs(outlier - rptq::fake_quant(outlier, mm.params(r, 0))) + 1e-3f);
      // The scalar search: the best p's range, on the storable scale grid, gives the chosen scale.
      float mn = 1e30f, mx = -1e30f;
      for (std::int64_t c = 0; c < in; ++c) {
        mn = std::min(mn, w[static_cast<std::size_t>(r * in + c)]);
        mx = std::max(mx, w[static_cast<std::size_t>(r * in + c)]);
      }
      double best = 1e300;
      float best_scale = 0.0f;
      for (int i = 0; i <= 50; ++i) {
        const float p = 1.0f - static_cast<float>(i) / 100.0f;
        const float s = raw_scale(p * mn, p * mx, bits, QuantGrid::Exact);
        const float zp = std::nearbyint(-std::ldexp(1.0f, bits - 1) - p * mn / s);
        double e = 0.0;
        for (std::int64_t c = 0; c < in; ++c) {
          const float x = w[static_cast<std::size_t>(r * in + c)];
          const float code = std::clamp(std::nearbyint(x / s) + zp, -std::ldexp(1.0f, bits - 1), std::ldexp(1.0f, bits - 1) - 1.0f);
          e += static_cast<double>(x - (code - zp) * s) * (x - (code - zp) * s);
        }
        if (e < best) {
          best = e;
          best_scale = s;
        }
      }
      EXPECT_EQ(mse.params(r, 0).scale, storable(best_scale, best_scale));
    }
  }
  EXPECT_THROW(rptq::quantize_rtn(w.data(), out, in, 4, QuantGrid::Exact, b, rptq::WeightClip::Mse,
                                  std::vector<float>(3, 1.0f)),
               rptq::InputError);
  // A group without a range (equal weights) is not searched: it takes [min(c, 0), max(c, 0)] with either clip, so
  // c stays on the grid.
  std::vector<float> flat(64, 0.37f);
  const auto f_mm = rptq::quantize_rtn(flat.data(), 1, 64, 4, QuantGrid::Exact, {0, 64});
  const auto f_mse = rptq::quantize_rtn(flat.data(), 1, 64, 4, QuantGrid::Exact, {0, 64}, rptq::WeightClip::Mse);
  EXPECT_EQ(f_mse.params(0, 0).scale, f_mm.params(0, 0).scale);
  EXPECT_EQ(f_mse.params(0, 0).zero_point, f_mm.params(0, 0).zero_point);
  EXPECT_NEAR(rptq::fake_quant(0.37f, f_mse.params(0, 0)), 0.37f, 0.37f / 1024);  // the scale's 11 stored bits
}

TEST(WeightQuant, GptqOnIdentityLikeInputEqualsRtn) {
  // Inputs that are scaled unit vectors give a diagonal Hessian: no error is propagated, so GPTQ is RTN.
  const std::int64_t out = 20, in = 50;
  const std::vector<float> w = gaussian(static_cast<std::size_t>(out * in), 9, 0.1f);
  std::vector<float> x(static_cast<std::size_t>(in * in), 0.0f);
  for (std::int64_t i = 0; i < in; ++i) x[static_cast<std::size_t>(i * in + i)] = 1.0f + static_cast<float>(i % 4);
  rptq::HessianAccumulator h(in);
  h.add(x.data(), in, in);
  const auto b = rptq::fixed_group_boundaries(in, 16);
  for (QuantGrid grid : {QuantGrid::Exact, QuantGrid::Reference})
    for (int bits : {2, 4, 8}) {
      const auto rtn = rptq::quantize_rtn(w.data(), out, in, bits, grid, b);
      const auto gptq = rptq::quantize_gptq(w.data(), out, in, bits, grid, b, h);
      EXPECT_EQ(gptq.codes, rtn.codes) << bits;
      EXPECT_EQ(dequantized(gptq), dequantized(rtn)) << bits;
    }
}

TEST(WeightQuant, GptqDeadInputs) {
  Layer layer(5);
  const std::int64_t dead[] = {0, 3, 50, 95};
  for (std::int64_t r = 0; r < layer.rows; ++r)
    for (std::int64_t c : dead) layer.x[static_cast<std::size_t>(r * layer.in + c)] = 0.0f;
  const rptq::HessianAccumulator h = layer.hessian();
  for (std::int64_t c : dead) ASSERT_EQ(h.hessian()[static_cast<std::size_t>(c * layer.in + c)], 0.0);
  const std::vector<std::int64_t> b = {0, 48, 96};
  const auto rtn = rptq::quantize_rtn(layer.w.data(), layer.out, layer.in, 4, QuantGrid::Exact, b);
  const auto gptq = rptq::quantize_gptq(layer.w.data(), layer.out, layer.in, 4, QuantGrid::Exact, b, h);
  const std::vector<float> q = dequantized(gptq);
  for (float v : q) ASSERT_TRUE(std::isfinite(v));
  // A dead input's weights are quantized as 0, with their group's quantizer.
  for (std::int64_t r = 0; r < layer.out; ++r)
    for (std::int64_t c : dead)
      EXPECT_EQ(q[static_cast<std::size_t>(r * layer.in + c)], rptq::fake_quant(0.0f, gptq.params(r, c / 48)));
  const double e_rtn = output_error(layer.x, layer.rows, layer.w, dequantized(rtn), layer.out, layer.in);
  const double e_gptq = output_error(layer.x, layer.rows, layer.w, q, layer.out, layer.in);
  EXPECT_LT(e_gptq, 0.6 * e_rtn);
  const std::vector<float> want = gptq_plain(layer.w, layer.out, layer.in, gptq, h.hessian(), 0.01);
  EXPECT_NEAR(e_gptq, output_error(layer.x, layer.rows, layer.w, want, layer.out, layer.in), 0.01 * e_gptq);
}

TEST(WeightQuant, BadInputsThrow) {
  const std::vector<float> w(24, 0.5f);
  const std::vector<std::int64_t> b = {0, 6};
  EXPECT_THROW(rptq::quantize_rtn(w.data(), 4, 6, 1, QuantGrid::Exact, b), rptq::InputError);
  EXPECT_THROW(rptq::quantize_rtn(w.data(), 4, 6, 9, QuantGrid::Exact, b), rptq::InputError);
  EXPECT_THROW(rptq::quantize_rtn(w.data(), 0, 6, 4, QuantGrid::Exact, b), rptq::InputError);
  EXPECT_THROW(rptq::quantize_rtn(nullptr, 4, 6, 4, QuantGrid::Exact, b), rptq::InputError);
  EXPECT_THROW(rptq::quantize_rtn(w.data(), 4, 6, 4, QuantGrid::Exact, {0, 5}), rptq::InputError);
  EXPECT_THROW(rptq::quantize_rtn(w.data(), 4, 6, 4, QuantGrid::Exact, {0, 4, 3, 6}), rptq::InputError);
  std::vector<float> nan_w = w;
  nan_w[13] = NAN;
  try {
    rptq::quantize_rtn(nan_w.data(), 4, 6, 4, QuantGrid::Exact, b);
    FAIL();
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("row 2"), std::string::npos) << e.what();
  }

  EXPECT_THROW(rptq::HessianAccumulator(0), rptq::InputError);
  rptq::HessianAccumulator h(6);
  EXPECT_THROW(h.add(w.data(), 4, 5), rptq::InputError);  // ld < in
  EXPECT_THROW(h.add(w.data(), -1, 6), rptq::InputError);
  EXPECT_THROW(rptq::quantize_gptq(w.data(), 4, 6, 4, QuantGrid::Exact, b, h), rptq::InputError);  // no samples
  // Two rows, one all 2, one all 0: H = 4 ones(6), exactly singular (exact small integers all the way), no dead
  // input.
  std::vector<float> x(2 * 6, 0.0f);
  std::fill(x.begin(), x.begin() + 6, 2.0f);
  h.add(x.data(), 2, 6);
  EXPECT_EQ(h.hessian()[7], 4.0);
  rptq::HessianAccumulator other(5);
  other.add(x.data(), 2, 5);
  EXPECT_THROW(rptq::quantize_gptq(w.data(), 4, 6, 4, QuantGrid::Exact, b, other), rptq::InputError);  // width
  EXPECT_THROW(rptq::quantize_gptq(w.data(), 4, 6, 4, QuantGrid::Exact, b, h, 0), rptq::InputError);
  EXPECT_THROW(rptq::quantize_gptq(w.data(), 4, 6, 4, QuantGrid::Exact, b, h, 128, -0.1), rptq::InputError);
  EXPECT_THROW(rptq::quantize_gptq(w.data(), 4, 6, 4, QuantGrid::Exact, b, h, 128, NAN), rptq::InputError);
  // Without dampening the rank-deficient Hessian has no Cholesky factor: a clear error, not garbage.
  try {
    rptq::quantize_gptq(w.data(), 4, 6, 4, QuantGrid::Exact, b, h, 128, 0.0);
    FAIL();
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("positive definite"), std::string::npos) << e.what();
  }
  // With it, the same Hessian works.
  EXPECT_NO_THROW(rptq::quantize_gptq(w.data(), 4, 6, 4, QuantGrid::Exact, b, h));
  std::vector<float> inf_x = x;
  inf_x[0] = INFINITY;
  rptq::HessianAccumulator bad(6);
  bad.add(inf_x.data(), 2, 6);
  EXPECT_THROW(rptq::quantize_gptq(w.data(), 4, 6, 4, QuantGrid::Exact, b, bad), rptq::InputError);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// The packed run-time form (PackedWeight) and the GEMM path that dequantizes it tile by tile.

namespace {

rptq::QuantizedWeight random_quantized(std::int64_t out, std::int64_t in, int bits, std::uint32_t seed) {
  const std::vector<float> w = gaussian(static_cast<std::size_t>(out * in), seed);
  // Irregular groups, one of them a single column.
  std::vector<std::int64_t> b = {0, 1};
  for (std::int64_t c = 1 + 7; c < in; c += 7 + (c % 5)) b.push_back(c);
  b.push_back(in);
  return rptq::quantize_rtn(w.data(), out, in, bits, QuantGrid::Exact, b);
}

}  // namespace

// For every width and odd shapes: the packed codes unpack to the same codes, and any 8-aligned row range
// dequantizes to exactly (bit for bit) the values of QuantizedWeight::dequantize.
TEST(PackedWeight, RoundTripAndRowRangesAreExact) {
  for (int bits = 2; bits <= 8; ++bits)
    for (auto [out, in] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {13, 37}, {24, 5}, {17, 64}}) {
      SCOPED_TRACE(std::to_string(bits) + " bits, [" + std::to_string(out) + ", " + std::to_string(in) + "]");
      const rptq::QuantizedWeight q = random_quantized(out, in, bits, static_cast<std::uint32_t>(bits * 100 + out));
      const rptq::PackedWeight p = rptq::PackedWeight::pack(q);
      EXPECT_EQ(p.codes.size(), static_cast<std::size_t>((out * in * bits + 7) / 8));
      EXPECT_EQ(p.unpack().codes, q.codes);
      std::vector<float> want(static_cast<std::size_t>(out * in)), got(want.size(), -1.0f);
      q.dequantize(want.data());
      // Ranges [0, 8), [8, 24), [24, out), clipped to the rows there are.
      for (std::int64_t r0 : {0, 8, 24}) {
        if (r0 >= out) break;
        const std::int64_t r1 = r0 == 24 ? out : std::min(out, r0 == 0 ? std::int64_t{8} : std::int64_t{24});
        p.dequantize_rows(r0, r1, got.data() + r0 * in);
      }
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0);
      EXPECT_EQ(p.bytes(), p.codes.size() + 2 * q.scales.size() * 4);
    }
  const rptq::PackedWeight p = rptq::PackedWeight::pack(random_quantized(16, 10, 4, 1));
  std::vector<float> buf(160);
  EXPECT_THROW(p.dequantize_rows(3, 8, buf.data()), std::logic_error);   // not on a byte boundary
  EXPECT_THROW(p.dequantize_rows(8, 17, buf.data()), std::logic_error);  // past the end
}

TEST(PackedWeight, TileRows) {
  EXPECT_EQ(rptq::packed_tile_rows(1, 4096, 11008), 64);        // 1 MiB of float rows while decoding
  EXPECT_EQ(rptq::packed_tile_rows(512, 4096, 11008), 1024);    // 16 MiB for a long prompt
  EXPECT_EQ(rptq::packed_tile_rows(512, 256, 1024), 1024);      // a small model's linear in one tile
  EXPECT_EQ(rptq::packed_tile_rows(1, 1 << 20, 100), 8);        // never fewer than 8 rows
  EXPECT_EQ(rptq::packed_tile_rows(1, 16, 13), 16);             // the rows rounded up to a multiple of 8
}

// packed_linear against ops::linear on the dequantized weight, over one tile and several (the last one short),
// with and without bias, accumulating or not. Tolerance: 1e-5 of the output's scale; both are float32 GEMMs over
// the same values, differing at most in the order the library sums a dot product.
TEST(PackedWeight, LinearMatchesTheDenseWeight) {
  struct Case {
    std::int64_t rows, out, in;
    int bits;
  };
  for (const Case& c : {Case{3, 200, 4096, 4}, Case{100, 200, 40000, 3}, Case{70, 37, 50, 8}, Case{1, 9, 8, 2}}) {
    SCOPED_TRACE(std::to_string(c.rows) + " x [" + std::to_string(c.out) + ", " + std::to_string(c.in) + "]");
    const rptq::PackedWeight p = rptq::PackedWeight::pack(random_quantized(c.out, c.in, c.bits, 7));
    std::vector<float> dense(static_cast<std::size_t>(c.out * c.in));
    p.dequantize(dense.data());
    const std::int64_t ldx = c.in + 3;  // a strided input
    const std::vector<float> x = gaussian(static_cast<std::size_t>(c.rows * ldx), 8);
    const std::vector<float> bias = gaussian(static_cast<std::size_t>(c.out), 9);
    const std::vector<float> y0 = gaussian(static_cast<std::size_t>(c.rows * c.out), 10);
    for (bool with_bias : {false, true})
      for (bool accumulate : {false, true}) {
        std::vector<float> want = y0, got = y0, scratch;
        rptq::ops::linear(x.data(), ldx, c.rows, c.in, dense.data(), with_bias ? bias.data() : nullptr, c.out,
                          want.data(), accumulate);
        rptq::packed_linear(x.data(), ldx, c.rows, p, with_bias ? bias.data() : nullptr, got.data(), accumulate,
                            scratch);
        double scale = 0, err = 0;
        for (std::size_t i = 0; i < want.size(); ++i) {
          scale = std::max(scale, std::abs(static_cast<double>(want[i])));
          err = std::max(err, std::abs(static_cast<double>(got[i]) - want[i]));
        }
        EXPECT_LE(err, 1e-5 * scale) << "bias " << with_bias << ", accumulate " << accumulate;
        EXPECT_LE(scratch.size(), static_cast<std::size_t>(
                                      rptq::packed_tile_rows(c.rows, c.in, c.out) * c.in));  // one tile only
      }
  }
}
