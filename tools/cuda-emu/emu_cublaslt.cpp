// Host emulation of the cuBLASLt subset bench_cuda calls (emu_runtime.cpp emulates cuBLAS's cublasGemmEx, not
// cuBLASLt); build.sh puts it in libemu.a, so it is linked only into a target that calls it. Like that
// cublasGemmEx it is naive: float accumulation in sequential order, 16-bit inputs converted exactly;
// CUBLAS_COMPUTE_32F_FAST_TF32 rounds the float inputs to TF32 (10 mantissa bits, nearest even) first. The
// heuristic offers two identical "algorithms", so the caller's best-of loop runs more than once. Streams and
// workspaces are ignored (everything is synchronous).
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

struct Desc {
  cublasComputeType_t compute;
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
};
struct Layout {
  cudaDataType type;
  std::uint64_t rows, cols;
  std::int64_t ld;
};

float tf32(float v) {
  std::uint32_t b;
  std::memcpy(&b, &v, 4);
  if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0xfffu + ((b >> 13) & 1u)) & ~0x1fffu;
  std::memcpy(&v, &b, 4);
  return v;
}

bool supported(cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }

float load(const void* p, cudaDataType t, std::int64_t i) {
  switch (t) {
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

void store(void* p, cudaDataType t, std::int64_t i, float v) {
  switch (t) {
    case CUDA_R_16F: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
    default: static_cast<float*>(p)[i] = v;
  }
}

}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = reinterpret_cast<cublasLtHandle_t>(new int(4));
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete reinterpret_cast<int*>(h);
  return CUBLAS_STATUS_SUCCESS;
}
size_t cublasLtGetVersion(void) { return 0; }  // 0: emulated

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  if (scale != CUDA_R_32F || (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  Desc* p = new Desc;
  p->compute = compute;
  *d = reinterpret_cast<cublasLtMatmulDesc_t>(p);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete reinterpret_cast<Desc*>(d);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  Desc* p = reinterpret_cast<Desc*>(d);
  if (!buf) return CUBLAS_STATUS_INVALID_VALUE;
  if (attr == CUBLASLT_MATMUL_DESC_TRANSA || attr == CUBLASLT_MATMUL_DESC_TRANSB) {
    if (size != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    cublasOperation_t op;
    std::memcpy(&op, buf, sizeof op);
    if (op != CUBLAS_OP_N && op != CUBLAS_OP_T) return CUBLAS_STATUS_NOT_SUPPORTED;
    (attr == CUBLASLT_MATMUL_DESC_TRANSA ? p->ta : p->tb) = op;
    return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  if (!supported(type)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (ld < static_cast<int64_t>(rows > 0 ? rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
  *l = reinterpret_cast<cublasLtMatrixLayout_t>(new Layout{type, rows, cols, ld});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete reinterpret_cast<Layout*>(l);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = reinterpret_cast<cublasLtMatmulPreference_t>(new int(5));
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete reinterpret_cast<int*>(p);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t,
                                                    const void* buf, size_t) {
  return buf ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
  if (!d || !a || !b || !c || !dd || requested < 1 || !returned) return CUBLAS_STATUS_INVALID_VALUE;
  const int n = requested < 2 ? requested : 2;
  for (int k = 0; k < n; ++k) {
    std::memset(&results[k], 0, sizeof results[k]);
    results[k].algo.data[0] = static_cast<std::uint64_t>(k);
    results[k].state = CUBLAS_STATUS_SUCCESS;
    results[k].wavesCount = 1.0f;
  }
  *returned = n;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t adesc, const void* B, cublasLtMatrixLayout_t bdesc,
                              const void* beta, const void* C, cublasLtMatrixLayout_t cdesc, void* D,
                              cublasLtMatrixLayout_t ddesc, const cublasLtMatmulAlgo_t*, void*, size_t,
                              cudaStream_t) {
  const Desc& op = *reinterpret_cast<const Desc*>(desc);
  const Layout& la = *reinterpret_cast<const Layout*>(adesc);
  const Layout& lb = *reinterpret_cast<const Layout*>(bdesc);
  const Layout& lc = *reinterpret_cast<const Layout*>(cdesc);
  const Layout& ld = *reinterpret_cast<const Layout*>(ddesc);
  // op(A) is m x k, op(B) k x n, C and D m x n (column-major).
  const std::int64_t m = static_cast<std::int64_t>(op.ta == CUBLAS_OP_N ? la.rows : la.cols);
  const std::int64_t k = static_cast<std::int64_t>(op.ta == CUBLAS_OP_N ? la.cols : la.rows);
  const std::int64_t kb = static_cast<std::int64_t>(op.tb == CUBLAS_OP_N ? lb.rows : lb.cols);
  const std::int64_t n = static_cast<std::int64_t>(op.tb == CUBLAS_OP_N ? lb.cols : lb.rows);
  if (k != kb || static_cast<std::int64_t>(lc.rows) != m || static_cast<std::int64_t>(lc.cols) != n ||
      static_cast<std::int64_t>(ld.rows) != m || static_cast<std::int64_t>(ld.cols) != n || la.type != lb.type)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (la.type != CUDA_R_32F && op.compute == CUBLAS_COMPUTE_32F_FAST_TF32) return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool round_tf32 = op.compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t i = 0; i < m; ++i) {
      float s = 0.0f;
      for (std::int64_t l = 0; l < k; ++l) {
        float av = op.ta == CUBLAS_OP_N ? load(A, la.type, i + l * la.ld) : load(A, la.type, l + i * la.ld);
        float bv = op.tb == CUBLAS_OP_N ? load(B, lb.type, l + j * lb.ld) : load(B, lb.type, j + l * lb.ld);
        if (round_tf32) {
          av = tf32(av);
          bv = tf32(bv);
        }
        s += av * bv;
      }
      // beta = 0: C is not read (it may hold NaN), as cuBLAS.
      const float v = be == 0.0f ? al * s : al * s + be * load(C, lc.type, i + j * lc.ld);
      store(D, ld.type, i + j * ld.ld, v);
    }
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
