#pragma once
// What the kernels share with host code that emulates them, and the argument checks every launcher runs first.
// Plain host header: safe to include from .cpp files compiled by the host compiler.
//
// RPTQ_HD marks a function compiled for both sides, so the index math and the exact formulas of a kernel can be
// run and tested on a machine without a GPU. The hd:: float operations round to nearest even once each and are
// never fused: nvcc contracts a * b + c into one FMA (one rounding) by default, while the CPU operators, built for
// baseline x86-64, round the product and the sum separately. Formulas written with them (quantizer codes, KV cache
// codes, dequantization) give the CPU's bits on the GPU.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#ifdef __CUDACC__
#define RPTQ_HD __host__ __device__ __forceinline__
#else
#define RPTQ_HD inline
#endif

namespace rptq::cuda {

namespace hd {

RPTQ_HD float add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
RPTQ_HD float sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
RPTQ_HD float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
// IEEE division also under --use_fast_math, which would otherwise turn a / b into an approximation.
RPTQ_HD float div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
// Round half to even (torch.round, std::nearbyint in the default rounding mode; rptq::round_half_even).
RPTQ_HD float round_half_even(float v) {
#ifdef __CUDA_ARCH__
  return rintf(v);
#else
  return std::nearbyint(v);
#endif
}
RPTQ_HD float exp(float v) {
#ifdef __CUDA_ARCH__
  return expf(v);
#else
  return std::exp(v);
#endif
}
RPTQ_HD std::uint32_t float_bits(float v) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(v);
#else
  std::uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
#endif
}
RPTQ_HD float bits_float(std::uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
#endif
}
// v rounded to the nearest BF16 / FP16 value (ties to even), as float: rptq::round_to_dtype's bits, written with
// integer operations so host and device agree (FP16: subnormals below 2^-14, infinity from 65520 on).
RPTQ_HD float round_to_bf16(float v) {
  std::uint32_t x = float_bits(v);
  if ((x & 0x7fffffffu) > 0x7f800000u) return v;  // NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return bits_float(x & 0xffff0000u);
}
RPTQ_HD float round_to_half(float v) {
  const std::uint32_t x = float_bits(v), sign = x & 0x80000000u;
  std::uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return v;                              // infinity, NaN
  if (a >= 0x477ff000u) return bits_float(sign | 0x7f800000u);  // beyond 65504 + half a step
  if (a >= 0x38800000u) {                                       // normal: 10 fraction bits
    a += 0xfffu + ((a >> 13) & 1u);
    return bits_float(sign | (a & ~0x1fffu));
  }
  // Subnormal (or zero): a multiple of 2^-24; scaling by powers of two is exact.
  const float r = round_half_even(bits_float(a) * 16777216.0f) * (1.0f / 16777216.0f);
  return bits_float(sign | float_bits(r));
}

// std::min / std::max of the CPU code: the first argument wins ties, and a NaN second argument is never chosen.
RPTQ_HD float min(float a, float b) { return b < a ? b : a; }
RPTQ_HD float max(float a, float b) { return a < b ? b : a; }
// std::clamp(v, lo, hi).
RPTQ_HD float clamp(float v, float lo, float hi) { return v < lo ? lo : (hi < v ? hi : v); }

}  // namespace hd

// Argument checks of the launchers. They run before any CUDA call, throw std::invalid_argument naming the op,
// and so are testable without a GPU.
inline void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string("rptq::cuda::") + op + ": " + what);
}
inline void require_shape(const char* op, std::int64_t rows, std::int64_t cols) {
  require(rows >= 0 && cols >= 0, op, "bad shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
}
inline void require_ld(const char* op, std::int64_t ld, std::int64_t cols) {
  require(ld >= cols, op, "row stride " + std::to_string(ld) + " is less than the " + std::to_string(cols) +
                              " columns");
}
inline void require_data(const char* op, const void* p, const char* name) {
  require(p != nullptr, op, std::string("null ") + name);
}
inline void require_bits(const char* op, int bits) {
  require(bits >= 2 && bits <= 8, op, "bits must be 2..8; got " + std::to_string(bits));
}
// Grid x may hold 2^31 - 1 blocks; one block of a row-per-block kernel per row, and int indexing within a row.
inline void require_int(const char* op, std::int64_t v, const char* name) {
  require(v <= std::numeric_limits<int>::max(), op,
          std::string(name) + " " + std::to_string(v) + " is beyond what one launch indexes (2^31 - 1)");
}

// Blocks of `threads` covering n items, capped so that grid-stride loops take the rest.
inline unsigned grid_for(std::int64_t n, int threads, std::int64_t cap = 1 << 16) {
  std::int64_t blocks = (n + threads - 1) / threads;
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks);
}

}  // namespace rptq::cuda
