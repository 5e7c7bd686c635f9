#include "rptq/method/weight_quant.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <utility>

#include "rptq/model/blas.h"
#include "rptq/base/error.h"

namespace rptq {

namespace {
constexpr std::int64_t kParallelElements = 1 << 14;
// GPTQ's per-column work is independent between output rows, so a block is processed by chunks of rows, each by
// one thread, with the block's columns of the chunk (block x chunk floats) kept in cache.
constexpr std::int64_t kRowChunk = 256;
// Hessian accumulation: rows of H computed per sgemm call (row blocks of the upper triangle: the smaller, the
// fewer products below the diagonal), and the input rows summed in float before they are folded into H in double.
constexpr std::int64_t kHessianRows = 128;
constexpr std::int64_t kHessianFlushRows = 2048;

void check_weight_args(const float* w, std::int64_t out, std::int64_t in, int bits,
                       const std::vector<std::int64_t>& boundaries, const char* what) {
  if (out < 1 || in < 1)
    throw InputError(std::string(what) + ": weight shape must be positive; got [" + std::to_string(out) + ", " +
                     std::to_string(in) + "]");
  if (!w) throw InputError(std::string(what) + ": null weight");
  if (bits < 2 || bits > 8)
    throw InputError(std::string(what) + ": weight bits must be 2..8; got " + std::to_string(bits));
  check_boundaries(boundaries, in, what);
}

// The range search's candidates: the min/max range shrunk by p = 1, 0.99, ..., 0.5 (GPTQ's grid of 100 steps;
// its search goes down to 0.2, but the best shrink of 4-bit weight groups lies far above 0.5).
constexpr int kClipGrid = 100, kClipSteps = 51;

// [mn, mx] shrunk by p: toward 0 when the range holds it (GPTQ's ranges always do), else toward its middle.
std::pair<float, float> shrunk_range(float mn, float mx, float p) {
  const float c = (mn <= 0.0f && mx >= 0.0f) ? 0.0f : 0.5f * (mn + mx);
  return {c + p * (mn - c), c + p * (mx - c)};
}

// The candidate range of one group with the least sum over its columns of importance * (w - fake_quant(w))^2
// (importance 1 without a vector); the first (the unshrunk range) wins ties.
std::pair<float, float> mse_range(const float* wr, std::int64_t c0, std::int64_t c1, const float* importance,
                                  float mn, float mx, int bits, QuantGrid grid) {
  const float lo = static_cast<float>(code_min(bits)), hi = static_cast<float>(code_max(bits));
  double best = std::numeric_limits<double>::infinity();
  std::pair<float, float> best_range{mn, mx};
  for (int i = 0; i < kClipSteps; ++i) {
    const auto [a, b] = shrunk_range(mn, mx, 1.0f - static_cast<float>(i) / kClipGrid);
    const QuantParams p = weight_quant_params(a, b, bits, grid);
    const float s = p.scale, z = p.zero_point;
    float err = 0.0f;
#pragma omp simd reduction(+ : err)
    for (std::int64_t c = c0; c < c1; ++c) {
      float code = round_half_even(wr[c] / s) + z;
      code = code < lo ? lo : code;
      code = code > hi ? hi : code;
      const float e = wr[c] - (code - z) * s;
      err += (importance ? importance[c] : 1.0f) * e * e;
    }
    if (err < best) {
      best = err;
      best_range = {a, b};
    }
  }
  return best_range;
}

// A group scale as it is stored: on the row's grid (F32), or the nearest F16 (never 0, at most its largest finite
// value) or BF16 value.
float stored_scale(float s, int row_exponent, DType dtype) {
  if (dtype == DType::F32) return storable_weight_scale(s, row_exponent);
  if (dtype == DType::BF16) return bf16_to_float(float_to_bf16(s));
  std::uint16_t h = float_to_half(s);
  if ((h & 0x7FFF) == 0) h = 1;          // the smallest subnormal, 2^-24
  if ((h & 0x7FFF) >= 0x7C00) h = 0x7BFF;  // 65504
  return half_to_float(h);
}

// The codes, scales and zero points of (row, group) from the weight's own min/max (or the range search's best
// range); codes left empty.
QuantizedWeight group_quantizers(const float* w, std::int64_t out, std::int64_t in, int bits, QuantGrid grid,
                                 const std::vector<std::int64_t>& boundaries, const char* what,
                                 WeightClip clip, const float* importance, WeightFormat format) {
  check_weight_args(w, out, in, bits, boundaries, what);
  if (format.dtype != DType::F32 && format.dtype != DType::F16 && format.dtype != DType::BF16)
    throw InputError(std::string(what) + ": weight scales must be F32, F16 or BF16; got " +
                     std::string(dtype_name(format.dtype)));
  QuantizedWeight q;
  q.out = out;
  q.in = in;
  q.bits = bits;
  q.group_boundaries = boundaries;
  q.value_dtype = format.dtype;
  const std::int64_t g = q.groups();
  q.scales.resize(static_cast<std::size_t>(out * g));
  q.zero_points.resize(static_cast<std::size_t>(out * g));
  std::vector<float> range_hi(static_cast<std::size_t>(out * g));  // each group's max, until its scale is final
  std::int64_t bad = -1;  // a flat index of a non-finite weight (exceptions must not leave the parallel region)
#pragma omp parallel for schedule(static) if (out * in > kParallelElements)
  for (std::int64_t r = 0; r < out; ++r) {
    const float* wr = w + r * in;
    for (std::int64_t k = 0; k < g; ++k) {
      float mn = 0.0f, mx = 0.0f;  // an empty group: [0, 0]
      bool finite = true;
      if (boundaries[k] < boundaries[k + 1]) {
        mn = std::numeric_limits<float>::infinity();
        mx = -mn;
        for (std::int64_t c = boundaries[k]; c < boundaries[k + 1]; ++c) {
          finite = finite && std::isfinite(wr[c]);
          mn = std::min(mn, wr[c]);
          mx = std::max(mx, wr[c]);
        }
      }
      if (!finite) {
#pragma omp critical
        bad = r * in + boundaries[k];
        mn = mx = 0.0f;
      }
      // A group without a range (one column, or equal weights) takes [min(c, 0), max(c, 0)], as GPTQ's quantizer
      // does for every group: c then sits on the grid's end (exact to an ulp) with an in-range zero point, instead
      // of a floored scale with a zero point of c / 1e-8.
      const bool flat = mn == mx;
      if (flat || format.zero_in_range) {
        mn = std::min(mn, 0.0f);
        mx = std::max(mx, 0.0f);
      }
      if (!flat && clip == WeightClip::Mse) {
        std::tie(mn, mx) = mse_range(wr, boundaries[k], boundaries[k + 1], importance, mn, mx, bits, grid);
      }
      const QuantParams p = weight_quant_params(mn, mx, bits, grid);
      q.scales[static_cast<std::size_t>(r * g + k)] = p.scale;
      // The range is kept in zero_points until the scales are rounded below.
      q.zero_points[static_cast<std::size_t>(r * g + k)] = mn;
      range_hi[static_cast<std::size_t>(r * g + k)] = mx;
    }
    // Scales on the row's storable grid (or values of the format's dtype), then the zero points for those scales.
    float* sr = q.scales.data() + r * g;
    float* zr = q.zero_points.data() + r * g;
    const int e = weight_scale_exponent(*std::max_element(sr, sr + g));
    for (std::int64_t k = 0; k < g; ++k) {
      QuantParams p = quant_params_with_scale(zr[k], range_hi[static_cast<std::size_t>(r * g + k)], bits, grid,
                                              stored_scale(sr[k], e, format.dtype));
      if (format.zero_in_range)
        p.zero_point = std::clamp(p.zero_point, static_cast<float>(code_min(bits)), static_cast<float>(code_max(bits)));
      sr[k] = p.scale;
      zr[k] = p.zero_point;
    }
  }
  if (bad >= 0)
    throw InputError(std::string(what) + ": the weight holds NaN or infinity (row " + std::to_string(bad / in) +
                     ", in the group from column " + std::to_string(bad % in) + ")");
  return q;
}

// The group of each column.
std::vector<std::int32_t> column_groups(const std::vector<std::int64_t>& boundaries, std::int64_t in) {
  std::vector<std::int32_t> gc(static_cast<std::size_t>(in));
  for (std::size_t k = 0; k + 1 < boundaries.size(); ++k)
    for (std::int64_t c = boundaries[k]; c < boundaries[k + 1]; ++c)
      gc[static_cast<std::size_t>(c)] = static_cast<std::int32_t>(k);
  return gc;
}
}  // namespace

QuantParams weight_quant_params(float min, float max, int bits, QuantGrid grid) {
  return quant_params_clamped(min, max, bits, grid, kMinWeightScale, std::numeric_limits<float>::max());
}

std::vector<std::int64_t> fixed_group_boundaries(std::int64_t in, std::int64_t group_size) {
  if (in < 1) throw InputError("group boundaries: the input width must be positive; got " + std::to_string(in));
  if (group_size < 1) throw InputError("weight group size must be positive; got " + std::to_string(group_size));
  std::vector<std::int64_t> b;
  for (std::int64_t c = 0; c < in; c += group_size) b.push_back(c);
  b.push_back(in);
  return b;
}

QuantizedWeight quantize_rtn(const float* w, std::int64_t out, std::int64_t in, int bits, QuantGrid grid,
                             const std::vector<std::int64_t>& group_boundaries, WeightClip clip,
                             std::span<const float> importance, WeightFormat format) {
  if (!importance.empty() && static_cast<std::int64_t>(importance.size()) != in)
    throw InputError("quantize_rtn: " + std::to_string(importance.size()) + " column importances for " +
                     std::to_string(in) + " input columns");
  QuantizedWeight q = group_quantizers(w, out, in, bits, grid, group_boundaries, "quantize_rtn", clip,
                                       importance.empty() ? nullptr : importance.data(), format);
  q.codes.resize(static_cast<std::size_t>(out * in));
  const std::int64_t g = q.groups();
#pragma omp parallel for schedule(static) if (out * in > kParallelElements)
  for (std::int64_t r = 0; r < out; ++r)
    for (std::int64_t k = 0; k < g; ++k) {
      const QuantParams p = q.params(r, k);
      for (std::int64_t c = group_boundaries[k]; c < group_boundaries[k + 1]; ++c)
        q.codes[static_cast<std::size_t>(r * in + c)] = static_cast<std::int8_t>(quantize(w[r * in + c], p));
    }
  return q;
}

HessianAccumulator::HessianAccumulator(std::int64_t in) : in_(in) {
  if (in < 1) throw InputError("Hessian: the input width must be positive; got " + std::to_string(in));
  h_.assign(static_cast<std::size_t>(in * in), 0.0);
}

HessianAccumulator::HessianAccumulator(std::int64_t in, std::vector<double> h, std::int64_t samples)
    : HessianAccumulator(in) {
  if (h.size() != static_cast<std::size_t>(in * in) || samples < 0)
    throw InputError("Hessian: " + std::to_string(h.size()) + " values and " + std::to_string(samples) +
                     " samples cannot be an accumulator of width " + std::to_string(in));
  h_ = std::move(h);
  samples_ = samples;
}

void HessianAccumulator::add(const float* x, std::int64_t rows, std::int64_t ld) {
  if (rows < 0 || ld < in_)
    throw InputError("Hessian: bad input batch (rows " + std::to_string(rows) + ", ld " + std::to_string(ld) +
                     ", width " + std::to_string(in_) + ")");
  if (rows == 0) return;
  if (!x) throw InputError("Hessian: null input batch");
  const std::int64_t n = in_;
  if (pending_.empty()) pending_.assign(static_cast<std::size_t>(n * n), 0.0f);
  const float beta = pending_rows_ > 0 ? 1.0f : 0.0f;
  for (std::int64_t i0 = 0; i0 < n; i0 += kHessianRows) {
    // Rows i0..i1 of X^T X from column i0 on: the upper triangle (and the diagonal block whole), in float.
    const std::int64_t i1 = std::min(n, i0 + kHessianRows), w = n - i0;
    blas::sgemm(true, false, i1 - i0, w, rows, 1.0f, x + i0, ld, x + i0, ld, beta, pending_.data() + i0 * n + i0, n);
  }
  pending_rows_ += rows;
  if (pending_rows_ >= kHessianFlushRows) flush();
}

void HessianAccumulator::flush() const {
  if (pending_rows_ == 0) return;
  // GPTQ's running form: H = N/(N + rows) H + 2/(N + rows) X^T X, so H stays 2/N sum x x^T after every batch.
  const double keep = static_cast<double>(samples_) / static_cast<double>(samples_ + pending_rows_);
  samples_ += pending_rows_;
  pending_rows_ = 0;
  const double a = 2.0 / static_cast<double>(samples_);
  const std::int64_t n = in_;
  // Only j >= i is taken (mirrored by hessian()), so H stays exactly symmetric.
#pragma omp parallel for schedule(dynamic, 16) if (n * n > 2 * kParallelElements)
  for (std::int64_t i = 0; i < n; ++i) {
    const float* si = pending_.data() + i * n;
    double* hi = h_.data() + i * n;
#pragma omp simd
    for (std::int64_t j = i; j < n; ++j) hi[j] = keep * hi[j] + a * static_cast<double>(si[j]);
  }
  lower_stale_ = true;
}

const std::vector<double>& HessianAccumulator::hessian() const {
  flush();
  if (lower_stale_) {
    const std::int64_t n = in_;
    double* h = h_.data();
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = i + 1; j < n; ++j) h[j * n + i] = h[i * n + j];
    lower_stale_ = false;
  }
  return h_;
}

HessianAccumulator HessianAccumulator::permuted(std::span<const std::int32_t> order) const {
  const std::int64_t n = in_;
  if (static_cast<std::int64_t>(order.size()) != n)
    throw InputError("Hessian: a permutation of " + std::to_string(order.size()) +
                     " channels for an accumulator of width " + std::to_string(n));
  std::vector<char> seen(static_cast<std::size_t>(n), 0);
  for (std::int32_t o : order) {
    if (o < 0 || o >= n || seen[static_cast<std::size_t>(o)])
      throw InputError("Hessian: the channel order is not a permutation of 0.." + std::to_string(n - 1));
    seen[static_cast<std::size_t>(o)] = 1;
  }
  const std::vector<double>& h = hessian();
  std::vector<double> p(static_cast<std::size_t>(n * n));
  for (std::int64_t i = 0; i < n; ++i) {
    const double* hi = h.data() + static_cast<std::int64_t>(order[static_cast<std::size_t>(i)]) * n;
    double* pi = p.data() + i * n;
    for (std::int64_t j = 0; j < n; ++j) pi[j] = hi[order[static_cast<std::size_t>(j)]];
  }
  return HessianAccumulator(n, std::move(p), samples());
}

QuantizedWeight quantize_gptq(const float* w, std::int64_t out, std::int64_t in, int bits, QuantGrid grid,
                              const std::vector<std::int64_t>& group_boundaries, const HessianAccumulator& h,
                              int block_size, double damp, WeightClip clip, bool act_order) {
  // The arguments the factor does not see are checked first, so errors come in the order they always did.
  group_quantizers(w, out, in, bits, grid, group_boundaries, "quantize_gptq", WeightClip::MinMax, nullptr, {});
  if (h.in() != in)
    throw InputError("quantize_gptq: the Hessian is " + std::to_string(h.in()) + " wide but the weight has " +
                     std::to_string(in) + " input columns");
  return quantize_gptq(w, out, in, bits, grid, group_boundaries, gptq_factor(h, damp, act_order), block_size, clip);
}

GptqFactor gptq_factor(const HessianAccumulator& h, double damp, bool act_order) {
  if (h.samples() == 0) throw InputError("quantize_gptq: the Hessian has no calibration samples");
  if (!(damp >= 0.0) || !std::isfinite(damp))
    throw InputError("quantize_gptq: dampening must be a finite value >= 0; got " + std::to_string(damp));
  const std::int64_t n = h.in();
  const auto nn = static_cast<std::size_t>(n);
  GptqFactor f;
  f.in = n;
  f.dead.assign(nn, 0);

  const std::vector<double>& H = h.hessian();
  for (double v : H)
    if (!std::isfinite(v))
      throw InputError("quantize_gptq: the Hessian holds NaN or infinity (non-finite calibration inputs?)");
  // The columns' importance (H's diagonal) and their order: as given, or (act-order) by decreasing diagonal with
  // dead inputs counted as 1, as the reference's desc_act (which sets them to 1 before sorting).
  f.importance.resize(nn);
  for (std::int64_t i = 0; i < n; ++i) f.importance[static_cast<std::size_t>(i)] = static_cast<float>(H[i * n + i]);
  std::vector<std::int32_t> order(nn);
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  if (act_order) {
    auto key = [&](std::int32_t c) { return H[c * n + c] == 0.0 ? 1.0 : H[c * n + c]; };
    std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return key(a) > key(b); });
    f.order = order;
  }
  // H in that order with dead inputs set to 1 and the dampening added, in double, rows and columns reversed:
  // R[i][j] = H[o[n-1-i]][o[n-1-j]] (see below).
  std::vector<double> R(nn * nn);
  for (std::int64_t i = 0; i < n; ++i) {
    const double* src = H.data() + static_cast<std::int64_t>(order[static_cast<std::size_t>(n - 1 - i)]) * n;
    double* dst = R.data() + i * n;
    for (std::int64_t j = 0; j < n; ++j) dst[j] = src[order[static_cast<std::size_t>(n - 1 - j)]];
  }
  double mean_diag = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    double& d = R[static_cast<std::size_t>(i * n + i)];
    if (d == 0.0) {
      d = 1.0;
      f.dead[static_cast<std::size_t>(n - 1 - i)] = 1;
    }
    mean_diag += d;
  }
  mean_diag /= static_cast<double>(n);
  for (std::int64_t i = 0; i < n; ++i) R[static_cast<std::size_t>(i * n + i)] += damp * mean_diag;

  // U with H^-1 = U^T U, U upper. With J the reversal, J H J = L L^T (Cholesky, L lower) gives H = (J L J)(J L J)^T
  // where J L J is upper, so H^-1 = U^T U with U = (J L J)^-1 = J L^-1 J: upper with a positive diagonal, hence
  // the factor itself (unique). One Cholesky and one triangular inverse (2/3 n^3), not a Cholesky, an inverse
  // and a second Cholesky (4/3 n^3). On the row-major buffer LAPACK sees the transpose: its column-major 'L'
  // routines leave L (then L^-1) as the row-major upper triangle, element (a, b) of L^-1 at [b][a].
  int info = blas::dpotrf('L', n, R.data(), n);
  const char* why = nullptr;
  if (info == 0 && (info = blas::dtrtri('L', n, R.data(), n)) != 0) why = "inverting the Cholesky factor of";
  if (info != 0) {
    // A failure at column k of the reversed matrix is at column n + 1 - k of H.
    throw InputError(std::string("quantize_gptq: ") + (why ? why : "factoring") + " the Hessian failed at column " +
                     std::to_string(n + 1 - info) + " of " + std::to_string(n) +
                     ": it is not positive definite even after dampening " + std::to_string(damp) +
                     " (degenerate calibration inputs?)");
  }
  f.u.assign(nn * nn, 0.0f);
  // U[i][j] = L^-1(n-1-i, n-1-j) = buffer[(n-1-j)][(n-1-i)] for j >= i.
#pragma omp parallel for schedule(static) if (n * n > kParallelElements)
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = i; j < n; ++j)
      f.u[static_cast<std::size_t>(i * n + j)] = static_cast<float>(R[static_cast<std::size_t>((n - 1 - j) * n + (n - 1 - i))]);
  return f;
}

QuantizedWeight quantize_gptq(const float* w, std::int64_t out, std::int64_t in, int bits, QuantGrid grid,
                              const std::vector<std::int64_t>& group_boundaries, const GptqFactor& f,
                              int block_size, WeightClip clip, WeightFormat format) {
  check_weight_args(w, out, in, bits, group_boundaries, "quantize_gptq");
  if (f.in != in)
    throw InputError("quantize_gptq: the Hessian is " + std::to_string(f.in) + " wide but the weight has " +
                     std::to_string(in) + " input columns");
  // Group quantizers from the original weight, before any update.
  QuantizedWeight q = group_quantizers(w, out, in, bits, grid, group_boundaries, "quantize_gptq", clip,
                                       f.importance.empty() ? nullptr : f.importance.data(), format);
  const DType vt = format.dtype;
  if (block_size < 1)
    throw InputError("quantize_gptq: block size must be positive; got " + std::to_string(block_size));
  const std::int64_t n = in;
  const std::vector<float>& U = f.u;
  const std::vector<char>& dead = f.dead;

  // The working weight, its columns in the factor's order (position c holds column col[c]); dead input columns
  // are zero (their inputs are).
  std::vector<std::int32_t> col(static_cast<std::size_t>(n));
  for (std::int64_t c = 0; c < n; ++c)
    col[static_cast<std::size_t>(c)] = f.order.empty() ? static_cast<std::int32_t>(c) : f.order[static_cast<std::size_t>(c)];
  std::vector<float> W(static_cast<std::size_t>(out * n));
#pragma omp parallel for schedule(static) if (out * n > kParallelElements)
  for (std::int64_t r = 0; r < out; ++r)
    for (std::int64_t c = 0; c < n; ++c)
      W[static_cast<std::size_t>(r * n + c)] = dead[static_cast<std::size_t>(c)] ? 0.0f : w[r * n + col[static_cast<std::size_t>(c)]];

  // Group quantizers transposed to [g, out], so one column's quantizers are contiguous over the rows.
  const std::int64_t g = q.groups();
  std::vector<float> sT(static_cast<std::size_t>(g * out)), zT(static_cast<std::size_t>(g * out));
  for (std::int64_t r = 0; r < out; ++r)
    for (std::int64_t k = 0; k < g; ++k) {
      sT[static_cast<std::size_t>(k * out + r)] = q.scales[static_cast<std::size_t>(r * g + k)];
      zT[static_cast<std::size_t>(k * out + r)] = q.zero_points[static_cast<std::size_t>(r * g + k)];
    }
  std::vector<std::int32_t> group_of = column_groups(group_boundaries, n);
  if (!f.order.empty()) {
    std::vector<std::int32_t> g2(static_cast<std::size_t>(n));
    for (std::int64_t c = 0; c < n; ++c) g2[static_cast<std::size_t>(c)] = group_of[static_cast<std::size_t>(col[static_cast<std::size_t>(c)])];
    group_of = std::move(g2);
  }
  const float lo = static_cast<float>(code_min(bits)), hi = static_cast<float>(code_max(bits));
  q.codes.assign(static_cast<std::size_t>(out * n), 0);

  const std::int64_t B = std::min<std::int64_t>(block_size, n);
  std::vector<float> W1(static_cast<std::size_t>(B * out)), E1(static_cast<std::size_t>(B * out));  // [B, out]
  // Row chunks (rows are independent within a block): at most kRowChunk rows, at least two per thread.
  const std::int64_t threads = std::max(1, omp_get_max_threads());
  const std::int64_t row_chunk =
      std::clamp<std::int64_t>(((out + 2 * threads - 1) / (2 * threads) + 15) & ~std::int64_t{15}, 16, kRowChunk);
  const std::int64_t chunks = (out + row_chunk - 1) / row_chunk;
  for (std::int64_t i1 = 0; i1 < n; i1 += B) {
    const std::int64_t i2 = std::min(n, i1 + B), count = i2 - i1;
#pragma omp parallel for schedule(dynamic, 1) if (out * count > kParallelElements)
    for (std::int64_t ch = 0; ch < chunks; ++ch) {
      const std::int64_t r0 = ch * row_chunk, r1 = std::min(out, r0 + row_chunk), m = r1 - r0;
      // The block's columns of these rows, transposed so the loops below run over contiguous rows.
      for (std::int64_t r = r0; r < r1; ++r)
        for (std::int64_t i = 0; i < count; ++i)
          W1[static_cast<std::size_t>(i * out + r)] = W[static_cast<std::size_t>(r * n + i1 + i)];
      for (std::int64_t i = 0; i < count; ++i) {
        const std::int64_t c = i1 + i;
        const float* urow = U.data() + c * n;
        const float d = urow[c];
        const float* s = sT.data() + group_of[static_cast<std::size_t>(c)] * out + r0;
        const float* z = zT.data() + group_of[static_cast<std::size_t>(c)] * out + r0;
        float* wi = W1.data() + i * out + r0;
        float* ei = E1.data() + i * out + r0;
        std::int8_t* codes = q.codes.data() + col[static_cast<std::size_t>(c)];
        for (std::int64_t r = 0; r < m; ++r) {
          float code = round_half_even(wi[r] / s[r]) + z[r];
          code = code < lo ? lo : code;
          code = code > hi ? hi : code;
          codes[(r0 + r) * n] = static_cast<std::int8_t>(code);
          ei[r] = (wi[r] - (code - z[r]) * s[r]) / d;
        }
        if (vt != DType::F32)  // the error of the weight as it is dequantized: rounded to the value dtype
          for (std::int64_t r = 0; r < m; ++r) {
            const float code = static_cast<float>(codes[(r0 + r) * n]);
            ei[r] = (wi[r] - round_to_dtype((code - z[r]) * s[r], vt)) / d;
          }
        // Spread this column's error over the block's later columns (GPTQ's W1[:, i:] -= err1 Hinv1[i, i:]).
        for (std::int64_t j = i + 1; j < count; ++j) {
          const float u = urow[i1 + j];
          float* wj = W1.data() + j * out + r0;
#pragma omp simd
          for (std::int64_t r = 0; r < m; ++r) wj[r] -= ei[r] * u;
        }
      }
    }
    // The lazy batch update of all later columns: W[:, i2:] -= Err1 Hinv[i1:i2, i2:].
    if (i2 < n)
      blas::sgemm(true, false, out, n - i2, count, -1.0f, E1.data(), out, U.data() + i1 * n + i2, n, 1.0f,
                  W.data() + i2, n);
  }
  return q;
}

}  // namespace rptq
