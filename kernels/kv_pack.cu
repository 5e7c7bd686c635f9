// KV cache packing. Pack: one thread per (row, group of 8 channels): eight codes of n bits fill exactly n bytes,
// so every thread writes whole bytes of its own and no two threads share one (no atomics, no read-modify-write),
// and the tail group of a row writes its last byte with the padding bits zero. Unpack: one thread per output
// value, coalesced writes; a code spans at most two bytes, which neighbouring threads read too (L1 hits).
// Decode steps move a handful of rows, prefill a few thousand: both are tiny next to the attention that reads them.
#include "kv_pack.cuh"

#include <string>

#include "cuda_check.cuh"

namespace rptq::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void kv_pack_kernel(const float* __restrict__ x, std::int64_t rows, std::int64_t seq,
                               std::int64_t channels, std::int64_t ld, const float* __restrict__ inv_scale,
                               const float* __restrict__ zero, int bits, std::uint8_t* __restrict__ cache,
                               std::int64_t row_bytes, std::int64_t capacity, std::int64_t past) {
  const std::int64_t groups = (channels + 7) / 8;
  const std::int64_t total = rows * groups;
  for (std::int64_t id = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; id < total;
       id += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = id / groups, g = id % groups;
    const std::int64_t dest = (i / seq) * capacity + past + i % seq;
    const std::int64_t j0 = g * 8;
    const int count = static_cast<int>(channels - j0 < 8 ? channels - j0 : 8);
    std::uint64_t word = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k)
      if (k < count)
        word = bitpack_group_add(word, k, kv_code(x[i * ld + j0 + k], inv_scale[j0 + k], zero[j0 + k], bits), bits);
    bitpack_store_group(word, count, bits, cache + dest * row_bytes + g * bits);
  }
}

__global__ void kv_unpack_kernel(const std::uint8_t* __restrict__ cache, std::int64_t batch, std::int64_t len,
                                 std::int64_t channels, const float* __restrict__ scale,
                                 const float* __restrict__ zero, int bits, std::int64_t row_bytes,
                                 std::int64_t capacity, float* __restrict__ out) {
  const std::int64_t total = batch * len * channels;
  for (std::int64_t id = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; id < total;
       id += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = id % channels, row = id / channels;  // row = b * len + t
    const std::int64_t b = row / len, t = row % len;
    const std::uint8_t* src = cache + (b * capacity + t) * row_bytes;
    out[id] = kv_value(bitpack_get(src, j, bits), scale[j], zero[j], bits);
  }
}

void check_common(const char* op, std::int64_t batch, std::int64_t channels, int bits, std::int64_t capacity) {
  require(batch >= 0 && channels >= 0 && capacity >= 0, op,
          "negative batch, channels or capacity (" + std::to_string(batch) + ", " + std::to_string(channels) + ", " +
              std::to_string(capacity) + ")");
  require_bits(op, bits);
}

}  // namespace

void kv_pack(const float* x, std::int64_t batch, std::int64_t seq, std::int64_t channels, std::int64_t ld,
             const float* inv_scale, const float* zero, int bits, std::uint8_t* cache, std::int64_t capacity,
             std::int64_t past, cudaStream_t stream) {
  const char* op = "kv_pack";
  check_common(op, batch, channels, bits, capacity);
  require(seq >= 0 && past >= 0, op, "negative seq or past");
  require_ld(op, ld, channels);
  require(past + seq <= capacity, op,
          "positions " + std::to_string(past) + " .. " + std::to_string(past + seq - 1) +
              " do not fit a cache of capacity " + std::to_string(capacity));
  const std::int64_t rows = batch * seq;
  if (rows == 0 || channels == 0) return;
  require_data(op, x, "x");
  require_data(op, inv_scale, "inv_scale");
  require_data(op, zero, "zero");
  require_data(op, cache, "cache");
  const std::int64_t groups = rows * ((channels + 7) / 8);
  kv_pack_kernel<<<grid_for(groups, kThreads), kThreads, 0, stream>>>(
      x, rows, seq, channels, ld, inv_scale, zero, bits, cache, bitpack_bytes(channels, bits), capacity, past);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void kv_unpack(const std::uint8_t* cache, std::int64_t batch, std::int64_t len, std::int64_t channels,
               const float* scale, const float* zero, int bits, std::int64_t capacity, float* out,
               cudaStream_t stream) {
  const char* op = "kv_unpack";
  check_common(op, batch, channels, bits, capacity);
  require(len >= 0 && len <= capacity, op,
          "length " + std::to_string(len) + " is outside the cache's capacity " + std::to_string(capacity));
  const std::int64_t total = batch * len * channels;
  if (total == 0) return;
  require_data(op, cache, "cache");
  require_data(op, scale, "scale");
  require_data(op, zero, "zero");
  require_data(op, out, "out");
  kv_unpack_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(
      cache, batch, len, channels, scale, zero, bits, bitpack_bytes(channels, bits), capacity, out);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void check_kv_side(int bits, const std::vector<std::int64_t>& b, const std::vector<float>& scale,
                   const std::vector<float>& zero_point, std::int64_t channels) {
  const char* op = "KV cache quantization";
  require_bits(op, bits);
  require(b.size() >= 2 && b.front() == 0 && b.back() == channels, op,
          "cluster boundaries must span the " + std::to_string(channels) + " channels");
  for (std::size_t i = 1; i < b.size(); ++i)
    require(b[i] >= b[i - 1], op, "cluster boundaries must not decrease (offset " + std::to_string(i) + ")");
  require(scale.size() + 1 == b.size() && zero_point.size() == scale.size(), op,
          "one scale and zero point per cluster needed");
  for (std::size_t c = 0; c < scale.size(); ++c)
    require(scale[c] > 0.0f && std::isfinite(scale[c]) && std::isfinite(zero_point[c]), op,
            "cluster " + std::to_string(c) + " needs a positive finite scale and a finite zero point");
}

KvChannelQuant upload_kv_side(int bits, const std::vector<std::int64_t>& boundaries, const std::vector<float>& scale,
                              const std::vector<float>& zero_point, std::int64_t channels) {
  check_kv_side(bits, boundaries, scale, zero_point, channels);
  // kv_cache.cpp's expand(): each cluster's parameters over its channels, and 1 / scale rounded to float.
  std::vector<float> s(static_cast<std::size_t>(channels)), inv(s.size()), z(s.size());
  for (std::size_t k = 0; k + 1 < boundaries.size(); ++k)
    for (std::int64_t j = boundaries[k]; j < boundaries[k + 1]; ++j) {
      s[static_cast<std::size_t>(j)] = scale[k];
      inv[static_cast<std::size_t>(j)] = 1.0f / scale[k];
      z[static_cast<std::size_t>(j)] = zero_point[k];
    }
  KvChannelQuant q;
  q.channels = channels;
  q.bits = bits;
  q.scale = DeviceBuffer<float>(s);
  q.inv_scale = DeviceBuffer<float>(inv);
  q.zero = DeviceBuffer<float>(z);
  return q;
}

void kv_pack(const float* x, std::int64_t batch, std::int64_t seq, std::int64_t ld, const KvChannelQuant& q,
             std::uint8_t* cache, std::int64_t capacity, std::int64_t past, cudaStream_t stream) {
  kv_pack(x, batch, seq, q.channels, ld, q.inv_scale.data(), q.zero.data(), q.bits, cache, capacity, past, stream);
}

void kv_unpack(const std::uint8_t* cache, std::int64_t batch, std::int64_t len, const KvChannelQuant& q,
               std::int64_t capacity, float* out, cudaStream_t stream) {
  kv_unpack(cache, batch, len, q.channels, q.scale.data(), q.zero.data(), q.bits, capacity, out, stream);
}

}  // namespace rptq::cuda
