#pragma once
// What device.cpp asks of the CUDA runtime, written twice: device_probe_cuda.cpp with the kernels compiled in,
// device_probe_none.cpp without them (CPU-only builds). Private to core.
#include <string>
#include <vector>

#include "rptq/device.h"

namespace rptq::detail {

// Every GPU the driver lists, with whether this build's kernels run on it. Never throws: when the runtime cannot
// start (no driver, an old one, a GPU that cannot be queried) the list is empty and *reason says why.
std::vector<GpuInfo> probe_gpus(std::string* reason);
// Free and total memory of a supported GPU (creates its context).
GpuMemory probe_memory(int ordinal);

}  // namespace rptq::detail
