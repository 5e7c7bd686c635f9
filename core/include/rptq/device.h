#pragma once
// Where the forward pass runs, and which GPUs there are. CUDA is optional at build time (the kernels are compiled in
// only when nvcc was found) and at run time (a machine may have no GPU or no driver); both cases are reported here
// in words, never by a crash. Front ends (app/, ui/) learn everything about GPUs from this header: they never
// include the kernels.
#include <cstdint>
#include <string>
#include <vector>

namespace rptq {

enum class Device { CPU, CUDA };

// One GPU as the driver reports it, with whether the kernels of this build run on it.
struct GpuInfo {
  int ordinal = -1;  // the CUDA device ordinal (GpuOptions::device)
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  int cc_major = 0, cc_minor = 0;
  bool supported = false;
  std::string why_not;            // empty when supported, e.g. "sm_61; this build has kernels for sm_80, sm_90"
  std::uint64_t total_bytes = 0;  // device memory
  std::string describe() const;   // "cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" (+ " [unsupported]")
};

struct DeviceInfo {
  bool cuda_compiled = false;      // this build carries the CUDA kernels
  std::vector<GpuInfo> gpus;       // every GPU found, supported or not, by ordinal
  int cuda_devices = 0;            // how many of them are supported: a count, never an ordinal's bound
  std::string description;         // one line for logs, --version and the GUI's about box
  std::string unavailable_reason;  // why no GPU is usable; empty otherwise

  // The ordinal of the first supported GPU, or -1.
  int first_usable_gpu() const;
  // The GPU with this ordinal; nullptr when there is none.
  const GpuInfo* gpu(int ordinal) const;
  // The ordinal a run uses: `requested` when >= 0 (it must name a supported GPU), else the first supported one.
  // Throws InputError saying why (no usable GPU, no such ordinal, or the GPU is unsupported and why).
  int pick_gpu(int requested) const;
};

// The DeviceInfo of a list of GPUs (descriptions and the reason are derived from it): how device_info() builds its
// answer, and how tests fake a machine. `reason` is why no GPU could be listed at all (no driver, ...), if so.
DeviceInfo make_device_info(bool cuda_compiled, std::vector<GpuInfo> gpus, const std::string& reason = {});

// Probes once per process (the first call starts the CUDA runtime) and never throws.
DeviceInfo device_info();

// Whether this build carries the CUDA kernels, without starting the CUDA runtime (for --version).
bool cuda_compiled_in();

// Free and total memory of a GPU now. Creates the device's CUDA context (a few hundred MiB) if it has none yet.
// Throws InputError when the GPU is unusable or CUDA is not compiled in.
struct GpuMemory {
  std::uint64_t free_bytes = 0, total_bytes = 0;
};
GpuMemory gpu_memory(int ordinal);

// "cpu", "cuda" or "auto" (any case). auto picks CUDA when a GPU is usable, else the CPU. "cuda" without a usable
// GPU, and any other name, throw rptq::InputError saying why.
Device resolve_device(const std::string& name);

// "cpu" / "cuda": the spelling resolve_device accepts.
std::string device_name(Device device);

}  // namespace rptq
