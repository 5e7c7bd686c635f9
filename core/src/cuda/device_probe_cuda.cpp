// GPUs as the CUDA runtime lists them (kernels/device.cuh), for device.cpp.
#ifdef RPTQ_WITH_CUDA
#include <exception>

#include "device.cuh"
#include "cuda/device_probe.h"

namespace rptq {

bool cuda_compiled_in() { return true; }

namespace detail {

std::vector<GpuInfo> probe_gpus(std::string* reason) {
  std::vector<GpuInfo> gpus;
  const int count = cuda::device_count(reason);
  std::string archs;
  for (int arch : cuda::kernel_architectures()) archs += (archs.empty() ? "sm_" : ", sm_") + std::to_string(arch);
  try {
    for (int d = 0; d < count; ++d) {
      GpuInfo g;
      g.ordinal = d;
      g.name = cuda::device_name(d);
      const cuda::ComputeCapability cc = cuda::compute_capability(d);
      g.cc_major = cc.major;
      g.cc_minor = cc.minor;
      g.supported = cuda::kernels_support(cc);
      if (!g.supported)
        g.why_not = "sm_" + std::to_string(cc.major) + std::to_string(cc.minor) + "; this build has kernels for " + archs;
      g.total_bytes = cuda::total_memory(d);
      gpus.push_back(std::move(g));
    }
  } catch (const std::exception& e) {  // a GPU that cannot even be queried is not usable
    gpus.clear();
    if (reason) *reason = e.what();
  }
  return gpus;
}

GpuMemory probe_memory(int ordinal) {
  const cuda::MemoryInfo m = cuda::memory_info(ordinal);
  return {m.free_bytes, m.total_bytes};
}

}  // namespace detail
}  // namespace rptq
#endif
