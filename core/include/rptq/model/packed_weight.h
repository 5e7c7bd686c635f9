#pragma once
// The model's quantized-weight format: codes with one quantizer per group = (output row) x (input column group),
// unpacked (QuantizedWeight: what the weight quantizers of method/weight_quant.h produce) or packed to their bit
// width (PackedWeight: what a model holds, the forward pass computes with and the checkpoint stores), and the
// storable encoding of the weight scales.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rptq/base/dtype.h"
#include "rptq/base/quantizer.h"

namespace rptq {

// Weight scales are kept to 11 significant bits relative to a power of two per output row, so a checkpoint stores
// them exactly as FP16 values plus one exponent per row (half the bytes of float32; plain FP16 would flush the tiny
// scales that channel rescaling gives some rows). The row's exponent puts its largest scale in [2^14, 2^15) of the
// FP16 range; a scale of that row is then half(s * 2^-e) * 2^e (a scale that would round to zero keeps the
// smallest FP16 step). The quantizer rounds its scales this way before computing zero points and codes.
int weight_scale_exponent(float max_scale_of_row);
float storable_weight_scale(float scale, int row_exponent);

// v rounded to the nearest F16 or BF16 value (ties to even) and back to float; F32 returns v. The rounding of a
// dequantized weight whose value dtype is F16 or BF16 (weight_quant.h, WeightFormat).
float round_to_dtype(float v, DType dtype);

struct QuantizedWeight {
  std::int64_t out = 0, in = 0;
  int bits = 0;
  std::vector<std::int64_t> group_boundaries;  // g + 1 column offsets
  std::vector<float> scales, zero_points;      // [out, g]: the quantizer of (row, column group)
  std::vector<std::int8_t> codes;              // [out, in] signed codes (pack them with bitpack for storage)
  DType value_dtype = DType::F32;              // F16 / BF16: every dequantized value is rounded to it

  std::int64_t groups() const { return static_cast<std::int64_t>(group_boundaries.size()) - 1; }
  QuantParams params(std::int64_t row, std::int64_t group) const;
  // w[r, c] = (codes[r, c] - zero_points[r, g]) * scales[r, g], g the group of column c, then rounded to
  // value_dtype. w is [out, in].
  void dequantize(float* w) const;
};

// A quantized weight as a model holds it at run time: the codes packed to their bit width (bitpack.h layout over
// the whole row-major [out, in] matrix, stored unsigned: code + 2^(bits-1)), with the float32 scale and zero point
// of every (row, column group). The forward pass dequantizes it tile by tile of output rows just before the GEMM
// (Model's linear), so the float weights are never resident.
struct PackedWeight {
  std::int64_t out = 0, in = 0;
  int bits = 0;
  std::vector<std::int64_t> group_boundaries;  // g + 1 column offsets
  std::vector<float> scales, zero_points;      // [out, g]
  std::vector<std::uint8_t> codes;             // packed_bytes(out * in, bits)
  DType value_dtype = DType::F32;              // as QuantizedWeight::value_dtype

  static PackedWeight pack(const QuantizedWeight& q);
  QuantizedWeight unpack() const;
  std::int64_t groups() const { return static_cast<std::int64_t>(group_boundaries.size()) - 1; }
  // Rows [r0, r1) dequantized into w[(r1 - r0), in], with exactly QuantizedWeight::dequantize's arithmetic.
  // r0 must be a multiple of 8 (tiles start on a byte boundary of the code stream for every bit width).
  void dequantize_rows(std::int64_t r0, std::int64_t r1, float* w) const;
  void dequantize(float* w) const { dequantize_rows(0, out, w); }
  // Bytes held: the packed codes plus the float32 scales and zero points.
  std::size_t bytes() const { return codes.size() + (scales.size() + zero_points.size()) * sizeof(float); }
  // Checks sizes, bits and boundaries; throws InputError starting with `what`.
  void check(const std::string& what) const;
};

// y[rows, out] = x[rows, in] * W^T (+ bias[out]) (+ y when accumulate), the contract of ops::linear, for a packed
// W: its output rows are dequantized tile by tile (packed_tile_rows) into `scratch`, each tile's GEMM writing its
// columns of y. x has leading dimension ldx; y has out columns.
void packed_linear(const float* x, std::int64_t ldx, std::int64_t rows, const PackedWeight& w, const float* bias,
                   float* y, bool accumulate, std::vector<float>& scratch);
// Output rows per tile: ~16 MiB of float weights when many rows go through (the GEMM keeps its efficiency; the
// linears of small models fit whole), ~1 MiB for up to 64 rows (decoding: the tile stays in cache between its
// dequantization and the GEMV that reads it). A multiple of 8, at least 8.
std::int64_t packed_tile_rows(std::int64_t rows, std::int64_t in, std::int64_t out);

}  // namespace rptq
