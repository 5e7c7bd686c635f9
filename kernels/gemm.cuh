#pragma once
// Dense linear layers through cuBLAS: the CUDA twin of rptq::ops::linear, on device pointers.
//   y[rows, out] = x[rows, in] * w[out, in]^T (+ bias[out]) (+ y when accumulate)
// x has row stride ldx >= in; w is nn.Linear's row-major [out, in]; y is dense [rows, out] float32.
// Three input precisions, always with float32 accumulation and a float32 y:
//   FP32  float x and w, CUBLAS_COMPUTE_32F under the default math mode: true single precision, never TF32.
//   FP16  __half x and w (tensor cores), products exact in float, sums in float.
//   BF16  __nv_bfloat16 x and w, likewise.
// Weights of the FP16 / BF16 modes are converted once, ahead (convert() below); the overloads that take float x
// with 16-bit weights convert x into the handle's scratch on every call.
// The bias is handled as the CPU does: without accumulate y starts as the bias rows and the product is added onto
// it; with accumulate the product is added onto y and the bias added afterwards.
// Asynchronous on the handle's stream. Shapes are checked (std::invalid_argument) before any CUDA call;
// a failed CUDA / cuBLAS call throws rptq::CudaError. Plain host header: safe to include from .cpp.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace rptq::cuda {

// A cuBLAS handle bound to one stream, plus device scratch for conversions and dequantized weight tiles.
// Constructing one makes no CUDA call: cublasCreate runs (checked) at the first get(), so a handle can exist, and
// the ops' argument checks run, on a machine without a GPU. Move-only; not for concurrent use by two threads.
class BlasHandle {
 public:
  explicit BlasHandle(cudaStream_t stream = 0) noexcept : stream_(stream) {}
  ~BlasHandle() { release(); }
  BlasHandle(BlasHandle&& other) noexcept;
  BlasHandle& operator=(BlasHandle&& other) noexcept;
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;

  // The cuBLAS handle: created on first use with CUBLAS_DEFAULT_MATH (no TF32) and bound to stream().
  cublasHandle_t get();
  cudaStream_t stream() const noexcept { return stream_; }
  // Rebinds the handle (cublasSetStream, checked, once created).
  void set_stream(cudaStream_t stream);
  // At least `bytes` of device scratch owned by the handle. Grows, never shrinks; growing first synchronises the
  // stream, as work in flight may still read the old buffer. Valid until the next call that grows it.
  void* scratch(std::size_t bytes);
  // Destroys the cuBLAS handle and frees the scratch now, checked; the destructor does the same but drops a
  // failure (a destructor must not throw). The handle may be used again afterwards (it is then re-created).
  void close();

 private:
  void release() noexcept;
  cublasHandle_t handle_ = nullptr;
  cudaStream_t stream_ = 0;
  void* scratch_ = nullptr;
  std::size_t scratch_bytes_ = 0;
};

enum class GemmInputs { FP32, FP16, BF16 };

void linear(BlasHandle& blas, const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t in, const float* w,
            const float* bias, std::int64_t out, float* y, bool accumulate = false);
void linear(BlasHandle& blas, const __half* x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
            const __half* w, const float* bias, std::int64_t out, float* y, bool accumulate = false);
void linear(BlasHandle& blas, const __nv_bfloat16* x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
            const __nv_bfloat16* w, const float* bias, std::int64_t out, float* y, bool accumulate = false);
// Float activations, 16-bit weights: x is rounded to the weights' type (round to nearest even) first.
void linear(BlasHandle& blas, const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
            const __half* w, const float* bias, std::int64_t out, float* y, bool accumulate = false);
void linear(BlasHandle& blas, const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
            const __nv_bfloat16* w, const float* bias, std::int64_t out, float* y, bool accumulate = false);

// The product alone, for tiles of a larger layer: y = x * w^T (+ y when accumulate), w with row stride ldw >= in
// and y with row stride ldy >= out. x and w are float, __half or __nv_bfloat16 as `inputs` says.
void gemm_xwt(BlasHandle& blas, GemmInputs inputs, const void* x, std::int64_t ldx, std::int64_t rows,
              std::int64_t in, const void* w, std::int64_t ldw, std::int64_t out, float* y, std::int64_t ldy,
              bool accumulate);

// Rounding conversions (round to nearest even; NaN and infinities kept). convert_rows reads src with row stride
// ld >= cols and writes dst dense [rows, cols].
void convert(const float* src, __half* dst, std::int64_t n, cudaStream_t stream = 0);
void convert(const float* src, __nv_bfloat16* dst, std::int64_t n, cudaStream_t stream = 0);
void convert_rows(const float* src, std::int64_t ld, std::int64_t rows, std::int64_t cols, __half* dst,
                  cudaStream_t stream = 0);
void convert_rows(const float* src, std::int64_t ld, std::int64_t rows, std::int64_t cols, __nv_bfloat16* dst,
                  cudaStream_t stream = 0);

}  // namespace rptq::cuda
