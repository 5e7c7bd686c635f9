#pragma once
// Asymmetric uniform quantization of activations, as RPTQ uses it: one (scale, zero point) per cluster of
// contiguous channels (docs: rptq-method.md, "Quantizer conventions of the reference code").
//
// Codes are signed, q in [-2^(n-1), 2^(n-1) - 1]; q = clamp(round(x / scale) + zp, ...), x ~ (q - zp) * scale.
// Rounding is round-half-to-even, like torch.round (std::nearbyint under the default rounding mode), everywhere
// here: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0.
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "rptq/method/quant_config.h"

namespace rptq {

struct QuantParams {
  float scale = 1.0f;
  float zero_point = 0.0f;  // an integer value held in a float (it may lie outside the code range)
  int bits = 8;
};

// Limits of the activation scale, as the reference code clamps it.
constexpr float kMinActScale = 1e-4f, kMaxActScale = 1e4f;

// The quantizer of the range [min, max] with `bits` (2..8) bits. min <= 0 <= max is not required (the channels of
// one cluster may be all positive); min == max is fine (the scale is then the lower clamp).
//   Exact (default): scale = (max - min) / (2^n - 1), zp = round(-2^(n-1) - min / scale): min -> -2^(n-1),
//                    max -> 2^(n-1) - 1 (or one below when min / scale is half-way between integers), and
//                    |fake_quant(x) - x| <= scale / 2 on [min, max].
//   Reference:       scale = (max - min) / 2^n, zp = round(-(max + min) / (2 * scale)), as the RPTQ reference:
//                    the grid is one step short. Its top point t = (2^(n-1) - 1 - zp) * scale lies 0.5 to 1.5
//                    steps below max (exactly one when zp needs no rounding), and x > t saturates there with
//                    error x - t (up to 1.5 steps); elsewhere on [min, max] the error is <= scale / 2.
// Both clamp the scale to [kMinActScale, kMaxActScale]. Arithmetic is float, as the reference's.
// Throws InputError for bits outside 2..8, a non-finite bound or min > max.
QuantParams quant_params(float min, float max, int bits, QuantGrid grid);

// The same formulas with the scale clamped to [scale_min, scale_max] (weights use [1e-8, inf): weight_quant.h).
QuantParams quant_params_clamped(float min, float max, int bits, QuantGrid grid, float scale_min, float scale_max);
// The zero point those formulas give for [min, max] with a scale chosen by the caller (a scale rounded for storage).
QuantParams quant_params_with_scale(float min, float max, int bits, QuantGrid grid, float scale);

inline std::int32_t code_min(int bits) { return -(1 << (bits - 1)); }
inline std::int32_t code_max(int bits) { return (1 << (bits - 1)) - 1; }

// Round half to even for any finite float, written without a libm call so loops over it vectorise.
inline float round_half_even(float v) {
  // Adding 2^23 to |v| < 2^23 leaves no fraction bits, so the FPU's round-to-nearest-even does the rounding;
  // |v| >= 2^23 is already an integer. Both sides are computed before the select, so GCC if-converts it.
  const float a = std::fabs(v);
  const float r = (a + 8388608.0f) - 8388608.0f;
  return std::copysign(a < 8388608.0f ? r : a, v);
}

std::int32_t quantize(float x, const QuantParams& p);
float dequantize(std::int32_t q, const QuantParams& p);  // (q - zp) * scale
float fake_quant(float x, const QuantParams& p);         // dequantize(quantize(x))

// Each cluster's quantizer from per-channel ranges: cluster c covers channels [boundaries[c], boundaries[c + 1])
// and its range is the min of their minima and the max of their maxima (an empty cluster gets [0, 0]).
std::vector<QuantParams> cluster_params(std::span<const float> channel_min, std::span<const float> channel_max,
                                        const std::vector<std::int64_t>& boundaries, int bits, QuantGrid grid);

// Checks that boundaries are g + 1 >= 2 non-decreasing channel offsets from 0 to cols (an empty cluster is
// allowed: k-means may leave one). Throws InputError naming `what`.
void check_boundaries(const std::vector<std::int64_t>& boundaries, std::int64_t cols, const char* what);

// Per-cluster fake quantization, in place, of x[rows, cols] (row-major, row stride ld >= cols): channel j of
// cluster c is replaced by fake_quant(x, params[c]). Static: one QuantParams per cluster (from calibration).
// Parallel over rows.
void fake_quant_clusters(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                         const std::vector<std::int64_t>& boundaries, const std::vector<QuantParams>& params);

// Dynamic: each cluster's range is first taken over these rows (all of them), then applied as above.
// Returns the parameters used, one per cluster. rows == 0 does nothing and returns the params of [0, 0].
std::vector<QuantParams> fake_quant_clusters_dynamic(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                                     const std::vector<std::int64_t>& boundaries, int bits,
                                                     QuantGrid grid);

// Per token: each row's clusters get their own range (that row's min and max over the cluster's channels): the
// dynamic quantizer applied to every row alone. Throws InputError on a non-finite value.
void fake_quant_clusters_per_token(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                   const std::vector<std::int64_t>& boundaries, int bits, QuantGrid grid);

// Softmax probabilities on the fixed 8-bit grid of [0, 1], in place: p -> round(clamp(p, 0, 1) * 255) / 255,
// whatever the other settings (the reference's convention).
void fake_quant_softmax(std::span<float> p);
// The same over a [rows, cols] matrix with row stride ld.
void fake_quant_softmax(float* p, std::int64_t rows, std::int64_t cols, std::int64_t ld);

// FP8 E4M3 ("e4m3fn": 4 exponent bits, bias 7, 3 fraction bits, no infinities; largest 448, smallest subnormal
// 2^-9), the format of an engine's FP8 KV cache: v rounded to the nearest such value (ties to even), saturating
// at +-448. NaN stays NaN.
constexpr float kFp8E4m3Max = 448.0f;
float round_to_e4m3(float v);

// An FP8 KV cache as an engine stores it, simulated in place on x[rows, cols] (row stride ld): channel c, in head
// c / head_dim, becomes round_to_e4m3(x / s) * s with s = scales[head] (one scale: every head). Throws
// InputError when the scales are neither one nor cols / head_dim, or a scale is not positive and finite.
void fake_quant_fp8(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, const std::vector<float>& scales,
                    std::int64_t head_dim);

}  // namespace rptq
