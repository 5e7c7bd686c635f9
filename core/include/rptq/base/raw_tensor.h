#pragma once
// A tensor as a checkpoint stores it: dtype, shape and bytes, usually a view into a memory-mapped file.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rptq/base/dtype.h"

namespace rptq {

struct RawTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  const std::byte* data = nullptr;  // nbytes() bytes, little-endian, row-major (C-contiguous)
  std::shared_ptr<const void> owner;  // keeps the mapping (or buffer) behind `data` alive
  std::string file;                   // where it came from, for error messages

  std::int64_t numel() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  std::string shape_string() const;  // "[768, 3072]"

  // Converts to float32 into `out` (numel() floats). Throws InputError for non-float dtypes.
  void to_f32(float* out) const;
  std::vector<float> to_f32() const;
};

}  // namespace rptq
