#pragma once
// GPTQ's Hessian on the GPU: the CUDA twin of rptq::HessianAccumulator::add (core/src/method/weight_quant.cpp).
// h is a device double [in, in] row-major matrix, the accumulator's H; samples_before is N, the rows added before
// this batch. hessian_add adds the rows of x [rows, in] (device float32, row stride ld >= in):
//   H = N/(N + rows) H + 2/(N + rows) X^T X
// with X^T X in float32 through cuBLAS (SGEMM as cublasGemmEx, CUBLAS_COMPUTE_32F under the handle's default math
// mode: true single precision, never TF32) and the update in double, rounded as the CPU rounds it (keep * h and
// a * s each rounded, then their sum; no FMA). As on the CPU only the upper triangle (j >= i) is computed and it is
// mirrored, so H is exactly symmetric after every call, and a column that is all zero stays exactly 0.
// H is computed in row blocks of at most kHessianBlockRows rows: the float X^T X of a block lives in the handle's
// scratch (blas.scratch: min(kHessianBlockRows, in) * in floats, 4 MiB at in = 1024, 64 MiB at in = 16384).
// With samples_before == 0 H is written without being read (H = 0 + 2/rows X^T X), so a fresh allocation needs no
// clearing; with samples_before > 0 only its upper triangle is read. rows == 0 (or in == 0) is a no-op.
// The caller keeps N (N += rows after each call), as HessianAccumulator::samples() does.
// Asynchronous on blas.stream(). Shapes are checked (std::invalid_argument: negative sizes, ld < in, sizes beyond
// cuBLAS's int, null pointers) before any CUDA call; a failed CUDA / cuBLAS call throws rptq::CudaError.
// Plain host header: safe to include from .cpp.
#include <cstdint>

#include "gemm.cuh"

namespace rptq::cuda {

// Rows of H per SGEMM (the CPU's kHessianRows is 256).
constexpr std::int64_t kHessianBlockRows = 1024;

void hessian_add(BlasHandle& blas, const float* x, std::int64_t rows, std::int64_t ld, std::int64_t in,
                 std::int64_t samples_before, double* h);

}  // namespace rptq::cuda
