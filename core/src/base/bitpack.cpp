#include "rptq/base/bitpack.h"

#include <cstring>
#include <string>
#include <vector>

#include "rptq/base/error.h"

namespace rptq {

namespace {
// Large buffers (a whole weight matrix) are packed in parallel; a KV cache row is not worth waking threads for.
constexpr std::int64_t kParallelGroups = 1 << 16;

void check_args(std::int64_t count, int bits) {
  if (bits < 2 || bits > 8) throw InputError("bit packing supports 2..8 bits; got " + std::to_string(bits));
  if (count < 0) throw InputError("bit packing: negative value count " + std::to_string(count));
}

// 8 values of N bits are exactly N bytes: each group is assembled in a 64-bit word (value k at bit k*N) and
// written little-endian. With N a constant the loops unroll into shifts and ORs; N = 3 is the 8-values-in-3-bytes
// path.
template <int N>
void pack_n(const std::uint8_t* c, std::int64_t count, std::uint8_t* out) {
  const std::int64_t groups = count / 8;
#pragma omp parallel for schedule(static) if (groups > kParallelGroups)
  for (std::int64_t g = 0; g < groups; ++g) {
    std::uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v |= static_cast<std::uint64_t>(c[g * 8 + k]) << (k * N);
    for (int b = 0; b < N; ++b) out[g * N + b] = static_cast<std::uint8_t>(v >> (8 * b));
  }
  const std::int64_t rem = count - groups * 8;
  if (rem == 0) return;
  std::uint64_t v = 0;
  for (std::int64_t k = 0; k < rem; ++k) v |= static_cast<std::uint64_t>(c[groups * 8 + k]) << (k * N);
  const std::int64_t bytes = (rem * N + 7) / 8;
  for (std::int64_t b = 0; b < bytes; ++b) out[groups * N + b] = static_cast<std::uint8_t>(v >> (8 * b));
}

template <int N>
void unpack_n(const std::uint8_t* in, std::int64_t count, std::uint8_t* c) {
  constexpr std::uint64_t mask = (1u << N) - 1;
  const std::int64_t groups = count / 8;
#pragma omp parallel for schedule(static) if (groups > kParallelGroups)
  for (std::int64_t g = 0; g < groups; ++g) {
    std::uint64_t v = 0;
    for (int b = 0; b < N; ++b) v |= static_cast<std::uint64_t>(in[g * N + b]) << (8 * b);
    for (int k = 0; k < 8; ++k) c[g * 8 + k] = static_cast<std::uint8_t>((v >> (k * N)) & mask);
  }
  const std::int64_t rem = count - groups * 8;
  if (rem == 0) return;
  const std::int64_t bytes = (rem * N + 7) / 8;
  std::uint64_t v = 0;
  for (std::int64_t b = 0; b < bytes; ++b) v |= static_cast<std::uint64_t>(in[groups * N + b]) << (8 * b);
  for (std::int64_t k = 0; k < rem; ++k) c[groups * 8 + k] = static_cast<std::uint8_t>((v >> (k * N)) & mask);
}

// 4 bits: two values per byte, low nibble first.
void pack_4(const std::uint8_t* c, std::int64_t count, std::uint8_t* out) {
  const std::int64_t pairs = count / 2;
#pragma omp parallel for simd schedule(static) if (pairs > kParallelGroups * 4)
  for (std::int64_t i = 0; i < pairs; ++i)
    out[i] = static_cast<std::uint8_t>(c[2 * i] | (c[2 * i + 1] << 4));
  if (count % 2) out[pairs] = c[count - 1];
}

void unpack_4(const std::uint8_t* in, std::int64_t count, std::uint8_t* c) {
  const std::int64_t pairs = count / 2;
#pragma omp parallel for simd schedule(static) if (pairs > kParallelGroups * 4)
  for (std::int64_t i = 0; i < pairs; ++i) {
    c[2 * i] = in[i] & 0x0F;
    c[2 * i + 1] = in[i] >> 4;
  }
  if (count % 2) c[count - 1] = in[pairs] & 0x0F;
}

void check_codes(const std::uint8_t* codes, std::int64_t count, int bits) {
  // One OR over everything (vectorises); the search for the culprit runs only when something is wrong.
  std::uint8_t any = 0;
#pragma omp simd reduction(| : any)
  for (std::int64_t i = 0; i < count; ++i) any |= codes[i];
  if ((any >> bits) == 0) return;
  for (std::int64_t i = 0; i < count; ++i)
    if (codes[i] >> bits)
      throw InputError("bit packing: code " + std::to_string(codes[i]) + " at index " + std::to_string(i) +
                       " does not fit in " + std::to_string(bits) + " bits");
}
}  // namespace

std::size_t packed_bytes(std::int64_t count, int bits) {
  check_args(count, bits);
  return static_cast<std::size_t>((count * bits + 7) / 8);
}

void pack_bits(const std::uint8_t* codes, std::int64_t count, int bits, std::uint8_t* out) {
  check_args(count, bits);
  if (count == 0) return;
  if (!codes || !out) throw InputError("bit packing: null buffer");
  check_codes(codes, count, bits);
  switch (bits) {
    case 2: return pack_n<2>(codes, count, out);
    case 3: return pack_n<3>(codes, count, out);
    case 4: return pack_4(codes, count, out);
    case 5: return pack_n<5>(codes, count, out);
    case 6: return pack_n<6>(codes, count, out);
    case 7: return pack_n<7>(codes, count, out);
    default: std::memcpy(out, codes, static_cast<std::size_t>(count));  // 8 bits: the bytes themselves
  }
}

void unpack_bits(const std::uint8_t* in, std::int64_t count, int bits, std::uint8_t* codes) {
  check_args(count, bits);
  if (count == 0) return;
  if (!codes || !in) throw InputError("bit unpacking: null buffer");
  switch (bits) {
    case 2: return unpack_n<2>(in, count, codes);
    case 3: return unpack_n<3>(in, count, codes);
    case 4: return unpack_4(in, count, codes);
    case 5: return unpack_n<5>(in, count, codes);
    case 6: return unpack_n<6>(in, count, codes);
    case 7: return unpack_n<7>(in, count, codes);
    default: std::memcpy(codes, in, static_cast<std::size_t>(count));
  }
}

void pack_signed(const std::int8_t* codes, std::int64_t count, int bits, std::uint8_t* out) {
  check_args(count, bits);
  if (count == 0) return;
  if (!codes || !out) throw InputError("bit packing: null buffer");
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  std::vector<std::uint8_t> u(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    if (codes[i] < lo || codes[i] > hi)
      throw InputError("bit packing: signed code " + std::to_string(codes[i]) + " at index " + std::to_string(i) +
                       " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    u[static_cast<std::size_t>(i)] = unsigned_code(codes[i], bits);
  }
  pack_bits(u.data(), count, bits, out);
}

void unpack_signed(const std::uint8_t* in, std::int64_t count, int bits, std::int8_t* codes) {
  check_args(count, bits);
  if (count == 0) return;
  if (!codes || !in) throw InputError("bit unpacking: null buffer");
  std::vector<std::uint8_t> u(static_cast<std::size_t>(count));
  unpack_bits(in, count, bits, u.data());
  for (std::int64_t i = 0; i < count; ++i)
    codes[i] = static_cast<std::int8_t>(signed_code(u[static_cast<std::size_t>(i)], bits));
}

}  // namespace rptq
