// GPU KV cache packing (kernels/kv_pack.cu) against the CPU's KvCache (kv_cache.cpp) and rptq::pack_bits: 2..8
// bits (3 and 4 especially), widths that are no multiple of 8 (a partial last group per row, padding bits), several
// sequences, appends at a past offset into a cache with spare capacity, values on the cluster grids (what RPTQ's
// K/V quantizers produce) and values off them (rounded, saturated). The bit-stream helpers of kv_pack.cuh are
// checked on the host against rptq::pack_bits / unpack_bits without a GPU.
//
// Tolerance: none; the arithmetic is integer, and the code and value formulas round each float operation as
// kv_cache.cpp does (the default x86-64 build has no FMA to fuse x * inv_scale + zero). Packed bytes, codes and
// unpacked floats are bit-exact. (A build with RPTQ_NATIVE may let GCC fuse the CPU's x * inv_scale + zero into an
// FMA; then a value off the grid that lies within an ulp of a rounding boundary could round to the other code.
// Values on the grids, the documented input, are far from any boundary.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/base/bitpack.h"
#include "rptq/device.h"
#include "rptq/model/model.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#include "kv_pack.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::DeviceBuffer;

// Only kv_dim and layers matter to the cache.
rptq::ModelConfig config(std::int64_t kv_dim) {
  rptq::ModelConfig c;
  c.layers = 1;
  c.heads = 1;
  c.kv_heads = 1;
  c.head_dim = kv_dim;
  c.hidden = kv_dim;
  return c;
}

rptq::KvSideQuantization side(int bits, std::int64_t kv_dim, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> scale(0.01f, 0.5f), zero(-3.0f, 3.0f);
  rptq::KvSideQuantization s;
  s.bits = bits;
  s.boundaries = {0, kv_dim / 5, kv_dim / 5, kv_dim / 2, kv_dim};  // uneven, with an empty cluster
  for (std::size_t k = 0; k + 1 < s.boundaries.size(); ++k) {
    s.scale.push_back(scale(gen));
    s.zero_point.push_back(std::nearbyint(zero(gen)));
  }
  return s;
}

std::size_t cluster_of(const rptq::KvSideQuantization& s, std::int64_t j) {
  std::size_t k = 0;
  while (j >= s.boundaries[k + 1]) ++k;
  return k;
}

// Rows [rows, kv_dim]; on_grid: (code - zp) * scale for random codes of the range (some beyond it, which saturate);
// else arbitrary values, several far outside the range.
std::vector<float> rows_for(const rptq::KvSideQuantization& s, std::int64_t rows, std::int64_t kv_dim, bool on_grid,
                            std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> code(-(1 << (s.bits - 1)) - 2, (1 << (s.bits - 1)) + 1);
  std::normal_distribution<float> off(0.0f, 3.0f);
  std::vector<float> x(static_cast<std::size_t>(rows * kv_dim));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < kv_dim; ++j) {
      const std::size_t k = cluster_of(s, j);
      x[r * kv_dim + j] = on_grid ? (static_cast<float>(code(gen)) - s.zero_point[k]) * s.scale[k]
                                  : off(gen) * s.scale[k] * static_cast<float>(1 << s.bits);
    }
  return x;
}

// kv_cache.cpp's pack_row, written out: the bytes KvCache keeps (private there) for one row.
std::vector<std::uint8_t> cpu_pack_row(const rptq::KvSideQuantization& s, const float* x, std::int64_t kv_dim) {
  const float lo = static_cast<float>(-(1 << (s.bits - 1))), hi = static_cast<float>((1 << (s.bits - 1)) - 1);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(kv_dim));
  for (std::int64_t j = 0; j < kv_dim; ++j) {
    const std::size_t k = cluster_of(s, j);
    const float inv = 1.0f / s.scale[k];
    float code = std::nearbyint(x[j] * inv + s.zero_point[k]);
    code = code < lo ? lo : code > hi ? hi : code;
    codes[j] = static_cast<std::uint8_t>(static_cast<std::int32_t>(code - lo));
  }
  std::vector<std::uint8_t> out(rptq::packed_bytes(kv_dim, s.bits));
  rptq::pack_bits(codes.data(), kv_dim, s.bits, out.data());
  return out;
}

}  // namespace

// Two appends into a cache of spare capacity, then the whole cache read back: the GPU's bytes are the CPU's packed
// rows, and its floats are KvCache::load's.
TEST(CudaKvPack, MatchesKvCache) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 1;
  for (int bits = 2; bits <= 8; ++bits)
    for (std::int64_t kv_dim : {1, 7, 8, 21, 64, 129, 1024})
      for (bool on_grid : {true, false}) {
        SCOPED_TRACE(std::to_string(bits) + "-bit, kv_dim " + std::to_string(kv_dim) + (on_grid ? " on grid" : ""));
        const std::int64_t batch = 3, capacity = 13;
        const rptq::KvSideQuantization ks = side(bits, kv_dim, seed += 2), vs = side(bits, kv_dim, seed += 2);
        auto quant = std::make_shared<rptq::KvQuantization>();
        quant->k.push_back(ks);
        quant->v.push_back(vs);
        rptq::KvCache cache(config(kv_dim), batch, capacity, quant);
        const rptq::cuda::KvChannelQuant dk = rptq::cuda::upload_kv_side(bits, ks.boundaries, ks.scale, ks.zero_point, kv_dim);
        const rptq::cuda::KvChannelQuant dv = rptq::cuda::upload_kv_side(bits, vs.boundaries, vs.scale, vs.zero_point, kv_dim);
        const std::size_t row_bytes = rptq::packed_bytes(kv_dim, bits);
        std::vector<std::uint8_t> expected_k(batch * capacity * row_bytes, 0), expected_v(expected_k.size(), 0);
        DeviceBuffer<std::uint8_t> ck(expected_k), cv(expected_v);  // zeroed, as the CPU's cache starts
        for (auto [past, seq] : {std::pair<std::int64_t, std::int64_t>{0, 5}, {5, 8}}) {
          const std::vector<float> k = rows_for(ks, batch * seq, kv_dim, on_grid, seed += 2);
          const std::vector<float> v = rows_for(vs, batch * seq, kv_dim, on_grid, seed += 2);
          cache.store(0, k.data(), v.data(), seq, past);
          for (std::int64_t b = 0; b < batch; ++b)
            for (std::int64_t t = 0; t < seq; ++t) {
              const std::size_t at = static_cast<std::size_t>(b * capacity + past + t) * row_bytes;
              const std::vector<std::uint8_t> rk = cpu_pack_row(ks, k.data() + (b * seq + t) * kv_dim, kv_dim);
              const std::vector<std::uint8_t> rv = cpu_pack_row(vs, v.data() + (b * seq + t) * kv_dim, kv_dim);
              std::copy(rk.begin(), rk.end(), expected_k.begin() + at);
              std::copy(rv.begin(), rv.end(), expected_v.begin() + at);
            }
          DeviceBuffer<float> dkx(k), dvx(v);
          rptq::cuda::kv_pack(dkx.data(), batch, seq, kv_dim, dk, ck.data(), capacity, past);
          rptq::cuda::kv_pack(dvx.data(), batch, seq, kv_dim, dv, cv.data(), capacity, past);
        }
        ASSERT_EQ(ck.to_host(), expected_k);
        ASSERT_EQ(cv.to_host(), expected_v);

        for (std::int64_t len : {std::int64_t{1}, std::int64_t{9}, capacity}) {
          std::vector<float> k(static_cast<std::size_t>(batch * len * kv_dim)), v(k.size());
          cache.load(0, len, k.data(), v.data());
          DeviceBuffer<float> ok(std::vector<float>(k.size(), std::nanf(""))), ov(ok.size());
          rptq::cuda::kv_unpack(ck.data(), batch, len, dk, capacity, ok.data());
          rptq::cuda::kv_unpack(cv.data(), batch, len, dv, capacity, ov.data());
          const std::vector<float> gk = ok.to_host(), gv = ov.to_host();
          ASSERT_EQ(std::memcmp(gk.data(), k.data(), k.size() * sizeof(float)), 0) << "K, len " << len;
          ASSERT_EQ(std::memcmp(gv.data(), v.data(), v.size() * sizeof(float)), 0) << "V, len " << len;
        }
      }
}

// A row stride larger than the row, and a NaN (which packs as the CPU's 0).
TEST(CudaKvPack, StridedInputAndNan) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const std::int64_t kv_dim = 19, ld = 24, rows = 4;
  const rptq::KvSideQuantization s = side(3, kv_dim, 77);
  std::vector<float> dense = rows_for(s, rows, kv_dim, false, 78);
  dense[5] = std::nanf("");
  std::vector<float> strided(static_cast<std::size_t>(rows * ld), 1e30f);
  for (std::int64_t r = 0; r < rows; ++r) std::copy_n(dense.begin() + r * kv_dim, kv_dim, strided.begin() + r * ld);
  std::vector<std::uint8_t> expected;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::vector<std::uint8_t> row = cpu_pack_row(s, dense.data() + r * kv_dim, kv_dim);
    expected.insert(expected.end(), row.begin(), row.end());
  }
  const rptq::cuda::KvChannelQuant q = rptq::cuda::upload_kv_side(3, s.boundaries, s.scale, s.zero_point, kv_dim);
  DeviceBuffer<float> dx(strided);
  DeviceBuffer<std::uint8_t> cache(std::vector<std::uint8_t>(expected.size(), 0xAB));
  rptq::cuda::kv_pack(dx.data(), 1, rows, ld, q, cache.data(), rows, 0);
  EXPECT_EQ(cache.to_host(), expected);
}

// The bit-stream helpers the kernels use, on the host, against bitpack.cpp: group-wise packing (8 codes per
// n bytes, a partial last group with zero padding) and random access to any code.
TEST(CudaKvPack, HostBitstreamMatchesBitpack) {
  std::mt19937 gen(5);
  for (int bits = 2; bits <= 8; ++bits)
    for (std::int64_t count : {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 1001}) {
      std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
      std::vector<std::uint8_t> codes(static_cast<std::size_t>(count));
      for (auto& c : codes) c = static_cast<std::uint8_t>(code(gen));
      std::vector<std::uint8_t> expected(rptq::packed_bytes(count, bits), 0);
      if (count > 0) rptq::pack_bits(codes.data(), count, bits, expected.data());
      ASSERT_EQ(rptq::cuda::bitpack_bytes(count, bits), static_cast<std::int64_t>(expected.size()));

      std::vector<std::uint8_t> packed(expected.size(), 0xFF);
      for (std::int64_t g = 0; g * 8 < count; ++g) {
        const int n = static_cast<int>(std::min<std::int64_t>(8, count - g * 8));
        std::uint64_t word = 0;
        for (int k = 0; k < n; ++k) word = rptq::cuda::bitpack_group_add(word, k, codes[g * 8 + k], bits);
        rptq::cuda::bitpack_store_group(word, n, bits, packed.data() + g * bits);
      }
      ASSERT_EQ(packed, expected) << bits << " bits, " << count << " codes";
      for (std::int64_t i = 0; i < count; ++i)
        ASSERT_EQ(rptq::cuda::bitpack_get(expected.data(), i, bits), codes[i]) << bits << " bits, code " << i;
    }
}

// The code and value formulas on the host against kv_cache.cpp's, through KvCache itself (on-grid round trip) and
// the written-out pack_row.
TEST(CudaKvPack, HostCodeFormulas) {
  for (int bits = 2; bits <= 8; ++bits) {
    const std::int64_t kv_dim = 37;
    const rptq::KvSideQuantization s = side(bits, kv_dim, 100 + bits);
    for (bool on_grid : {true, false}) {
      const std::vector<float> x = rows_for(s, 3, kv_dim, on_grid, 200 + bits);
      for (std::int64_t r = 0; r < 3; ++r) {
        const std::vector<std::uint8_t> want = cpu_pack_row(s, x.data() + r * kv_dim, kv_dim);
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(kv_dim));
        for (std::int64_t j = 0; j < kv_dim; ++j) {
          const std::size_t k = cluster_of(s, j);
          codes[j] = rptq::cuda::kv_code(x[r * kv_dim + j], 1.0f / s.scale[k], s.zero_point[k], bits);
        }
        std::vector<std::uint8_t> got(want.size());
        rptq::pack_bits(codes.data(), kv_dim, bits, got.data());
        ASSERT_EQ(got, want) << bits << " bits";
      }
    }
    // Values round-trip through the CPU cache exactly as kv_value computes them.
    auto quant = std::make_shared<rptq::KvQuantization>();
    quant->k.push_back(s);
    quant->v.push_back(s);
    rptq::KvCache cache(config(kv_dim), 1, 2, quant);
    const std::vector<float> x = rows_for(s, 2, kv_dim, false, 300 + bits);
    cache.store(0, x.data(), x.data(), 2, 0);
    std::vector<float> k(x.size()), v(x.size());
    cache.load(0, 2, k.data(), v.data());
    for (std::int64_t i = 0; i < 2 * kv_dim; ++i) {
      const std::size_t cl = cluster_of(s, i % kv_dim);
      const std::uint8_t code = rptq::cuda::kv_code(x[i], 1.0f / s.scale[cl], s.zero_point[cl], bits);
      const float value = rptq::cuda::kv_value(code, s.scale[cl], s.zero_point[cl], bits);
      ASSERT_EQ(std::memcmp(&value, &k[i], 4), 0) << bits << " bits, element " << i;
    }
  }
  EXPECT_EQ(rptq::cuda::kv_code(std::nanf(""), 1.0f, 0.0f, 4), 0);
}

TEST(CudaKvPack, InvalidArgumentsThrowBeforeAnyCudaCall) {
  float f = 0.0f;
  std::uint8_t c = 0;
  using rptq::cuda::kv_pack;
  using rptq::cuda::kv_unpack;
  EXPECT_NO_THROW(kv_pack(nullptr, 2, 0, 8, 8, nullptr, nullptr, 4, nullptr, 4, 1));
  EXPECT_THROW(kv_pack(&f, 2, 3, 8, 8, &f, &f, 4, &c, 4, 2), std::invalid_argument);  // past + seq > capacity
  EXPECT_THROW(kv_pack(&f, 2, 3, 8, 7, &f, &f, 4, &c, 4, 0), std::invalid_argument);  // ld < channels
  EXPECT_THROW(kv_pack(&f, 2, 3, 8, 8, &f, &f, 9, &c, 4, 0), std::invalid_argument);
  EXPECT_THROW(kv_pack(&f, 2, 3, 8, 8, nullptr, &f, 4, &c, 4, 0), std::invalid_argument);
  EXPECT_THROW(kv_unpack(&c, 2, 5, 8, &f, &f, 4, 4, &f), std::invalid_argument);  // len > capacity
  EXPECT_THROW(kv_unpack(&c, 2, 3, 8, &f, &f, 1, 4, &f), std::invalid_argument);
  EXPECT_THROW(kv_unpack(&c, 2, 3, 8, &f, &f, 4, 4, nullptr), std::invalid_argument);
  using rptq::cuda::check_kv_side;
  EXPECT_NO_THROW(check_kv_side(3, {0, 4, 8}, {0.5f, 0.25f}, {0.0f, 1.0f}, 8));
  EXPECT_THROW(check_kv_side(3, {0, 4, 7}, {0.5f, 0.25f}, {0.0f, 1.0f}, 8), std::invalid_argument);
  EXPECT_THROW(check_kv_side(3, {0, 4, 8}, {0.5f}, {0.0f}, 8), std::invalid_argument);
  EXPECT_THROW(check_kv_side(1, {0, 8}, {0.5f}, {0.0f}, 8), std::invalid_argument);
  EXPECT_THROW(check_kv_side(4, {0, 8}, {0.0f}, {0.0f}, 8), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::upload_kv_side(4, {0, 9, 8}, {1.0f, 1.0f}, {0.0f, 0.0f}, 8), std::invalid_argument);
}

#else

TEST(CudaKvPack, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
