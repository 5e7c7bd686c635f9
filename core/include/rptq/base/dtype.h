#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rptq {

// Element types a checkpoint may store. Computation on the CPU is always in F32.
enum class DType : std::uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, Bool };

std::size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // safetensors spelling: "F32", "F16", "BF16", ...

// IEEE half and bfloat16 conversions (round to nearest even on the way down).
float half_to_float(std::uint16_t h);
std::uint16_t float_to_half(float f);
inline float bf16_to_float(std::uint16_t b) {
  std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
std::uint16_t float_to_bf16(float f);

}  // namespace rptq
