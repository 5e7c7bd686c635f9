#pragma once
// Where the forward pass runs. CUDA is optional at build time (RPTQ_WITH_CUDA) and at run time (a machine may
// have no GPU or no driver); both cases are reported here in words, never by a crash.
#include <string>

namespace rptq {

enum class Device { CPU, CUDA };

struct DeviceInfo {
  bool cuda_compiled = false;      // this build carries the CUDA kernels
  int cuda_devices = 0;            // GPUs the kernels can run on (0 when not compiled in)
  std::string description;         // one line for logs, --version and the GUI's about box
  std::string unavailable_reason;  // why cuda_devices is 0; empty otherwise
};

// Probes once per process (the first call starts the CUDA runtime) and never throws.
DeviceInfo device_info();

// "cpu", "cuda" or "auto" (any case). auto picks CUDA when a GPU is usable, else the CPU. "cuda" without a usable
// GPU, and any other name, throw rptq::InputError saying why.
Device resolve_device(const std::string& name);

// "cpu" / "cuda": the spelling resolve_device accepts.
std::string device_name(Device device);

}  // namespace rptq
