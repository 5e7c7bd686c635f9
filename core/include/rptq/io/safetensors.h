#pragma once
// Reader for the safetensors format: an 8-byte little-endian header length N, N bytes of JSON describing each
// tensor (dtype, shape, data_offsets relative to the data section), then the data section. The file is
// memory-mapped and every RawTensor points into the mapping (no copy). The header is validated completely before
// any tensor is returned: a hostile or corrupt file gives an InputError naming the file and the tensor.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rptq/base/dtype.h"
#include "rptq/io/mapped_file.h"
#include "rptq/base/raw_tensor.h"

namespace rptq {

// Header lengths above this are refused as corrupt (the reference implementation uses the same limit).
inline constexpr std::uint64_t kSafetensorsMaxHeader = 100'000'000;

struct SafetensorsFile {
  std::shared_ptr<const MappedFile> mapping;
  std::map<std::string, std::string> metadata;  // "__metadata__", when present
  std::vector<RawTensor> tensors;               // in data-offset order; each owner is `mapping`
};

// Maps and validates PATH. Throws InputError "PATH: ..." on any problem.
SafetensorsFile read_safetensors(const std::filesystem::path& path);

// "F32" -> DType::F32, ...; nullopt for spellings this project does not support (F8_E4M3, C64, ...).
std::optional<DType> safetensors_dtype(std::string_view name);

// Byte size of a tensor of `shape` with `elem_size`-byte elements, or nullopt when a dimension is negative or the
// element count or byte size does not fit in int64 (checked multiplication; used on untrusted headers).
std::optional<std::uint64_t> checked_byte_size(const std::vector<std::int64_t>& shape, std::size_t elem_size);

}  // namespace rptq
