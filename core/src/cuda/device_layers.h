#pragma once
// The decoder layers' weights on the device, placed as GpuOptions::layers says: resident (every layer uploaded once,
// into its own buffer, and kept) or streamed (only the layer being computed is on the device: each is staged through
// pinned host memory into one of one or two reused slots, the next layer's copy overlapping the current layer's
// compute on the upload stream). Dense FP16 / BF16 weights are rounded to nearest even, on the host when streamed,
// on the device when resident: the same bits either way. One of the GPU runner's jobs (cuda_runner.cpp), with the
// device KV cache (device_kv_cache.h) and the calibration ranges (device_range_recorder.h).
// Built only with RPTQ_WITH_CUDA.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "cuda/cuda_runner.h"
#include "device.cuh"
#include "packed_gemm.cuh"
#include "rptq/execution.h"
#include "rptq/model/model.h"

namespace rptq {

// Device buffers and the tensors inside a layer slot start at 256-byte boundaries.
constexpr std::size_t kDeviceAlign = 256;
inline std::size_t device_align_up(std::size_t v) { return (v + kDeviceAlign - 1) / kDeviceAlign * kDeviceAlign; }

// The device memory a runner holds now and the statistics it reports (GpuMemoryStats), kept by all its parts.
struct DeviceLedger {
  GpuMemoryStats stats;
  std::size_t held = 0;  // bytes allocated now
  void alloc(std::size_t bytes) {
    held += bytes;
    if (held > stats.peak_bytes) stats.peak_bytes = held;
  }
  void free(std::size_t bytes) { held -= bytes < held ? bytes : held; }
};

// A decoder layer's weights as placed in a device slot (pointers into the slot).
struct DevNorm {
  const float *gamma = nullptr, *beta = nullptr;
  const std::int32_t* gather = nullptr;
};
struct DevLinear {
  std::int64_t in = 0, out = 0;
  const void* w = nullptr;  // float, __half or __nv_bfloat16 [out, in] (dense)
  const float* bias = nullptr;
  bool packed = false;
  cuda::PackedWeightView pw;
};
struct DevLayer {
  DevNorm attn_norm, ffn_norm;
  DevLinear q, k, v, o, fc1, fc2, gate, up, down;
  const std::int32_t* rope_index = nullptr;
  bool quantize_softmax = false;
};

// A dense weight to be rounded to FP16 / BF16 on the device (resident layers): n floats at src, to dst.
struct DeferredRounding {
  const float* src = nullptr;
  void* dst = nullptr;
  std::size_t n = 0;
};

class DeviceLayers {
 public:
  // Nothing is placed until place(); the streams are the runner's (compute reads the layers, upload streams them).
  DeviceLayers(const Model& model, const GpuOptions& opts, cudaStream_t compute, cudaStream_t upload,
               DeviceLedger& ledger)
      : model(model), cfg(model.config()), opts(opts), compute(compute), upload(upload), ledger(ledger),
        mem(ledger.stats) {}
  ~DeviceLayers();
  DeviceLayers(const DeviceLayers&) = delete;
  DeviceLayers& operator=(const DeviceLayers&) = delete;

  // Sizes every layer and places them: resident or streamed (GpuMemoryStats::layers says which). The caller has
  // copied the outer weights with cudaMemcpy (legacy stream): place() waits for them before its own copies.
  void place();
  bool is_resident() const { return resident; }
  int slot_count() const { return slots; }

  // Starts copying layer l into its slot on the upload stream (after the compute that last used the slot); nothing
  // when resident or already there.
  void upload_layer(int l);
  // Layer l's weights for the compute stream (which waits for their copy), and the end of its use there.
  const DevLayer& begin_layer(int l);
  void end_layer(int l);
  // Layer l's weights changed on the host (a quantization in progress: reordered, then packed): a resident layer
  // is uploaded again, a streamed one staged afresh at its next use.
  void restage_layer(int l);

  // Fills `host` (when not null) with layer l's weights as uploaded and returns their pointers in a slot at `dev`,
  // and the slot bytes they need. With `deferred`, the FP16 / BF16 dense weights are listed there instead of
  // rounded into `host`.
  std::pair<DevLayer, std::size_t> stage_layer(int l, std::uint8_t* host, std::uintptr_t dev,
                                               std::vector<DeferredRounding>* deferred = nullptr) const;

 private:
  void make_slot_buffers(std::size_t bytes);
  bool choose_resident(std::size_t bytes) const;
  void upload_resident(const std::vector<std::size_t>& layer_bytes, std::size_t largest, std::size_t scratch_floats);
  DevLayer upload_layer_to(int l, std::uint8_t* dev, std::size_t bytes, std::uint8_t* host, float* scratch,
                           std::size_t scratch_floats);
  void note_alloc(std::size_t bytes) { ledger.alloc(bytes); }
  void note_free(std::size_t bytes) { ledger.free(bytes); }

  const Model& model;
  const ModelConfig& cfg;
  GpuOptions opts;
  cudaStream_t compute, upload;
  DeviceLedger& ledger;
  GpuMemoryStats& mem;

  // Streamed: the slots' device memory, their host staging (pinned when it can be had), and the events that order
  // them.
  int slots = 2;
  std::vector<cuda::DeviceBuffer<std::uint8_t>> slot;
  std::vector<std::uint8_t*> staging;
  std::vector<std::vector<std::uint8_t>> staging_fallback;  // when pinned memory cannot be had
  std::vector<bool> staging_pinned;
  std::vector<cudaEvent_t> copied, computed;
  std::vector<int> slot_layer;
  std::vector<DevLayer> slot_view;
  // Resident: one device buffer and its view per decoder layer.
  bool resident = false;
  std::vector<cuda::DeviceBuffer<std::uint8_t>> resident_layer;
  std::vector<DevLayer> resident_view;
};

}  // namespace rptq
