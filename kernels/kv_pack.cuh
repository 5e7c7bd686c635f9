#pragma once
// RPTQ's packed KV cache on the GPU: float K / V rows (already on their cluster grids) to n-bit codes in
// rptq/bitpack.h's layout, one bit stream per cache row, and back to float: the CUDA twins of KvCache::store and
// KvCache::load (kv_cache.cpp), bit for bit.
//   code   = clamp(nearbyint(x * inv_scale + zero), -2^(n-1), 2^(n-1) - 1), stored as code + 2^(n-1)
//   value  = (stored - 2^(n-1) - zero) * scale
// with inv_scale = 1 / scale rounded to float, per channel (each cluster's parameters expanded over its channels,
// as KvChannelParams does). A cache row holds ceil(channels * bits / 8) bytes; the bits after the last code of a
// row are zero. Asynchronous on `stream`; shapes are checked (std::invalid_argument) before any CUDA call.
// Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "device.cuh"
#include "host_device.cuh"

namespace rptq::cuda {

// Input row b * seq + t of x [batch * seq, channels] (row stride ld) goes to cache row b * capacity + past + t.
void kv_pack(const float* x, std::int64_t batch, std::int64_t seq, std::int64_t channels, std::int64_t ld,
             const float* inv_scale, const float* zero, int bits, std::uint8_t* cache, std::int64_t capacity,
             std::int64_t past, cudaStream_t stream = 0);
// Cache rows b * capacity + t, t < len, back to float out [batch, len, channels].
void kv_unpack(const std::uint8_t* cache, std::int64_t batch, std::int64_t len, std::int64_t channels,
               const float* scale, const float* zero, int bits, std::int64_t capacity, float* out,
               cudaStream_t stream = 0);

// One side's (K or V) quantizer expanded per channel on the device, from the per-cluster form of
// rptq::KvSideQuantization (boundaries over the channels, one scale and zero point per cluster).
struct KvChannelQuant {
  std::int64_t channels = 0;
  int bits = 0;
  DeviceBuffer<float> scale, inv_scale, zero;
};
// kv_cache.cpp's check_side (std::invalid_argument; also scales must be positive and finite).
void check_kv_side(int bits, const std::vector<std::int64_t>& boundaries, const std::vector<float>& scale,
                   const std::vector<float>& zero_point, std::int64_t channels);
KvChannelQuant upload_kv_side(int bits, const std::vector<std::int64_t>& boundaries, const std::vector<float>& scale,
                              const std::vector<float>& zero_point, std::int64_t channels);
void kv_pack(const float* x, std::int64_t batch, std::int64_t seq, std::int64_t ld, const KvChannelQuant& q,
             std::uint8_t* cache, std::int64_t capacity, std::int64_t past, cudaStream_t stream = 0);
void kv_unpack(const std::uint8_t* cache, std::int64_t batch, std::int64_t len, const KvChannelQuant& q,
               std::int64_t capacity, float* out, cudaStream_t stream = 0);

// ---------------------------------------------------------------------------------------------------------------
// Bit-stream and code arithmetic, shared by the KV and packed-weight kernels and by host tests.

// Bytes of `count` codes of `bits` bits: ceil(count * bits / 8) (rptq::packed_bytes).
RPTQ_HD std::int64_t bitpack_bytes(std::int64_t count, int bits) { return (count * bits + 7) / 8; }
// Value i of a stream. A code of at most 8 bits spans at most two bytes; the second is read only when the code
// reaches into it, so the last code of a stream never reads past the stream's end.
RPTQ_HD std::uint32_t bitpack_get(const std::uint8_t* stream, std::int64_t i, int bits) {
  const std::int64_t bit = i * bits;
  const std::int64_t byte = bit >> 3;
  const int shift = static_cast<int>(bit & 7);
  std::uint32_t w = stream[byte];
  if (shift + bits > 8) w |= static_cast<std::uint32_t>(stream[byte + 1]) << 8;
  return (w >> shift) & ((1u << bits) - 1u);
}
// Eight codes of n bits are exactly n bytes: group g (codes 8g .. 8g + 7) starts at byte g * n. A group is
// assembled as a little-endian word, code k at bit k * n, as bitpack.cpp's pack_n does.
RPTQ_HD std::uint64_t bitpack_group_add(std::uint64_t word, int k, std::uint32_t code, int bits) {
  return word | static_cast<std::uint64_t>(code) << (k * bits);
}
// Writes the ceil(count * bits / 8) bytes of a group (count <= 8); the bits past the last code are zero.
RPTQ_HD void bitpack_store_group(std::uint64_t word, int count, int bits, std::uint8_t* out) {
  const int bytes = (count * bits + 7) / 8;
  for (int b = 0; b < bytes; ++b) out[b] = static_cast<std::uint8_t>(word >> (8 * b));
}

// The stored (unsigned) KV code of x, as kv_cache.cpp's pack_row: nearbyint(x * inv_scale + zero), each operation
// rounded separately, clamped to the signed range, plus 2^(bits-1). A NaN gives 0 (what x86's conversion of the
// CPU's NaN code yields).
RPTQ_HD std::uint8_t kv_code(float x, float inv_scale, float zero, int bits) {
  const float lo = static_cast<float>(-(1 << (bits - 1))), hi = static_cast<float>((1 << (bits - 1)) - 1);
  float code = hd::round_half_even(hd::add(hd::mul(x, inv_scale), zero));
  code = code < lo ? lo : code > hi ? hi : code;
  if (!(code == code)) return 0;
  return static_cast<std::uint8_t>(static_cast<std::int32_t>(hd::sub(code, lo)));
}
// The float value of a stored KV code, as kv_cache.cpp's load_side: (stored + lo - zero) * scale.
RPTQ_HD float kv_value(std::uint32_t stored, float scale, float zero, int bits) {
  const float lo = static_cast<float>(-(1 << (bits - 1)));
  return hd::mul(hd::sub(hd::add(static_cast<float>(stored), lo), zero), scale);
}

}  // namespace rptq::cuda
