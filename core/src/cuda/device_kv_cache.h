#pragma once
// The device implementation of the KV-cache interface (rptq/model/model.h's KvStore; the host one is KvCache): one
// sequence's keys and values per layer in GPU memory, float32 [capacity, kv_dim], or RPTQ's packed codes
// (kernels/kv_pack.cuh) with the cluster parameters expanded per channel and one float32 read-back pair that all
// layers share. The same semantics as KvCache, kernel for kernel: the CUDA twins of its pack and load.
// Built only with RPTQ_WITH_CUDA.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "device.cuh"
#include "kv_pack.cuh"
#include "rptq/model/model.h"

namespace rptq {

class DeviceKvCache : public KvStore {
 public:
  // Allocates everything up front; throws InputError for a bad quantization (naming the layer and side) and
  // CudaError when device memory runs out (the caller's guard turns it into advice).
  DeviceKvCache(const ModelConfig& cfg, std::int64_t capacity, std::shared_ptr<const KvQuantization> quant,
                cudaStream_t stream);
  bool packed() const override { return quant_ != nullptr; }
  std::size_t bytes() const override { return bytes_; }
  // Every device allocation it holds: bytes() and, when packed, the float32 read-back pair.
  std::size_t allocated() const { return allocated_; }
  // Device pointers in, device pointers out; asynchronous on the stream.
  KvView append(int layer, const float* k, const float* v, std::int64_t seq) override;

 private:
  cudaStream_t stream_;
  std::shared_ptr<const KvQuantization> quant_;             // null: float32
  std::vector<cuda::DeviceBuffer<float>> k_, v_;            // float32: per layer [capacity, kv_dim]
  std::vector<cuda::DeviceBuffer<std::uint8_t>> kc_, vc_;   // packed: per layer [capacity, row bytes]
  std::vector<cuda::KvChannelQuant> kq_, vq_;               // packed: per layer, expanded per channel
  cuda::DeviceBuffer<float> k_read_, v_read_;               // packed: the layer being attended, [capacity, kv_dim]
  std::size_t bytes_ = 0, allocated_ = 0;
};

}  // namespace rptq
