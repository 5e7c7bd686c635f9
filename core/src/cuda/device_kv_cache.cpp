// The device KV cache; a CPU-only build has no use for it (the runner's stubs never make one).
#ifdef RPTQ_WITH_CUDA
#include "cuda/device_kv_cache.h"

#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "rptq/base/error.h"

namespace rptq {

DeviceKvCache::DeviceKvCache(const ModelConfig& cfg, std::int64_t capacity,
                             std::shared_ptr<const KvQuantization> quant, cudaStream_t stream)
    : KvStore(cfg.layers, 1, capacity, cfg.kv_dim()), stream_(stream), quant_(std::move(quant)) {
  const auto L = static_cast<std::size_t>(cfg.layers);
  const std::int64_t kvd = kv_dim_;
  if (quant_) {
    if (quant_->k.size() != L || quant_->v.size() != L)
      throw InputError("the KV-cache quantization has " + std::to_string(quant_->k.size()) + " layers; the model " +
                       std::to_string(cfg.layers));
    for (std::size_t l = 0; l < L; ++l) {
      for (int side = 0; side < 2; ++side) {
        const KvSideQuantization& q = side == 0 ? quant_->k[l] : quant_->v[l];
        cuda::KvChannelQuant dq;
        try {
          dq = cuda::upload_kv_side(q.bits, q.boundaries, q.scale, q.zero_point, kvd);
        } catch (const std::invalid_argument& e) {
          throw InputError("layer " + std::to_string(l) + (side == 0 ? " K" : " V") + " cache quantizer: " +
                           e.what());
        }
        bytes_ += dq.scale.bytes() + dq.inv_scale.bytes() + dq.zero.bytes();
        const auto row = static_cast<std::size_t>(cuda::bitpack_bytes(kvd, q.bits));
        cuda::DeviceBuffer<std::uint8_t> codes(static_cast<std::size_t>(capacity) * row);
        bytes_ += codes.bytes();
        (side == 0 ? kc_ : vc_).push_back(std::move(codes));
        (side == 0 ? kq_ : vq_).push_back(std::move(dq));
      }
    }
    k_read_ = cuda::DeviceBuffer<float>(static_cast<std::size_t>(capacity * kvd));
    v_read_ = cuda::DeviceBuffer<float>(static_cast<std::size_t>(capacity * kvd));
    allocated_ = bytes_ + k_read_.bytes() + v_read_.bytes();
  } else {
    for (std::size_t l = 0; l < L; ++l) {
      k_.emplace_back(static_cast<std::size_t>(capacity * kvd));
      v_.emplace_back(static_cast<std::size_t>(capacity * kvd));
      bytes_ += k_.back().bytes() + v_.back().bytes();
    }
    allocated_ = bytes_;
  }
}

KvView DeviceKvCache::append(int layer, const float* k, const float* v, std::int64_t seq) {
  check_room(seq);
  const std::int64_t kvd = kv_dim_, past = length_, len = past + seq;
  const auto li = static_cast<std::size_t>(layer);
  if (quant_) {
    cuda::kv_pack(k, 1, seq, kvd, kq_[li], kc_[li].data(), capacity_, past, stream_);
    cuda::kv_pack(v, 1, seq, kvd, vq_[li], vc_[li].data(), capacity_, past, stream_);
    cuda::kv_unpack(kc_[li].data(), 1, len, kq_[li], capacity_, k_read_.data(), stream_);
    cuda::kv_unpack(vc_[li].data(), 1, len, vq_[li], capacity_, v_read_.data(), stream_);
    return {k_read_.data(), v_read_.data(), len * kvd};
  }
  const std::size_t bytes = static_cast<std::size_t>(seq * kvd) * sizeof(float);
  RPTQ_CUDA_CHECK(cudaMemcpyAsync(k_[li].data() + past * kvd, k, bytes, cudaMemcpyDeviceToDevice, stream_));
  RPTQ_CUDA_CHECK(cudaMemcpyAsync(v_[li].data() + past * kvd, v, bytes, cudaMemcpyDeviceToDevice, stream_));
  return {k_[li].data(), v_[li].data(), capacity_ * kvd};
}

}  // namespace rptq
#endif  // RPTQ_WITH_CUDA
