// cuBLAS linear layers and the float -> half / bfloat16 conversions they need.
//
// Row-major y[rows, out] = x[rows, in] * w[out, in]^T is, read column-major, y^T[out, rows] = w * x^T, with w
// stored as the column-major [in, out] matrix w^T (so op T) and x as the column-major [in, rows] matrix x^T (op N):
// one cublasGemmEx with m = out, n = rows, k = in and no copies. cublasGemmEx takes the three precisions with
// CUBLAS_COMPUTE_32F: float inputs then run in true single precision (TF32 needs CUBLAS_COMPUTE_32F_FAST_TF32 or
// the TF32 math mode, neither of which is set), 16-bit inputs on the tensor cores with float sums.
#include "gemm.cuh"

#include <limits>
#include <string>
#include <utility>

#include "cuda_check.cuh"
#include "elementwise.cuh"
#include "host_device.cuh"

namespace rptq::cuda {

// ---------------------------------------------------------------------------------------------------------------
// BlasHandle

BlasHandle::BlasHandle(BlasHandle&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      stream_(other.stream_),
      scratch_(std::exchange(other.scratch_, nullptr)),
      scratch_bytes_(std::exchange(other.scratch_bytes_, 0)) {}

BlasHandle& BlasHandle::operator=(BlasHandle&& other) noexcept {
  if (this != &other) {
    release();
    handle_ = std::exchange(other.handle_, nullptr);
    stream_ = other.stream_;
    scratch_ = std::exchange(other.scratch_, nullptr);
    scratch_bytes_ = std::exchange(other.scratch_bytes_, 0);
  }
  return *this;
}

cublasHandle_t BlasHandle::get() {
  if (!handle_) {
    cublasHandle_t h = nullptr;
    RPTQ_CUBLAS_CHECK(cublasCreate(&h));
    try {
      RPTQ_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
      RPTQ_CUBLAS_CHECK(cublasSetStream(h, stream_));
    } catch (...) {
      cublasDestroy(h);
      throw;
    }
    handle_ = h;
  }
  return handle_;
}

void BlasHandle::set_stream(cudaStream_t stream) {
  if (handle_) RPTQ_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  stream_ = stream;
}

void* BlasHandle::scratch(std::size_t bytes) {
  if (bytes <= scratch_bytes_) return scratch_;
  if (scratch_) {
    RPTQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    void* old = std::exchange(scratch_, nullptr);
    scratch_bytes_ = 0;
    RPTQ_CUDA_CHECK(cudaFree(old));
  }
  // Grow by half again so a slowly increasing size does not reallocate on every call.
  const std::size_t want = bytes + bytes / 2;
  RPTQ_CUDA_CHECK(cudaMalloc(&scratch_, want));
  scratch_bytes_ = want;
  return scratch_;
}

void BlasHandle::close() {
  if (scratch_) {
    RPTQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    void* old = std::exchange(scratch_, nullptr);
    scratch_bytes_ = 0;
    RPTQ_CUDA_CHECK(cudaFree(old));
  }
  if (handle_) RPTQ_CUBLAS_CHECK(cublasDestroy(std::exchange(handle_, nullptr)));
}

void BlasHandle::release() noexcept {
  // Failures are dropped (and cleared from the runtime's last error): see DeviceBuffer::release.
  if (scratch_ && cudaFree(scratch_) != cudaSuccess) cudaGetLastError();
  if (handle_) cublasDestroy(handle_);
  scratch_ = nullptr;
  scratch_bytes_ = 0;
  handle_ = nullptr;
}

// ---------------------------------------------------------------------------------------------------------------
// Conversions

namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__global__ void convert_kernel(const float* __restrict__ src, T* __restrict__ dst, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dst[i] = from_float<T>(src[i]);
}

template <typename T>
__global__ void convert_rows_kernel(const float* __restrict__ src, std::int64_t ld, std::int64_t rows,
                                    std::int64_t cols, T* __restrict__ dst) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (std::int64_t r = blockIdx.y; r < rows; r += gridDim.y) dst[r * cols + c] = from_float<T>(src[r * ld + c]);
}

template <typename T>
void launch_convert(const float* src, T* dst, std::int64_t n, cudaStream_t stream) {
  require(n >= 0, "convert", "negative size " + std::to_string(n));
  if (n == 0) return;
  require_data("convert", src, "src");
  require_data("convert", dst, "dst");
  convert_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(src, dst, n);
  RPTQ_CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch_convert_rows(const float* src, std::int64_t ld, std::int64_t rows, std::int64_t cols, T* dst,
                         cudaStream_t stream) {
  require_shape("convert_rows", rows, cols);
  require_ld("convert_rows", ld, cols);
  require_int("convert_rows", cols, "cols");
  if (rows == 0 || cols == 0) return;
  require_data("convert_rows", src, "src");
  require_data("convert_rows", dst, "dst");
  const dim3 grid(static_cast<unsigned>((cols + kThreads - 1) / kThreads),
                  static_cast<unsigned>(rows < 65535 ? rows : 65535));
  convert_rows_kernel<T><<<grid, kThreads, 0, stream>>>(src, ld, rows, cols, dst);
  RPTQ_CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------------------------
// GEMM

cudaDataType_t data_type(GemmInputs inputs) {
  switch (inputs) {
    case GemmInputs::FP16: return CUDA_R_16F;
    case GemmInputs::BF16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

void check_gemm(const char* op, const void* x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
                const void* w, std::int64_t ldw, std::int64_t out, const float* y, std::int64_t ldy) {
  require(rows >= 0 && in >= 0 && out >= 0, op,
          "bad shape rows " + std::to_string(rows) + ", in " + std::to_string(in) + ", out " + std::to_string(out));
  require(ldx >= in, op, "x row stride " + std::to_string(ldx) + " is less than in = " + std::to_string(in));
  require(ldw >= in, op, "w row stride " + std::to_string(ldw) + " is less than in = " + std::to_string(in));
  require(ldy >= out, op, "y row stride " + std::to_string(ldy) + " is less than out = " + std::to_string(out));
  // cuBLAS takes int sizes and leading dimensions.
  for (std::int64_t v : {rows, in, out, ldx, ldw, ldy}) require_int(op, v, "a size or stride");
  if (rows > 0 && out > 0) {
    require_data(op, y, "y");
    if (in > 0) {
      require_data(op, x, "x");
      require_data(op, w, "w");
    }
  }
}

// y = x * w^T + beta * y; shapes already checked, rows, out > 0.
void gemm_unchecked(BlasHandle& blas, GemmInputs inputs, const void* x, std::int64_t ldx, std::int64_t rows,
                    std::int64_t in, const void* w, std::int64_t ldw, std::int64_t out, float* y, std::int64_t ldy,
                    float beta) {
  if (in == 0) {
    // An empty sum: y = beta * y, which cuBLAS may not accept as k = 0.
    if (beta == 0.0f) {
      RPTQ_CUDA_CHECK(cudaMemset2DAsync(y, static_cast<std::size_t>(ldy) * sizeof(float), 0,
                                        static_cast<std::size_t>(out) * sizeof(float), static_cast<std::size_t>(rows),
                                        blas.stream()));
    }
    return;
  }
  const float alpha = 1.0f;
  const cudaDataType_t type = data_type(inputs);
  RPTQ_CUBLAS_CHECK(cublasGemmEx(blas.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(rows),
                                 static_cast<int>(in), &alpha, w, type, static_cast<int>(ldw), x, type,
                                 static_cast<int>(ldx), &beta, y, CUDA_R_32F, static_cast<int>(ldy),
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// ops::linear's bias convention around one product.
void linear_any(const char* op, BlasHandle& blas, GemmInputs inputs, const void* x, std::int64_t ldx,
                std::int64_t rows, std::int64_t in, const void* w, const float* bias, std::int64_t out, float* y,
                bool accumulate) {
  check_gemm(op, x, ldx, rows, in, w, in, out, y, out);
  if (rows == 0 || out == 0) return;
  float beta = accumulate ? 1.0f : 0.0f;
  if (bias && !accumulate) {
    broadcast_rows(y, rows, out, bias, blas.stream());
    beta = 1.0f;
  }
  gemm_unchecked(blas, inputs, x, ldx, rows, in, w, in, out, y, out, beta);
  if (bias && accumulate) add_bias(y, rows, out, bias, blas.stream());
}

// Float x converted into the handle's scratch (dense, ld = in), then the 16-bit product.
template <typename T>
void linear_convert_x(const char* op, BlasHandle& blas, GemmInputs inputs, const float* x, std::int64_t ldx,
                      std::int64_t rows, std::int64_t in, const T* w, const float* bias, std::int64_t out, float* y,
                      bool accumulate) {
  check_gemm(op, x, ldx, rows, in, w, in, out, y, out);
  if (rows == 0 || out == 0) return;
  T* xs = nullptr;
  if (in > 0) {
    xs = static_cast<T*>(blas.scratch(static_cast<std::size_t>(rows * in) * sizeof(T)));
    convert_rows(x, ldx, rows, in, xs, blas.stream());
  }
  linear_any(op, blas, inputs, xs, in, rows, in, w, bias, out, y, accumulate);
}

}  // namespace

void convert(const float* src, __half* dst, std::int64_t n, cudaStream_t stream) {
  launch_convert(src, dst, n, stream);
}
void convert(const float* src, __nv_bfloat16* dst, std::int64_t n, cudaStream_t stream) {
  launch_convert(src, dst, n, stream);
}
void convert_rows(const float* src, std::int64_t ld, std::int64_t rows, std::int64_t cols, __half* dst,
                  cudaStream_t stream) {
  launch_convert_rows(src, ld, rows, cols, dst, stream);
}
void convert_rows(const float* src, std::int64_t ld, std::int64_t rows, std::int64_t cols, __nv_bfloat16* dst,
                  cudaStream_t stream) {
  launch_convert_rows(src, ld, rows, cols, dst, stream);
}

void gemm_xwt(BlasHandle& blas, GemmInputs inputs, const void* x, std::int64_t ldx, std::int64_t rows,
              std::int64_t in, const void* w, std::int64_t ldw, std::int64_t out, float* y, std::int64_t ldy,
              bool accumulate) {
  check_gemm("gemm_xwt", x, ldx, rows, in, w, ldw, out, y, ldy);
  if (rows == 0 || out == 0) return;
  gemm_unchecked(blas, inputs, x, ldx, rows, in, w, ldw, out, y, ldy, accumulate ? 1.0f : 0.0f);
}

void linear(BlasHandle& blas, const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t in, const float* w,
            const float* bias, std::int64_t out, float* y, bool accumulate) {
  linear_any("linear", blas, GemmInputs::FP32, x, ldx, rows, in, w, bias, out, y, accumulate);
}
void linear(BlasHandle& blas, const __half* x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
            const __half* w, const float* bias, std::int64_t out, float* y, bool accumulate) {
  linear_any("linear", blas, GemmInputs::FP16, x, ldx, rows, in, w, bias, out, y, accumulate);
}
void linear(BlasHandle& blas, const __nv_bfloat16* x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
            const __nv_bfloat16* w, const float* bias, std::int64_t out, float* y, bool accumulate) {
  linear_any("linear", blas, GemmInputs::BF16, x, ldx, rows, in, w, bias, out, y, accumulate);
}
void linear(BlasHandle& blas, const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
            const __half* w, const float* bias, std::int64_t out, float* y, bool accumulate) {
  linear_convert_x("linear", blas, GemmInputs::FP16, x, ldx, rows, in, w, bias, out, y, accumulate);
}
void linear(BlasHandle& blas, const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
            const __nv_bfloat16* w, const float* bias, std::int64_t out, float* y, bool accumulate) {
  linear_convert_x("linear", blas, GemmInputs::BF16, x, ldx, rows, in, w, bias, out, y, accumulate);
}

}  // namespace rptq::cuda
