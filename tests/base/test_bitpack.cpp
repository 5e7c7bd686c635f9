// Bit packing: the documented little-endian, LSB-first layout, byte for byte, against a bit-by-bit packer.
#include "rptq/base/bitpack.h"

#include <random>
#include <vector>

#include "rptq/base/error.h"
#include "test_support.h"

namespace {

// The layout as the header states it: bit j of value i is bit i*n + j of the stream, stream bit k is bit k % 8
// of byte k / 8.
std::vector<std::uint8_t> pack_slow(const std::vector<std::uint8_t>& codes, int bits) {
  std::vector<std::uint8_t> out((codes.size() * static_cast<std::size_t>(bits) + 7) / 8, 0);
  for (std::size_t i = 0; i < codes.size(); ++i)
    for (int j = 0; j < bits; ++j)
      if ((codes[i] >> j) & 1) {
        const std::size_t k = i * static_cast<std::size_t>(bits) + static_cast<std::size_t>(j);
        out[k / 8] = static_cast<std::uint8_t>(out[k / 8] | (1u << (k % 8)));
      }
  return out;
}

std::vector<std::uint8_t> pack(const std::vector<std::uint8_t>& codes, int bits) {
  // Filled with 0xAA so unwritten or dirty tail bits would show.
  std::vector<std::uint8_t> out(rptq::packed_bytes(static_cast<std::int64_t>(codes.size()), bits), 0xAA);
  rptq::pack_bits(codes.data(), static_cast<std::int64_t>(codes.size()), bits, out.data());
  return out;
}

TEST(Bitpack, PackedBytes) {
  EXPECT_EQ(rptq::packed_bytes(0, 4), 0u);
  EXPECT_EQ(rptq::packed_bytes(1, 3), 1u);
  EXPECT_EQ(rptq::packed_bytes(8, 3), 3u);
  EXPECT_EQ(rptq::packed_bytes(9, 3), 4u);
  EXPECT_EQ(rptq::packed_bytes(7, 4), 4u);
  EXPECT_EQ(rptq::packed_bytes(1001, 5), 626u);
  EXPECT_EQ(rptq::packed_bytes(1001, 8), 1001u);
  EXPECT_EQ(rptq::packed_bytes(3, 2), 1u);
}

TEST(Bitpack, ExactBytesFourBit) {
  EXPECT_EQ(pack({0x1, 0x2, 0x3}, 4), (std::vector<std::uint8_t>{0x21, 0x03}));  // low nibble first, tail zero
  EXPECT_EQ(pack({0xF, 0x0, 0xA, 0x5}, 4), (std::vector<std::uint8_t>{0x0F, 0x5A}));
  EXPECT_EQ(pack({0x9}, 4), (std::vector<std::uint8_t>{0x09}));
}

TEST(Bitpack, ExactBytesThreeBit) {
  // 8 values fill exactly 3 bytes: 1 | 2 << 3 | 3 << 6 | 4 << 9 | 5 << 12 | 6 << 15 | 7 << 18 | 0 << 21.
  EXPECT_EQ(pack({1, 2, 3, 4, 5, 6, 7, 0}, 3), (std::vector<std::uint8_t>{0xD1, 0x58, 0x1F}));
  EXPECT_EQ(pack({5, 3, 6}, 3), (std::vector<std::uint8_t>{0x9D, 0x01}));  // 9 bits: the 6 straddles two bytes
  EXPECT_EQ(pack({7, 7, 7}, 3), (std::vector<std::uint8_t>{0xFF, 0x01}));
  EXPECT_EQ(pack({7}, 3), (std::vector<std::uint8_t>{0x07}));
  // A ninth value starts a new group, byte aligned.
  EXPECT_EQ(pack({0, 0, 0, 0, 0, 0, 0, 0, 6}, 3), (std::vector<std::uint8_t>{0, 0, 0, 0x06}));
}

TEST(Bitpack, RoundTripEveryWidthAndOddCounts) {
  std::mt19937 rng(5);
  for (int bits = 2; bits <= 8; ++bits)
    for (std::int64_t count : {std::int64_t{0}, std::int64_t{1}, std::int64_t{7}, std::int64_t{8}, std::int64_t{9},
                               std::int64_t{1001}, std::int64_t{600003}}) {  // the last takes the parallel path
      std::uniform_int_distribution<int> d(0, (1 << bits) - 1);
      std::vector<std::uint8_t> codes(static_cast<std::size_t>(count));
      for (auto& c : codes) c = static_cast<std::uint8_t>(d(rng));
      if (count > 2) codes[1] = static_cast<std::uint8_t>((1 << bits) - 1);  // all ones next to a neighbour
      const std::vector<std::uint8_t> packed = pack(codes, bits);
      ASSERT_EQ(packed, pack_slow(codes, bits)) << bits << " bits, " << count << " values";
      std::vector<std::uint8_t> back(static_cast<std::size_t>(count), 0xEE);
      rptq::unpack_bits(packed.data(), count, bits, back.data());
      ASSERT_EQ(back, codes) << bits << " bits, " << count << " values";
    }
}

TEST(Bitpack, SignedCodes) {
  EXPECT_EQ(rptq::unsigned_code(-8, 4), 0);
  EXPECT_EQ(rptq::unsigned_code(7, 4), 15);
  EXPECT_EQ(rptq::unsigned_code(0, 3), 4);
  EXPECT_EQ(rptq::signed_code(0, 4), -8);
  EXPECT_EQ(rptq::signed_code(255, 8), 127);
  for (int bits = 2; bits <= 8; ++bits) {
    std::vector<std::int8_t> codes;
    for (int v = -(1 << (bits - 1)); v < (1 << (bits - 1)); ++v) codes.push_back(static_cast<std::int8_t>(v));
    codes.push_back(static_cast<std::int8_t>(-1));  // odd count
    const auto n = static_cast<std::int64_t>(codes.size());
    std::vector<std::uint8_t> packed(rptq::packed_bytes(n, bits));
    rptq::pack_signed(codes.data(), n, bits, packed.data());
    std::vector<std::uint8_t> u(codes.size());
    for (std::size_t i = 0; i < codes.size(); ++i) u[i] = rptq::unsigned_code(codes[i], bits);
    EXPECT_EQ(packed, pack_slow(u, bits)) << bits;
    std::vector<std::int8_t> back(codes.size());
    rptq::unpack_signed(packed.data(), n, bits, back.data());
    EXPECT_EQ(back, codes) << bits;
  }
  // 4-bit -8, 7 -> stored 0x0, 0xF.
  const std::int8_t two[] = {-8, 7};
  std::uint8_t b = 0;
  rptq::pack_signed(two, 2, 4, &b);
  EXPECT_EQ(b, 0xF0);
}

TEST(Bitpack, BadInputsThrow) {
  std::uint8_t buf[8] = {};
  EXPECT_THROW(rptq::packed_bytes(4, 1), rptq::InputError);
  EXPECT_THROW(rptq::packed_bytes(4, 9), rptq::InputError);
  EXPECT_THROW(rptq::packed_bytes(-1, 4), rptq::InputError);
  EXPECT_THROW(rptq::unpack_bits(buf, 3, 0, buf), rptq::InputError);
  const std::uint8_t too_big[] = {1, 2, 16};
  try {
    rptq::pack_bits(too_big, 3, 4, buf);
    FAIL();
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("index 2"), std::string::npos) << e.what();
  }
  const std::int8_t out_of_range[] = {0, 4};
  EXPECT_THROW(rptq::pack_signed(out_of_range, 2, 3, buf), rptq::InputError);  // 3-bit codes are -4..3
  EXPECT_THROW(rptq::pack_bits(nullptr, 3, 4, buf), rptq::InputError);
}

}  // namespace
