#pragma once
// Linear layers with packed n-bit weights on the GPU: y = x * W^T where W [out, in] is stored as RPTQ stores a
// QuantizedWeight: its signed codes, + 2^(bits-1), packed with rptq/bitpack.h over the whole row-major [out, in]
// matrix as one bit stream (code of (r, c) is value r * in + c), and one float32 scale and zero point per
// (output row, column group), groups given by int32 column boundaries. W's value is QuantizedWeight::dequantize's:
//   w[r, c] = (code[r, c] - zero_points[r, g]) * scales[r, g],  g the group of column c.
// Two paths:
//   packed_linear  dequantizes W a tile of output rows at a time into the BlasHandle's scratch (float32, or half /
//                  bfloat16 for the tensor cores) and runs the cuBLAS product of gemm.cuh on each tile.
//   packed_gemv    a fused kernel for decode (rows <= 8): reads the codes once, dequantizes in registers and
//                  accumulates in float32; no scratch, no cuBLAS.
// Both follow ops::linear's contract for bias and accumulate. Asynchronous on the handle's / given stream; shapes
// are checked (std::invalid_argument) before any CUDA call. Plain host header: safe to include from .cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "device.cuh"
#include "gemm.cuh"
#include "host_device.cuh"

namespace rptq::cuda {

// The dtype a dequantized value is rounded to: float (RPTQ's weights) or, for a serving format whose scales are
// FP16 / BF16, that dtype (rptq::WeightFormat).
constexpr int kValueF32 = 0, kValueF16 = 1, kValueBF16 = 2;

// A packed weight on the device (pointers not owned).
struct PackedWeightView {
  const std::uint8_t* codes = nullptr;             // bitpack_bytes(out * in, bits) bytes
  std::int64_t out = 0, in = 0;
  int bits = 0;                                    // 2..8
  const float* scales = nullptr;                   // [out, groups]
  const float* zero_points = nullptr;              // [out, groups]
  const std::int32_t* group_boundaries = nullptr;  // groups + 1 column offsets from 0 to in, non-decreasing
  std::int64_t groups = 0;
  int value_dtype = kValueF32;                     // every value rounded to it (rptq::PackedWeight::value_dtype)
};

// Owning device copy.
struct PackedWeight {
  std::int64_t out = 0, in = 0, groups = 0;
  int bits = 0;
  int value_dtype = kValueF32;
  DeviceBuffer<std::uint8_t> codes;
  DeviceBuffer<float> scales, zero_points;
  DeviceBuffer<std::int32_t> group_boundaries;
  PackedWeightView view() const;
};
// Checks sizes and boundaries as QuantizedWeight's users do (std::invalid_argument, no CUDA call), then uploads.
// packed holds rptq::pack_signed(codes, out * in, bits) bytes.
void check_packed_weight(std::size_t packed_size, std::int64_t out, std::int64_t in, int bits,
                         const std::vector<std::int64_t>& group_boundaries, std::size_t scales_size,
                         std::size_t zero_points_size);
PackedWeight upload_packed_weight(const std::vector<std::uint8_t>& packed, std::int64_t out, std::int64_t in, int bits,
                                  const std::vector<std::int64_t>& group_boundaries, const std::vector<float>& scales,
                                  const std::vector<float>& zero_points, int value_dtype = kValueF32);

// Rows [row0, row0 + rows) of W, dequantized into dense dst [rows, in]. The float values are exactly
// QuantizedWeight::dequantize's; half / bfloat16 are those rounded to nearest even.
void dequantize(const PackedWeightView& w, std::int64_t row0, std::int64_t rows, float* dst, cudaStream_t stream = 0);
void dequantize(const PackedWeightView& w, std::int64_t row0, std::int64_t rows, __half* dst,
                cudaStream_t stream = 0);
void dequantize(const PackedWeightView& w, std::int64_t row0, std::int64_t rows, __nv_bfloat16* dst,
                cudaStream_t stream = 0);

// y[rows, w.out] = x[rows, w.in] * W^T (+ bias) (+ y). tile_rows: output rows dequantized per cuBLAS call (0: as
// many as fit in 64 MiB of scratch). With FP16 / BF16 inputs x is rounded to that type once, into scratch too.
void packed_linear(BlasHandle& blas, const float* x, std::int64_t ldx, std::int64_t rows, const PackedWeightView& w,
                   const float* bias, float* y, bool accumulate = false, GemmInputs inputs = GemmInputs::FP32,
                   std::int64_t tile_rows = 0);

constexpr std::int64_t kPackedGemvMaxRows = 8;
void packed_gemv(const float* x, std::int64_t ldx, std::int64_t rows, const PackedWeightView& w, const float* bias,
                 float* y, bool accumulate = false, cudaStream_t stream = 0);

// The value of a stored code: (signed code - zero) * scale, rounded as QuantizedWeight::dequantize (to FP16 or
// BF16 after the product for those value dtypes).
RPTQ_HD float packed_weight_value(std::uint32_t stored, float scale, float zero, int bits, int value_dtype = kValueF32) {
  const float q = static_cast<float>(static_cast<std::int32_t>(stored) - (1 << (bits - 1)));
  const float v = hd::mul(hd::sub(q, zero), scale);
  return value_dtype == kValueF16 ? hd::round_to_half(v) : value_dtype == kValueBF16 ? hd::round_to_bf16(v) : v;
}

}  // namespace rptq::cuda
