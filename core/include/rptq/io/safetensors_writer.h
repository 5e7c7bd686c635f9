#pragma once
// Writer for the safetensors format (the layout safetensors.h reads): an 8-byte little-endian header length N, N
// bytes of JSON, then the data section.
//  - The header holds "__metadata__" (a string-to-string map, when there is one) first, then one entry per tensor,
//    {"dtype", "shape", "data_offsets"}, sorted by name; it is padded with spaces so the data section starts at an
//    8-byte aligned file offset.
//  - The data section holds the tensors in the same (name) order, back to back: the format requires contiguous
//    data with no gaps (Hugging Face's reader refuses holes), and one dtype per file keeps every tensor aligned to
//    its element size.
//  - Values are given as float32 and stored as F32, F16 or BF16 (a tensor may name its own; integer tensors, I32
//    and I64, are given as raw bytes). F16 and BF16 round to nearest, ties to even;
//    F16 overflows to infinity beyond its largest finite value (65504) and goes through subnormals below 2^-14.
//  - The file appears atomically: it is written to a temporary file in the target's folder, synced, and renamed
//    into place, so readers see the old file or the complete new one, never a partial one.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rptq/base/dtype.h"

namespace rptq {

// One tensor to write: its float32 values, row-major, converted to the file's dtype as they are written.
struct SafetensorsTensor {
  std::string name;
  std::vector<std::int64_t> shape;  // [] is a scalar (one value)
  // Either a view of the values (numel floats; must stay valid until write_safetensors returns) ...
  std::span<const float> values;
  // ... or, when set, a function that writes the numel values into the buffer it is given when the tensor's turn
  // comes, so a transformed copy (a permuted weight) exists for one tensor at a time.
  std::function<void(float*)> produce;
  // The tensor's own dtype instead of the file's (DType::Bool: none given). F32, F16 and BF16 come from the float
  // values above; I32 and I64 from produce_raw, which writes numel elements as little-endian integers.
  DType dtype = DType::Bool;
  std::function<void(std::uint8_t*)> produce_raw{};
};

// Writes `tensors` to PATH in `dtype` (F32, F16 or BF16) with the optional metadata. Throws InputError naming
// PATH for a dtype other than those, an empty, duplicate or reserved ("__metadata__") tensor name, values whose
// count does not match the shape, or any I/O error (no temporary file is left behind then, and an existing PATH
// is unchanged). Exceptions from a `produce` function propagate the same way.
void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensor>& tensors, DType dtype,
                       const std::map<std::string, std::string>& metadata = {});

// Writes `bytes` to PATH atomically (temporary file in PATH's folder, fsync, rename). Throws InputError naming PATH.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

}  // namespace rptq
