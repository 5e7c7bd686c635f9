// The CPU-only build's answers about GPUs: none, because the kernels are not compiled in.
#ifndef RPTQ_WITH_CUDA
#include "cuda/device_probe.h"
#include "rptq/base/error.h"

namespace rptq {

bool cuda_compiled_in() { return false; }

namespace detail {

std::vector<GpuInfo> probe_gpus(std::string* reason) {
  if (reason) *reason = "CUDA support not compiled in";
  return {};
}

GpuMemory probe_memory(int) { throw InputError("CUDA support not compiled in"); }

}  // namespace detail
}  // namespace rptq
#endif
