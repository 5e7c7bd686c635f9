#pragma once
// LayerNorm and RMSNorm on the GPU: the CUDA twins of rptq::ops::layer_norm / rms_norm (same arguments, same
// optional gather that writes the output already reordered: RPTQ's R1/R4 fusion), on device pointers.
// x, y: row-major float32 [rows, cols]; gamma, beta: [cols] or null; gather: [cols] int32 indices or null.
// y may equal x only when gather is null. Asynchronous on `stream`; a bad launch throws rptq::CudaError.
#include <cuda_runtime.h>

#include <cstdint>

namespace rptq::cuda {

void layer_norm(const float* x, float* y, std::int64_t rows, std::int64_t cols, const float* gamma,
                const float* beta, float eps, const std::int32_t* gather = nullptr, cudaStream_t stream = 0);
void rms_norm(const float* x, float* y, std::int64_t rows, std::int64_t cols, const float* gamma, float eps,
              const std::int32_t* gather = nullptr, cudaStream_t stream = 0);

}  // namespace rptq::cuda
