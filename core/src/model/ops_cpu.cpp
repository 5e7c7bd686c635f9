#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "model/cpu_dispatch.h"
#include "rptq/model/blas.h"
#include "rptq/model/ops.h"
#include "rptq/base/quantizer.h"

namespace rptq::ops {

namespace {
using cpu::kParallelElements;

// exp(x) for x <= 0 (softmax and log-sum-exp arguments after subtracting the maximum), written so GCC vectorises
// it: exp(x) = 2^k * exp(r), r = x - k ln2 in [-ln2/2, ln2/2], exp(r) by a degree-6 Taylor polynomial. Relative
// error below 2e-7 (about 2 ulp); results below 2^-126 flush to zero, as they vanish in any softmax sum.
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;
  // Round to nearest by adding and subtracting 1.5 * 2^23 (vectorises, unlike nearbyint).
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - k * 0.693145751953125f) - k * 1.42860682030941723e-6f;  // ln2 split: k * ln2_hi is exact
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>((static_cast<std::int32_t>(k) + 127) << 23);
}

// Softmax numerators of row[lo..hi] in place, exp(x - max); the rest of row[0..n) becomes 0 (masked keys).
// Returns 1 / sum: the caller normalises the (narrower) product with V instead of the probabilities.
RPTQ_VECTOR_CLONES float softmax_numerators(float* row, std::int64_t lo, std::int64_t hi, std::int64_t n) {
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (std::int64_t j = lo; j <= hi; ++j) mx = row[j] > mx ? row[j] : mx;
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (std::int64_t j = lo; j <= hi; ++j) {
    const float e = exp_approx(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  for (std::int64_t j = 0; j < lo; ++j) row[j] = 0.0f;
  for (std::int64_t j = hi + 1; j < n; ++j) row[j] = 0.0f;
  return 1.0f / sum;
}
}  // namespace

void layer_norm(const float* x, float* y, std::int64_t rows, std::int64_t cols, const float* gamma,
                const float* beta, float eps, const std::int32_t* gather) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    // Two-pass mean/variance in double: the same statistic as PyTorch's LayerNorm to float rounding.
    double sum = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) sum += xr[c];
    const double mean = sum / static_cast<double>(cols);
    double sq = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const double d = xr[c] - mean;
      sq += d * d;
    }
    const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(cols) + eps));
    const float m = static_cast<float>(mean);
    if (gather) {
      for (std::int64_t k = 0; k < cols; ++k) {
        const std::int32_t g = gather[k];
        float v = (xr[g] - m) * rstd;
        if (gamma) v *= gamma[g];
        if (beta) v += beta[g];
        yr[k] = v;
      }
    } else {
      for (std::int64_t c = 0; c < cols; ++c) {
        float v = (xr[c] - m) * rstd;
        if (gamma) v *= gamma[c];
        if (beta) v += beta[c];
        yr[c] = v;
      }
    }
  }
}

void rms_norm(const float* x, float* y, std::int64_t rows, std::int64_t cols, const float* gamma, float eps,
              const std::int32_t* gather) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    double sq = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) sq += static_cast<double>(xr[c]) * xr[c];
    const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(cols) + eps));
    for (std::int64_t k = 0; k < cols; ++k) {
      const std::int64_t g = gather ? gather[k] : k;
      float v = xr[g] * rstd;
      if (gamma) v *= gamma[g];
      yr[k] = v;
    }
  }
}

void linear(const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t in, const float* w,
            const float* bias, std::int64_t out, float* y, bool accumulate) {
  if (rows == 0 || out == 0) return;
  float beta = accumulate ? 1.0f : 0.0f;
  if (bias && !accumulate) {
    // Start from the bias so the GEMM adds onto it: one pass over y instead of two.
#pragma omp parallel for schedule(static) if (rows * out > kParallelElements)
    for (std::int64_t r = 0; r < rows; ++r) std::memcpy(y + r * out, bias, static_cast<std::size_t>(out) * 4);
    beta = 1.0f;
  }
  blas::sgemm(false, true, rows, out, in, 1.0f, x, ldx, w, in, beta, y, out);
  if (bias && accumulate) add_bias(y, rows, out, bias);
}

void add_bias(float* x, std::int64_t rows, std::int64_t cols, const float* bias) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) xr[c] += bias[c];
  }
}

void bias_relu(float* x, std::int64_t rows, std::int64_t cols, const float* bias) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    if (bias) {
      for (std::int64_t c = 0; c < cols; ++c) xr[c] = std::max(xr[c] + bias[c], 0.0f);
    } else {
      for (std::int64_t c = 0; c < cols; ++c) xr[c] = std::max(xr[c], 0.0f);
    }
  }
}

void bias_gelu(float* x, std::int64_t rows, std::int64_t cols, const float* bias) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = xr[c] + (bias ? bias[c] : 0.0f);
      xr[c] = 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
    }
  }
}

void bias_gelu_tanh(float* x, std::int64_t rows, std::int64_t cols, const float* bias) {
  // Hugging Face's "gelu_new": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#pragma omp parallel for schedule(static) if (rows * cols > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = xr[c] + (bias ? bias[c] : 0.0f);
      xr[c] = 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
  }
}

namespace {
// silu(g) * u over a contiguous run: g sigmoid(g) with exp of -|g| only (exp_approx's domain), so the loop
// vectorises: sigmoid(g) = 1 / (1 + e) for g >= 0 and e / (1 + e) for g < 0, e = exp(-|g|).
RPTQ_VECTOR_CLONES void silu_mul_run(float* gate, const float* up, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float e = exp_approx(-std::fabs(g));
    const float s = (g >= 0.0f ? 1.0f : e) / (1.0f + e);
    gate[i] = g * s * up[i];
  }
}
}  // namespace

void silu_mul(float* gate, const float* up, std::int64_t rows, std::int64_t cols) {
  const std::int64_t n = rows * cols;
  constexpr std::int64_t kRun = 4096;
  const std::int64_t runs = (n + kRun - 1) / kRun;
#pragma omp parallel for schedule(static) if (n > kParallelElements)
  for (std::int64_t r = 0; r < runs; ++r) silu_mul_run(gate + r * kRun, up + r * kRun, std::min(kRun, n - r * kRun));
}

void add(float* x, const float* y, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelElements)
  for (std::int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void rotary(float* x, std::int64_t rows, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
            float theta, const std::int32_t* freq_index, std::int64_t group) {
  const std::int64_t half = head_dim / 2;
  // Same inverse frequencies as Hugging Face (float32 of theta^(-2i/d)); angles in double, then cos/sin rounded.
  std::vector<float> inv_freq(static_cast<std::size_t>(half));
  for (std::int64_t i = 0; i < half; ++i)
    inv_freq[i] = static_cast<float>(1.0 / std::pow(static_cast<double>(theta), (2.0 * i) / head_dim));
#pragma omp parallel for schedule(static) if (rows * heads * head_dim > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r) {
    float cs[512], sn[512];
    std::vector<float> big_cs, big_sn;
    float* c = cs;
    float* s = sn;
    if (half > 512) {
      big_cs.resize(half);
      big_sn.resize(half);
      c = big_cs.data();
      s = big_sn.data();
    }
    const float pos = static_cast<float>(positions[r]);
    for (std::int64_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq[i];  // float32 product, as HF computes freqs
      c[i] = std::cos(angle);
      s[i] = std::sin(angle);
    }
    float* xr = x + r * heads * head_dim;
    for (std::int64_t h = 0; h < heads; ++h) {
      float* xh = xr + h * head_dim;
      if (freq_index) {
        const std::int32_t* fi = freq_index + (h / group) * half;
        for (std::int64_t i = 0; i < half; ++i) {
          const float a = xh[i], b = xh[i + half];
          xh[i] = a * c[fi[i]] - b * s[fi[i]];
          xh[i + half] = b * c[fi[i]] + a * s[fi[i]];
        }
        continue;
      }
      for (std::int64_t i = 0; i < half; ++i) {
        const float a = xh[i], b = xh[i + half];
        xh[i] = a * c[i] - b * s[i];
        xh[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

RPTQ_VECTOR_CLONES float log_sum_exp(const float* x, std::int64_t n) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (std::int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  // Float sums over blocks of 256 terms (vectorised), added in double: one float running sum over a 50k-entry
  // vocabulary rounds its small terms away with a bias that shows in perplexity at 1e-4.
  constexpr std::int64_t kBlock = 256;
  double total = 0.0;
  for (std::int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const std::int64_t i1 = std::min(n, i0 + kBlock);
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (std::int64_t i = i0; i < i1; ++i) s += exp_approx(x[i] - m);
    total += s;
  }
  return m + static_cast<float>(std::log(total));
}

void attention(const float* q, const float* k, const float* v, float* out, const AttentionShape& s) {
  // Tiled over blocks of queries so the score matrix of one (sequence, head, block) stays in cache and no
  // tq x (past + tq) matrix is ever materialised; each tile's two products are small single-threaded GEMMs.
  // The softmax leaves unnormalised numerators and the [block, head_dim] output is scaled by 1 / sum afterwards:
  // one pass over head_dim columns instead of one over all keys.
  constexpr std::int64_t kBlock = 64;
  const std::int64_t hd = s.head_dim;
  const std::int64_t q_ld = s.heads * hd;
  const std::int64_t group = s.heads / s.kv_heads;
  const std::int64_t blocks = (s.tq + kBlock - 1) / kBlock;
  const std::int64_t tasks = s.batch * s.heads * blocks;

#pragma omp parallel if (tasks > 1)
  {
    std::vector<float> scores;
    float inv_sum[kBlock];
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t task = 0; task < tasks; ++task) {
      // Largest blocks (the last, which see the most keys) first for better load balance.
      const std::int64_t blk = blocks - 1 - task % blocks;
      const std::int64_t h = (task / blocks) % s.heads;
      const std::int64_t b = task / (blocks * s.heads);
      const std::int64_t i0 = blk * kBlock, i1 = std::min(s.tq, i0 + kBlock), m = i1 - i0;
      const std::int64_t kv_h = h / group;
      const std::int64_t key_end = s.past + i1;  // exclusive
      const std::int64_t key_begin = s.window > 0 ? std::max<std::int64_t>(0, s.past + i0 - s.window + 1) : 0;
      const std::int64_t nk = key_end - key_begin;
      scores.resize(static_cast<std::size_t>(m * nk));

      const float* qb = q + (b * s.tq + i0) * q_ld + h * hd;
      const float* kb = k + b * s.kv_batch_stride + key_begin * s.kv_ld + kv_h * hd;
      const float* vb = v + b * s.kv_batch_stride + key_begin * s.kv_ld + kv_h * hd;
      blas::sgemm(false, true, m, nk, hd, s.scale, qb, q_ld, kb, s.kv_ld, 0.0f, scores.data(), nk);
      for (std::int64_t r = 0; r < m; ++r) {
        float* row = scores.data() + r * nk;
        const std::int64_t pos = s.past + i0 + r;  // absolute position of this query
        const std::int64_t lo = (s.window > 0 ? std::max<std::int64_t>(0, pos - s.window + 1) : 0) - key_begin;
        const std::int64_t hi = pos - key_begin;  // inclusive
        inv_sum[r] = softmax_numerators(row, lo, hi, nk);
        if (s.quantize_probs) {
          // The quantized probabilities themselves feed PV, so normalise before rounding.
          const float inv = inv_sum[r];
#pragma omp simd
          for (std::int64_t j = lo; j <= hi; ++j) row[j] = round_half_even(row[j] * inv * 255.0f) / 255.0f;
          inv_sum[r] = 1.0f;
        }
      }
      float* ob = out + (b * s.tq + i0) * q_ld + h * hd;
      blas::sgemm(false, false, m, hd, nk, 1.0f, scores.data(), nk, vb, s.kv_ld, 0.0f, ob, q_ld);
      for (std::int64_t r = 0; r < m; ++r) {
        float* orow = ob + r * q_ld;
        const float f = inv_sum[r];
#pragma omp simd
        for (std::int64_t c = 0; c < hd; ++c) orow[c] *= f;
      }
    }
  }
}

}  // namespace rptq::ops
