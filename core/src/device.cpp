#include "rptq/device.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>

#include "rptq/error.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#endif

namespace rptq {

namespace {

#ifdef RPTQ_WITH_CUDA
// "cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"; names a GPU the kernels cannot run on as such.
std::string describe_gpu(int device, const cuda::ComputeCapability& cc, bool supported) {
  char memory[32];
  std::snprintf(memory, sizeof(memory), "%.1f GiB", cuda::total_memory(device) / 1073741824.0);
  std::string text = "cuda:" + std::to_string(device) + " " + cuda::device_name(device) + " (sm_" +
                     std::to_string(cc.major) + std::to_string(cc.minor) + ", " + memory + ")";
  if (!supported) text += " [unsupported]";
  return text;
}

std::string kernel_architecture_list() {
  std::string text;
  for (int arch : cuda::kernel_architectures()) text += (text.empty() ? "sm_" : ", sm_") + std::to_string(arch);
  return text;
}
#endif

DeviceInfo probe() {
  DeviceInfo info;
#ifdef RPTQ_WITH_CUDA
  info.cuda_compiled = true;
  std::string reason;
  const int count = cuda::device_count(&reason);
  std::string listed, unsupported;
  try {
    for (int d = 0; d < count; ++d) {
      const cuda::ComputeCapability cc = cuda::compute_capability(d);
      const bool supported = cuda::kernels_support(cc);
      if (supported) ++info.cuda_devices;
      const std::string gpu = describe_gpu(d, cc, supported);
      listed += (listed.empty() ? "" : "; ") + gpu;
      if (!supported) unsupported += (unsupported.empty() ? "" : "; ") + gpu;
    }
  } catch (const std::exception& e) {  // a GPU that cannot even be queried is not usable
    info.cuda_devices = 0;
    listed.clear();
    reason = e.what();
  }
  if (info.cuda_devices > 0) {
    info.description = "CUDA: " + listed;
  } else {
    if (reason.empty())
      reason = "no GPU the kernels support (" + unsupported + "; this build has kernels for " +
               kernel_architecture_list() + ")";
    info.unavailable_reason = reason;
    info.description = "CPU only (CUDA unavailable: " + reason + ")";
  }
#else
  info.unavailable_reason = "CUDA support not compiled in";
  info.description = "CPU only (CUDA support not compiled in)";
#endif
  return info;
}

}  // namespace

DeviceInfo device_info() {
  static const DeviceInfo info = probe();
  return info;
}

Device resolve_device(const std::string& name) {
  std::string key = name;
  std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
  if (key == "cpu") return Device::CPU;
  if (key == "cuda" || key == "auto") {
    const DeviceInfo info = device_info();
    if (info.cuda_devices > 0) return Device::CUDA;
    if (key == "auto") return Device::CPU;
    throw InputError("device 'cuda' requested but CUDA is unavailable: " + info.unavailable_reason);
  }
  throw InputError("unknown device '" + name + "' (expected cpu, cuda or auto)");
}

std::string device_name(Device device) { return device == Device::CUDA ? "cuda" : "cpu"; }

}  // namespace rptq
