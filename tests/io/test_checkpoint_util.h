#pragma once
// Builders for the checkpoint tests: safetensors files, zip archives and pickles written byte by byte, so tests can
// make valid files and then break exactly one thing in them.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rptq/base/error.h"
#include "rptq/io/zip_archive.h"
#include "test_support.h"

namespace rptq::test {

// The PyTorch fixtures written by tests/data/make_fixtures.py.
inline std::filesystem::path torch_fixtures() {
  return std::filesystem::path(RPTQ_RESOURCES_DIR).parent_path() / "tests" / "data" / "torch";
}

inline std::string le(std::uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// ---- safetensors ----

// 8-byte header length, the header JSON (space-padded to a multiple of 8, as the reference writer does), data.
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string h = header;
  while (h.size() % 8) h += ' ';
  return le(h.size(), 8) + h + data;
}

struct StTensor {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::string data;
};

inline std::string safetensors_file(const std::vector<StTensor>& tensors, const nlohmann::json& metadata = nullptr) {
  nlohmann::json h = nlohmann::json::object();
  if (!metadata.is_null()) h["__metadata__"] = metadata;
  std::string data;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.data.size()}}};
    data += t.data;
  }
  return safetensors_bytes(h.dump(), data);
}

// ---- zip ----

struct ZipSpec {
  ZipSpec(std::string n, std::string d, std::uint16_t m = 0, std::optional<std::uint64_t> claim = std::nullopt)
      : name(std::move(n)), data(std::move(d)), method(m), claimed_size(claim) {}
  std::string name, data;
  std::uint16_t method = 0;
  std::optional<std::uint64_t> claimed_size;  // lie about the size (zip64 extra when above 4 GB)
};

// `zip64` writes every size and offset through zip64 extra fields and adds the zip64 end records, as a writer does
// for archives over 4 GB, so the zip64 path can be tested with a small file.
inline std::string zip_bytes(const std::vector<ZipSpec>& entries, bool zip64 = false) {
  std::string out, central;
  for (const auto& e : entries) {
    const auto crc = rptq::crc32({reinterpret_cast<const std::byte*>(e.data.data()), e.data.size()});
    const std::uint64_t size = e.claimed_size.value_or(e.data.size());
    const std::uint64_t offset = out.size();
    const bool z64 = zip64 || size > 0xFFFFFFFFu;
    const std::uint32_t size32 = z64 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(size);
    const std::uint32_t offset32 = zip64 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(offset);
    const std::string extra = z64 ? le(1, 2) + le(zip64 ? 24 : 16, 2) + le(size, 8) + le(size, 8) +
                                        (zip64 ? le(offset, 8) : "")
                                  : "";
    out += le(0x04034b50, 4) + le(20, 2) + le(0, 2) + le(e.method, 2) + le(0, 4) + le(crc, 4) + le(size32, 4) +
           le(size32, 4) + le(e.name.size(), 2) + le(0, 2) + e.name + e.data;
    central += le(0x02014b50, 4) + le(45, 2) + le(45, 2) + le(0, 2) + le(e.method, 2) + le(0, 4) + le(crc, 4) +
               le(size32, 4) + le(size32, 4) + le(e.name.size(), 2) + le(extra.size(), 2) + le(0, 2) + le(0, 2) +
               le(0, 2) + le(0, 4) + le(offset32, 4) + e.name + extra;
  }
  const std::uint64_t cd_offset = out.size();
  out += central;
  if (zip64) {
    const std::uint64_t record = out.size();
    out += le(0x06064b50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) + le(entries.size(), 8) +
           le(entries.size(), 8) + le(central.size(), 8) + le(cd_offset, 8);
    out += le(0x07064b50, 4) + le(0, 4) + le(record, 8) + le(1, 4);
    out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(0xFFFF, 2) + le(0xFFFF, 2) + le(0xFFFFFFFF, 4) +
           le(0xFFFFFFFF, 4) + le(0, 2);
    return out;
  }
  out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(entries.size(), 2) + le(entries.size(), 2) +
         le(central.size(), 4) + le(cd_offset, 4) + le(0, 2);
  return out;
}

// A torch.save-style archive: archive/data.pkl, archive/data/<key> for each storage, archive/version.
inline std::string torch_zip(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& storages,
                             bool zip64 = false) {
  std::vector<ZipSpec> e{{"archive/data.pkl", pickle}};
  for (const auto& [key, data] : storages) e.push_back({"archive/data/" + key, data});
  e.push_back({"archive/version", "3\n"});
  return zip_bytes(e, zip64);
}

// ---- pickle fragments (protocol 2) ----
namespace pk {
inline std::string U(const std::string& s) { return "X" + le(s.size(), 4) + s; }          // BINUNICODE
inline std::string G(const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; }  // GLOBAL
inline std::string I(std::int64_t v) { return "\x8a\x08" + le(static_cast<std::uint64_t>(v), 8); }   // LONG1
inline std::string Tup(const std::vector<std::int64_t>& v) {
  std::string s = "(";
  for (auto x : v) s += I(x);
  return s + "t";
}
// torch._utils._rebuild_tensor_v2(storage(key, type, numel), offset, size, stride, False, OrderedDict())
inline std::string tensor(const std::string& key, const std::string& storage_type, std::int64_t numel,
                          std::int64_t offset, const std::vector<std::int64_t>& shape,
                          const std::vector<std::int64_t>& stride) {
  return G("torch._utils", "_rebuild_tensor_v2") + "((" + U("storage") + G("torch", storage_type) + U(key) + U("cpu") +
         I(numel) + "tQ" + I(offset) + Tup(shape) + Tup(stride) + "\x89" + G("collections", "OrderedDict") + ")Rt" +
         "R";
}
// PROTO 2, OrderedDict(), SETITEMS of (name, value fragment) pairs, STOP.
inline std::string state_dict(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string s = "\x80\x02" + G("collections", "OrderedDict") + ")R(";
  for (const auto& [k, v] : items) s += U(k) + v;
  return s + "u.";
}
}  // namespace pk

// Runs `fn`, expecting an InputError whose message contains every one of `parts`.
inline void expect_input_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an InputError mentioning '" << (parts.empty() ? "" : parts[0]) << "'";
  } catch (const rptq::InputError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  }
}

}  // namespace rptq::test
