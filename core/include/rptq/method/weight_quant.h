#pragma once
// Weight quantization: round-to-nearest and GPTQ (Frantar et al. 2022, as in the reference gptq.py; act-order
// and an MSE range search as options), per group = (output row) x (input column group). The column groups are the input clusters of the
// reorder index on the weight's input (after reordering, contiguous ranges), or a fixed group size. They produce
// a QuantizedWeight, the unpacked form of the model's weight format (model/packed_weight.h).
//
// A group's quantizer comes from the min and max of its weights with the grid of quantizer.h (Exact or
// Reference). Unlike activations (clamped to [1e-4, 1e4], the reference's activation convention) the weight scale
// is only floored, at kMinWeightScale, so an all-zero group does not divide by zero. min <= 0 <= max is not forced,
// except for a group without a range (min == max: a single column or equal weights), which takes [min(c, 0),
// max(c, 0)] so that its value lies on the grid's end with a zero point inside the code range.
#include <cstdint>
#include <span>
#include <vector>

#include "rptq/method/quant_config.h"
#include "rptq/base/quantizer.h"
#include "rptq/model/packed_weight.h"

namespace rptq {

constexpr float kMinWeightScale = 1e-8f;

// How a weight's scales are stored and what its dequantized value is (QuantizedWeight::value_dtype).
//  dtype F32 (RPTQ's checkpoint): scales on the row-exponent FP16 grid of packed_weight.h, exact in float32, and
//    w = (code - zp) * scale in float.
//  dtype F16 / BF16 (a serving format, QuantConfig::scale_dtype): each scale is a value of that dtype (F16: at
//    least its smallest subnormal, 2^-24; never 0) and w = (code - zp) * scale rounded to it, which is what
//    compressed-tensors' decompression computes in the scale's dtype.
//  zero_in_range: every group's range is [min(min, 0), max(max, 0)] and the zero point is clamped to the code
//    range, so it can be stored as a code (compressed-tensors' and GPTQ's convention).
struct WeightFormat {
  DType dtype = DType::F32;
  bool zero_in_range = false;
};

// The quantizer of one weight group with range [min, max] (quant_params with the weight scale floor).
QuantParams weight_quant_params(float min, float max, int bits, QuantGrid grid);

// Boundaries of fixed-size column groups: 0, size, 2 size, ..., in (the last group may be shorter).
// Throws InputError when in < 1 or group_size < 1.
std::vector<std::int64_t> fixed_group_boundaries(std::int64_t in, std::int64_t group_size);

// Round to nearest: every weight by its group's quantizer. w is [out, in] row-major (nn.Linear's layout).
// With WeightClip::Mse a group's range is the one of min/max shrunk by p = 1, 0.99, ..., 0.5 (toward 0, which
// weight groups' ranges hold, else toward their middle) whose quantization error sum importance[c] * e^2 over the
// group is least (importance empty: 1 for every column); GPTQ passes its Hessian diagonal.
// Throws InputError on bad sizes, bits outside 2..8, bad boundaries, an importance of another width or a
// non-finite weight.
QuantizedWeight quantize_rtn(const float* w, std::int64_t out, std::int64_t in, int bits, QuantGrid grid,
                             const std::vector<std::int64_t>& group_boundaries,
                             WeightClip clip = WeightClip::MinMax, std::span<const float> importance = {},
                             WeightFormat format = {});

// The Hessian of a layer's reconstruction loss in its input: H = 2/N sum x x^T over the N input rows seen,
// accumulated batch by batch as GPTQ does (H *= N / (N + rows); N += rows; H += 2/N X^T X). Held in double.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(std::int64_t in);  // throws InputError when in < 1
  // One holding H ([in, in] row-major, symmetric) and N as accumulated elsewhere (the GPU's cuda::hessian_add).
  HessianAccumulator(std::int64_t in, std::vector<double> h, std::int64_t samples);
  // Adds rows input vectors x[rows, in] with row stride ld >= in.
  void add(const float* x, std::int64_t rows, std::int64_t ld);
  std::int64_t in() const { return in_; }
  std::int64_t samples() const { return samples_ + pending_rows_; }  // N, the rows added so far
  const std::vector<double>& hessian() const;  // [in, in] row-major, symmetric
  // The Hessian of the same inputs with their columns permuted: H'[i][j] = H[order[i]][order[j]] (the input of a
  // linear whose input channels were reordered so that new channel i is old channel order[i]).
  HessianAccumulator permuted(std::span<const std::int32_t> order) const;

 private:
  void flush() const;
  std::int64_t in_ = 0;
  // add() sums X^T X of the batches in float (pending_, the upper triangle by row blocks) and folds that into H
  // in double (GPTQ's running form) every few thousand rows; h_ is kept as its upper triangle and hessian()
  // mirrors it into the lower one.
  mutable std::int64_t samples_ = 0, pending_rows_ = 0;
  mutable std::vector<double> h_;
  mutable std::vector<float> pending_;
  mutable bool lower_stale_ = false;
};

// GPTQ: columns are quantized left to right, each with its group's quantizer, and each column's rounding error is
// spread over the columns not yet quantized through the upper Cholesky factor of H^-1 (lazy batch updates over
// blocks of block_size columns). The group quantizers come from the original weight, before any GPTQ update (as
// the reference). Dead inputs (H_ii == 0) get H_ii = 1 and their weight columns are quantized as 0; then
// damp * mean(diag H) is added to the diagonal. Throws InputError on bad arguments, an accumulator with no samples
// or of another width, or when H is not positive definite even after dampening.
QuantizedWeight quantize_gptq(const float* w, std::int64_t out, std::int64_t in, int bits, QuantGrid grid,
                              const std::vector<std::int64_t>& group_boundaries, const HessianAccumulator& h,
                              int block_size = 128, double damp = 0.01, WeightClip clip = WeightClip::MinMax,
                              bool act_order = false);

// What GPTQ needs of a Hessian, computed once for every linear that reads the same input (q, k and v; gate and
// up): the column order (act-order: GPTQ's desc_act, columns by decreasing H_ii, dead inputs counted as 1, ties
// in column order; else the given order), U, the upper Cholesky factor of (H dampened)^-1 with H's rows and
// columns in that order (H^-1 = U^T U, [in, in] row-major, float), the dead inputs (by position in that order),
// and H's diagonal by column (the importance of the MSE range search). Throws InputError as quantize_gptq.
// Act-order changes only the order in which columns are quantized and compensated: a column keeps its group and
// the group quantizers still come from the original weight.
struct GptqFactor {
  std::int64_t in = 0;
  std::vector<std::int32_t> order;  // empty: 0, 1, ..., in - 1
  std::vector<float> u;
  std::vector<char> dead;
  std::vector<float> importance;
};
GptqFactor gptq_factor(const HessianAccumulator& h, double damp = 0.01, bool act_order = false);
QuantizedWeight quantize_gptq(const float* w, std::int64_t out, std::int64_t in, int bits, QuantGrid grid,
                              const std::vector<std::int64_t>& group_boundaries, const GptqFactor& f,
                              int block_size = 128, WeightClip clip = WeightClip::MinMax, WeightFormat format = {});

}  // namespace rptq
