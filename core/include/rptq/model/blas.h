#pragma once
// The BLAS the CPU path uses: OpenBLAS, loaded at first use rather than linked, so that RPTQ can choose its CPU
// kernels before it initialises. OpenBLAS picks its kernels once, when the library loads, from the CPU model; a
// CPU model newer than the OpenBLAS build (Debian 12 ships 0.3.21, which predates Emerald Rapids, Granite Rapids,
// Zen 5, ...) gets the generic "Prescott" SSE3 kernels, 4-8x slower than the AVX2/AVX-512 ones the CPU supports.
// Unless the user set OPENBLAS_CORETYPE, we set it from the instruction sets the CPU and OS actually support.
// Everything in RPTQ calls BLAS through here; nothing links OpenBLAS directly.
#include <cstdint>
#include <string>

namespace rptq::blas {

// The library behind sgemm(): oneDNN when RPTQ was built with it (Debian's libdnnl: JIT kernels chosen from the
// CPU's instruction sets, 5-15% faster than OpenBLAS 0.3.21 on the forward pass's shapes, bench/README.md), else
// OpenBLAS. RPTQ_GEMM=openblas|onednn in the environment overrides the default. LAPACK always comes from OpenBLAS.
enum class GemmBackend { OpenBLAS, OneDNN };
GemmBackend gemm_backend();
void set_gemm_backend(GemmBackend b);  // throws std::runtime_error for oneDNN when it is not compiled in
bool have_onednn();
const char* gemm_backend_name(GemmBackend b);  // "openblas", "onednn"

// Row-major C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, on the active backend.
void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

// The same, always through OpenBLAS (the benchmarks' sgemm ceiling).
void sgemm_openblas(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                    const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                    std::int64_t ldc);

void set_num_threads(int n);

// LAPACK from the same library, on column-major matrices as LAPACK has them (a row-major symmetric matrix is the
// same buffer; its row-major upper triangle is the column-major lower one). uplo is 'L' or 'U'. They return
// LAPACK's info: 0 on success, k > 0 when the leading minor of order k is not positive definite (dpotrf) or the
// factor is singular (dpotri). Throw std::runtime_error when the library has no LAPACK.
// Cholesky factorisation a = L L^T ('L') or U^T U ('U'), in place in that triangle.
int dpotrf(char uplo, std::int64_t n, double* a, std::int64_t lda);
// The inverse of a from its Cholesky factor (as dpotrf left it), in place in the same triangle.
int dpotri(char uplo, std::int64_t n, double* a, std::int64_t lda);
// The inverse of a non-unit triangular matrix, in place in that triangle (info k > 0: a is singular at k).
int dtrtri(char uplo, std::int64_t n, double* a, std::int64_t lda);

struct Info {
  std::string library;   // the file loaded
  std::string config;    // openblas_get_config()
  std::string corename;  // the kernels in use, e.g. "SkylakeX"
  std::string coretype_source;  // "set by RPTQ from CPUID (avx512f ...)", "OPENBLAS_CORETYPE from the environment", ...
};
Info info();

// The OPENBLAS_CORETYPE RPTQ would choose for this CPU ("" when it leaves the choice to OpenBLAS).
std::string suggested_coretype();

}  // namespace rptq::blas
