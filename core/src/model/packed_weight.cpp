#include "rptq/model/packed_weight.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "rptq/base/bitpack.h"
#include "rptq/base/dtype.h"
#include "rptq/base/error.h"
#include "rptq/model/blas.h"

namespace rptq {

namespace {
constexpr std::int64_t kParallelElements = 1 << 14;
}  // namespace

int weight_scale_exponent(float max_scale_of_row) {
  if (!(max_scale_of_row > 0.0f) || !std::isfinite(max_scale_of_row)) return 0;
  return std::ilogb(max_scale_of_row) - 14;
}

float storable_weight_scale(float scale, int row_exponent) {
  std::uint16_t h = float_to_half(std::ldexp(scale, -row_exponent));
  if ((h & 0x7FFF) == 0) h = 1;  // never a zero scale: the smallest FP16 step
  return std::ldexp(half_to_float(h), row_exponent);
}

float round_to_dtype(float v, DType dtype) {
  switch (dtype) {
    case DType::F16: return half_to_float(float_to_half(v));
    case DType::BF16: return bf16_to_float(float_to_bf16(v));
    default: return v;
  }
}

QuantParams QuantizedWeight::params(std::int64_t row, std::int64_t group) const {
  const auto i = static_cast<std::size_t>(row * groups() + group);
  return {scales.at(i), zero_points.at(i), bits};
}

void QuantizedWeight::dequantize(float* w) const {
  const std::int64_t g = groups();
#pragma omp parallel for schedule(static) if (out * in > kParallelElements)
  for (std::int64_t r = 0; r < out; ++r)
    for (std::int64_t k = 0; k < g; ++k) {
      const auto i = static_cast<std::size_t>(r * g + k);
      const float s = scales[i], z = zero_points[i];
      for (std::int64_t c = group_boundaries[k]; c < group_boundaries[k + 1]; ++c)
        w[r * in + c] = round_to_dtype((static_cast<float>(codes[static_cast<std::size_t>(r * in + c)]) - z) * s,
                                       value_dtype);
    }
}

void PackedWeight::check(const std::string& what) const {
  auto fail = [&](const std::string& m) { throw InputError(what + ": " + m); };
  if (out < 1 || in < 1) fail("weight shape must be positive; got [" + std::to_string(out) + ", " + std::to_string(in) + "]");
  if (bits < 2 || bits > 8) fail("weight bits must be 2..8; got " + std::to_string(bits));
  if (value_dtype != DType::F32 && value_dtype != DType::F16 && value_dtype != DType::BF16)
    fail("weight values must be F32, F16 or BF16; got " + std::string(dtype_name(value_dtype)));
  check_boundaries(group_boundaries, in, what.c_str());
  const auto pg = static_cast<std::size_t>(out * groups());
  if (scales.size() != pg || zero_points.size() != pg)
    fail("expected " + std::to_string(pg) + " scales and zero points, got " + std::to_string(scales.size()) + " and " +
         std::to_string(zero_points.size()));
  if (codes.size() != packed_bytes(out * in, bits))
    fail("expected " + std::to_string(packed_bytes(out * in, bits)) + " bytes of packed codes, got " +
         std::to_string(codes.size()));
}

PackedWeight PackedWeight::pack(const QuantizedWeight& q) {
  PackedWeight p;
  p.out = q.out;
  p.in = q.in;
  p.bits = q.bits;
  p.group_boundaries = q.group_boundaries;
  p.scales = q.scales;
  p.zero_points = q.zero_points;
  p.value_dtype = q.value_dtype;
  if (q.codes.size() != static_cast<std::size_t>(q.out * q.in))
    throw InputError("packing a quantized weight: " + std::to_string(q.codes.size()) + " codes for a [" +
                     std::to_string(q.out) + ", " + std::to_string(q.in) + "] weight");
  p.codes.resize(packed_bytes(q.out * q.in, q.bits));
  pack_signed(q.codes.data(), q.out * q.in, q.bits, p.codes.data());
  p.check("packing a quantized weight");
  return p;
}

QuantizedWeight PackedWeight::unpack() const {
  QuantizedWeight q;
  q.out = out;
  q.in = in;
  q.bits = bits;
  q.group_boundaries = group_boundaries;
  q.scales = scales;
  q.zero_points = zero_points;
  q.value_dtype = value_dtype;
  q.codes.resize(static_cast<std::size_t>(out * in));
  unpack_signed(codes.data(), out * in, bits, q.codes.data());
  return q;
}

void PackedWeight::dequantize_rows(std::int64_t r0, std::int64_t r1, float* w) const {
  if (r0 < 0 || r1 > out || r0 > r1 || r0 % 8 != 0)
    throw std::logic_error("PackedWeight::dequantize_rows: bad row range [" + std::to_string(r0) + ", " +
                           std::to_string(r1) + ") of " + std::to_string(out));
  const std::int64_t g = groups();
  const float offset = static_cast<float>(1 << (bits - 1));
  // Chunks of 8 rows start on a byte of the stream (8 * in * bits bits); each is unpacked into a small buffer.
  const std::int64_t chunks = (r1 - r0 + 7) / 8;
#pragma omp parallel if ((r1 - r0) * in > kParallelElements)
  {
    std::vector<std::uint8_t> u(static_cast<std::size_t>(8 * in));
#pragma omp for schedule(static)
    for (std::int64_t ch = 0; ch < chunks; ++ch) {
      const std::int64_t a = r0 + ch * 8, b = std::min(a + 8, r1);
      unpack_bits(codes.data() + static_cast<std::size_t>(a * in * bits / 8), (b - a) * in, bits, u.data());
      for (std::int64_t r = a; r < b; ++r) {
        const std::uint8_t* ur = u.data() + (r - a) * in;
        float* wr = w + (r - r0) * in;
        for (std::int64_t k = 0; k < g; ++k) {
          const auto i = static_cast<std::size_t>(r * g + k);
          const float s = scales[i], z = zero_points[i];
          // (float(signed code) - z) * s, the signed code being u - 2^(bits-1) (exact in float).
          for (std::int64_t c = group_boundaries[k]; c < group_boundaries[k + 1]; ++c)
            wr[c] = ((static_cast<float>(ur[c]) - offset) - z) * s;
          if (value_dtype != DType::F32)
            for (std::int64_t c = group_boundaries[k]; c < group_boundaries[k + 1]; ++c)
              wr[c] = round_to_dtype(wr[c], value_dtype);
        }
      }
    }
  }
}

std::int64_t packed_tile_rows(std::int64_t rows, std::int64_t in, std::int64_t out) {
  const std::int64_t target = rows <= 64 ? (std::int64_t{1} << 20) : (std::int64_t{16} << 20);
  const std::int64_t tile = std::max<std::int64_t>(8, target / (std::max<std::int64_t>(in, 1) * 4) / 8 * 8);
  return std::min(tile, (out + 7) / 8 * 8);
}

void packed_linear(const float* x, std::int64_t ldx, std::int64_t rows, const PackedWeight& w, const float* bias,
                   float* y, bool accumulate, std::vector<float>& scratch) {
  const std::int64_t in = w.in, out = w.out;
  if (rows <= 0 || out <= 0) return;
  float beta = accumulate ? 1.0f : 0.0f;
  if (bias && !accumulate) {  // start from the bias, as ops::linear does
#pragma omp parallel for schedule(static) if (rows * out > kParallelElements)
    for (std::int64_t r = 0; r < rows; ++r) std::copy_n(bias, out, y + r * out);
    beta = 1.0f;
  }
  const std::int64_t nt = packed_tile_rows(rows, in, out);
  scratch.resize(static_cast<std::size_t>(std::min(nt, out) * in));
  for (std::int64_t r0 = 0; r0 < out; r0 += nt) {
    const std::int64_t n = std::min(nt, out - r0);
    w.dequantize_rows(r0, r0 + n, scratch.data());
    blas::sgemm(false, true, rows, n, in, 1.0f, x, ldx, scratch.data(), in, beta, y + r0, out);
  }
  if (bias && accumulate) {
#pragma omp parallel for schedule(static) if (rows * out > kParallelElements)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < out; ++c) y[r * out + c] += bias[c];
  }
}

}  // namespace rptq
