// Device discovery. Everything here is host code; it lives in a .cu file so that __CUDA_ARCH_LIST__ (the
// architectures nvcc compiles this library for) is known.
#include "device.cuh"

#include <algorithm>
#include <cstdlib>

namespace rptq::cuda {

// 13000 -> "13.0"
static std::string cuda_version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// Why cudaGetDeviceCount failed, in words a user can act on.
static std::string unavailable_reason(cudaError_t status) {
  const std::string code = std::string(" (") + cudaGetErrorName(status) + ")";
  switch (status) {
    case cudaErrorNoDevice: {
      std::string text = "no CUDA-capable GPU detected";
      if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"))
        text += " (CUDA_VISIBLE_DEVICES=\"" + std::string(visible) + "\")";
      return text + code;
    }
    case cudaErrorInsufficientDriver: {
      int driver = 0, runtime = 0;
      cudaDriverGetVersion(&driver);
      cudaRuntimeGetVersion(&runtime);
      if (driver == 0) return "no NVIDIA driver is installed" + code;
      return "the NVIDIA driver supports CUDA " + cuda_version_text(driver) + " but this build needs CUDA " +
             cuda_version_text(runtime) + "; update the driver" + code;
    }
    case cudaErrorStubLibrary:
      return "the CUDA driver library loaded is the toolkit's stub, not the NVIDIA driver's" + code;
    default:
      return std::string("CUDA cannot start: ") + cudaGetErrorString(status) + code;
  }
}

int device_count(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess && count > 0) {
    if (reason) reason->clear();
    return count;
  }
  cudaGetLastError();  // the failed probe must not surface at a later RPTQ_CUDA_CHECK_LAUNCH
  if (reason) *reason = status == cudaSuccess ? "no CUDA-capable GPU detected" : unavailable_reason(status);
  return 0;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  RPTQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

ComputeCapability compute_capability(int device) {
  ComputeCapability cc;
  RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&cc.major, cudaDevAttrComputeCapabilityMajor, device));
  RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&cc.minor, cudaDevAttrComputeCapabilityMinor, device));
  return cc;
}

std::size_t total_memory(int device) {
  cudaDeviceProp prop{};
  RPTQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.totalGlobalMem;
}

MemoryInfo memory_info(int device) {
  int previous = 0;
  RPTQ_CUDA_CHECK(cudaGetDevice(&previous));
  RPTQ_CUDA_CHECK(cudaSetDevice(device));
  MemoryInfo info;
  const cudaError_t status = cudaMemGetInfo(&info.free_bytes, &info.total_bytes);
  RPTQ_CUDA_CHECK(cudaSetDevice(previous));  // restore before reporting, so a failure leaves the caller's device
  RPTQ_CUDA_CHECK(status);
  return info;
}

std::vector<int> kernel_architectures() {
#ifdef __CUDA_ARCH_LIST__
  std::vector<int> archs{__CUDA_ARCH_LIST__};  // e.g. 800, 890, 900
  for (int& a : archs) a /= 10;
  return archs;
#else
  return {};
#endif
}

bool kernels_support(ComputeCapability cc) {
  const std::vector<int> archs = kernel_architectures();
  if (archs.empty()) return true;  // unknown: let the launch report cudaErrorNoKernelImageForDevice
  return 10 * cc.major + cc.minor >= *std::min_element(archs.begin(), archs.end());
}

}  // namespace rptq::cuda
