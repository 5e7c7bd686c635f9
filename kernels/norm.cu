// LayerNorm / RMSNorm with the RPTQ gather fused in: y[r, k] = norm(x[r, :])[g] * gamma[g] (+ beta[g]), g =
// gather[k]. One block per row. The gather reads the row in an arbitrary order, so the row must be addressable by
// every thread of the block: it is staged in shared memory (one global read per element), which also makes the
// second statistics pass and the gathered output pass cheap. Rows too long for the block's shared memory (beyond
// ~57k columns on H100) read global memory instead; the L1/L2 caches then serve the repeated reads.
//
// Numerics: float accumulation; the CPU reference accumulates in double. Each thread sums cols / blockDim values
// serially, then a warp-shuffle tree adds the partials, so the relative error of a row sum stays near
// (cols / blockDim + log2(blockDim)) * 2^-24, about 1e-6 at 12288 columns. LayerNorm's mean is taken of x - x[r, 0]
// (the shifted-data algorithm) and its variance in a second pass over x - mean: no cancellation even when the
// row's mean is large against its spread, where E[x^2] - E[x]^2 would lose every digit.
#include "norm.cuh"

#include <limits>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"

namespace rptq::cuda {

static constexpr int kWarpSize = 32;
static constexpr int kMaxThreads = 1024;
// Shared memory a block may use without opting in through cudaFuncSetAttribute.
static constexpr std::size_t kDefaultSharedBytes = 48 * 1024;

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block, returned to every thread. scratch holds one float per warp. Every warp reduces the warp
// partials itself, which saves a broadcast round; the final barrier lets the caller reuse scratch at once.
// blockDim.x is a multiple of 32.
static __device__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / kWarpSize) ? scratch[lane] : 0.0f;
  v = warp_sum(v);
  __syncthreads();
  return v;
}

// Dynamic shared memory: [kWarpSize floats of reduction scratch][the row, when cache_row].
static __global__ void layer_norm_kernel(const float* x, float* y, int cols, const float* __restrict__ gamma,
                                         const float* __restrict__ beta, float eps,
                                         const std::int32_t* __restrict__ gather, bool cache_row) {
  extern __shared__ float shared[];
  float* scratch = shared;
  float* cached = shared + kWarpSize;
  const std::int64_t r = blockIdx.x;
  const float* xr = x + r * cols;
  float* yr = y + r * cols;

  const float shift = xr[0];
  float sum = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = xr[c];
    if (cache_row) cached[c] = v;
    sum += v - shift;
  }
  // block_sum's barriers also publish cached[] to the whole block.
  const float mean = shift + block_sum(sum, scratch) / cols;
  const float* row = cache_row ? cached : xr;

  float sq = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = row[c] - mean;
    sq += d * d;
  }
  const float rstd = rsqrtf(block_sum(sq, scratch) / cols + eps);

  for (int k = threadIdx.x; k < cols; k += blockDim.x) {
    const int g = gather ? gather[k] : k;
    float v = (row[g] - mean) * rstd;
    if (gamma) v *= gamma[g];
    if (beta) v += beta[g];
    yr[k] = v;
  }
}

static __global__ void rms_norm_kernel(const float* x, float* y, int cols, const float* __restrict__ gamma,
                                       float eps, const std::int32_t* __restrict__ gather, bool cache_row) {
  extern __shared__ float shared[];
  float* scratch = shared;
  float* cached = shared + kWarpSize;
  const std::int64_t r = blockIdx.x;
  const float* xr = x + r * cols;
  float* yr = y + r * cols;

  float sq = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = xr[c];
    if (cache_row) cached[c] = v;
    sq += v * v;
  }
  const float rstd = rsqrtf(block_sum(sq, scratch) / cols + eps);
  const float* row = cache_row ? cached : xr;

  for (int k = threadIdx.x; k < cols; k += blockDim.x) {
    const int g = gather ? gather[k] : k;
    float v = row[g] * rstd;
    if (gamma) v *= gamma[g];
    yr[k] = v;
  }
}

// About four elements per thread, so each thread has several independent loads in flight, and whole warps.
static int threads_for(std::int64_t cols) {
  std::int64_t threads = (cols + 3) / 4;
  threads = (threads + kWarpSize - 1) / kWarpSize * kWarpSize;
  if (threads < kWarpSize) threads = kWarpSize;
  if (threads > kMaxThreads) threads = kMaxThreads;
  return static_cast<int>(threads);
}

static void check_shape(const char* op, std::int64_t rows, std::int64_t cols) {
  // One block per row: the grid's x dimension and the in-row int indexing bound both sizes.
  constexpr std::int64_t kMax = std::numeric_limits<int>::max();
  if (rows < 0 || cols < 0 || rows > kMax || cols > kMax)
    throw std::invalid_argument(std::string("rptq::cuda::") + op + ": unsupported shape [" + std::to_string(rows) +
                                ", " + std::to_string(cols) + "]");
}

// Dynamic shared memory for one block of `kernel`, and whether the row fits in it. Past the 48 KiB every block
// may use, the kernel must opt in to the device's larger limit (227 KiB on H100, 163 KiB on A100, 99 KiB on
// sm_89); that happens only for rows over ~12k columns, so the per-launch attribute call costs nothing that
// matters.
static std::size_t shared_bytes_for(const void* kernel, std::int64_t cols, bool* cache_row) {
  const std::size_t scratch = kWarpSize * sizeof(float);
  const std::size_t with_row = scratch + static_cast<std::size_t>(cols) * sizeof(float);
  *cache_row = true;
  if (with_row <= kDefaultSharedBytes) return with_row;
  int device = 0, optin = 0;
  RPTQ_CUDA_CHECK(cudaGetDevice(&device));
  RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (with_row <= static_cast<std::size_t>(optin)) {
    RPTQ_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(with_row)));
    return with_row;
  }
  *cache_row = false;
  return scratch;
}

void layer_norm(const float* x, float* y, std::int64_t rows, std::int64_t cols, const float* gamma,
                const float* beta, float eps, const std::int32_t* gather, cudaStream_t stream) {
  check_shape("layer_norm", rows, cols);
  if (rows == 0 || cols == 0) return;
  bool cache_row = false;
  const std::size_t shared = shared_bytes_for(reinterpret_cast<const void*>(layer_norm_kernel), cols, &cache_row);
  layer_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols), shared, stream>>>(
      x, y, static_cast<int>(cols), gamma, beta, eps, gather, cache_row);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void rms_norm(const float* x, float* y, std::int64_t rows, std::int64_t cols, const float* gamma, float eps,
              const std::int32_t* gather, cudaStream_t stream) {
  check_shape("rms_norm", rows, cols);
  if (rows == 0 || cols == 0) return;
  bool cache_row = false;
  const std::size_t shared = shared_bytes_for(reinterpret_cast<const void*>(rms_norm_kernel), cols, &cache_row);
  rms_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols), shared, stream>>>(
      x, y, static_cast<int>(cols), gamma, eps, gather, cache_row);
  RPTQ_CUDA_CHECK_LAUNCH();
}

}  // namespace rptq::cuda
