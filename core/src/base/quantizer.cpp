#include "rptq/base/quantizer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "model/cpu_dispatch.h"
#include "rptq/base/error.h"

namespace rptq {

namespace {
using cpu::kParallelElements;

// One quantizer in the form the inner loops use: the code range as floats, so a row is quantized and
// dequantized without leaving float registers.
struct Lane {
  float scale, zp, lo, hi;
};

Lane lane(const QuantParams& p) {
  return {p.scale, p.zero_point, static_cast<float>(code_min(p.bits)), static_cast<float>(code_max(p.bits))};
}

// The code as a float. A NaN input stays NaN (the comparisons are false), so fake quantization never hides one.
inline float code_of(float x, const Lane& l) {
  float q = round_half_even(x / l.scale) + l.zp;
  q = q < l.lo ? l.lo : q;
  q = q > l.hi ? l.hi : q;
  return q;
}

RPTQ_VECTOR_CLONES void fake_quant_run(float* x, std::int64_t n, Lane l) {
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) x[j] = (code_of(x[j], l) - l.zp) * l.scale;
}

RPTQ_VECTOR_CLONES void min_max_run(const float* x, std::int64_t n, float* mn, float* mx) {
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) {
    mn[j] = x[j] < mn[j] ? x[j] : mn[j];
    mx[j] = x[j] > mx[j] ? x[j] : mx[j];
  }
}

RPTQ_VECTOR_CLONES void softmax_run(float* p, std::int64_t n) {
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) {
    float v = p[j] < 0.0f ? 0.0f : p[j];
    v = v > 1.0f ? 1.0f : v;
    p[j] = round_half_even(v * 255.0f) / 255.0f;
  }
}

void check_bits(int bits) {
  if (bits < 2 || bits > 8) throw InputError("quantizer bits must be 2..8; got " + std::to_string(bits));
}

void check_matrix(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, const char* what) {
  if (rows < 0 || cols < 0 || ld < cols)
    throw InputError(std::string(what) + ": bad matrix shape rows " + std::to_string(rows) + ", cols " +
                     std::to_string(cols) + ", ld " + std::to_string(ld));
  if (!x && rows > 0 && cols > 0) throw InputError(std::string(what) + ": null data");
}
}  // namespace

QuantParams quant_params_clamped(float min, float max, int bits, QuantGrid grid, float scale_min, float scale_max) {
  check_bits(bits);
  if (!std::isfinite(min) || !std::isfinite(max) || min > max)
    throw InputError("quantizer range must be finite with min <= max; got [" + std::to_string(min) + ", " +
                     std::to_string(max) + "]");
  const float levels = static_cast<float>(1 << bits);
  const float scale = grid == QuantGrid::Reference ? std::clamp((max - min) / levels, scale_min, scale_max)
                                                   : std::clamp((max - min) / (levels - 1.0f), scale_min, scale_max);
  return quant_params_with_scale(min, max, bits, grid, scale);
}

QuantParams quant_params_with_scale(float min, float max, int bits, QuantGrid grid, float scale) {
  check_bits(bits);
  const float levels = static_cast<float>(1 << bits);
  QuantParams p;
  p.bits = bits;
  p.scale = scale;
  if (grid == QuantGrid::Reference)
    p.zero_point = round_half_even(-(max + min) / (2.0f * p.scale));
  else
    p.zero_point = round_half_even(-levels / 2.0f - min / p.scale);
  return p;
}

QuantParams quant_params(float min, float max, int bits, QuantGrid grid) {
  return quant_params_clamped(min, max, bits, grid, kMinActScale, kMaxActScale);
}

std::int32_t quantize(float x, const QuantParams& p) {
  const float q = code_of(x, lane(p));
  return q == q ? static_cast<std::int32_t>(q) : code_min(p.bits);  // NaN: the lowest code
}

float dequantize(std::int32_t q, const QuantParams& p) { return (static_cast<float>(q) - p.zero_point) * p.scale; }

float fake_quant(float x, const QuantParams& p) {
  const Lane l = lane(p);
  return (code_of(x, l) - l.zp) * l.scale;
}

void check_boundaries(const std::vector<std::int64_t>& b, std::int64_t cols, const char* what) {
  if (b.size() < 2 || b.front() != 0 || b.back() != cols)
    throw InputError(std::string(what) + ": cluster boundaries must run from 0 to " + std::to_string(cols) +
                     " (g + 1 offsets); got " + std::to_string(b.size()) + " offsets" +
                     (b.empty() ? std::string() : " from " + std::to_string(b.front()) + " to " +
                                                      std::to_string(b.back())));
  for (std::size_t i = 1; i < b.size(); ++i)
    if (b[i] < b[i - 1])
      throw InputError(std::string(what) + ": cluster boundaries must not decrease; offset " + std::to_string(i) +
                       " is " + std::to_string(b[i]) + " after " + std::to_string(b[i - 1]));
}

std::vector<QuantParams> cluster_params(std::span<const float> channel_min, std::span<const float> channel_max,
                                        const std::vector<std::int64_t>& boundaries, int bits, QuantGrid grid) {
  if (channel_min.size() != channel_max.size())
    throw InputError("cluster_params: " + std::to_string(channel_min.size()) + " channel minima but " +
                     std::to_string(channel_max.size()) + " maxima");
  check_boundaries(boundaries, static_cast<std::int64_t>(channel_min.size()), "cluster_params");
  std::vector<QuantParams> out;
  out.reserve(boundaries.size() - 1);
  for (std::size_t c = 0; c + 1 < boundaries.size(); ++c) {
    float mn = 0.0f, mx = 0.0f;
    if (boundaries[c] < boundaries[c + 1]) {
      mn = std::numeric_limits<float>::infinity();
      mx = -mn;
      for (std::int64_t j = boundaries[c]; j < boundaries[c + 1]; ++j) {
        mn = std::min(mn, channel_min[static_cast<std::size_t>(j)]);
        mx = std::max(mx, channel_max[static_cast<std::size_t>(j)]);
      }
    }
    out.push_back(quant_params(mn, mx, bits, grid));
  }
  return out;
}

void fake_quant_clusters(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                         const std::vector<std::int64_t>& boundaries, const std::vector<QuantParams>& params) {
  check_matrix(x, rows, cols, ld, "fake_quant_clusters");
  check_boundaries(boundaries, cols, "fake_quant_clusters");
  if (params.size() + 1 != boundaries.size())
    throw InputError("fake_quant_clusters: " + std::to_string(boundaries.size() - 1) + " clusters but " +
                     std::to_string(params.size()) + " quantizers");
  std::vector<Lane> lanes;
  lanes.reserve(params.size());
  for (const QuantParams& p : params) {
    check_bits(p.bits);
    if (!(p.scale > 0.0f) || !std::isfinite(p.scale) || !std::isfinite(p.zero_point))
      throw InputError("fake_quant_clusters: a cluster's scale must be positive and finite; got " +
                       std::to_string(p.scale));
    lanes.push_back(lane(p));
  }
  const std::int64_t g = static_cast<std::int64_t>(lanes.size());
#pragma omp parallel for schedule(static) if (rows * cols > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * ld;
    for (std::int64_t c = 0; c < g; ++c)
      fake_quant_run(xr + boundaries[c], boundaries[c + 1] - boundaries[c], lanes[static_cast<std::size_t>(c)]);
  }
}

std::vector<QuantParams> fake_quant_clusters_dynamic(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                                     const std::vector<std::int64_t>& boundaries, int bits,
                                                     QuantGrid grid) {
  check_bits(bits);
  check_matrix(x, rows, cols, ld, "fake_quant_clusters_dynamic");
  check_boundaries(boundaries, cols, "fake_quant_clusters_dynamic");
  const auto n = static_cast<std::size_t>(cols);
  std::vector<float> mn(n, 0.0f), mx(n, 0.0f);
  if (rows > 0) {
    std::fill(mn.begin(), mn.end(), std::numeric_limits<float>::infinity());
    std::fill(mx.begin(), mx.end(), -std::numeric_limits<float>::infinity());
    // Per-channel ranges: each thread reduces its rows into its own arrays, merged once at the end.
#pragma omp parallel if (rows * cols > kParallelElements)
    {
      std::vector<float> tmn(mn), tmx(mx);
#pragma omp for schedule(static) nowait
      for (std::int64_t r = 0; r < rows; ++r) min_max_run(x + r * ld, cols, tmn.data(), tmx.data());
#pragma omp critical
      for (std::size_t j = 0; j < n; ++j) {
        mn[j] = std::min(mn[j], tmn[j]);
        mx[j] = std::max(mx[j], tmx[j]);
      }
    }
  }
  for (std::size_t j = 0; j < n; ++j)
    if (!std::isfinite(mn[j]) || !std::isfinite(mx[j]))
      throw InputError("fake_quant_clusters_dynamic: channel " + std::to_string(j) +
                       " holds a non-finite value (NaN or infinity)");
  std::vector<QuantParams> params = cluster_params(mn, mx, boundaries, bits, grid);
  fake_quant_clusters(x, rows, cols, ld, boundaries, params);
  return params;
}

void fake_quant_clusters_per_token(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                   const std::vector<std::int64_t>& boundaries, int bits, QuantGrid grid) {
  check_bits(bits);
  check_matrix(x, rows, cols, ld, "fake_quant_clusters_per_token");
  check_boundaries(boundaries, cols, "fake_quant_clusters_per_token");
  const auto g = static_cast<std::int64_t>(boundaries.size()) - 1;
  std::int64_t bad_row = -1;
#pragma omp parallel if (rows * cols > kParallelElements)
  {
    std::vector<float> row(static_cast<std::size_t>(cols));
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      float* xr = x + r * ld;
      bool finite = true;
      for (std::int64_t j = 0; j < cols; ++j) finite = finite && std::isfinite(xr[j]);
      if (!finite) {
#pragma omp critical
        bad_row = bad_row < 0 ? r : std::min(bad_row, r);
        continue;
      }
      std::copy_n(xr, cols, row.data());
      const std::vector<QuantParams> params = cluster_params(row, row, boundaries, bits, grid);
      for (std::int64_t c = 0; c < g; ++c) {
        fake_quant_run(xr + boundaries[c], boundaries[c + 1] - boundaries[c], lane(params[static_cast<std::size_t>(c)]));
      }
    }
  }
  if (bad_row >= 0)
    throw InputError("fake_quant_clusters_per_token: row " + std::to_string(bad_row) +
                     " holds a non-finite value (NaN or infinity)");
}

void fake_quant_softmax(std::span<float> p) { softmax_run(p.data(), static_cast<std::int64_t>(p.size())); }

void fake_quant_softmax(float* p, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  check_matrix(p, rows, cols, ld, "fake_quant_softmax");
#pragma omp parallel for schedule(static) if (rows * cols > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r) softmax_run(p + r * ld, cols);
}

float round_to_e4m3(float v) {
  if (std::isnan(v)) return v;
  const float a = std::fabs(v);
  if (a >= kFp8E4m3Max) return std::copysign(kFp8E4m3Max, v);  // saturate (448 + half a step would round up)
  float r;
  if (a < 0.015625f) {  // below 2^-6: subnormal, a multiple of 2^-9 (scaling by powers of two is exact)
    r = round_half_even(a * 512.0f) / 512.0f;
  } else {  // normal: 3 fraction bits, rounded to nearest even on the float's bits
    std::uint32_t u;
    std::memcpy(&u, &a, sizeof u);
    u += 0x7FFFFu + ((u >> 20) & 1u);
    u &= ~0xFFFFFu;
    std::memcpy(&r, &u, sizeof r);
    if (r > kFp8E4m3Max) r = kFp8E4m3Max;
  }
  return std::copysign(r, v);
}

void fake_quant_fp8(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, const std::vector<float>& scales,
                    std::int64_t head_dim) {
  check_matrix(x, rows, cols, ld, "fake_quant_fp8");
  if (head_dim < 1 || cols % head_dim != 0 ||
      (scales.size() != 1 && static_cast<std::int64_t>(scales.size()) != cols / head_dim))
    throw InputError("fake_quant_fp8: " + std::to_string(scales.size()) + " scales for " + std::to_string(cols) +
                     " channels of heads of " + std::to_string(head_dim));
  for (float s : scales)
    if (!(s > 0.0f) || !std::isfinite(s)) throw InputError("fake_quant_fp8: a scale is not positive and finite");
#pragma omp parallel for schedule(static) if (rows * cols > kParallelElements)
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const float s = scales[scales.size() == 1 ? 0 : static_cast<std::size_t>(c / head_dim)];
      float& v = x[r * ld + c];
      v = round_to_e4m3(v / s) * s;
    }
}

}  // namespace rptq
