#pragma once
// How and where the engine runs: the device (CPU or a CUDA GPU) and the GPU's options, chosen once by the front
// end and handed to the engine's entry points (rptq/engine.h), which pick the implementation.
#include <cstdint>
#include <string>

#include "rptq/device.h"

namespace rptq {

// Inputs of the decoder layers' GEMMs; accumulation and everything else is float32. The output head and
// project_in / project_out always run in FP32.
enum class GpuPrecision {
  FP32,  // parity with the CPU path (cuBLAS in true single precision, never TF32)
  FP16,  // dense weights uploaded as FP16, activations rounded to FP16 before each product
  BF16,
};

// Where the decoder layers' weights live on the device.
enum class GpuLayerPlacement {
  Auto,      // Resident when they fit, else Stream. They fit when all layers (as uploaded, in the precision used)
             // plus the upload's conversion buffer take at most the device's free memory after the outer weights
             // less a margin for the activations: max(2 GiB, 20% of the device's total memory).
  Stream,    // layer streaming: every forward copies each layer into one of the reused slots
  Resident,  // every layer uploaded once, at construction, and kept (not fitting: the out-of-memory InputError)
};
const char* gpu_layer_placement_name(GpuLayerPlacement p);  // "auto", "stream", "resident"

struct GpuOptions {
  GpuPrecision precision = GpuPrecision::FP32;
  int device = -1;  // the CUDA ordinal; -1: the first GPU the kernels support (DeviceInfo::pick_gpu)
  bool overlap_upload = true;  // streaming: a second stream and slot prefetch the next layer (false: one slot)
  GpuLayerPlacement layers = GpuLayerPlacement::Auto;
};

struct Execution {
  Device device = Device::CPU;
  GpuOptions gpu;          // with Device::CUDA: ordinal, precision, layer placement
  std::int64_t batch = 8;  // with Device::CUDA: windows per layer step of calibration and quantization passes

  // On `device` with the default GPU options (the first supported GPU) and `batch` windows per layer step.
  static Execution on(Device device, std::int64_t batch = 8) {
    Execution e;
    e.device = device;
    e.batch = batch;
    return e;
  }
  // "CPU (2 threads)" or the GPU it runs on, as DeviceInfo describes it ("cuda:0 NVIDIA H100 ... (sm_90, ...)").
  std::string describe() const;
};

}  // namespace rptq
