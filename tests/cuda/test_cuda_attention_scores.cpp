// GPU attention-score ranges (kernels/attention_scores.cu) against rptq::attention_score_range of calibration.cpp,
// sequence by sequence: OPT's scale 1 and LLaMA's 1 / sqrt(head_dim), grouped-query heads, sliding windows,
// head_dim 1 / 4 / 33 / 64 / 80 / 128 / 256 (the opt-in shared memory of head_dim 256), one query and several
// query tiles with keys in partial tiles, row strides wider than the rows, NaN scores. Outputs are poisoned.
//
// Tolerances. With small integers in q and k every dot product is an exact integer in float, whatever the order,
// and the scales used there (1, 1/2, 1/8, 1/16) are powers of two: the GPU must give the CPU's bits. With normal
// data each score is one float dot product of length n = head_dim, summed in another order on each side; the max
// and min select a score exactly. A float sum of n products is within gamma_n * sum_d |q_d k_d| of the exact value
// (gamma_n = n u / (1 - n u), u = 2^-24; Higham, Accuracy and Stability, 3.1), then the scale rounds once more, so
// both sides lie within B = scale * (gamma_n * max_ij sum_d |q_id k_jd| + u * max |score|) * (1 + u) of the float64
// max / min, which the test computes too: |gpu - exact| <= B, |cpu - exact| <= B and |gpu - cpu| <= 2 B.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/device.h"
#include "rptq/model/model_config.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "attention_scores.cuh"
#include "device.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::DeviceBuffer;
using rptq::test::normal;

struct Case {
  std::int64_t batch, seq, heads, kv_heads, head_dim, window;
  bool llama;         // scale 1 / sqrt(head_dim) on the product (OPT: 1, its Q tap is already scaled)
  std::int64_t pad;   // extra floats per row of q and k
};
const std::vector<Case> kCases = {
    {1, 1, 1, 1, 1, 0, false, 0},    {2, 37, 4, 4, 64, 0, false, 0},   {3, 70, 8, 2, 128, 0, true, 0},
    {1, 100, 2, 1, 64, 16, true, 3}, {2, 33, 2, 2, 256, 0, true, 0},   {1, 300, 2, 2, 32, 0, false, 0},
    {2, 45, 3, 3, 33, 7, true, 5},   {1, 64, 6, 3, 80, 0, false, 0},   {2, 9, 4, 2, 4, 3, true, 1},
    {1, 129, 1, 1, 16, 40, false, 0}};

std::string describe(const Case& c) {
  return "batch " + std::to_string(c.batch) + " seq " + std::to_string(c.seq) + " heads " + std::to_string(c.heads) +
         "/" + std::to_string(c.kv_heads) + " hd " + std::to_string(c.head_dim) + " window " +
         std::to_string(c.window) + (c.llama ? " llama" : " opt") + " pad " + std::to_string(c.pad);
}

rptq::ModelConfig config_of(const Case& c) {
  rptq::ModelConfig cfg;
  cfg.arch = c.llama ? rptq::Architecture::Llama : rptq::Architecture::OPT;
  cfg.heads = c.heads;
  cfg.kv_heads = c.kv_heads;
  cfg.head_dim = c.head_dim;
  cfg.hidden = c.heads * c.head_dim;
  cfg.sliding_window = c.window;
  return cfg;
}

struct Ranges {
  std::vector<float> max, min;  // [batch, heads]
};

Ranges cpu_ranges(const Case& c, std::vector<float>& q, std::vector<float>& k) {
  const rptq::ModelConfig cfg = config_of(c);
  const std::int64_t q_ld = c.heads * c.head_dim + c.pad, k_ld = c.kv_heads * c.head_dim + c.pad;
  Ranges r;
  std::vector<float> hmax, hmin;
  for (std::int64_t b = 0; b < c.batch; ++b) {
    rptq::attention_score_range(cfg, {q.data() + b * c.seq * q_ld, c.seq, c.heads * c.head_dim, q_ld},
                                {k.data() + b * c.seq * k_ld, c.seq, c.kv_heads * c.head_dim, k_ld}, hmax, hmin);
    r.max.insert(r.max.end(), hmax.begin(), hmax.end());
    r.min.insert(r.min.end(), hmin.begin(), hmin.end());
  }
  return r;
}

Ranges gpu_ranges(const Case& c, const std::vector<float>& q, const std::vector<float>& k) {
  rptq::cuda::ScoreRangeShape s;
  s.batch = c.batch;
  s.seq = c.seq;
  s.heads = c.heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  s.q_ld = c.heads * c.head_dim + c.pad;
  s.k_ld = c.kv_heads * c.head_dim + c.pad;
  s.window = c.window;
  s.scale = c.llama ? 1.0f / std::sqrt(static_cast<float>(c.head_dim)) : 1.0f;
  DeviceBuffer<float> dq(q), dk(k);
  const std::vector<float> poison(static_cast<std::size_t>(c.batch * c.heads), std::nanf(""));
  DeviceBuffer<float> dmax(poison), dmin(poison);
  rptq::cuda::attention_score_range(dq.data(), dk.data(), dmax.data(), dmin.data(), s);
  return {dmax.to_host(), dmin.to_host()};
}

std::vector<float> small_integers(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-3, 3);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(d(rng));
  return v;
}

void expect_same_bits(const std::vector<float>& gpu, const std::vector<float>& cpu, const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  for (std::size_t i = 0; i < cpu.size(); ++i)
    EXPECT_EQ(std::memcmp(&gpu[i], &cpu[i], sizeof(float)), 0)
        << what << " entry " << i << ": gpu " << gpu[i] << " cpu " << cpu[i];
}

std::size_t q_size(const Case& c) { return static_cast<std::size_t>(c.batch * c.seq * (c.heads * c.head_dim + c.pad)); }
std::size_t k_size(const Case& c) {
  return static_cast<std::size_t>(c.batch * c.seq * (c.kv_heads * c.head_dim + c.pad));
}

// Exact dot products: the CPU's bits, including the selection of the mask's entries.
TEST(CudaAttentionScores, IntegerScoresMatchCpuBitForBit) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 10;
  for (const Case& c : kCases) {
    // Powers of two only as scales here (head_dim 1, 4, 64, 256 for LLaMA; OPT is 1).
    if (c.llama && c.head_dim != 4 && c.head_dim != 64 && c.head_dim != 256) continue;
    std::vector<float> q = small_integers(q_size(c), seed++), k = small_integers(k_size(c), seed++);
    const Ranges cpu = cpu_ranges(c, q, k);
    const Ranges gpu = gpu_ranges(c, q, k);
    expect_same_bits(gpu.max, cpu.max, describe(c) + " max");
    expect_same_bits(gpu.min, cpu.min, describe(c) + " min");
  }
}

// A NaN in a query makes its scores NaN, which are never chosen; a sequence of one NaN query has no range at all
// (-inf / +inf), as on the CPU.
TEST(CudaAttentionScores, NanScoresAreNeverChosen) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  for (const Case& c : {Case{2, 40, 2, 1, 64, 0, true, 0}, Case{1, 1, 2, 2, 8, 0, false, 0}}) {
    std::vector<float> q = small_integers(q_size(c), 77), k = small_integers(k_size(c), 78);
    q[5] = std::nanf("");                                   // sequence 0, query 0, head 0: its only score
    if (c.seq > 3) q[3 * c.heads * c.head_dim + 1] = std::nanf("");  // query 3 of head 0
    const Ranges cpu = cpu_ranges(c, q, k);
    const Ranges gpu = gpu_ranges(c, q, k);
    expect_same_bits(gpu.max, cpu.max, describe(c) + " max");
    expect_same_bits(gpu.min, cpu.min, describe(c) + " min");
    if (c.seq == 1) {
      EXPECT_EQ(gpu.max[0], -INFINITY);
      EXPECT_EQ(gpu.min[0], INFINITY);
    }
  }
}

// Float data: both sides within the dot product's rounding bound of the float64 range.
TEST(CudaAttentionScores, RandomScoresWithinRoundingOfCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 500;
  double worst_rel = 0.0, worst_of_bound = 0.0;  // max |gpu - cpu| / (1 + |cpu|), and as a share of 2 B
  for (const Case& c : kCases) {
    std::vector<float> q = normal(q_size(c), 0.1f, 1.5f, seed++), k = normal(k_size(c), -0.2f, 1.0f, seed++);
    for (std::size_t i = 0; i < q.size(); i += 97) q[i] *= 20.0f;  // outliers, as real Q / K channels have
    const Ranges cpu = cpu_ranges(c, q, k);
    const Ranges gpu = gpu_ranges(c, q, k);
    const double scale = c.llama ? static_cast<double>(1.0f / std::sqrt(static_cast<float>(c.head_dim))) : 1.0;
    const std::int64_t q_ld = c.heads * c.head_dim + c.pad, k_ld = c.kv_heads * c.head_dim + c.pad;
    const std::int64_t group = c.heads / c.kv_heads;
    const double u = std::ldexp(1.0, -24), n = static_cast<double>(c.head_dim);
    const double gamma = n * u / (1.0 - n * u);
    for (std::int64_t b = 0; b < c.batch; ++b)
      for (std::int64_t h = 0; h < c.heads; ++h) {
        double hi = -INFINITY, lo = INFINITY, abs_sum = 0.0, big = 0.0;
        for (std::int64_t i = 0; i < c.seq; ++i) {
          const std::int64_t j0 = c.window > 0 ? std::max<std::int64_t>(0, i - c.window + 1) : 0;
          for (std::int64_t j = j0; j <= i; ++j) {
            double dot = 0.0, a = 0.0;
            for (std::int64_t d = 0; d < c.head_dim; ++d) {
              const double x = q[static_cast<std::size_t>((b * c.seq + i) * q_ld + h * c.head_dim + d)];
              const double y = k[static_cast<std::size_t>((b * c.seq + j) * k_ld + (h / group) * c.head_dim + d)];
              dot += x * y;
              a += std::abs(x * y);
            }
            hi = std::max(hi, dot * scale);
            lo = std::min(lo, dot * scale);
            abs_sum = std::max(abs_sum, a);
            big = std::max(big, std::abs(dot * scale));
          }
        }
        const double bound = (scale * gamma * abs_sum + u * big) * (1.0 + u);
        const std::size_t e = static_cast<std::size_t>(b * c.heads + h);
        const std::string what = describe(c) + " sequence " + std::to_string(b) + " head " + std::to_string(h);
        EXPECT_LE(std::abs(gpu.max[e] - hi), bound) << what << " max";
        EXPECT_LE(std::abs(gpu.min[e] - lo), bound) << what << " min";
        EXPECT_LE(std::abs(cpu.max[e] - hi), bound) << what << " cpu max";
        EXPECT_LE(std::abs(cpu.min[e] - lo), bound) << what << " cpu min";
        EXPECT_LE(std::abs(static_cast<double>(gpu.max[e]) - cpu.max[e]), 2 * bound) << what << " max vs cpu";
        EXPECT_LE(std::abs(static_cast<double>(gpu.min[e]) - cpu.min[e]), 2 * bound) << what << " min vs cpu";
        for (auto [g, r] : {std::pair{gpu.max[e], cpu.max[e]}, std::pair{gpu.min[e], cpu.min[e]}}) {
          const double d = std::abs(static_cast<double>(g) - r);
          worst_rel = std::max(worst_rel, d / (1.0 + std::abs(r)));
          worst_of_bound = std::max(worst_of_bound, d / (2 * bound));
        }
      }
  }
  std::printf("attention score ranges: max |gpu - cpu| / (1 + |cpu|) = %.3g, at most %.3g of the bound 2 B\n",
              worst_rel, worst_of_bound);
}

// Argument checks run before any CUDA call: no GPU needed.
TEST(CudaAttentionScores, InvalidShapesThrowBeforeAnyCudaCall) {
  float f = 0.0f;
  rptq::cuda::ScoreRangeShape s;
  s.batch = 1;
  s.seq = 4;
  s.heads = 4;
  s.kv_heads = 2;
  s.head_dim = 64;
  s.q_ld = 256;
  s.k_ld = 128;
  auto bad = [&](auto change) {
    rptq::cuda::ScoreRangeShape t = s;
    change(t);
    EXPECT_THROW(rptq::cuda::attention_score_range(&f, &f, &f, &f, t), std::invalid_argument);
  };
  bad([](auto& t) { t.kv_heads = 3; });
  bad([](auto& t) { t.head_dim = 257; });
  bad([](auto& t) { t.head_dim = 0; });
  bad([](auto& t) { t.q_ld = 255; });
  bad([](auto& t) { t.k_ld = 127; });
  bad([](auto& t) { t.seq = -1; });
  bad([](auto& t) { t.window = -1; });
  bad([](auto& t) { t.batch = 70000; });
  EXPECT_THROW(rptq::cuda::attention_score_range(&f, &f, nullptr, &f, s), std::invalid_argument);
  rptq::cuda::ScoreRangeShape empty = s;
  empty.batch = 0;
  EXPECT_NO_THROW(rptq::cuda::attention_score_range(nullptr, nullptr, nullptr, nullptr, empty));
}

}  // namespace

#else

TEST(CudaAttentionScores, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
