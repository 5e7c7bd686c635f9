#include "rptq/base/raw_tensor.h"

#include <cstring>

#include "rptq/base/error.h"
#include "rptq/base/tensor.h"

namespace rptq {

std::int64_t RawTensor::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string RawTensor::shape_string() const { return shape_to_string(shape); }

void RawTensor::to_f32(float* out) const {
  const std::int64_t n = numel();
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, data, static_cast<std::size_t>(n) * 4);
      return;
    case DType::F16: {
      const auto* p = reinterpret_cast<const unsigned char*>(data);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = half_to_float(h);
      }
      return;
    }
    case DType::BF16: {
      const auto* p = reinterpret_cast<const unsigned char*>(data);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = bf16_to_float(h);
      }
      return;
    }
    case DType::F64: {
      const auto* p = reinterpret_cast<const unsigned char*>(data);
      for (std::int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      return;
    }
    default:
      throw InputError(file + ": tensor " + name + " has dtype " + std::string(dtype_name(dtype)) +
                       ", expected a floating-point type (F32, F16 or BF16)");
  }
}

std::vector<float> RawTensor::to_f32() const {
  std::vector<float> v(static_cast<std::size_t>(numel()));
  to_f32(v.data());
  return v;
}

}  // namespace rptq
