// Every op of the decoder layer (core/src/model/decoder_layer.h) on every backend (tests/cuda/backend_ops.h: the CPU,
// and the CUDA kernels when built with them and a GPU is usable) against one plain reference written here in
// double, with the same test body per backend: ggml's test-backend-ops, CTranslate2's instantiated suites. Test
// names say backend and case: cpu/BackendOps.MatchesReference/attention_gqa_window, cuda/..., and for the linear
// cases also cuda_f16/... and cuda_bf16/... (the runner's 16-bit GEMM inputs). The CUDA instances skip, saying
// why, where no GPU is usable; tools/cuda-emu runs them on the CPU in CI (ctest label emu).
//
// This harness is where a new op gets its CPU/CUDA parity case. The per-op files (test_cuda_<op>.cpp, test_ops.cpp)
// keep each kernel's edge cases and contracts: argument errors, launch limits, huge rows, host emulations of a
// kernel's algorithm.
//
// Tolerances: every element must satisfy |got - ref| <= tol * mag (+ slack), mag a magnitude the rounding errors
// of a float32 implementation scale with (each reference says which). Inputs are unit scale, seeded.
//   layer_norm, rms_norm  1e-5. The CPU takes the row statistics in double, the GPU in float (~1e-6 relative at
//                         these lengths); mag = |gamma| (1 + |x - mean| rstd) + |beta| (LayerNorm: errors in the
//                         mean are worth |gamma| per unit of std), |x| rstd |gamma| (RMSNorm: only relative errors).
//   linear                mag = |bias| + |y0| + sum_k |x_k w_k|: float sums of `in` products in any order.
//                         F32 1e-5 (CPU and CUDA; TF32's 10-bit products would err by ~5e-4). F16 / BF16 (CUDA):
//                         the reference rounds x and w to the 16-bit type first, so only the float accumulation
//                         differs, which tensor cores may do with truncated alignment: 5e-5.
//   bias_relu, scale      1.2e-7 (2 ulp; one float rounding each): mag |x| + |bias|, |x s|.
//   bias_gelu(_tanh)      1e-6, mag |x| + |bias|: erff / tanhf within 2 ulp (CUDA) or 1 (glibc), a few roundings.
//   silu_mul              1e-6, mag |gate up|: the CPU's exp approximation (2e-7) or CUDA's expf, 3 roundings.
//   rotary                1e-6, mag |a| + |b| of the input pair (|x| for an odd head_dim's last channel): cos and
//                         sin of the angle within 1 ulp, 2 products and a sum rounded. The angle itself is Hugging
//                         Face's float32 product position * inv_freq with inv_freq = float32(theta^(-2i/d)): a
//                         convention of the op (it matters at large positions), so the reference computes it so.
//   attention             2e-5, mag max |v| of the case: score errors ds (a float dot product) move an output, a
//                         convex combination of V rows, by at most max|ds| max|v|. With quantize_probs a
//                         probability within rounding distance of a level boundary (255 p near a half-integer)
//                         may land on the other level: slack |v[j, d]| / 255 for each such key (found in double).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <numbers>
#include <numeric>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend_ops.h"
#include "test_support.h"

namespace {

using rptq::AttentionShape;
using rptq::test::Backend;
using rptq::test::normal;
using rptq::test::Precision;

// ---------------------------------------------------------------------------------------------------------------
// Backends, made once per process.

enum class BackendKind { Cpu, Cuda, CudaF16, CudaBF16 };

Backend* backend_of(BackendKind kind, std::string* why_not) {
  struct Made {
    bool tried = false;
    std::unique_ptr<Backend> backend;
    std::string why_not;
  };
  static std::array<Made, 4> made;
  Made& m = made[static_cast<std::size_t>(kind)];
  if (!m.tried) {
    m.tried = true;
    if (kind == BackendKind::Cpu)
      m.backend = std::make_unique<rptq::test::CpuBackend>();
    else
      m.backend = rptq::test::make_cuda_backend(kind == BackendKind::CudaF16    ? Precision::F16
                                                : kind == BackendKind::CudaBF16 ? Precision::BF16
                                                                                : Precision::F32,
                                                &m.why_not);
  }
  *why_not = m.why_not;
  return m.backend.get();
}

// ---------------------------------------------------------------------------------------------------------------
// The check: reference values, the magnitude each tolerance is relative to, and extra absolute slack.

struct Expected {
  std::vector<double> ref, mag, slack;  // slack empty: none
  explicit Expected(std::size_t n) : ref(n), mag(n) {}
};

void expect_within(const std::vector<float>& got, const Expected& e, double tol, std::int64_t cols) {
  ASSERT_EQ(got.size(), e.ref.size());
  std::size_t failures = 0, worst_at = 0;
  double worst = -1.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - e.ref[i]);
    const double allowed = tol * e.mag[i] + (e.slack.empty() ? 0.0 : e.slack[i]);
    if (!(err <= allowed)) ++failures;  // NaN fails
    double ratio = err == 0.0 ? 0.0 : err / allowed;
    if (std::isnan(ratio)) ratio = std::numeric_limits<double>::infinity();
    if (ratio > worst) {
      worst = ratio;
      worst_at = i;
    }
  }
  const std::size_t w = worst_at;
  const double allowed = tol * e.mag[w] + (e.slack.empty() ? 0.0 : e.slack[w]);
  ::testing::Test::RecordProperty("worst_error_over_allowed", std::to_string(worst));
  EXPECT_EQ(failures, 0u) << failures << " of " << got.size() << " elements off the reference (tolerance " << tol
                          << " x magnitude); worst at row " << w / static_cast<std::size_t>(cols) << " col "
                          << w % static_cast<std::size_t>(cols) << ": got " << got[w] << ", reference " << e.ref[w]
                          << ", error " << std::fabs(got[w] - e.ref[w]) << ", allowed " << allowed;
}

// Tolerances (the header says why).
constexpr double kNormTol = 1e-5;
constexpr double kOneRoundingTol = 1.2e-7;
constexpr double kActivationTol = 1e-6;
constexpr double kRotaryTol = 1e-6;
constexpr double kAttentionTol = 2e-5;
double linear_tol(Precision p) { return p == Precision::F32 ? 1e-5 : 5e-5; }

// ---------------------------------------------------------------------------------------------------------------
// Inputs.

std::vector<std::int32_t> permutation(std::int64_t n, std::uint32_t seed) {
  std::vector<std::int32_t> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  std::shuffle(p.begin(), p.end(), std::mt19937(seed));
  return p;
}

// x on the grid of a GEMM input precision, rounded to nearest even: 11 significant bits for FP16 (whose subnormals
// below 2^-14 have the fixed spacing 2^-24), 8 for BF16 (float's exponent range). No overflow at unit scale.
double round_to(Precision p, float x) {
  if (p == Precision::F32 || x == 0.0f) return x;
  const int e = std::ilogb(x);  // |x| in [2^e, 2^(e+1))
  const double step = p == Precision::F16 ? std::ldexp(1.0, std::max(e, -14) - 10) : std::ldexp(1.0, e - 7);
  return std::nearbyint(x / step) * step;
}

// ---------------------------------------------------------------------------------------------------------------
// Norms.

struct NormCase {
  std::int64_t rows, cols;
  bool gamma, beta, gather;
  float eps;
};

struct NormInputs {
  std::vector<float> x, gamma, beta;
  std::vector<std::int32_t> gather;
};

NormInputs norm_inputs(const NormCase& c, std::uint32_t seed) {
  NormInputs in;
  in.x = normal(static_cast<std::size_t>(c.rows * c.cols), 0.3f, 1.0f, seed);
  if (c.gamma) in.gamma = normal(static_cast<std::size_t>(c.cols), 1.0f, 0.1f, seed + 1);
  if (c.beta) in.beta = normal(static_cast<std::size_t>(c.cols), 0.0f, 0.1f, seed + 2);
  if (c.gather) in.gather = permutation(c.cols, seed + 3);
  return in;
}

// y[r, k] = (x[r, g] - mean_r) / sqrt(var_r + eps) * gamma[g] + beta[g], g = gather[k].
Expected ref_layer_norm(const NormCase& c, const NormInputs& in) {
  Expected e(in.x.size());
  for (std::int64_t r = 0; r < c.rows; ++r) {
    const float* x = &in.x[static_cast<std::size_t>(r * c.cols)];
    double mean = 0.0, var = 0.0;
    for (std::int64_t k = 0; k < c.cols; ++k) mean += x[k];
    mean /= static_cast<double>(c.cols);
    for (std::int64_t k = 0; k < c.cols; ++k) var += (x[k] - mean) * (x[k] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(c.cols) + c.eps);
    for (std::int64_t k = 0; k < c.cols; ++k) {
      const std::int64_t g = c.gather ? in.gather[k] : k;
      const double gamma = c.gamma ? in.gamma[g] : 1.0, beta = c.beta ? in.beta[g] : 0.0;
      const auto i = static_cast<std::size_t>(r * c.cols + k);
      e.ref[i] = (x[g] - mean) * rstd * gamma + beta;
      e.mag[i] = std::fabs(gamma) * (1.0 + std::fabs(x[g] - mean) * rstd) + std::fabs(beta);
    }
  }
  return e;
}

// y[r, k] = x[r, g] / sqrt(mean_r(x^2) + eps) * gamma[g], g = gather[k].
Expected ref_rms_norm(const NormCase& c, const NormInputs& in) {
  Expected e(in.x.size());
  for (std::int64_t r = 0; r < c.rows; ++r) {
    const float* x = &in.x[static_cast<std::size_t>(r * c.cols)];
    double sq = 0.0;
    for (std::int64_t k = 0; k < c.cols; ++k) sq += static_cast<double>(x[k]) * x[k];
    const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(c.cols) + c.eps);
    for (std::int64_t k = 0; k < c.cols; ++k) {
      const std::int64_t g = c.gather ? in.gather[k] : k;
      const double gamma = c.gamma ? in.gamma[g] : 1.0;
      const auto i = static_cast<std::size_t>(r * c.cols + k);
      e.ref[i] = x[g] * rstd * gamma;
      e.mag[i] = std::fabs(x[g]) * rstd * std::fabs(gamma);
    }
  }
  return e;
}

void check_layer_norm(Backend& b, const NormCase& c, std::uint32_t seed) {
  const NormInputs in = norm_inputs(c, seed);
  const std::vector<float> y = b.layer_norm(in.x, c.rows, c.cols, in.gamma, in.beta, c.eps, in.gather);
  expect_within(y, ref_layer_norm(c, in), kNormTol, c.cols);
}

void check_rms_norm(Backend& b, const NormCase& c, std::uint32_t seed) {
  const NormInputs in = norm_inputs(c, seed);
  const std::vector<float> y = b.rms_norm(in.x, c.rows, c.cols, in.gamma, c.eps, in.gather);
  expect_within(y, ref_rms_norm(c, in), kNormTol, c.cols);
}

// ---------------------------------------------------------------------------------------------------------------
// Linear layers.

struct LinearCase {
  std::int64_t rows, in, out, ldx;
  bool bias, accumulate;
};

void check_linear(Backend& b, const LinearCase& c, std::uint32_t seed) {
  const std::vector<float> x = normal(static_cast<std::size_t>((c.rows - 1) * c.ldx + c.in), 0.0f, 1.0f, seed);
  const std::vector<float> w = normal(static_cast<std::size_t>(c.out * c.in), 0.0f, 0.5f, seed + 1);
  std::vector<float> bias;
  if (c.bias) bias = normal(static_cast<std::size_t>(c.out), 0.0f, 1.0f, seed + 2);
  // y starts as NaN unless accumulated onto: the op must overwrite it.
  const auto n = static_cast<std::size_t>(c.rows * c.out);
  const std::vector<float> y0 = c.accumulate ? normal(n, 0.0f, 1.0f, seed + 3) : std::vector<float>(n, std::nanf(""));

  // y[r, o] = sum_k x[r, k] w[o, k] (+ bias[o]) (+ y0[r, o]), x and w on the backend's input grid.
  const Precision p = b.precision();
  Expected e(n);
  for (std::int64_t r = 0; r < c.rows; ++r)
    for (std::int64_t o = 0; o < c.out; ++o) {
      double sum = 0.0, mag = 0.0;
      for (std::int64_t k = 0; k < c.in; ++k) {
        const double term = round_to(p, x[static_cast<std::size_t>(r * c.ldx + k)]) *
                            round_to(p, w[static_cast<std::size_t>(o * c.in + k)]);
        sum += term;
        mag += std::fabs(term);
      }
      const auto i = static_cast<std::size_t>(r * c.out + o);
      if (c.bias) {
        sum += bias[o];
        mag += std::fabs(bias[o]);
      }
      if (c.accumulate) {
        sum += y0[i];
        mag += std::fabs(y0[i]);
      }
      e.ref[i] = sum;
      e.mag[i] = mag;
    }

  std::vector<float> y = y0;
  b.linear(x, c.ldx, c.rows, c.in, w, bias, c.out, y, c.accumulate);
  expect_within(y, e, linear_tol(p), c.out);
}

// ---------------------------------------------------------------------------------------------------------------
// Elementwise ops.

enum class Act { Relu, Gelu, GeluTanh };

struct EltCase {
  std::int64_t rows, cols;
  bool bias;
};

void check_activation(Backend& b, Act act, const EltCase& c, std::uint32_t seed) {
  const std::vector<float> x = normal(static_cast<std::size_t>(c.rows * c.cols), 0.0f, 2.0f, seed);
  std::vector<float> bias;
  if (c.bias) bias = normal(static_cast<std::size_t>(c.cols), 0.0f, 0.5f, seed + 1);
  Expected e(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double bi = c.bias ? bias[i % static_cast<std::size_t>(c.cols)] : 0.0, v = x[i] + bi;
    e.mag[i] = std::fabs(x[i]) + std::fabs(bi);
    if (act == Act::Relu)
      e.ref[i] = std::max(v, 0.0);
    else if (act == Act::Gelu)
      e.ref[i] = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    else  // Hugging Face's gelu_new
      e.ref[i] = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
  }
  std::vector<float> y = x;
  if (act == Act::Relu) b.bias_relu(y, c.rows, c.cols, bias);
  if (act == Act::Gelu) b.bias_gelu(y, c.rows, c.cols, bias);
  if (act == Act::GeluTanh) b.bias_gelu_tanh(y, c.rows, c.cols, bias);
  expect_within(y, e, act == Act::Relu ? kOneRoundingTol : kActivationTol, c.cols);
}

// gate = gate / (1 + exp(-gate)) * up
void check_silu_mul(Backend& b, const EltCase& c, std::uint32_t seed) {
  const auto n = static_cast<std::size_t>(c.rows * c.cols);
  const std::vector<float> gate = normal(n, 0.0f, 3.0f, seed), up = normal(n, 0.0f, 1.0f, seed + 1);
  Expected e(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double g = gate[i], u = up[i];
    e.ref[i] = g / (1.0 + std::exp(-g)) * u;
    e.mag[i] = std::fabs(g * u);
  }
  std::vector<float> y = gate;
  b.silu_mul(y, up, c.rows, c.cols);
  expect_within(y, e, kActivationTol, c.cols);
}

void check_scale(Backend& b, const EltCase& c, float s, std::uint32_t seed) {
  const std::vector<float> x = normal(static_cast<std::size_t>(c.rows * c.cols), 0.0f, 2.0f, seed);
  Expected e(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    e.ref[i] = static_cast<double>(x[i]) * s;
    e.mag[i] = std::fabs(e.ref[i]);
  }
  std::vector<float> y = x;
  b.scale(y, s);
  expect_within(y, e, kOneRoundingTol, c.cols);
}

// ---------------------------------------------------------------------------------------------------------------
// Rotary embedding.

struct RotaryCase {
  std::int64_t rows, heads, head_dim, group;
  bool rope_index;
  float theta;
  // Positions: `seq` > 0 gives the decoder layer's past + r % seq (sequences of seq rows continuing past tokens);
  // seq == 0 draws them from [0, past] (with past itself in row 0).
  std::int64_t seq, past;
};

void check_rotary(Backend& b, const RotaryCase& c, std::uint32_t seed) {
  const std::int64_t hd = c.head_dim, half = hd / 2;
  const std::vector<float> x = normal(static_cast<std::size_t>(c.rows * c.heads * hd), 0.0f, 1.0f, seed);
  std::mt19937 gen(seed + 1);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(c.rows));
  for (std::int64_t r = 0; r < c.rows; ++r)
    pos[r] = c.seq > 0 ? c.past + r % c.seq
                       : (r == 0 ? c.past : std::uniform_int_distribution<std::int64_t>(0, c.past)(gen));
  std::vector<std::int32_t> freq_index;  // [heads / group, half], a permutation of the pairs per row
  if (c.rope_index)
    for (std::int64_t g = 0; g < c.heads / c.group; ++g) {
      const std::vector<std::int32_t> p = permutation(half, seed + 2 + static_cast<std::uint32_t>(g));
      freq_index.insert(freq_index.end(), p.begin(), p.end());
    }

  // Pair (i, i + half) of head h rotates by angle pos * inv_freq(f), f = freq_index[(h / group) * half + i] (or i),
  // in Hugging Face's float32: inv_freq = float(theta^(-2f/d)), angle = float(float(pos) * inv_freq).
  Expected e(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {  // an odd head_dim's last channel stays as it is
    e.ref[i] = x[i];
    e.mag[i] = std::fabs(x[i]);
  }
  for (std::int64_t r = 0; r < c.rows; ++r)
    for (std::int64_t h = 0; h < c.heads; ++h)
      for (std::int64_t i = 0; i < half; ++i) {
        const std::int64_t f = c.rope_index ? freq_index[(h / c.group) * half + i] : i;
        const auto inv_freq = static_cast<float>(1.0 / std::pow(static_cast<double>(c.theta), 2.0 * f / hd));
        const double angle = static_cast<float>(static_cast<float>(pos[r]) * inv_freq);
        const auto ia = static_cast<std::size_t>((r * c.heads + h) * hd + i), ib = ia + half;
        const double a = x[ia], bb = x[ib];
        e.ref[ia] = a * std::cos(angle) - bb * std::sin(angle);
        e.ref[ib] = bb * std::cos(angle) + a * std::sin(angle);
        e.mag[ia] = e.mag[ib] = std::fabs(a) + std::fabs(bb);
      }

  std::vector<float> y = x;
  b.rotary(y, c.rows, c.heads, hd, pos, c.theta, freq_index, c.group);
  expect_within(y, e, kRotaryTol, c.heads * hd);
}

// ---------------------------------------------------------------------------------------------------------------
// Attention.

struct AttentionCase {
  std::int64_t batch, tq, past, heads, kv_heads, head_dim, window;
  bool quantize_probs;
  bool interleaved;  // K/V rows [time, batch, kv] (padded) instead of [batch, time, kv] with spare capacity
  bool opt;          // OPT's convention: q arrives scaled by head_dim^-0.5, and the op's scale is 1
};

void check_attention(Backend& b, const AttentionCase& c, std::uint32_t seed) {
  AttentionShape s;
  s.batch = c.batch;
  s.tq = c.tq;
  s.past = c.past;
  s.heads = c.heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  s.window = c.window;
  s.quantize_probs = c.quantize_probs;
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  s.scale = c.opt ? 1.0f : q_scale;
  const std::int64_t hd = c.head_dim, kv_dim = c.kv_heads * hd, len = c.past + c.tq, q_ld = c.heads * hd;
  std::size_t kv_size = 0;
  if (c.interleaved) {
    s.kv_ld = c.batch * kv_dim + 3;
    s.kv_batch_stride = kv_dim;
    kv_size = static_cast<std::size_t>(len * s.kv_ld);
  } else {
    s.kv_ld = kv_dim + (hd % 2 ? 1 : 0);
    s.kv_batch_stride = (len + 5) * s.kv_ld;
    kv_size = static_cast<std::size_t>(c.batch * s.kv_batch_stride);
  }
  const std::vector<float> q =
      normal(static_cast<std::size_t>(c.batch * c.tq * q_ld), 0.0f, c.opt ? q_scale : 1.0f, seed);
  const std::vector<float> k = normal(kv_size, 0.0f, 1.0f, seed + 1), v = normal(kv_size, 0.0f, 1.0f, seed + 2);
  double vmax = 0.0;
  for (float t : v) vmax = std::max(vmax, std::fabs(static_cast<double>(t)));

  // out[b, i, h] = sum_j p_j v[b, j, h / group] over keys j in [lo, past + i] (lo: the window's first), p the
  // softmax of scale * q . k_j; with quantize_probs p_j = round(255 p_j) / 255, not renormalised.
  Expected e(q.size());
  e.slack.assign(q.size(), 0.0);
  std::fill(e.mag.begin(), e.mag.end(), vmax);
  const std::int64_t group = c.heads / c.kv_heads;
  std::vector<double> p;
  for (std::int64_t bq = 0; bq < c.batch; ++bq)
    for (std::int64_t h = 0; h < c.heads; ++h)
      for (std::int64_t i = 0; i < c.tq; ++i) {
        const std::int64_t hi = c.past + i, lo = c.window > 0 ? std::max<std::int64_t>(0, hi - c.window + 1) : 0;
        const float* qi = &q[static_cast<std::size_t>((bq * c.tq + i) * q_ld + h * hd)];
        const std::int64_t kv0 = bq * s.kv_batch_stride + (h / group) * hd;
        p.assign(static_cast<std::size_t>(hi - lo + 1), 0.0);
        double mx = -INFINITY, sum = 0.0;
        for (std::int64_t j = lo; j <= hi; ++j) {
          double dot = 0.0;
          for (std::int64_t d = 0; d < hd; ++d) dot += static_cast<double>(qi[d]) * k[kv0 + j * s.kv_ld + d];
          p[j - lo] = dot * s.scale;
          mx = std::max(mx, p[j - lo]);
        }
        for (double& t : p) sum += (t = std::exp(t - mx));
        const auto row = static_cast<std::size_t>((bq * c.tq + i) * q_ld + h * hd);
        for (std::int64_t j = lo; j <= hi; ++j) {
          double pj = p[j - lo] / sum;
          const float* vj = &v[static_cast<std::size_t>(kv0 + j * s.kv_ld)];
          if (c.quantize_probs) {
            const double t = pj * 255.0;
            const bool near_boundary = std::fabs(t - std::floor(t) - 0.5) < 1e-4 * (1.0 + t);
            if (near_boundary)
              for (std::int64_t d = 0; d < hd; ++d) e.slack[row + d] += std::fabs(vj[d]) / 255.0;
            pj = std::nearbyint(t) / 255.0;
          }
          for (std::int64_t d = 0; d < hd; ++d) e.ref[row + d] += pj * vj[d];
        }
      }

  const std::vector<float> out = b.attention(q, k, v, s);
  expect_within(out, e, kAttentionTol, q_ld);
}

// ---------------------------------------------------------------------------------------------------------------
// The cases. SmolLM2-135M's layer: hidden 576, 9 heads and 3 KV heads of 64, intermediate 1536, RMSNorm eps 1e-5,
// rope theta 100000, no biases.

struct OpCase {
  std::string name;
  bool per_precision;  // linear: also run by the 16-bit CUDA backends
  std::function<void(Backend&)> run;
};

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = [] {
    std::vector<OpCase> v;
    std::uint32_t seed = 1;
    const auto add = [&](std::string name, bool per_precision, std::function<void(Backend&, std::uint32_t)> f) {
      seed += 10;
      v.push_back({std::move(name), per_precision, [f, s = seed](Backend& b) { f(b, s); }});
    };
    const auto layer_norm = [&](std::string name, NormCase c) {
      add(std::move(name), false, [c](Backend& b, std::uint32_t s) { check_layer_norm(b, c, s); });
    };
    const auto rms_norm = [&](std::string name, NormCase c) {
      add(std::move(name), false, [c](Backend& b, std::uint32_t s) { check_rms_norm(b, c, s); });
    };
    const auto linear = [&](std::string name, LinearCase c) {
      add(std::move(name), true, [c](Backend& b, std::uint32_t s) { check_linear(b, c, s); });
    };
    const auto activation = [&](std::string name, Act a, EltCase c) {
      add(std::move(name), false, [a, c](Backend& b, std::uint32_t s) { check_activation(b, a, c, s); });
    };
    const auto silu_mul = [&](std::string name, EltCase c) {
      add(std::move(name), false, [c](Backend& b, std::uint32_t s) { check_silu_mul(b, c, s); });
    };
    const auto scale = [&](std::string name, EltCase c, float f) {
      add(std::move(name), false, [c, f](Backend& b, std::uint32_t s) { check_scale(b, c, f, s); });
    };
    const auto rotary = [&](std::string name, RotaryCase c) {
      add(std::move(name), false, [c](Backend& b, std::uint32_t s) { check_rotary(b, c, s); });
    };
    const auto attention = [&](std::string name, AttentionCase c) {
      add(std::move(name), false, [c](Backend& b, std::uint32_t s) { check_attention(b, c, s); });
    };

    // rows, cols, gamma, beta, gather, eps
    layer_norm("layer_norm_one_column", {1, 1, true, true, false, 1e-5f});
    layer_norm("layer_norm_odd", {5, 31, true, true, false, 1e-5f});
    layer_norm("layer_norm_no_affine", {3, 1000, false, false, false, 1e-5f});
    layer_norm("layer_norm_gather", {7, 100, true, true, true, 1e-5f});
    layer_norm("layer_norm_opt125m_gather", {4, 768, true, true, true, 1e-5f});
    rms_norm("rms_norm_odd", {3, 7, true, false, false, 1e-6f});
    rms_norm("rms_norm_no_gamma", {5, 33, false, false, false, 1e-6f});
    rms_norm("rms_norm_gather", {4, 100, true, false, true, 1e-6f});
    rms_norm("rms_norm_long_row", {2, 4100, true, false, false, 1e-6f});
    rms_norm("rms_norm_smollm2_gather", {8, 576, true, false, true, 1e-5f});

    // rows, in, out, ldx, bias, accumulate
    linear("linear_one", {1, 1, 1, 1, false, false});
    linear("linear_odd", {3, 7, 5, 7, false, false});
    linear("linear_row_stride_bias", {17, 33, 65, 40, true, false});
    linear("linear_accumulate_bias", {5, 100, 3, 103, true, true});
    linear("linear_accumulate", {6, 64, 48, 64, false, true});
    linear("linear_opt125m_bias", {8, 768, 768, 768, true, false});
    linear("linear_smollm2_q", {16, 576, 576, 576, false, false});
    linear("linear_smollm2_kv", {16, 576, 192, 576, false, false});
    linear("linear_smollm2_gate", {16, 576, 1536, 576, false, false});
    linear("linear_smollm2_down_residual", {16, 1536, 576, 1536, false, true});
    linear("linear_smollm2_decode_up", {1, 576, 1536, 576, false, false});

    // rows, cols, bias
    activation("bias_relu_odd", Act::Relu, {3, 37, true});
    activation("bias_relu_no_bias", Act::Relu, {2, 5, false});
    activation("bias_gelu_odd", Act::Gelu, {7, 65, true});
    activation("bias_gelu_no_bias", Act::Gelu, {1, 33, false});
    activation("bias_gelu_tanh_odd", Act::GeluTanh, {5, 129, true});
    activation("bias_gelu_tanh_no_bias", Act::GeluTanh, {2, 3, false});
    activation("bias_relu_opt125m_ffn", Act::Relu, {8, 3072, true});
    silu_mul("silu_mul_odd", {3, 37, false});
    silu_mul("silu_mul_smollm2", {16, 1536, false});
    scale("scale_odd", {1, 37, false}, 0.3f);
    scale("scale_opt125m_q", {16, 768, false}, 0.125f);

    // rows, heads, head_dim, group, rope_index, theta, seq, past
    rotary("rotary_one_pair", {1, 1, 2, 1, false, 10000.0f, 0, 10});
    rotary("rotary_odd_head_dim", {3, 2, 7, 1, false, 10000.0f, 0, 100});
    rotary("rotary_large_positions", {4, 3, 64, 1, false, 10000.0f, 0, 32768});
    rotary("rotary_rope_index", {5, 4, 16, 1, true, 10000.0f, 0, 2048});
    rotary("rotary_rope_index_gqa", {5, 6, 16, 3, true, 10000.0f, 0, 2048});
    rotary("rotary_smollm2_q_rope_index", {16, 9, 64, 3, true, 100000.0f, 8, 5});
    rotary("rotary_smollm2_k_rope_index", {16, 3, 64, 1, true, 100000.0f, 8, 5});
    rotary("rotary_smollm2_decode", {2, 9, 64, 3, false, 100000.0f, 1, 700});

    // batch, tq, past, heads, kv_heads, head_dim, window, quantize_probs, interleaved, opt
    attention("attention_single", {1, 1, 0, 1, 1, 1, 0, false, false, false});
    attention("attention_prefill", {2, 37, 0, 4, 4, 64, 0, false, false, false});
    attention("attention_gqa_decode", {3, 1, 200, 8, 2, 128, 0, false, false, false});
    attention("attention_gqa_window", {1, 70, 40, 2, 1, 64, 16, false, false, false});
    attention("attention_window_decode", {2, 1, 300, 4, 1, 33, 100, false, false, false});
    attention("attention_interleaved_kv", {3, 9, 12, 4, 2, 32, 0, false, true, false});
    attention("attention_head_dim_80", {2, 50, 30, 6, 3, 80, 0, false, false, false});
    attention("attention_quantize_probs", {2, 17, 3, 2, 2, 64, 0, true, false, false});
    attention("attention_quantize_probs_gqa_window", {1, 40, 10, 4, 2, 32, 8, true, false, false});
    attention("attention_opt_prescaled_q", {2, 20, 0, 12, 12, 64, 0, false, false, true});
    attention("attention_smollm2_prefill", {2, 24, 0, 9, 3, 64, 0, false, false, false});
    attention("attention_smollm2_decode", {1, 1, 63, 9, 3, 64, 0, false, false, false});
    attention("attention_smollm2_quantize_probs", {1, 16, 8, 9, 3, 64, 0, true, false, false});
    return v;
  }();
  return cases;
}

// ---------------------------------------------------------------------------------------------------------------
// One test body, instantiated per backend over its cases.

struct Param {
  BackendKind backend;
  const OpCase* op;
};
void PrintTo(const Param& p, std::ostream* os) { *os << p.op->name; }

std::vector<Param> params(BackendKind kind) {
  const bool sixteen_bit = kind == BackendKind::CudaF16 || kind == BackendKind::CudaBF16;
  std::vector<Param> out;
  for (const OpCase& c : op_cases())
    if (!sixteen_bit || c.per_precision) out.push_back({kind, &c});
  return out;
}
std::string param_name(const ::testing::TestParamInfo<Param>& info) { return info.param.op->name; }

class BackendOps : public ::testing::TestWithParam<Param> {};

TEST_P(BackendOps, MatchesReference) {
  std::string why_not;
  Backend* backend = backend_of(GetParam().backend, &why_not);
  if (!backend) GTEST_SKIP() << why_not;
  GetParam().op->run(*backend);
}

INSTANTIATE_TEST_SUITE_P(cpu, BackendOps, ::testing::ValuesIn(params(BackendKind::Cpu)), param_name);
INSTANTIATE_TEST_SUITE_P(cuda, BackendOps, ::testing::ValuesIn(params(BackendKind::Cuda)), param_name);
INSTANTIATE_TEST_SUITE_P(cuda_f16, BackendOps, ::testing::ValuesIn(params(BackendKind::CudaF16)), param_name);
INSTANTIATE_TEST_SUITE_P(cuda_bf16, BackendOps, ::testing::ValuesIn(params(BackendKind::CudaBF16)), param_name);

}  // namespace
