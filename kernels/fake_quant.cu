// Per-cluster fake quantization.
//   Static and dynamic AllRows apply: threads on consecutive channels (coalesced), blocks of grid y on row slices;
//     each thread finds its channel's cluster once (binary search over the boundaries) and keeps that quantizer in
//     registers for all its rows.
//   Dynamic AllRows ranges: channel_range over all rows, then one warp per cluster folds its channels' ranges into
//     the cluster range and computes the quantizer, then the apply pass above.
//   Dynamic PerRow: one block per row; warp w takes clusters w, w + 8, ...: reduces the cluster's range over its
//     (contiguous) channels, computes the quantizer into shared memory, and after one barrier (at which the block
//     learns whether any value of the row was not finite) applies it. No atomics, no search.
// All formulas are fake_quant.cuh's, rounded operation by operation as quantizer.cpp: bit-exact with the CPU.
#include "fake_quant.cuh"

#include <string>

#include "channel_range.cuh"
#include "cuda_check.cuh"
#include "reduce.cuh"

namespace rptq::cuda {

namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kRowsPerSlice = 64;
constexpr std::uint32_t kNoBadChannel = kDynamicAllFinite;
constexpr std::int64_t kMaxPerRowClusters = 4096;  // 32 KiB of per-row quantizers in shared memory

// Workspace: [min: cols][max: cols][scale: clusters][zero: clusters][bad channel: uint32].
struct Workspace {
  float *mn, *mx, *scale, *zero;
  std::uint32_t* bad;
};
Workspace split(void* base, std::int64_t cols, std::int64_t clusters) {
  float* f = static_cast<float*>(base);
  Workspace w;
  w.mn = f;
  w.mx = f + cols;
  w.scale = f + 2 * cols;
  w.zero = f + 2 * cols + clusters;
  w.bad = reinterpret_cast<std::uint32_t*>(f + 2 * cols + 2 * clusters);
  return w;
}

__global__ void apply_kernel(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                             const std::int32_t* __restrict__ boundaries, int clusters,
                             const float* __restrict__ scale, const float* __restrict__ zero, int bits,
                             std::int64_t rows_per_block, const std::uint32_t* bad) {
  if (bad && *bad != kNoBadChannel) return;  // the CPU would have thrown before changing anything
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int k = cluster_of(boundaries, clusters, c);
  const QuantLane lane = quant_lane(scale[k], zero[k], bits);
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * rows_per_block;
  const std::int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (std::int64_t r = r0; r < r1; ++r) {
    float* p = x + r * ld + c;
    *p = fake_quant_value(*p, lane);
  }
}

// One warp per cluster: the cluster's range from its channels' ranges (cluster_params), then its quantizer.
__global__ void cluster_params_kernel(const float* __restrict__ mn, const float* __restrict__ mx,
                                      const std::int32_t* __restrict__ boundaries, int clusters, int bits, Grid grid,
                                      float* scale, float* zero, float* scale_out, float* zero_out,
                                      std::uint32_t* bad) {
  const int lane = threadIdx.x % kWarpSize;
  const int k = (blockIdx.x * blockDim.x + threadIdx.x) / kWarpSize;
  if (k >= clusters) return;
  const std::int64_t c0 = boundaries[k], c1 = boundaries[k + 1];
  float lo = INFINITY, hi = -INFINITY;
  for (std::int64_t j = c0 + lane; j < c1; j += kWarpSize) {
    const float a = mn[j], b = mx[j];
    if (!isfinite(a) || !isfinite(b)) atomicMin(bad, static_cast<std::uint32_t>(j));
    lo = hd::min(lo, a);
    hi = hd::max(hi, b);
  }
  lo = warp_min(lo);
  hi = warp_max(hi);
  if (lane != 0) return;
  if (c0 >= c1) lo = hi = 0.0f;  // an empty cluster gets [0, 0]
  QuantLane q;
  if (isfinite(lo) && isfinite(hi)) q = quant_lane_of_range(lo, hi, bits, grid);
  scale[k] = q.scale;
  zero[k] = q.zero_point;
  if (scale_out) scale_out[k] = q.scale;
  if (zero_out) zero_out[k] = q.zero_point;
}

__global__ void __launch_bounds__(kThreads)
    per_row_kernel(float* x, std::int64_t rows, std::int64_t ld, const std::int32_t* __restrict__ boundaries,
                   int clusters, int bits, Grid grid, float* scale_out, float* zero_out, std::uint32_t* bad) {
  extern __shared__ float params[];  // [scale: clusters][zero: clusters]
  float* sscale = params;
  float* szero = params + clusters;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize, warps = blockDim.x / kWarpSize;
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float* xr = x + r * ld;
    std::uint32_t first_bad = kNoBadChannel;
    for (int k = warp; k < clusters; k += warps) {
      const std::int64_t c0 = boundaries[k], c1 = boundaries[k + 1];
      float lo = INFINITY, hi = -INFINITY;
      for (std::int64_t j = c0 + lane; j < c1; j += kWarpSize) {
        const float v = xr[j];
        // One row: a channel's range is the value itself, and it is not finite exactly when the value is not
        // (a NaN is never chosen, leaving the range at +-inf).
        if (!isfinite(v) && first_bad == kNoBadChannel) first_bad = static_cast<std::uint32_t>(j);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
      }
      lo = warp_min(lo);
      hi = warp_max(hi);
      if (lane == 0) {
        if (c0 >= c1) lo = hi = 0.0f;
        QuantLane q;
        if (isfinite(lo) && isfinite(hi)) q = quant_lane_of_range(lo, hi, bits, grid);
        sscale[k] = q.scale;
        szero[k] = q.zero_point;
        if (scale_out) scale_out[r * clusters + k] = q.scale;
        if (zero_out) zero_out[r * clusters + k] = q.zero_point;
      }
    }
    if (first_bad != kNoBadChannel) atomicMin(bad, first_bad);
    const bool row_bad = __syncthreads_or(first_bad != kNoBadChannel);  // also publishes the quantizers
    if (!row_bad) {
      for (int k = warp; k < clusters; k += warps) {
        const std::int64_t c0 = boundaries[k], c1 = boundaries[k + 1];
        const QuantLane q = quant_lane(sscale[k], szero[k], bits);
        for (std::int64_t j = c0 + lane; j < c1; j += kWarpSize) xr[j] = fake_quant_value(xr[j], q);
      }
    }
    __syncthreads();  // the next row overwrites the quantizers
  }
}

void check_matrix(const char* op, const float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                  const std::int32_t* boundaries, std::int64_t clusters, int bits) {
  require_shape(op, rows, cols);
  require_ld(op, ld, cols);
  require_bits(op, bits);
  require(clusters >= 1, op, "at least one cluster needed; got " + std::to_string(clusters));
  require_int(op, cols, "cols");
  require_int(op, clusters, "clusters");
  if (rows > 0 && cols > 0) {
    require_data(op, x, "x");
    require_data(op, boundaries, "boundaries");
  }
}

void launch_apply(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, const std::int32_t* boundaries,
                  std::int64_t clusters, const float* scale, const float* zero, int bits, const std::uint32_t* bad,
                  cudaStream_t stream) {
  std::int64_t slices = (rows + kRowsPerSlice - 1) / kRowsPerSlice;
  if (slices > 65535) slices = 65535;
  const std::int64_t rows_per_block = (rows + slices - 1) / slices;
  const dim3 grid(static_cast<unsigned>((cols + kThreads - 1) / kThreads), static_cast<unsigned>(slices));
  apply_kernel<<<grid, kThreads, 0, stream>>>(x, rows, cols, ld, boundaries, static_cast<int>(clusters), scale, zero,
                                              bits, rows_per_block, bad);
  RPTQ_CUDA_CHECK_LAUNCH();
}

}  // namespace

void fake_quant_clusters(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                         const std::int32_t* boundaries, std::int64_t clusters, const float* scale,
                         const float* zero_point, int bits, cudaStream_t stream) {
  const char* op = "fake_quant_clusters";
  check_matrix(op, x, rows, cols, ld, boundaries, clusters, bits);
  if (rows == 0 || cols == 0) return;
  require_data(op, scale, "scale");
  require_data(op, zero_point, "zero_point");
  launch_apply(x, rows, cols, ld, boundaries, clusters, scale, zero_point, bits, nullptr, stream);
}

void check_cluster_quantizer(const std::vector<std::int64_t>& b, const std::vector<float>& scale,
                             const std::vector<float>& zero_point, int bits, std::int64_t cols) {
  const char* op = "cluster quantizer";
  require_bits(op, bits);
  require(cols >= 0, op, "negative column count");
  require_int(op, cols, "cols");
  require(b.size() >= 2 && b.front() == 0 && b.back() == cols, op,
          "cluster boundaries must run from 0 to " + std::to_string(cols) + " (g + 1 offsets); got " +
              std::to_string(b.size()) + " offsets");
  for (std::size_t i = 1; i < b.size(); ++i)
    require(b[i] >= b[i - 1], op,
            "cluster boundaries must not decrease; offset " + std::to_string(i) + " is " + std::to_string(b[i]) +
                " after " + std::to_string(b[i - 1]));
  require(scale.size() + 1 == b.size() && zero_point.size() == scale.size(), op,
          std::to_string(b.size() - 1) + " clusters but " + std::to_string(scale.size()) + " scales and " +
              std::to_string(zero_point.size()) + " zero points");
  for (std::size_t c = 0; c < scale.size(); ++c) {
    require(scale[c] > 0.0f && std::isfinite(scale[c]) && std::isfinite(zero_point[c]), op,
            "a cluster's scale must be positive and finite; got " + std::to_string(scale[c]) + " (zero point " +
                std::to_string(zero_point[c]) + ") for cluster " + std::to_string(c));
  }
}

ClusterQuantizer upload_cluster_quantizer(const std::vector<std::int64_t>& boundaries, const std::vector<float>& scale,
                                          const std::vector<float>& zero_point, int bits, std::int64_t cols) {
  check_cluster_quantizer(boundaries, scale, zero_point, bits, cols);
  ClusterQuantizer q;
  q.cols = cols;
  q.clusters = static_cast<std::int64_t>(scale.size());
  q.bits = bits;
  const std::vector<std::int32_t> b32(boundaries.begin(), boundaries.end());
  q.boundaries = DeviceBuffer<std::int32_t>(b32);
  q.scale = DeviceBuffer<float>(scale);
  q.zero_point = DeviceBuffer<float>(zero_point);
  return q;
}

void fake_quant_clusters(float* x, std::int64_t rows, std::int64_t ld, const ClusterQuantizer& q,
                         cudaStream_t stream) {
  fake_quant_clusters(x, rows, q.cols, ld, q.boundaries.data(), q.clusters, q.scale.data(), q.zero_point.data(),
                      q.bits, stream);
}

std::size_t fake_quant_dynamic_workspace_bytes(std::int64_t cols, std::int64_t clusters) {
  require(cols >= 0 && clusters >= 0, "fake_quant_dynamic_workspace_bytes", "negative size");
  return static_cast<std::size_t>(2 * cols + 2 * clusters + 1) * sizeof(float);
}

void fake_quant_clusters_dynamic(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                 const std::int32_t* boundaries, std::int64_t clusters, int bits, Grid grid,
                                 DynamicRange range, void* workspace, float* scale_out, float* zero_out,
                                 cudaStream_t stream) {
  const char* op = "fake_quant_clusters_dynamic";
  check_matrix(op, x, rows, cols, ld, boundaries, clusters, bits);
  require(range == DynamicRange::AllRows || clusters <= kMaxPerRowClusters, op,
          "per-row ranges support up to " + std::to_string(kMaxPerRowClusters) + " clusters; got " +
              std::to_string(clusters));
  require_data(op, workspace, "workspace");
  const Workspace ws = split(workspace, cols, clusters);
  RPTQ_CUDA_CHECK(cudaMemsetAsync(ws.bad, 0xff, sizeof(std::uint32_t), stream));
  if (range == DynamicRange::PerRow) {
    if (rows == 0 || cols == 0) return;
    const unsigned blocks = static_cast<unsigned>(rows < (1 << 20) ? rows : (1 << 20));
    const std::size_t shared = static_cast<std::size_t>(2 * clusters) * sizeof(float);
    per_row_kernel<<<blocks, kThreads, shared, stream>>>(x, rows, ld, boundaries, static_cast<int>(clusters), bits,
                                                         grid, scale_out, zero_out, ws.bad);
    RPTQ_CUDA_CHECK_LAUNCH();
    return;
  }
  if (cols == 0) return;
  // rows == 0: the CPU's ranges are [0, 0] per channel; here the channel arrays become -inf / +inf, which the
  // parameters kernel would report. Match the CPU instead: nothing to quantize, the parameters of [0, 0].
  if (rows == 0) {
    RPTQ_CUDA_CHECK(cudaMemsetAsync(ws.mn, 0, static_cast<std::size_t>(2 * cols) * sizeof(float), stream));
  } else {
    channel_range(x, rows, cols, ld, ws.mx, ws.mn, RangeUpdate::Write, stream);
  }
  const int warps_per_block = kThreads / kWarpSize;
  const unsigned blocks = static_cast<unsigned>((clusters + warps_per_block - 1) / warps_per_block);
  cluster_params_kernel<<<blocks, kThreads, 0, stream>>>(ws.mn, ws.mx, boundaries, static_cast<int>(clusters), bits,
                                                         grid, ws.scale, ws.zero, scale_out, zero_out, ws.bad);
  RPTQ_CUDA_CHECK_LAUNCH();
  if (rows == 0) return;
  launch_apply(x, rows, cols, ld, boundaries, clusters, ws.scale, ws.zero, bits, ws.bad, stream);
}

std::int64_t fake_quant_dynamic_bad_channel(const void* workspace, std::int64_t cols, std::int64_t clusters,
                                            cudaStream_t stream) {
  require_data("fake_quant_dynamic_bad_channel", workspace, "workspace");
  const Workspace ws = split(const_cast<void*>(workspace), cols, clusters);
  std::uint32_t bad = kNoBadChannel;
  RPTQ_CUDA_CHECK(cudaMemcpyAsync(&bad, ws.bad, sizeof(bad), cudaMemcpyDeviceToHost, stream));
  RPTQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  return bad == kNoBadChannel ? -1 : static_cast<std::int64_t>(bad);
}

void fake_quant_dynamic_copy_bad_channel(const void* workspace, std::int64_t cols, std::int64_t clusters,
                                         std::uint32_t* record, cudaStream_t stream) {
  require_data("fake_quant_dynamic_copy_bad_channel", workspace, "workspace");
  require_data("fake_quant_dynamic_copy_bad_channel", record, "record");
  const Workspace ws = split(const_cast<void*>(workspace), cols, clusters);
  RPTQ_CUDA_CHECK(cudaMemcpyAsync(record, ws.bad, sizeof(std::uint32_t), cudaMemcpyDeviceToDevice, stream));
}

}  // namespace rptq::cuda
