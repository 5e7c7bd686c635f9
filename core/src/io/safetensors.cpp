#include "rptq/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <nlohmann/json.hpp>

#include "rptq/base/error.h"
#include "rptq/base/tensor.h"

namespace rptq {

static_assert(std::endian::native == std::endian::little, "checkpoint data is little-endian; big-endian hosts unsupported");

namespace {

using nlohmann::json;

// The deepest legitimate header is 3 levels ({ "t": { "shape": [ ] } }); refuse deep nesting before the JSON
// parser sees it, so a header of a million '[' costs nothing.
constexpr int kMaxJsonDepth = 16;

bool json_depth_ok(const char* p, std::size_t n) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = p[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

// Non-negative JSON integer (nlohmann stores those as number_unsigned).
std::optional<std::uint64_t> json_uint(const json& v) {
  if (!v.is_number_unsigned()) return std::nullopt;
  return v.get<std::uint64_t>();
}

std::string json_snippet(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

}  // namespace

std::optional<DType> safetensors_dtype(std::string_view name) {
  static constexpr std::pair<std::string_view, DType> kTable[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64}, {"I64", DType::I64},
      {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},     {"U8", DType::U8},   {"BOOL", DType::Bool}};
  for (const auto& [n, t] : kTable)
    if (n == name) return t;
  return std::nullopt;
}

std::optional<std::uint64_t> checked_byte_size(const std::vector<std::int64_t>& shape, std::size_t elem_size) {
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n) || n > kMax) return std::nullopt;
  }
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(elem_size), &bytes) || bytes > kMax) return std::nullopt;
  return bytes;
}

SafetensorsFile read_safetensors(const std::filesystem::path& path) {
  SafetensorsFile out;
  out.mapping = MappedFile::open(path);
  const MappedFile& f = *out.mapping;
  const std::string fname = f.name();
  auto fail = [&](const std::string& msg) -> void { throw InputError(fname + ": " + msg); };

  if (f.size() < 8)
    fail("too short for a safetensors file (" + std::to_string(f.size()) + " bytes; the header length alone is 8)");
  const std::uint64_t header_len = load_le64(f.data());
  if (header_len > kSafetensorsMaxHeader)
    fail("safetensors header length " + std::to_string(header_len) +
         " exceeds the 100 MB limit (corrupt or not a safetensors file)");
  if (header_len > f.size() - 8)
    fail("safetensors header length " + std::to_string(header_len) + " runs past the end of the file (" +
         std::to_string(f.size()) + " bytes; truncated?)");

  const char* header = reinterpret_cast<const char*>(f.data() + 8);
  if (!json_depth_ok(header, header_len)) fail("safetensors header nests JSON deeper than any valid header");
  const json j = json::parse(header, header + header_len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("safetensors header is not valid JSON (corrupt or not a safetensors file)");
  if (!j.is_object()) fail("safetensors header is not a JSON object");

  const std::byte* data = f.data() + 8 + header_len;
  const std::uint64_t data_size = f.size() - 8 - header_len;

  struct Range {
    std::uint64_t begin, end;
    std::size_t index;
  };
  std::vector<Range> ranges;
  std::vector<RawTensor> tensors;
  for (const auto& [key, v] : j.items()) {
    if (key == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not a JSON object");
      for (const auto& [mk, mv] : v.items()) {
        if (!mv.is_string()) fail("__metadata__ entry '" + mk + "' is not a string");
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "'";
    if (key.empty()) fail("a tensor has an empty name");
    if (!v.is_object()) fail(where + ": header entry is not a JSON object");

    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail(where + ": missing or non-string \"dtype\"");
    const std::string dtype_str = dt->get<std::string>();
    const auto dtype = safetensors_dtype(dtype_str);
    if (!dtype)
      fail(where + " has dtype '" + dtype_str +
           "', which is not supported (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)");

    const auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail(where + ": missing or non-array \"shape\"");
    std::vector<std::int64_t> shape;
    for (const json& d : *sh) {
      const auto u = json_uint(d);
      if (!u || *u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail(where + ": shape " + json_snippet(*sh) + " has a negative, non-integer or huge dimension");
      shape.push_back(static_cast<std::int64_t>(*u));
    }
    const auto nbytes = checked_byte_size(shape, dtype_size(*dtype));
    if (!nbytes) fail(where + ": shape " + shape_to_string(shape) + " has more elements than fit in 64 bits");

    const auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2)
      fail(where + ": \"data_offsets\" must be an array [begin, end]");
    const auto begin = json_uint((*off)[0]), end = json_uint((*off)[1]);
    if (!begin || !end) fail(where + ": data_offsets " + json_snippet(*off) + " are not non-negative integers");
    if (*begin > *end) fail(where + ": data_offsets " + json_snippet(*off) + " have begin > end");
    if (*end > data_size)
      fail(where + ": data_offsets " + json_snippet(*off) + " run past the end of the data section (" +
           std::to_string(data_size) + " bytes; truncated file?)");
    if (*end - *begin != *nbytes)
      fail(where + ": dtype " + dtype_str + " x shape " + shape_to_string(shape) + " is " + std::to_string(*nbytes) +
           " bytes, but data_offsets " + json_snippet(*off) + " span " + std::to_string(*end - *begin));

    RawTensor t;
    t.name = key;
    t.dtype = *dtype;
    t.shape = std::move(shape);
    t.data = data + *begin;
    t.owner = out.mapping;
    t.file = fname;
    ranges.push_back({*begin, *end, tensors.size()});
    tensors.push_back(std::move(t));
  }

  // No two tensors may share bytes (empty tensors occupy nothing and may sit anywhere).
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Range* prev = nullptr;
  for (const Range& r : ranges) {
    if (r.begin == r.end) continue;
    if (prev != nullptr && r.begin < prev->end)
      fail("tensors '" + tensors[prev->index].name + "' and '" + tensors[r.index].name +
           "' overlap in the data section (bytes " + std::to_string(r.begin) + ".." +
           std::to_string(std::min(prev->end, r.end)) + ")");
    if (prev == nullptr || r.end > prev->end) prev = &r;
  }

  out.tensors.reserve(tensors.size());
  for (const Range& r : ranges) out.tensors.push_back(std::move(tensors[r.index]));
  return out;
}

}  // namespace rptq
