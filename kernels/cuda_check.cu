// Formatting of CUDA / cuBLAS failures into rptq::CudaError.
#include "cuda_check.cuh"

#include <cstdio>

#include "device.cuh"

namespace rptq {

// "<call> failed at <file>:<line>: <what> (<name>)".
static std::string describe_failure(const char* call, const char* file, int line, const std::string& what,
                                    const char* name) {
  return std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " + what + " (" + name + ")";
}

// On out-of-memory the free/total memory of the current GPU tells the user how far off they are. Best effort:
// the query must not replace the original error, and its own failure is cleared from the runtime's last error.
static std::string memory_note() {
  std::size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  char text[96];
  std::snprintf(text, sizeof(text), "; %.2f GiB free of %.2f GiB on the GPU", free_bytes / 1073741824.0,
                total_bytes / 1073741824.0);
  return text;
}

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  // The runtime also keeps the status as its "last error": clear it (non-sticky errors only; a sticky kernel fault
  // stays), so that the next RPTQ_CUDA_CHECK_LAUNCH does not report this failure a second time.
  cudaGetLastError();
  const bool oom = status == cudaErrorMemoryAllocation;
  std::string message;
  if (oom) {
    message = "CUDA out of memory: " +
              describe_failure(call, file, line, cudaGetErrorString(status), cudaGetErrorName(status)) +
              memory_note();
  } else {
    message = "CUDA error: " +
              describe_failure(call, file, line, cudaGetErrorString(status), cudaGetErrorName(status));
    if (status == cudaErrorNoKernelImageForDevice) {
      message += "; this build has kernels for";
      for (int arch : cuda::kernel_architectures()) message += " sm_" + std::to_string(arch);
    }
  }
  throw CudaError(message, static_cast<int>(status), oom);
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  const bool oom = status == CUBLAS_STATUS_ALLOC_FAILED;
  const char* name = cublasGetStatusName(status);
  std::string message = oom ? "cuBLAS out of memory: " : "cuBLAS error: ";
  message += describe_failure(call, file, line, cublasGetStatusString(status), name);
  if (oom) message += memory_note();
  throw CudaError(message, static_cast<int>(status), oom);
}

}  // namespace rptq
