#include <cmath>

#include "rptq/bitpack.h"
#include "rptq/error.h"
#include "rptq/model.h"

namespace rptq {

namespace {
void check_side(const KvSideQuantization& q, std::int64_t kv_dim, const char* what, std::size_t layer) {
  const std::string where = std::string("KV cache quantization, layer ") + std::to_string(layer) + " " + what + ": ";
  if (q.bits < 2 || q.bits > 8) throw InputError(where + "bits must be 2..8");
  if (q.boundaries.size() < 2 || q.boundaries.front() != 0 || q.boundaries.back() != kv_dim)
    throw InputError(where + "cluster boundaries must span the " + std::to_string(kv_dim) + " channels");
  if (q.scale.size() + 1 != q.boundaries.size() || q.zero_point.size() != q.scale.size())
    throw InputError(where + "one scale and zero point per cluster needed");
}

void pack_row(const KvSideQuantization& q, const float* x, std::int64_t n, std::uint8_t* codes, std::uint8_t* out) {
  const std::int32_t lo = -(1 << (q.bits - 1)), hi = (1 << (q.bits - 1)) - 1;
  for (std::size_t c = 0; c + 1 < q.boundaries.size(); ++c) {
    const float inv = 1.0f / q.scale[c], zp = q.zero_point[c];
    for (std::int64_t j = q.boundaries[c]; j < q.boundaries[c + 1]; ++j) {
      std::int32_t code = static_cast<std::int32_t>(std::nearbyint(x[j] * inv + zp));
      code = code < lo ? lo : code > hi ? hi : code;
      codes[j] = static_cast<std::uint8_t>(code - lo);  // stored unsigned: code + 2^(bits-1)
    }
  }
  pack_bits(codes, n, q.bits, out);
}

void unpack_row(const KvSideQuantization& q, const std::uint8_t* in, std::int64_t n, std::uint8_t* codes, float* x) {
  unpack_bits(in, n, q.bits, codes);
  const std::int32_t lo = -(1 << (q.bits - 1));
  for (std::size_t c = 0; c + 1 < q.boundaries.size(); ++c) {
    const float s = q.scale[c], zp = q.zero_point[c];
    for (std::int64_t j = q.boundaries[c]; j < q.boundaries[c + 1]; ++j)
      x[j] = (static_cast<float>(static_cast<std::int32_t>(codes[j]) + lo) - zp) * s;
  }
}
}  // namespace

KvCache::KvCache(const ModelConfig& cfg, std::int64_t batch, std::int64_t capacity,
                 std::shared_ptr<const KvQuantization> quant)
    : batch_(batch), capacity_(capacity), kv_dim_(cfg.kv_dim()), quant_(std::move(quant)) {
  if (batch <= 0 || capacity <= 0) throw InputError("KV cache needs a positive batch and capacity");
  if (!quant_) {
    for (std::int64_t l = 0; l < cfg.layers; ++l) {
      k_.push_back(Tensor::uninitialized({batch, capacity, kv_dim_}));
      v_.push_back(Tensor::uninitialized({batch, capacity, kv_dim_}));
    }
    return;
  }
  if (static_cast<std::int64_t>(quant_->k.size()) != cfg.layers || static_cast<std::int64_t>(quant_->v.size()) != cfg.layers)
    throw InputError("KV cache quantization must cover every layer");
  int kbits = 0, vbits = 0;
  for (std::size_t l = 0; l < quant_->k.size(); ++l) {
    check_side(quant_->k[l], kv_dim_, "K", l);
    check_side(quant_->v[l], kv_dim_, "V", l);
    if (l == 0) kbits = quant_->k[l].bits, vbits = quant_->v[l].bits;
    if (quant_->k[l].bits != kbits || quant_->v[l].bits != vbits)
      throw InputError("KV cache quantization: every layer must use the same K and V bits");
  }
  k_row_bytes_ = packed_bytes(kv_dim_, kbits);
  v_row_bytes_ = packed_bytes(kv_dim_, vbits);
  for (std::int64_t l = 0; l < cfg.layers; ++l) {
    kq_.emplace_back(static_cast<std::size_t>(batch * capacity) * k_row_bytes_);
    vq_.emplace_back(static_cast<std::size_t>(batch * capacity) * v_row_bytes_);
  }
}

std::size_t KvCache::bytes() const {
  std::size_t n = 0;
  for (const auto& t : k_) n += static_cast<std::size_t>(t.numel()) * sizeof(float);
  for (const auto& t : v_) n += static_cast<std::size_t>(t.numel()) * sizeof(float);
  for (const auto& b : kq_) n += b.size();
  for (const auto& b : vq_) n += b.size();
  if (quant_)
    for (const auto* side : {&quant_->k, &quant_->v})
      for (const auto& s : *side) n += (s.scale.size() + s.zero_point.size()) * sizeof(float);
  return n;
}

std::size_t KvCache::fp16_bytes() const {
  const std::size_t layers = quant_ ? kq_.size() : k_.size();
  return 2 * layers * static_cast<std::size_t>(batch_ * capacity_ * kv_dim_) * 2;
}

void KvCache::store(int layer, const float* k, const float* v, std::int64_t seq, std::int64_t past) {
  if (!quant_) throw std::logic_error("KvCache::store on a float cache");
  const auto& qk = quant_->k[static_cast<std::size_t>(layer)];
  const auto& qv = quant_->v[static_cast<std::size_t>(layer)];
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(kv_dim_));
  for (std::int64_t b = 0; b < batch_; ++b)
    for (std::int64_t t = 0; t < seq; ++t) {
      const std::int64_t row = b * capacity_ + past + t;
      pack_row(qk, k + (b * seq + t) * kv_dim_, kv_dim_, codes.data(),
               kq_[static_cast<std::size_t>(layer)].data() + static_cast<std::size_t>(row) * k_row_bytes_);
      pack_row(qv, v + (b * seq + t) * kv_dim_, kv_dim_, codes.data(),
               vq_[static_cast<std::size_t>(layer)].data() + static_cast<std::size_t>(row) * v_row_bytes_);
    }
}

void KvCache::load(int layer, std::int64_t len, float* k, float* v) const {
  if (!quant_) throw std::logic_error("KvCache::load on a float cache");
  const auto& qk = quant_->k[static_cast<std::size_t>(layer)];
  const auto& qv = quant_->v[static_cast<std::size_t>(layer)];
#pragma omp parallel if (batch_ * len * kv_dim_ > (1 << 15))
  {
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(kv_dim_));
#pragma omp for schedule(static)
    for (std::int64_t i = 0; i < batch_ * len; ++i) {
      const std::int64_t b = i / len, t = i % len, row = b * capacity_ + t;
      unpack_row(qk, kq_[static_cast<std::size_t>(layer)].data() + static_cast<std::size_t>(row) * k_row_bytes_,
                 kv_dim_, codes.data(), k + i * kv_dim_);
      unpack_row(qv, vq_[static_cast<std::size_t>(layer)].data() + static_cast<std::size_t>(row) * v_row_bytes_,
                 kv_dim_, codes.data(), v + i * kv_dim_);
    }
  }
}

}  // namespace rptq
