#include <cmath>
#include <cstring>

#include "rptq/base/bitpack.h"
#include "rptq/base/error.h"
#include "rptq/model/model.h"

namespace rptq {

// Per-channel copies of one side's cluster parameters, so packing and unpacking are flat vectorisable loops.
struct KvChannelParams {
  std::vector<float> scale, inv_scale, zero;
  int bits = 0;
};
namespace {
void check_side(const KvSideQuantization& q, std::int64_t kv_dim, const char* what, std::size_t layer) {
  const std::string where = std::string("KV cache quantization, layer ") + std::to_string(layer) + " " + what + ": ";
  if (q.bits < 2 || q.bits > 8) throw InputError(where + "bits must be 2..8");
  if (q.boundaries.size() < 2 || q.boundaries.front() != 0 || q.boundaries.back() != kv_dim)
    throw InputError(where + "cluster boundaries must span the " + std::to_string(kv_dim) + " channels");
  if (q.scale.size() + 1 != q.boundaries.size() || q.zero_point.size() != q.scale.size())
    throw InputError(where + "one scale and zero point per cluster needed");
}

KvChannelParams expand(const KvSideQuantization& q, std::int64_t n) {
  KvChannelParams c;
  c.bits = q.bits;
  c.scale.resize(static_cast<std::size_t>(n));
  c.inv_scale.resize(static_cast<std::size_t>(n));
  c.zero.resize(static_cast<std::size_t>(n));
  for (std::size_t k = 0; k + 1 < q.boundaries.size(); ++k)
    for (std::int64_t j = q.boundaries[k]; j < q.boundaries[k + 1]; ++j) {
      c.scale[static_cast<std::size_t>(j)] = q.scale[k];
      c.inv_scale[static_cast<std::size_t>(j)] = 1.0f / q.scale[k];
      c.zero[static_cast<std::size_t>(j)] = q.zero_point[k];
    }
  return c;
}

void pack_row(const KvChannelParams& q, const float* x, std::int64_t n, std::uint8_t* codes, std::uint8_t* out) {
  const float lo = static_cast<float>(-(1 << (q.bits - 1))), hi = static_cast<float>((1 << (q.bits - 1)) - 1);
  for (std::int64_t j = 0; j < n; ++j) {
    float code = std::nearbyint(x[j] * q.inv_scale[static_cast<std::size_t>(j)] + q.zero[static_cast<std::size_t>(j)]);
    code = code < lo ? lo : code > hi ? hi : code;
    codes[j] = static_cast<std::uint8_t>(static_cast<std::int32_t>(code - lo));  // stored unsigned: code + 2^(bits-1)
  }
  pack_bits(codes, n, q.bits, out);
}

}  // namespace

KvStore::KvStore(std::int64_t layers, std::int64_t batch, std::int64_t capacity, std::int64_t kv_dim)
    : layers_(layers), batch_(batch), capacity_(capacity), kv_dim_(kv_dim) {
  if (batch <= 0 || capacity <= 0) throw InputError("KV cache needs a positive batch and capacity");
}

void KvStore::check_room(std::int64_t seq) const {
  if (seq < 0 || length_ + seq > capacity_)
    throw InputError("KV cache holds " + std::to_string(batch_) + " x " + std::to_string(capacity_) + " tokens; " +
                     std::to_string(batch_) + " x " + std::to_string(length_ + seq) + " needed");
}

void KvStore::advance(std::int64_t seq) {
  check_room(seq);
  length_ += seq;
}

KvCache::KvCache(const ModelConfig& cfg, std::int64_t batch, std::int64_t capacity,
                 std::shared_ptr<const KvQuantization> quant)
    : KvStore(cfg.layers, batch, capacity, cfg.kv_dim()), quant_(std::move(quant)) {
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
  for (std::size_t l = 0; l < quant_->k.size(); ++l) {
    kp_.push_back(std::make_shared<KvChannelParams>(expand(quant_->k[l], kv_dim_)));
    vp_.push_back(std::make_shared<KvChannelParams>(expand(quant_->v[l], kv_dim_)));
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

KvView KvCache::append(int layer, const float* k, const float* v, std::int64_t seq) {
  check_room(seq);
  const std::int64_t past = length_, len = past + seq;
  if (quant_) {
    store(layer, k, v, seq, past);
    k_read_.resize(static_cast<std::size_t>(batch_ * len * kv_dim_));
    v_read_.resize(k_read_.size());
    load(layer, len, k_read_.data(), v_read_.data());
    return {k_read_.data(), v_read_.data(), len * kv_dim_};
  }
  float* ck = keys(layer);
  float* cv = values(layer);
  const auto bytes = static_cast<std::size_t>(seq * kv_dim_) * sizeof(float);
  for (std::int64_t b = 0; b < batch_; ++b) {
    std::memcpy(ck + (b * capacity_ + past) * kv_dim_, k + b * seq * kv_dim_, bytes);
    std::memcpy(cv + (b * capacity_ + past) * kv_dim_, v + b * seq * kv_dim_, bytes);
  }
  return {ck, cv, capacity_ * kv_dim_};
}

void KvCache::store(int layer, const float* k, const float* v, std::int64_t seq, std::int64_t past) {
  if (!quant_) throw std::logic_error("KvCache::store on a float cache");
  const KvChannelParams& qk = *kp_[static_cast<std::size_t>(layer)];
  const KvChannelParams& qv = *vp_[static_cast<std::size_t>(layer)];
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

namespace {
// Rows [0, len) of one sequence: when rows are whole bytes with no padding (kv_dim * bits % 8 == 0) they form one
// bit stream, unpacked in one call; then a flat per-channel dequantization per row.
void load_side(const KvChannelParams& q, const std::uint8_t* rows, std::size_t row_bytes, std::int64_t len,
               std::int64_t n, std::vector<std::uint8_t>& codes, float* out) {
  const float lo = static_cast<float>(-(1 << (q.bits - 1)));
  const float* s = q.scale.data();
  const float* z = q.zero.data();
  codes.resize(static_cast<std::size_t>(len * n));
  if (static_cast<std::size_t>(n * q.bits) == row_bytes * 8) {
    unpack_bits(rows, len * n, q.bits, codes.data());
  } else {
    for (std::int64_t t = 0; t < len; ++t) unpack_bits(rows + t * row_bytes, n, q.bits, codes.data() + t * n);
  }
  for (std::int64_t t = 0; t < len; ++t) {
    const std::uint8_t* c = codes.data() + t * n;
    float* x = out + t * n;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) x[j] = (static_cast<float>(c[j]) + lo - z[j]) * s[j];
  }
}
}  // namespace

void KvCache::load(int layer, std::int64_t len, float* k, float* v) const {
  if (!quant_) throw std::logic_error("KvCache::load on a float cache");
  const KvChannelParams& qk = *kp_[static_cast<std::size_t>(layer)];
  const KvChannelParams& qv = *vp_[static_cast<std::size_t>(layer)];
  const auto& kq = kq_[static_cast<std::size_t>(layer)];
  const auto& vq = vq_[static_cast<std::size_t>(layer)];
  // One task per (sequence, K or V).
#pragma omp parallel if (batch_ * len * kv_dim_ > (1 << 16))
  {
    std::vector<std::uint8_t> codes;
#pragma omp for schedule(static)
    for (std::int64_t i = 0; i < 2 * batch_; ++i) {
      const std::int64_t b = i / 2;
      if (i % 2 == 0)
        load_side(qk, kq.data() + static_cast<std::size_t>(b * capacity_) * k_row_bytes_, k_row_bytes_, len, kv_dim_,
                  codes, k + b * len * kv_dim_);
      else
        load_side(qv, vq.data() + static_cast<std::size_t>(b * capacity_) * v_row_bytes_, v_row_bytes_, len, kv_dim_,
                  codes, v + b * len * kv_dim_);
    }
  }
}

}  // namespace rptq
