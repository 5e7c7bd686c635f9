#pragma once
// Dense bit packing of n-bit codes (n = 2..8), for packed weights and the packed KV cache.
//
// Layout: a little-endian bit stream. Value i occupies bits [i*n, (i+1)*n) of the stream, least significant bit
// first, where bit k of the stream is bit (k % 8) of byte k / 8. So 4-bit codes go two per byte, low nibble
// first; 3-bit codes go 8 values per 3 bytes; 8-bit codes are the bytes themselves. The bits after the last value
// (up to the byte boundary) are zero.
//
// Codes are unsigned, 0 .. 2^n - 1. A signed code q in [-2^(n-1), 2^(n-1) - 1] is stored as q + 2^(n-1).
#include <cstddef>
#include <cstdint>

namespace rptq {

// Bytes that `count` n-bit values occupy: ceil(count * n / 8). Throws InputError for bits outside 2..8 or
// count < 0.
std::size_t packed_bytes(std::int64_t count, int bits);

// codes[0..count) -> out[0..packed_bytes). Throws InputError naming the first code that does not fit in `bits`.
void pack_bits(const std::uint8_t* codes, std::int64_t count, int bits, std::uint8_t* out);
// in[0..packed_bytes) -> codes[0..count).
void unpack_bits(const std::uint8_t* in, std::int64_t count, int bits, std::uint8_t* codes);

// The stored form of a signed code and back.
inline std::uint8_t unsigned_code(std::int32_t q, int bits) { return static_cast<std::uint8_t>(q + (1 << (bits - 1))); }
inline std::int32_t signed_code(std::uint8_t u, int bits) { return static_cast<std::int32_t>(u) - (1 << (bits - 1)); }

// pack_bits / unpack_bits of signed codes in [-2^(n-1), 2^(n-1) - 1] (e.g. QuantizedWeight::codes).
// pack_signed throws InputError naming the first code out of range.
void pack_signed(const std::int8_t* codes, std::int64_t count, int bits, std::uint8_t* out);
void unpack_signed(const std::uint8_t* in, std::int64_t count, int bits, std::int8_t* codes);

}  // namespace rptq
