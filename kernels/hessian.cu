// GPTQ's Hessian: H = keep H + a X^T X, block of rows by block of rows.
//
// X^T X. x row-major [rows, in] with row stride ld is, read column-major, the matrix M = x^T [in, rows] (leading
// dimension ld), and X^T X = M M^T. Rows i0..i1 of H from column i0 on (the upper triangle, the diagonal block
// whole, as the CPU's sgemm computes them) are one cublasGemmEx: op(A) = M[i0.., :] (op N, m = in - i0),
// op(B) = M[i0..i1, :]^T (op T, n = i1 - i0), k = rows, both from x + i0 with leading dimension ld. Its column-major
// result C[in - i0, i1 - i0] (ldc = in - i0) holds C(j - i0, i - i0) = sum_r x[r][j] x[r][i] at
// s[(i - i0) (in - i0) + (j - i0)]: read row-major, the CPU's scratch layout, with no copies.
//
// The update. A block of 32 x 8 threads owns a 32 x 32 tile of H (tiles wholly below the diagonal exit at once):
// each thread updates the upper-triangle entries (j >= i) of its column of the tile, row-major and coalesced, and
// keeps them in shared memory; after a barrier the tile is written back transposed into the lower triangle
// (h[j][i], j > i), coalesced along i. Only upper entries are read, and each is read and written by its one owner,
// so blocks need no ordering between them. The arithmetic is the CPU's: keep * h and a * s rounded separately,
// then summed (__dmul_rn / __dadd_rn keep nvcc from fusing them into an FMA).
#include "hessian.cuh"

#include <limits>
#include <string>

#include "cuda_check.cuh"
#include "host_device.cuh"

namespace rptq::cuda {

namespace {

constexpr int kTile = 32, kTileRows = 8;

__global__ void __launch_bounds__(kTile * kTileRows)
    hessian_update_kernel(const float* __restrict__ s, std::int64_t i0, std::int64_t i1, std::int64_t n,
                          double keep, double a, bool read_h, double* __restrict__ h) {
  __shared__ double tile[kTile][kTile + 1];  // +1: the transposed read is free of bank conflicts
  const std::int64_t r0 = i0 + static_cast<std::int64_t>(blockIdx.y) * kTile;
  const std::int64_t c0 = i0 + static_cast<std::int64_t>(blockIdx.x) * kTile;
  if (c0 + kTile - 1 < r0) return;  // every j < i: the mirror of another tile (uniform over the block)
  const std::int64_t w = n - i0;
  const int tx = threadIdx.x;
  const std::int64_t j = c0 + tx;
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {
    const std::int64_t i = r0 + k;
    if (i < i1 && j < n && j >= i) {
      const double sv = static_cast<double>(s[(i - i0) * w + (j - i0)]);
      // First batch (N = 0): keep = 0 and H is not read, so it may hold anything; 0 + a s as the CPU's 0 * 0 + a s.
      const double kept = read_h ? __dmul_rn(keep, h[i * n + j]) : 0.0;
      const double v = __dadd_rn(kept, __dmul_rn(a, sv));
      h[i * n + j] = v;
      tile[k][tx] = v;
    }
  }
  __syncthreads();
  const std::int64_t im = r0 + tx;
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {
    const std::int64_t jm = c0 + k;
    if (im < i1 && jm < n && jm > im) h[jm * n + im] = tile[tx][k];
  }
}

}  // namespace

void hessian_add(BlasHandle& blas, const float* x, std::int64_t rows, std::int64_t ld, std::int64_t in,
                 std::int64_t samples_before, double* h) {
  const char* op = "hessian_add";
  require(rows >= 0 && in >= 0, op, "bad shape rows " + std::to_string(rows) + ", in " + std::to_string(in));
  require_ld(op, ld, in);
  require(samples_before >= 0, op, "negative sample count " + std::to_string(samples_before));
  // cuBLAS takes int sizes and leading dimensions.
  require_int(op, rows, "rows");
  require_int(op, ld, "row stride");
  if (rows == 0 || in == 0) return;
  require_data(op, x, "x");
  require_data(op, h, "h");
  require(samples_before <= std::numeric_limits<std::int64_t>::max() - rows, op, "sample count overflows");
  // HessianAccumulator::add's factors, computed the same way.
  const double keep = static_cast<double>(samples_before) / static_cast<double>(samples_before + rows);
  const double a = 2.0 / static_cast<double>(samples_before + rows);
  const std::int64_t block = in < kHessianBlockRows ? in : kHessianBlockRows;
  float* s = static_cast<float*>(blas.scratch(static_cast<std::size_t>(block * in) * sizeof(float)));
  cublasHandle_t handle = blas.get();
  const float one = 1.0f, zero = 0.0f;
  for (std::int64_t i0 = 0; i0 < in; i0 += block) {
    const std::int64_t i1 = i0 + block < in ? i0 + block : in, bi = i1 - i0, w = in - i0;
    RPTQ_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(w), static_cast<int>(bi),
                                   static_cast<int>(rows), &one, x + i0, CUDA_R_32F, static_cast<int>(ld), x + i0,
                                   CUDA_R_32F, static_cast<int>(ld), &zero, s, CUDA_R_32F, static_cast<int>(w),
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    const dim3 grid(static_cast<unsigned>((w + kTile - 1) / kTile), static_cast<unsigned>((bi + kTile - 1) / kTile));
    hessian_update_kernel<<<grid, dim3(kTile, kTileRows), 0, blas.stream()>>>(s, i0, i1, in, keep, a,
                                                                               samples_before > 0, h);
    RPTQ_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace rptq::cuda
