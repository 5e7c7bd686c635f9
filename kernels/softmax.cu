// NLL per row (log-sum-exp less the target's logit): one block of 256 threads per row (logit rows are long: 50k-250k
// entries), two passes over the row (maximum, then the sum of exp(x - max)); the second pass mostly hits L2.
//
// Numerics: each thread sums its ~cols / 256 terms in float, and the partial sums are added in double: the same
// shape of accuracy as the CPU, which sums blocks of 256 terms in float and adds the blocks in double (a single
// float running sum over a 50k vocabulary would round its small terms away, visibly in perplexity). The log is
// taken in double and rounded to float, and added to the maximum in float, as the CPU does.
#include "softmax.cuh"

#include <string>

#include "cuda_check.cuh"
#include "host_device.cuh"
#include "reduce.cuh"

namespace rptq::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 1u << 20;

// The row's log-sum-exp, returned to every thread of the block.
__device__ float row_log_sum_exp(const float* __restrict__ xr, std::int64_t cols, float* fscratch,
                                 double* dscratch) {
  float mx = -INFINITY;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = hd::max(mx, xr[c]);
  mx = block_max(mx, fscratch);
  float s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += expf(xr[c] - mx);
  const double total = block_sum(static_cast<double>(s), dscratch);
  return hd::add(mx, static_cast<float>(log(total)));
}

__global__ void __launch_bounds__(kThreads)
    nll_kernel(const float* __restrict__ x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
               const std::int32_t* __restrict__ targets, double* nll) {
  __shared__ float fscratch[kWarpSize];
  __shared__ double dscratch[kWarpSize];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * ld;
    const float lse = row_log_sum_exp(xr, cols, fscratch, dscratch);
    if (threadIdx.x == 0) {
      const std::int32_t t = targets[r];
      nll[r] = t >= 0 && t < cols ? static_cast<double>(lse) - static_cast<double>(xr[t]) : NAN;
    }
  }
}

// One block adds the rows' NLL in double: each thread a strided share in order, then a fixed tree.
__global__ void __launch_bounds__(kThreads) sum_kernel(const double* __restrict__ v, std::int64_t n, double* total) {
  __shared__ double scratch[kWarpSize];
  double s = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) *total = s;
}

void check(const char* op, const float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  require_shape(op, rows, cols);
  require_ld(op, ld, cols);
  if (rows > 0 && cols > 0) require_data(op, x, "x");
}

unsigned blocks_for(std::int64_t rows) {
  return static_cast<unsigned>(rows < static_cast<std::int64_t>(kMaxBlocks) ? rows : kMaxBlocks);
}

}  // namespace

void nll_rows(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, const std::int32_t* targets,
              double* nll, double* total, cudaStream_t stream) {
  const char* op = "nll_rows";
  check(op, x, rows, cols, ld);
  require(cols > 0 || rows == 0, op, "a row of no columns has no log-likelihood");
  if (rows > 0) {
    require_data(op, targets, "targets");
    require_data(op, nll, "nll");
    nll_kernel<<<blocks_for(rows), kThreads, 0, stream>>>(x, rows, cols, ld, targets, nll);
    RPTQ_CUDA_CHECK_LAUNCH();
  }
  if (total) {
    sum_kernel<<<1, kThreads, 0, stream>>>(nll, rows, total);
    RPTQ_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace rptq::cuda
