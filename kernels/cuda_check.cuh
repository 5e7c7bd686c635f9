#pragma once
// CUDA and cuBLAS status codes turned into exceptions. We run inside a GUI process: a failed CUDA call throws
// rptq::CudaError (a std::runtime_error) naming the call, its file and line, and never aborts.
// Plain host header: safe to include from .cpp files compiled by the host compiler.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace rptq {

// A CUDA runtime or cuBLAS call failed. code() is the cudaError_t or cublasStatus_t value; out_of_memory() is
// true for cudaErrorMemoryAllocation and CUBLAS_STATUS_ALLOC_FAILED, so a caller can suggest a smaller batch.
class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& message, int code, bool out_of_memory)
      : std::runtime_error(message), code_(code), out_of_memory_(out_of_memory) {}
  int code() const noexcept { return code_; }
  bool out_of_memory() const noexcept { return out_of_memory_; }

 private:
  int code_;
  bool out_of_memory_;
};

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);

}  // namespace rptq

#define RPTQ_CUDA_CHECK(call)                                                                 \
  do {                                                                                        \
    const cudaError_t rptq_status_ = (call);                                                  \
    if (rptq_status_ != cudaSuccess) ::rptq::throw_cuda_error(rptq_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define RPTQ_CUBLAS_CHECK(call)                                                               \
  do {                                                                                        \
    const cublasStatus_t rptq_status_ = (call);                                               \
    if (rptq_status_ != CUBLAS_STATUS_SUCCESS)                                                \
      ::rptq::throw_cublas_error(rptq_status_, #call, __FILE__, __LINE__);                    \
  } while (0)

// After a <<<...>>> launch: reports a bad configuration (too many threads, too much shared memory, no kernel
// image for this GPU). Errors raised while the kernel runs surface at the next synchronising call.
#define RPTQ_CUDA_CHECK_LAUNCH() RPTQ_CUDA_CHECK(cudaGetLastError())
