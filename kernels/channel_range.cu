// Per-channel ranges over rows. Threads of a block sit on 32 consecutive channels and 8 row lanes: a warp reads
// 32 consecutive floats of one row (coalesced), each thread reduces every 8th row of its block's row slice in
// registers, the 8 row lanes meet in shared memory, and one thread per channel folds the block's result into the
// output. Blocks over row slices (grid y) keep the GPU busy when there are few channels (OPT-125m has 768); they
// merge through a compare-and-swap max / min that moves a value only when it improves, which keeps the CPU's
// comparison (x > max: NaN never lands, ties keep the stored value). Max and min are exact in any order, so the
// result is the CPU's to the bit (up to the sign of a zero that ties with the other sign).
#include "channel_range.cuh"

#include <string>

#include "cuda_check.cuh"
#include "reduce.cuh"

namespace rptq::cuda {

namespace {

constexpr int kCols = 32, kRowLanes = 8;
constexpr int kThreads = 256;
constexpr std::int64_t kRowsPerSlice = 256;  // rows one block reduces, at least

__global__ void fill_kernel(float* mx, float* mn, std::int64_t cols) {
  for (std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    mx[c] = -INFINITY;
    mn[c] = INFINITY;
  }
}

__global__ void __launch_bounds__(kCols * kRowLanes)
    channel_range_kernel(const float* __restrict__ x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                         std::int64_t rows_per_block, float* mx, float* mn) {
  __shared__ float smax[kRowLanes][kCols], smin[kRowLanes][kCols];
  const int tc = threadIdx.x, tr = threadIdx.y;
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * kCols + tc;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * rows_per_block;
  const std::int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  float hi = -INFINITY, lo = INFINITY;
  if (c < cols) {
    for (std::int64_t r = r0 + tr; r < r1; r += kRowLanes) {
      const float v = x[r * ld + c];
      hi = v > hi ? v : hi;  // channel_max_min's comparisons
      lo = v < lo ? v : lo;
    }
  }
  smax[tr][tc] = hi;
  smin[tr][tc] = lo;
  __syncthreads();
  if (tr != 0 || c >= cols) return;
#pragma unroll
  for (int i = 1; i < kRowLanes; ++i) {
    hi = smax[i][tc] > hi ? smax[i][tc] : hi;
    lo = smin[i][tc] < lo ? smin[i][tc] : lo;
  }
  if (gridDim.y == 1) {
    // The block alone covers these channels: plain merge with the running value (Write mode filled it first).
    mx[c] = hd::max(mx[c], hi);
    mn[c] = hd::min(mn[c], lo);
  } else {
    atomic_max_float(mx + c, hi);
    atomic_min_float(mn + c, lo);
  }
}

__global__ void add_sample_kernel(const float* __restrict__ smax, const float* __restrict__ smin, float* ema_max,
                                  float* ema_min, float* max, float* min, std::int64_t n, bool first) {
  for (std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n;
       c += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float hi = smax[c], lo = smin[c];
    if (first) {
      ema_max[c] = hi;
      ema_min[c] = lo;
      max[c] = hi;
      min[c] = lo;
    } else {
      ema_max[c] = tap_ema(ema_max[c], hi);
      ema_min[c] = tap_ema(ema_min[c], lo);
      max[c] = hd::max(max[c], hi);
      min[c] = hd::min(min[c], lo);
    }
  }
}

}  // namespace

void channel_range(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, float* mx, float* mn,
                   RangeUpdate update, cudaStream_t stream) {
  const char* op = "channel_range";
  require_shape(op, rows, cols);
  require_ld(op, ld, cols);
  if (cols == 0) return;
  require_data(op, mx, "max");
  require_data(op, mn, "min");
  if (rows > 0) require_data(op, x, "x");
  if (update == RangeUpdate::Write) {
    fill_kernel<<<grid_for(cols, kThreads), kThreads, 0, stream>>>(mx, mn, cols);
    RPTQ_CUDA_CHECK_LAUNCH();
  }
  if (rows == 0) return;
  const std::int64_t col_blocks = (cols + kCols - 1) / kCols;
  require_int(op, col_blocks, "column blocks");
  // Enough row slices for about 4 blocks per multiprocessor of a large GPU (132 on H100), each of at least
  // kRowsPerSlice rows so that the merges stay few.
  std::int64_t slices = (4 * 132 + col_blocks - 1) / col_blocks;
  const std::int64_t max_slices = (rows + kRowsPerSlice - 1) / kRowsPerSlice;
  if (slices > max_slices) slices = max_slices;
  if (slices > 65535) slices = 65535;
  if (slices < 1) slices = 1;
  const std::int64_t rows_per_block = (rows + slices - 1) / slices;
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(slices));
  channel_range_kernel<<<grid, dim3(kCols, kRowLanes), 0, stream>>>(x, rows, cols, ld, rows_per_block, mx, mn);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void tap_ranges_add_sample(const float* sample_max, const float* sample_min, float* ema_max, float* ema_min,
                           float* max, float* min, std::int64_t channels, bool first_sample, cudaStream_t stream) {
  const char* op = "tap_ranges_add_sample";
  require(channels >= 0, op, "negative channel count " + std::to_string(channels));
  if (channels == 0) return;
  for (const void* p : {static_cast<const void*>(sample_max), static_cast<const void*>(sample_min),
                        static_cast<const void*>(ema_max), static_cast<const void*>(ema_min),
                        static_cast<const void*>(max), static_cast<const void*>(min)})
    require_data(op, p, "range array");
  add_sample_kernel<<<grid_for(channels, kThreads), kThreads, 0, stream>>>(sample_max, sample_min, ema_max, ema_min,
                                                                           max, min, channels, first_sample);
  RPTQ_CUDA_CHECK_LAUNCH();
}

}  // namespace rptq::cuda
