// GPU causal attention (kernels/attention.cu) against rptq::ops::attention: prefill, decode with a long past,
// grouped-query heads, sliding windows, head_dim 1 / 33 / 64 / 80 / 128 / 256 (partial warps of channels, the
// opt-in shared memory of head_dim 256), more queries than one tile and keys in partial tiles, a K/V layout with
// the sequences interleaved (kv_batch_stride < rows * kv_ld), with and without quantize_probs. Outputs are poisoned.
// A host emulation of the kernel's algorithm (its tile plan and online-softmax steps, the RPTQ_HD helpers of
// attention.cuh, in the kernel's order) is checked against the CPU with the same tolerances and runs without a GPU.
//
// Tolerances. Scores are float dot products summed in another order than the CPU's sgemm (~sqrt(head_dim) roundings
// of a magnitude ~ |q| |k| scale, ~5e-6 for unit data at head_dim 128); the exponentials differ by a few 1e-7; the
// online rescales add a rounding per tile. A score error ds changes a probability by a factor 1 + ds, so an output
// (a convex combination of V rows) moves by at most max|ds| * max|v|:
//   |gpu - cpu| <= 2e-5 * vmax, vmax = max |v| over the inputs (a margin of ~4 over the typical case).
// With quantize_probs a probability p for which p * 255 lies within rounding distance of a half-integer may round
// to the neighbouring 8-bit level on one side only: a jump of 1/255 times that key's V row. The check finds such
// keys from a float64 recomputation (|frac(255 p) - 1/2| < 1e-4 (1 + 255 p), which covers the float error of p at
// up to 1e-5 relative) and allows, per output element, 2e-5 * vmax + sum over those keys of |v[j, d]| / 255. Keys not
// near a boundary must round identically, so any other error still fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/device.h"
#include "rptq/model/ops.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "attention.cuh"
#include "device.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::DeviceBuffer;

using rptq::test::normal;

struct Case {
  std::int64_t batch, tq, past, heads, kv_heads, head_dim, window;
  bool interleaved;  // K/V rows [time, batch, kv] instead of [batch, time, kv]
};
const std::vector<Case> kCases = {
    {1, 1, 0, 1, 1, 1, 0, false},      {2, 37, 0, 4, 4, 64, 0, false},    {3, 1, 200, 8, 2, 128, 0, false},
    {2, 50, 30, 6, 3, 80, 0, false},   {1, 70, 40, 2, 1, 64, 16, false},  {1, 20, 5, 2, 2, 256, 0, false},
    {1, 300, 0, 2, 2, 128, 0, false},  {3, 9, 12, 4, 2, 32, 0, true},     {2, 1, 1000, 4, 1, 33, 100, false},
    {2, 17, 3, 2, 2, 64, 7, true},     {1, 16, 16, 3, 3, 96, 0, false}};

std::string describe(const Case& c) {
  return "batch " + std::to_string(c.batch) + " tq " + std::to_string(c.tq) + " past " + std::to_string(c.past) +
         " heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " hd " + std::to_string(c.head_dim) +
         " window " + std::to_string(c.window) + (c.interleaved ? " interleaved" : "");
}

struct Problem {
  rptq::ops::AttentionShape shape;
  std::vector<float> q, k, v;
  float vmax = 0.0f;
};

Problem make_problem(const Case& c, bool quantize, std::uint32_t seed) {
  Problem p;
  rptq::ops::AttentionShape& s = p.shape;
  s.batch = c.batch;
  s.tq = c.tq;
  s.past = c.past;
  s.heads = c.heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  s.window = c.window;
  s.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  s.quantize_probs = quantize;
  const std::int64_t kv_dim = c.kv_heads * c.head_dim, len = c.past + c.tq;
  std::size_t kv_size = 0;
  if (c.interleaved) {
    s.kv_ld = c.batch * kv_dim + 3;  // padded rows of all sequences' time step t
    s.kv_batch_stride = kv_dim;
    kv_size = static_cast<std::size_t>(len * s.kv_ld);
  } else {
    s.kv_ld = kv_dim + (c.head_dim % 2 ? 1 : 0);
    s.kv_batch_stride = (len + 5) * s.kv_ld;  // a cache with spare capacity
    kv_size = static_cast<std::size_t>(c.batch * s.kv_batch_stride);
  }
  p.q = normal(static_cast<std::size_t>(c.batch * c.tq * c.heads * c.head_dim), 0.0f, 1.0f, seed);
  p.k = normal(kv_size, 0.0f, 1.0f, seed + 1);
  p.v = normal(kv_size, 0.0f, 1.0f, seed + 2);
  for (float x : p.v) p.vmax = std::max(p.vmax, std::fabs(x));
  return p;
}

rptq::cuda::AttentionShape to_cuda(const rptq::ops::AttentionShape& s) {
  rptq::cuda::AttentionShape g;
  g.batch = s.batch;
  g.tq = s.tq;
  g.past = s.past;
  g.heads = s.heads;
  g.kv_heads = s.kv_heads;
  g.head_dim = s.head_dim;
  g.kv_batch_stride = s.kv_batch_stride;
  g.kv_ld = s.kv_ld;
  g.window = s.window;
  g.scale = s.scale;
  g.quantize_probs = s.quantize_probs;
  return g;
}

// The allowed error of every output element (see the header).
std::vector<double> allowed_error(const Problem& p) {
  const rptq::ops::AttentionShape& s = p.shape;
  const std::int64_t hd = s.head_dim, q_ld = s.heads * hd, group = s.heads / s.kv_heads;
  std::vector<double> allowed(p.q.size(), 2e-5 * p.vmax);
  if (!s.quantize_probs) return allowed;
  std::vector<double> scores;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h)
      for (std::int64_t i = 0; i < s.tq; ++i) {
        std::int64_t lo = 0, hi = 0;
        rptq::cuda::attention_keys_of_query(s.past, i, s.window, &lo, &hi);
        const float* qi = p.q.data() + (b * s.tq + i) * q_ld + h * hd;
        const std::int64_t kv_off = b * s.kv_batch_stride + (h / group) * hd;
        scores.assign(static_cast<std::size_t>(hi - lo + 1), 0.0);
        double mx = -INFINITY;
        for (std::int64_t j = lo; j <= hi; ++j) {
          double d = 0.0;
          for (std::int64_t c = 0; c < hd; ++c) d += static_cast<double>(qi[c]) * p.k[kv_off + j * s.kv_ld + c];
          scores[j - lo] = d * s.scale;
          mx = std::max(mx, scores[j - lo]);
        }
        double sum = 0.0;
        for (double& x : scores) sum += (x = std::exp(x - mx));
        double* row = allowed.data() + (b * s.tq + i) * q_ld + h * hd;
        for (std::int64_t j = lo; j <= hi; ++j) {
          const double t = scores[j - lo] / sum * 255.0;
          if (std::fabs(t - std::floor(t) - 0.5) < 1e-4 * (1.0 + t))
            for (std::int64_t c = 0; c < hd; ++c) row[c] += std::fabs(p.v[kv_off + j * s.kv_ld + c]) / 255.0;
        }
      }
  return allowed;
}

void expect_within(const std::vector<float>& got, const std::vector<float>& cpu, const std::vector<double>& allowed) {
  ASSERT_EQ(got.size(), cpu.size());
  std::size_t failures = 0, worst_at = 0;
  double worst = -1.0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - cpu[i]);
    if (!(err <= allowed[i])) ++failures;
    const double ratio = err / allowed[i];
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_at = i;
    }
  }
  EXPECT_EQ(failures, 0u) << "worst at " << worst_at << ": got " << got[worst_at] << " cpu " << cpu[worst_at]
                          << " (error / allowed " << worst << ")";
}

// The kernel's algorithm on the host. The block / warp structure only decides who computes what; per query the
// kernel walks the block's key tiles in order, with the tile steps below. (A tile the query cannot see is a no-op:
// its maximum is -inf, so the rescale factor is 1 and every weight 0; the kernel skips such tiles per warp.)
std::vector<float> emulate(const Problem& p) {
  using namespace rptq::cuda;
  const rptq::ops::AttentionShape& s = p.shape;
  const std::int64_t hd = s.head_dim, q_ld = s.heads * hd, group = s.heads / s.kv_heads;
  std::vector<float> out(p.q.size(), std::nanf(""));
  std::vector<float> acc(static_cast<std::size_t>(hd)), score(kAttentionKeyTile), prob(kAttentionKeyTile);
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h)
      for (std::int64_t i0 = 0; i0 < s.tq; i0 += kAttentionQueryTile) {
        const std::int64_t i1 = std::min(s.tq, i0 + kAttentionQueryTile);
        const KeyRange keys = attention_keys_of_queries(s.past, i0, i1, s.window);
        const std::int64_t kv_off = b * s.kv_batch_stride + (h / group) * hd;
        for (std::int64_t i = i0; i < i1; ++i) {
          std::int64_t lo = 0, hi = 0;
          attention_keys_of_query(s.past, i, s.window, &lo, &hi);
          const float* qi = p.q.data() + (b * s.tq + i) * q_ld + h * hd;
          float m = -INFINITY, l = 0.0f, inv = 1.0f;
          std::fill(acc.begin(), acc.end(), 0.0f);
          const int passes = s.quantize_probs ? 2 : 1;
          for (int pass = 0; pass < passes; ++pass) {
            const bool statistics = pass == 0, multiply_v = pass == passes - 1;
            for (std::int64_t j0 = keys.begin; j0 < keys.end; j0 += kAttentionKeyTile) {
              float tile_max = -INFINITY;
              for (std::int64_t jj = 0; jj < kAttentionKeyTile; ++jj) {
                const std::int64_t j = j0 + jj;
                float d = 0.0f;
                if (j < keys.end)
                  for (std::int64_t c = 0; c < hd; ++c) d += qi[c] * p.k[kv_off + j * s.kv_ld + c];
                score[jj] = j >= lo && j <= hi ? d * s.scale : -INFINITY;
                tile_max = hd::max(tile_max, score[jj]);
              }
              if (statistics) {
                const float factor = online_softmax_rescale(m, tile_max);
                float sum = 0.0f;
                for (std::int64_t jj = 0; jj < kAttentionKeyTile; ++jj) sum += (prob[jj] = softmax_weight(score[jj], m));
                l = l * factor + sum;
                if (multiply_v)
                  for (float& a : acc) a *= factor;
              } else {
                for (std::int64_t jj = 0; jj < kAttentionKeyTile; ++jj)
                  prob[jj] = score[jj] == -INFINITY ? 0.0f : quantized_probability(softmax_weight(score[jj], m), inv);
              }
              if (!multiply_v) continue;
              for (std::int64_t jj = 0; jj < kAttentionKeyTile && j0 + jj < keys.end; ++jj)
                for (std::int64_t c = 0; c < hd; ++c) acc[c] += prob[jj] * p.v[kv_off + (j0 + jj) * s.kv_ld + c];
            }
            if (statistics && s.quantize_probs) inv = 1.0f / l;
          }
          const float f = s.quantize_probs ? 1.0f : 1.0f / l;
          float* o = out.data() + (b * s.tq + i) * q_ld + h * hd;
          for (std::int64_t c = 0; c < hd; ++c) o[c] = acc[c] * f;
        }
      }
  return out;
}

std::vector<float> cpu_attention(const Problem& p) {
  std::vector<float> out(p.q.size(), std::nanf(""));
  rptq::ops::attention(p.q.data(), p.k.data(), p.v.data(), out.data(), p.shape);
  return out;
}

}  // namespace

TEST(CudaAttention, MatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 1;
  for (const Case& c : kCases)
    for (bool quantize : {false, true}) {
      SCOPED_TRACE(describe(c) + (quantize ? " quantize_probs" : ""));
      const Problem p = make_problem(c, quantize, seed += 3);
      const std::vector<float> expected = cpu_attention(p);
      DeviceBuffer<float> dq(p.q), dk(p.k), dv(p.v), dout(std::vector<float>(p.q.size(), std::nanf("")));
      rptq::cuda::attention(dq.data(), dk.data(), dv.data(), dout.data(), to_cuda(p.shape));
      expect_within(dout.to_host(), expected, allowed_error(p));
    }
}

// The same inputs twice give the same bits (no race between the warps sharing a tile).
TEST(CudaAttention, IsDeterministicAndRunsOnAStream) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Problem p = make_problem({2, 100, 60, 8, 2, 128, 0, false}, true, 77);
  DeviceBuffer<float> dq(p.q), dk(p.k), dv(p.v), a(p.q.size()), b(p.q.size());
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  rptq::cuda::attention(dq.data(), dk.data(), dv.data(), a.data(), to_cuda(p.shape), stream);
  rptq::cuda::attention(dq.data(), dk.data(), dv.data(), b.data(), to_cuda(p.shape), stream);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  EXPECT_EQ(a.to_host(), b.to_host());
}

// The kernel's algorithm, run on the host, meets the same tolerances against the CPU: the tile plan, the masks,
// the online rescaling and the two-pass quantized probabilities are right independently of the GPU.
TEST(CudaAttention, HostEmulationMatchesCpu) {
  std::uint32_t seed = 1000;
  for (const Case& c : kCases)
    for (bool quantize : {false, true}) {
      SCOPED_TRACE(describe(c) + (quantize ? " quantize_probs" : ""));
      const Problem p = make_problem(c, quantize, seed += 3);
      expect_within(emulate(p), cpu_attention(p), allowed_error(p));
    }
}

TEST(CudaAttention, TilePlanCoversEveryVisibleKey) {
  using namespace rptq::cuda;
  for (std::int64_t past : {0, 1, 31, 100})
    for (std::int64_t window : {0, 1, 5, 40})
      for (std::int64_t tq : {1, 15, 16, 17, 70}) {
        for (std::int64_t i0 = 0; i0 < tq; i0 += kAttentionQueryTile) {
          const std::int64_t i1 = std::min(tq, i0 + kAttentionQueryTile);
          const KeyRange r = attention_keys_of_queries(past, i0, i1, window);
          std::int64_t lo_all = past + tq, hi_all = -1;
          for (std::int64_t i = i0; i < i1; ++i) {
            std::int64_t lo = 0, hi = 0;
            attention_keys_of_query(past, i, window, &lo, &hi);
            // ops.h: query i sees keys j <= past + i, and past + i - j < window when window > 0.
            EXPECT_EQ(hi, past + i);
            EXPECT_EQ(lo, window > 0 ? std::max<std::int64_t>(0, past + i - window + 1) : 0);
            lo_all = std::min(lo_all, lo);
            hi_all = std::max(hi_all, hi);
          }
          EXPECT_EQ(r.begin, lo_all);
          EXPECT_EQ(r.end, hi_all + 1);
        }
      }
  // Online softmax steps.
  float m = -INFINITY;
  EXPECT_EQ(online_softmax_rescale(m, -INFINITY), 1.0f);  // nothing seen, nothing new
  EXPECT_EQ(m, -INFINITY);
  EXPECT_EQ(online_softmax_rescale(m, 2.0f), 0.0f);  // first real maximum: old accumulators are zero
  EXPECT_EQ(m, 2.0f);
  EXPECT_EQ(online_softmax_rescale(m, 1.0f), 1.0f);  // no move
  EXPECT_FLOAT_EQ(online_softmax_rescale(m, 3.0f), std::exp(-1.0f));
  EXPECT_EQ(softmax_weight(-INFINITY, 3.0f), 0.0f);
  EXPECT_EQ(quantized_probability(1.0f, 1.0f), 1.0f);
  EXPECT_EQ(quantized_probability(0.5f, 1.0f / 255.0f), 0.0f);  // 0.5 rounds to even
  EXPECT_EQ(quantized_probability(1.5f, 1.0f / 255.0f), 2.0f / 255.0f);
}

TEST(CudaAttention, InvalidShapesThrowBeforeAnyCudaCall) {
  float f = 0.0f;
  rptq::cuda::AttentionShape s;
  s.batch = 1;
  s.tq = 4;
  s.heads = 4;
  s.kv_heads = 2;
  s.head_dim = 64;
  s.kv_ld = 128;
  s.kv_batch_stride = 4 * 128;
  auto bad = [&](auto change) {
    rptq::cuda::AttentionShape t = s;
    change(t);
    EXPECT_THROW(rptq::cuda::attention(&f, &f, &f, &f, t), std::invalid_argument);
  };
  bad([](auto& t) { t.kv_heads = 3; });
  bad([](auto& t) { t.head_dim = 257; });
  bad([](auto& t) { t.head_dim = 0; });
  bad([](auto& t) { t.kv_ld = 127; });
  bad([](auto& t) { t.tq = -1; });
  bad([](auto& t) { t.window = -1; });
  bad([](auto& t) { t.heads = 70000, t.kv_heads = 70000, t.kv_ld = 70000 * 64; });
  EXPECT_THROW(rptq::cuda::attention(nullptr, &f, &f, &f, s), std::invalid_argument);
  rptq::cuda::AttentionShape empty = s;
  empty.tq = 0;
  EXPECT_NO_THROW(rptq::cuda::attention(nullptr, nullptr, nullptr, nullptr, empty));
}

#else

TEST(CudaAttention, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
