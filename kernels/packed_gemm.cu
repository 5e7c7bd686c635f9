// Packed-weight linear layers.
//   dequantize: threads on consecutive columns, blocks of grid y on row slices; each thread finds its column's
//     group once (binary search) and walks its rows, reading the code (one or two bytes of the stream), the row's
//     scale / zero point of that group (the same for neighbouring threads: broadcasts) and writing one value.
//   packed_linear: output-row tiles dequantized into scratch then one cuBLAS product each, with y's columns of
//     the tile as the product's output (ldy = out). The full-precision matrix never exists, only one tile of it.
//   packed_gemv: one warp per output row; lanes take 4 consecutive columns at a time (a warp covers 128 columns
//     per step), decode their codes, dequantize with the group's scale / zero point (the group moves forward with
//     the columns, so no search) and accumulate w * x for every input row in registers; a warp shuffle adds the
//     lanes at the end. Codes are read once: the layer's bytes are the floor of a decode step.
#include "packed_gemm.cuh"

#include <algorithm>
#include <string>
#include <type_traits>

#include "cuda_check.cuh"
#include "elementwise.cuh"
#include "fake_quant.cuh"
#include "kv_pack.cuh"
#include "reduce.cuh"

namespace rptq::cuda {

namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kRowsPerSlice = 16;
constexpr std::size_t kDefaultTileBytes = std::size_t{64} << 20;
constexpr int kGemvWarps = 4;
constexpr int kGemvColumnsPerLane = 4;

template <typename T>
__device__ __forceinline__ T store_as(float v);
template <>
__device__ __forceinline__ float store_as<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half store_as<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 store_as<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__global__ void dequantize_kernel(PackedWeightView w, std::int64_t row0, std::int64_t rows,
                                  std::int64_t rows_per_block, T* __restrict__ dst) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= w.in) return;
  const int k = cluster_of(w.group_boundaries, static_cast<int>(w.groups), c);
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * rows_per_block;
  const std::int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::int64_t row = row0 + r;
    const std::int64_t g = row * w.groups + k;
    const float v = packed_weight_value(bitpack_get(w.codes, row * w.in + c, w.bits), w.scales[g],
                                        w.zero_points[g], w.bits, w.value_dtype);
    dst[r * w.in + c] = store_as<T>(v);
  }
}

__global__ void __launch_bounds__(kGemvWarps * kWarpSize)
    packed_gemv_kernel(const float* __restrict__ x, std::int64_t ldx, int rows, PackedWeightView w,
                       const float* __restrict__ bias, float* y, bool accumulate) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  for (std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * kGemvWarps + warp; o < w.out;
       o += static_cast<std::int64_t>(gridDim.x) * kGemvWarps) {
    float acc[kPackedGemvMaxRows];
#pragma unroll
    for (int r = 0; r < kPackedGemvMaxRows; ++r) acc[r] = 0.0f;
    const std::int64_t base = o * w.in;
    int k = 0;  // this lane's current group
    std::int64_t group_end = w.group_boundaries[1];
    for (std::int64_t c0 = static_cast<std::int64_t>(lane) * kGemvColumnsPerLane; c0 < w.in;
         c0 += kWarpSize * kGemvColumnsPerLane) {
#pragma unroll
      for (int i = 0; i < kGemvColumnsPerLane; ++i) {
        const std::int64_t c = c0 + i;
        if (c >= w.in) break;
        while (c >= group_end) group_end = w.group_boundaries[++k + 1];  // skips empty groups too
        const float wv = packed_weight_value(bitpack_get(w.codes, base + c, w.bits), w.scales[o * w.groups + k],
                                             w.zero_points[o * w.groups + k], w.bits, w.value_dtype);
#pragma unroll
        for (int r = 0; r < kPackedGemvMaxRows; ++r)
          if (r < rows) acc[r] += x[r * ldx + c] * wv;
      }
    }
#pragma unroll
    for (int r = 0; r < kPackedGemvMaxRows; ++r) {
      if (r >= rows) break;
      const float sum = warp_sum(acc[r]);
      if (lane == 0) {
        float* yo = y + static_cast<std::int64_t>(r) * w.out + o;
        // ops::linear: without accumulate the product lands on the bias; with it, on y, and the bias comes after.
        float v = sum + (accumulate ? *yo : (bias ? bias[o] : 0.0f));
        if (accumulate && bias) v += bias[o];
        *yo = v;
      }
    }
  }
}

void check_view(const char* op, const PackedWeightView& w) {
  require(w.out >= 0 && w.in >= 0, op, "bad weight shape [" + std::to_string(w.out) + ", " + std::to_string(w.in) + "]");
  require_bits(op, w.bits);
  require(w.groups >= 1, op, "at least one column group needed");
  require(w.value_dtype == kValueF32 || w.value_dtype == kValueF16 || w.value_dtype == kValueBF16, op,
          "value dtype must be F32, F16 or BF16");
  require_int(op, w.groups, "groups");
  require_int(op, w.in, "in");
  if (w.out > 0 && w.in > 0) {
    require_data(op, w.codes, "codes");
    require_data(op, w.scales, "scales");
    require_data(op, w.zero_points, "zero_points");
    require_data(op, w.group_boundaries, "group_boundaries");
  }
}

template <typename T>
void launch_dequantize(const PackedWeightView& w, std::int64_t row0, std::int64_t rows, T* dst, cudaStream_t stream) {
  const char* op = "dequantize";
  check_view(op, w);
  require(row0 >= 0 && rows >= 0 && row0 + rows <= w.out, op,
          "rows " + std::to_string(row0) + " .. " + std::to_string(row0 + rows) + " of a weight with " +
              std::to_string(w.out) + " rows");
  if (rows == 0 || w.in == 0) return;
  require_data(op, dst, "dst");
  std::int64_t slices = (rows + kRowsPerSlice - 1) / kRowsPerSlice;
  if (slices > 65535) slices = 65535;
  const std::int64_t rows_per_block = (rows + slices - 1) / slices;
  const dim3 grid(static_cast<unsigned>((w.in + kThreads - 1) / kThreads), static_cast<unsigned>(slices));
  dequantize_kernel<T><<<grid, kThreads, 0, stream>>>(w, row0, rows, rows_per_block, dst);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void check_linear(const char* op, const float* x, std::int64_t ldx, std::int64_t rows, const PackedWeightView& w,
                  const float* y) {
  check_view(op, w);
  require(rows >= 0, op, "negative row count");
  require_ld(op, ldx, w.in);
  require_int(op, rows, "rows");
  require_int(op, w.out, "out");
  if (rows > 0 && w.out > 0) {
    require_data(op, y, "y");
    if (w.in > 0) require_data(op, x, "x");
  }
}

std::size_t align_up(std::size_t v) { return (v + 255) / 256 * 256; }

template <typename T>
void packed_linear_typed(BlasHandle& blas, GemmInputs inputs, const float* x, std::int64_t ldx, std::int64_t rows,
                         const PackedWeightView& w, const float* bias, float* y, bool accumulate,
                         std::int64_t tile_rows) {
  const cudaStream_t stream = blas.stream();
  const std::int64_t in = w.in, out = w.out;
  if (tile_rows <= 0) {
    tile_rows = static_cast<std::int64_t>(kDefaultTileBytes / (static_cast<std::size_t>(in) * sizeof(T)));
    tile_rows = std::clamp<std::int64_t>(tile_rows, 1, out);
  }
  tile_rows = std::min(tile_rows, out);
  // Scratch: [x rounded to T, when T is 16-bit][one dequantized tile].
  const bool convert_x = !std::is_same_v<T, float>;
  const std::size_t x_bytes = convert_x ? align_up(static_cast<std::size_t>(rows * in) * sizeof(T)) : 0;
  const std::size_t tile_bytes = static_cast<std::size_t>(tile_rows * in) * sizeof(T);
  unsigned char* scratch = static_cast<unsigned char*>(blas.scratch(x_bytes + tile_bytes));
  const void* xin = x;
  std::int64_t xld = ldx;
  if constexpr (!std::is_same_v<T, float>) {
    T* xs = reinterpret_cast<T*>(scratch);
    convert_rows(x, ldx, rows, in, xs, stream);
    xin = xs;
    xld = in;
  }
  T* tile = reinterpret_cast<T*>(scratch + x_bytes);

  bool onto_y = accumulate;
  if (bias && !accumulate) {
    broadcast_rows(y, rows, out, bias, stream);
    onto_y = true;
  }
  for (std::int64_t r0 = 0; r0 < out; r0 += tile_rows) {
    const std::int64_t n = std::min(tile_rows, out - r0);
    // The tile buffer is reused: stream order puts this dequantization after the previous tile's product.
    launch_dequantize(w, r0, n, tile, stream);
    gemm_xwt(blas, inputs, xin, xld, rows, in, tile, in, n, y + r0, out, onto_y);
  }
  if (bias && accumulate) add_bias(y, rows, out, bias, stream);
}

}  // namespace

PackedWeightView PackedWeight::view() const {
  PackedWeightView v;
  v.codes = codes.data();
  v.out = out;
  v.in = in;
  v.bits = bits;
  v.scales = scales.data();
  v.zero_points = zero_points.data();
  v.group_boundaries = group_boundaries.data();
  v.groups = groups;
  v.value_dtype = value_dtype;
  return v;
}

void check_packed_weight(std::size_t packed_size, std::int64_t out, std::int64_t in, int bits,
                         const std::vector<std::int64_t>& b, std::size_t scales_size, std::size_t zero_points_size) {
  const char* op = "packed weight";
  require(out >= 0 && in >= 0, op, "bad weight shape [" + std::to_string(out) + ", " + std::to_string(in) + "]");
  require_bits(op, bits);
  require_int(op, in, "in");
  require(b.size() >= 2 && b.front() == 0 && b.back() == in, op,
          "group boundaries must run from 0 to " + std::to_string(in) + " (g + 1 offsets); got " +
              std::to_string(b.size()) + " offsets");
  for (std::size_t i = 1; i < b.size(); ++i)
    require(b[i] >= b[i - 1], op, "group boundaries must not decrease (offset " + std::to_string(i) + ")");
  const std::size_t cells = static_cast<std::size_t>(out) * (b.size() - 1);
  require(scales_size == cells && zero_points_size == cells, op,
          "[" + std::to_string(out) + ", " + std::to_string(b.size() - 1) + "] scales and zero points needed; got " +
              std::to_string(scales_size) + " and " + std::to_string(zero_points_size));
  require(packed_size == static_cast<std::size_t>(bitpack_bytes(out * in, bits)), op,
          std::to_string(out * in) + " codes of " + std::to_string(bits) + " bits take " +
              std::to_string(bitpack_bytes(out * in, bits)) + " bytes; got " + std::to_string(packed_size));
}

PackedWeight upload_packed_weight(const std::vector<std::uint8_t>& packed, std::int64_t out, std::int64_t in, int bits,
                                  const std::vector<std::int64_t>& group_boundaries, const std::vector<float>& scales,
                                  const std::vector<float>& zero_points, int value_dtype) {
  check_packed_weight(packed.size(), out, in, bits, group_boundaries, scales.size(), zero_points.size());
  require(value_dtype == kValueF32 || value_dtype == kValueF16 || value_dtype == kValueBF16, "packed weight",
          "value dtype must be F32, F16 or BF16");
  PackedWeight w;
  w.value_dtype = value_dtype;
  w.out = out;
  w.in = in;
  w.bits = bits;
  w.groups = static_cast<std::int64_t>(group_boundaries.size()) - 1;
  w.codes = DeviceBuffer<std::uint8_t>(packed);
  w.scales = DeviceBuffer<float>(scales);
  w.zero_points = DeviceBuffer<float>(zero_points);
  w.group_boundaries =
      DeviceBuffer<std::int32_t>(std::vector<std::int32_t>(group_boundaries.begin(), group_boundaries.end()));
  return w;
}

void dequantize(const PackedWeightView& w, std::int64_t row0, std::int64_t rows, float* dst, cudaStream_t stream) {
  launch_dequantize(w, row0, rows, dst, stream);
}
void dequantize(const PackedWeightView& w, std::int64_t row0, std::int64_t rows, __half* dst, cudaStream_t stream) {
  launch_dequantize(w, row0, rows, dst, stream);
}
void dequantize(const PackedWeightView& w, std::int64_t row0, std::int64_t rows, __nv_bfloat16* dst,
                cudaStream_t stream) {
  launch_dequantize(w, row0, rows, dst, stream);
}

void packed_linear(BlasHandle& blas, const float* x, std::int64_t ldx, std::int64_t rows, const PackedWeightView& w,
                   const float* bias, float* y, bool accumulate, GemmInputs inputs, std::int64_t tile_rows) {
  check_linear("packed_linear", x, ldx, rows, w, y);
  if (rows == 0 || w.out == 0) return;
  if (w.in == 0) {
    // No products: ops::linear leaves the bias (or zeros), or y (+ bias) with accumulate.
    if (!accumulate) broadcast_rows(y, rows, w.out, bias, blas.stream());
    else if (bias) add_bias(y, rows, w.out, bias, blas.stream());
    return;
  }
  switch (inputs) {
    case GemmInputs::FP16:
      return packed_linear_typed<__half>(blas, inputs, x, ldx, rows, w, bias, y, accumulate, tile_rows);
    case GemmInputs::BF16:
      return packed_linear_typed<__nv_bfloat16>(blas, inputs, x, ldx, rows, w, bias, y, accumulate, tile_rows);
    default:
      return packed_linear_typed<float>(blas, inputs, x, ldx, rows, w, bias, y, accumulate, tile_rows);
  }
}

void packed_gemv(const float* x, std::int64_t ldx, std::int64_t rows, const PackedWeightView& w, const float* bias,
                 float* y, bool accumulate, cudaStream_t stream) {
  const char* op = "packed_gemv";
  check_linear(op, x, ldx, rows, w, y);
  require(rows <= kPackedGemvMaxRows, op,
          "the fused kernel takes up to " + std::to_string(kPackedGemvMaxRows) + " rows; got " +
              std::to_string(rows) + " (use packed_linear)");
  if (rows == 0 || w.out == 0) return;
  if (w.in == 0) {
    if (!accumulate) broadcast_rows(y, rows, w.out, bias, stream);
    else if (bias) add_bias(y, rows, w.out, bias, stream);
    return;
  }
  const unsigned blocks = grid_for(w.out, kGemvWarps, std::int64_t{1} << 20);
  packed_gemv_kernel<<<blocks, kGemvWarps * kWarpSize, 0, stream>>>(x, ldx, static_cast<int>(rows), w, bias, y,
                                                                    accumulate);
  RPTQ_CUDA_CHECK_LAUNCH();
}

}  // namespace rptq::cuda
