#pragma once
// Per-cluster fake quantization of activations on the GPU: the CUDA twins of rptq::fake_quant_clusters (static
// per-cluster quantizers from calibration) and rptq::fake_quant_clusters_dynamic (ranges computed from the
// activation itself), in place on x[rows, cols] with row stride ld >= cols, device pointers.
// Cluster c covers channels [boundaries[c], boundaries[c + 1]) (int32, clusters + 1 offsets from 0 to cols,
// non-decreasing: an empty cluster is allowed). The formulas are quantizer.cpp's, operation for operation, in both
// grids (Exact and Reference), so every output has the CPU's bits:
//   q = clamp(round_half_even(x / scale) + zp, -2^(n-1), 2^(n-1) - 1),  x <- (q - zp) * scale.
// Asynchronous on `stream`; shapes are checked (std::invalid_argument) before any CUDA call. Device data (the
// boundaries, the scales) cannot be checked from the host without a copy: upload_cluster_quantizer checks host
// copies as the CPU does and uploads them. Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "device.cuh"
#include "host_device.cuh"

namespace rptq::cuda {

// rptq::QuantGrid, re-declared so that the kernels need no core header.
enum class Grid {
  Exact,      // scale = (max - min) / (2^n - 1), zp = round(-2^(n-1) - min / scale)
  Reference,  // scale = (max - min) / 2^n, zp = round(-(max + min) / (2 scale)), as the RPTQ reference code
};

// Activation scale limits (rptq::kMinActScale, kMaxActScale).
constexpr float kActScaleMin = 1e-4f, kActScaleMax = 1e4f;

// Static: cluster c uses scale[c] and zero_point[c] with `bits` bits (scales positive and finite).
void fake_quant_clusters(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                         const std::int32_t* boundaries, std::int64_t clusters, const float* scale,
                         const float* zero_point, int bits, cudaStream_t stream = 0);

// A tap's static quantizer on the device.
struct ClusterQuantizer {
  std::int64_t cols = 0, clusters = 0;
  int bits = 8;
  DeviceBuffer<std::int32_t> boundaries;
  DeviceBuffer<float> scale, zero_point;
};
// Checks boundaries, scales and zero points as rptq::fake_quant_clusters does (throws std::invalid_argument, before
// any CUDA call), then uploads them.
void check_cluster_quantizer(const std::vector<std::int64_t>& boundaries, const std::vector<float>& scale,
                             const std::vector<float>& zero_point, int bits, std::int64_t cols);
ClusterQuantizer upload_cluster_quantizer(const std::vector<std::int64_t>& boundaries, const std::vector<float>& scale,
                                          const std::vector<float>& zero_point, int bits, std::int64_t cols);
void fake_quant_clusters(float* x, std::int64_t rows, std::int64_t ld, const ClusterQuantizer& q,
                         cudaStream_t stream = 0);

// Dynamic: each cluster's range [min, max] is taken from the activation, then its quantizer from
// quant_params(min, max, bits, grid) (scale clamped to [1e-4, 1e4]).
enum class DynamicRange {
  AllRows,  // one range per cluster over all rows: exactly rptq::fake_quant_clusters_dynamic (RangeMode::Dynamic)
  PerRow,   // one range per (row, cluster): per-token quantization, the CPU function applied to each row alone
};
// Device scratch the dynamic variant needs, in bytes (256-byte aligned is enough).
std::size_t fake_quant_dynamic_workspace_bytes(std::int64_t cols, std::int64_t clusters);
// scale_out / zero_out (optional, device): the quantizers used, [clusters] for AllRows, [rows, clusters] for PerRow.
// Where the CPU throws (a channel whose range is not finite: an infinity, or NaN in every row), a kernel cannot:
// the values are then left unchanged (AllRows: the whole matrix; PerRow: that row) and the workspace records the
// first such channel, which fake_quant_dynamic_bad_channel reports.
void fake_quant_clusters_dynamic(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                 const std::int32_t* boundaries, std::int64_t clusters, int bits, Grid grid,
                                 DynamicRange range, void* workspace, float* scale_out = nullptr,
                                 float* zero_out = nullptr, cudaStream_t stream = 0);
// Waits for `stream`, then returns the lowest channel index whose range was not finite in the last dynamic call
// on this workspace, or -1 when every range was finite.
std::int64_t fake_quant_dynamic_bad_channel(const void* workspace, std::int64_t cols, std::int64_t clusters,
                                            cudaStream_t stream = 0);
// Without waiting: copies the workspace's record of the last dynamic call (device to device, on `stream`) to the
// device word *record: the channel fake_quant_dynamic_bad_channel would return, or kDynamicAllFinite. A caller can
// collect the records of many calls and read them all with one copy to the host, instead of waiting per call.
constexpr std::uint32_t kDynamicAllFinite = 0xffffffffu;
void fake_quant_dynamic_copy_bad_channel(const void* workspace, std::int64_t cols, std::int64_t clusters,
                                         std::uint32_t* record, cudaStream_t stream = 0);

// ---------------------------------------------------------------------------------------------------------------
// The quantizer formulas, shared by the kernels, the KV cache kernels and host tests. Each operation is rounded
// separately, as in quantizer.cpp.

// One quantizer as the inner loops use it: the code range as floats.
struct QuantLane {
  float scale = 1.0f, zero_point = 0.0f, lo = -128.0f, hi = 127.0f;
};
RPTQ_HD QuantLane quant_lane(float scale, float zero_point, int bits) {
  QuantLane l;
  l.scale = scale;
  l.zero_point = zero_point;
  l.lo = static_cast<float>(-(1 << (bits - 1)));
  l.hi = static_cast<float>((1 << (bits - 1)) - 1);
  return l;
}
// The code as a float; a NaN input stays NaN (the comparisons are false), as on the CPU.
RPTQ_HD float quant_code(float x, const QuantLane& l) {
  float q = hd::add(hd::round_half_even(hd::div(x, l.scale)), l.zero_point);
  q = q < l.lo ? l.lo : q;
  q = q > l.hi ? l.hi : q;
  return q;
}
RPTQ_HD float fake_quant_value(float x, const QuantLane& l) {
  return hd::mul(hd::sub(quant_code(x, l), l.zero_point), l.scale);
}
// rptq::quant_params_clamped for a finite range min <= max.
RPTQ_HD QuantLane quant_lane_of_range(float min, float max, int bits, Grid grid, float scale_min = kActScaleMin,
                                      float scale_max = kActScaleMax) {
  const float levels = static_cast<float>(1 << bits);
  float scale, zp;
  if (grid == Grid::Reference) {
    scale = hd::clamp(hd::div(hd::sub(max, min), levels), scale_min, scale_max);
    zp = hd::round_half_even(hd::div(-hd::add(max, min), hd::mul(2.0f, scale)));
  } else {
    scale = hd::clamp(hd::div(hd::sub(max, min), hd::sub(levels, 1.0f)), scale_min, scale_max);
    zp = hd::round_half_even(hd::sub(hd::div(-levels, 2.0f), hd::div(min, scale)));
  }
  return quant_lane(scale, zp, bits);
}
// The cluster holding channel c: the largest k < clusters with boundaries[k] <= c (so an empty cluster, whose
// start equals the next one's, is never chosen). boundaries[0] <= c < boundaries[clusters].
RPTQ_HD int cluster_of(const std::int32_t* boundaries, int clusters, std::int64_t c) {
  int lo = 0, hi = clusters - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (boundaries[mid] <= c)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

}  // namespace rptq::cuda
