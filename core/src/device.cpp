#include "rptq/device.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>

#include "cuda/device_probe.h"
#include "rptq/base/error.h"

namespace rptq {

std::string GpuInfo::describe() const {
  char memory[32];
  std::snprintf(memory, sizeof(memory), "%.1f GiB", static_cast<double>(total_bytes) / 1073741824.0);
  std::string text = "cuda:" + std::to_string(ordinal) + " " + name + " (sm_" + std::to_string(cc_major) +
                     std::to_string(cc_minor) + ", " + memory + ")";
  if (!supported) text += " [unsupported]";
  return text;
}

int DeviceInfo::first_usable_gpu() const {
  for (const GpuInfo& g : gpus)
    if (g.supported) return g.ordinal;
  return -1;
}

const GpuInfo* DeviceInfo::gpu(int ordinal) const {
  for (const GpuInfo& g : gpus)
    if (g.ordinal == ordinal) return &g;
  return nullptr;
}

int DeviceInfo::pick_gpu(int requested) const {
  if (cuda_devices <= 0) throw InputError("CUDA is unavailable: " + unavailable_reason);
  if (requested < 0) return first_usable_gpu();
  const GpuInfo* g = gpu(requested);
  if (!g)
    throw InputError("there is no GPU cuda:" + std::to_string(requested) + " (this machine has " +
                     std::to_string(gpus.size()) + (gpus.size() == 1 ? " GPU: " : " GPUs: ") + description + ")");
  if (!g->supported) throw InputError("GPU " + g->describe() + " cannot run this build's kernels: " + g->why_not);
  return requested;
}

DeviceInfo make_device_info(bool cuda_compiled, std::vector<GpuInfo> gpus, const std::string& reason) {
  DeviceInfo info;
  info.cuda_compiled = cuda_compiled;
  if (!cuda_compiled) {
    info.unavailable_reason = "CUDA support not compiled in";
    info.description = "CPU only (CUDA support not compiled in)";
    return info;
  }
  info.gpus = std::move(gpus);
  std::string listed, unsupported;
  for (const GpuInfo& g : info.gpus) {
    if (g.supported) ++info.cuda_devices;
    listed += (listed.empty() ? "" : "; ") + g.describe();
    if (!g.supported) unsupported += (unsupported.empty() ? "" : "; ") + g.describe() + ": " + g.why_not;
  }
  if (info.cuda_devices > 0) {
    info.description = "CUDA: " + listed;
  } else {
    info.unavailable_reason = !reason.empty()         ? reason
                              : info.gpus.empty()     ? std::string("no GPU found")
                                                      : "no GPU the kernels support (" + unsupported + ")";
    info.description = "CPU only (CUDA unavailable: " + info.unavailable_reason + ")";
  }
  return info;
}

DeviceInfo device_info() {
  static const DeviceInfo info = [] {
    std::string reason;
    std::vector<GpuInfo> gpus = detail::probe_gpus(&reason);
    return make_device_info(cuda_compiled_in(), std::move(gpus), reason);
  }();
  return info;
}

GpuMemory gpu_memory(int ordinal) { return detail::probe_memory(device_info().pick_gpu(ordinal)); }

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
