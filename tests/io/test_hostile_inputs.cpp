// Corrupt and hostile checkpoints: every one must end in an InputError naming the file (and tensor or global where
// there is one) -- never a crash, a hang, a huge allocation, or code execution. The last tests fuzz the real small
// fixtures with a few hundred seeded mutations each.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "rptq/io/checkpoint.h"
#include "rptq/base/error.h"
#include "rptq/io/mapped_file.h"
#include "rptq/io/safetensors.h"
#include "rptq/io/torch_pickle.h"
#include "rptq/io/zip_archive.h"
#include "test_checkpoint_util.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace rptq;
using namespace rptq::test;
using nlohmann::json;
using namespace std::string_literals;

namespace {

const fs::path kPwned = "/tmp/pwned-rptq";

std::string f32s(std::initializer_list<float> v) { return bytes_of(std::vector<float>(v)); }

// Writes `bytes` as DIR/NAME and loads it as safetensors.
fs::path put(const std::string& test, const std::string& name, const std::string& bytes) {
  const fs::path p = temp_dir(test) / name;
  write_file(p, bytes);
  return p;
}

void expect_st_error(const std::string& test, const std::string& bytes, std::vector<std::string> parts) {
  const fs::path p = put(test, "model.safetensors", bytes);
  parts.insert(parts.begin(), p.string());
  expect_input_error([&] { read_safetensors(p); }, parts);
}

std::string header_with(const json& entry, const std::string& data, const std::string& name = "w") {
  json h = json::object();
  h[name] = entry;
  return safetensors_bytes(h.dump(), data);
}

// Loads `bytes` as a torch checkpoint.
std::vector<RawTensor> load_torch_bytes(const std::string& test, const std::string& bytes) {
  return read_torch_checkpoint(put(test, "pytorch_model.bin", bytes));
}

void expect_torch_error(const std::string& test, const std::string& bytes, std::vector<std::string> parts) {
  const fs::path p = put(test, "pytorch_model.bin", bytes);
  parts.insert(parts.begin(), p.string());
  expect_input_error([&] { read_torch_checkpoint(p); }, parts);
}

// The unpickler alone, with storages served from a map.
std::vector<RawTensor> unpickle(const std::string& pickle, const std::map<std::string, std::string>& storages = {},
                                const UnpickleLimits& limits = {}) {
  const StorageLookup lookup = [&](const std::string& key) -> std::span<const std::byte> {
    const auto it = storages.find(key);
    if (it == storages.end()) throw InputError("no storage " + key);
    return {reinterpret_cast<const std::byte*>(it->second.data()), it->second.size()};
  };
  return unpickle_state_dict({reinterpret_cast<const std::byte*>(pickle.data()), pickle.size()}, lookup, nullptr,
                             "test.pkl", limits);
}

const std::string kTwoFloats = f32s({1.0f, 2.0f});

}  // namespace

// ---- safetensors ----

TEST(HostileSafetensors, ValidBaseline) {
  const fs::path p = put("st_base", "m.safetensors",
                         safetensors_file({{"a", "F32", {2}, kTwoFloats}, {"b", "BF16", {1}, std::string("\x80\x3f", 2)}},
                                          json{{"k", "v"}}));
  const SafetensorsFile f = read_safetensors(p);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].to_f32(), (std::vector<float>{1, 2}));
  EXPECT_EQ(f.tensors[1].to_f32(), (std::vector<float>{1}));
  EXPECT_EQ(f.metadata.at("k"), "v");
}

TEST(HostileSafetensors, EveryTruncationFails) {
  const std::string good = safetensors_file({{"a", "F32", {2}, kTwoFloats}, {"b", "I8", {3}, "xyz"}});
  const fs::path dir = temp_dir("st_trunc");
  for (std::size_t n = 0; n < good.size(); ++n) {
    const fs::path p = dir / ("cut" + std::to_string(n) + ".safetensors");
    write_file(p, good.substr(0, n));
    EXPECT_THROW(read_safetensors(p), InputError) << "cut at " << n;
  }
}

TEST(HostileSafetensors, HeaderLength) {
  expect_st_error("st_len_huge", le(std::uint64_t{1} << 62, 8) + "{}", {"header length", "100 MB"});
  expect_st_error("st_len_max", le(~std::uint64_t{0}, 8) + "{}", {"header length"});
  expect_st_error("st_len_past_end", le(1000, 8) + "{}", {"past the end"});
  expect_st_error("st_len_short", "abc", {"too short"});
  expect_st_error("st_len_zero", le(0, 8), {"not valid JSON"});
}

TEST(HostileSafetensors, BadJson) {
  expect_st_error("st_garbage", safetensors_bytes("{\"a\": [1, 2", ""), {"not valid JSON"});
  expect_st_error("st_binary", safetensors_bytes(std::string("\xff\xfe\0\1{}", 6), ""), {"not valid JSON"});
  expect_st_error("st_array", safetensors_bytes("[1, 2, 3]", ""), {"not a JSON object"});
  expect_st_error("st_deep", safetensors_bytes(std::string(200000, '[') + std::string(200000, ']'), ""),
                  {"nests JSON deeper"});
  expect_st_error("st_meta", safetensors_bytes(R"({"__metadata__": {"x": 1}})", ""), {"__metadata__", "'x'"});
  expect_st_error("st_entry", safetensors_bytes(R"({"w": 5})", ""), {"tensor 'w'", "not a JSON object"});
  expect_st_error("st_empty_name", header_with({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}}, "abcd", ""),
                  {"empty name"});
}

TEST(HostileSafetensors, Offsets) {
  expect_st_error("st_past_end", header_with({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}, "abcd"),
                  {"tensor 'w'", "past the end"});
  expect_st_error("st_begin_gt_end", header_with({{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {4, 0}}}, "abcd"),
                  {"tensor 'w'", "begin > end"});
  expect_st_error("st_neg_off", header_with({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {-4, 0}}}, "abcd"),
                  {"tensor 'w'", "data_offsets"});
  expect_st_error("st_off_len", header_with({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0}}}, "abcd"),
                  {"tensor 'w'", "data_offsets"});
  expect_st_error("st_off_huge",
                  header_with({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {~std::uint64_t{0} - 1, ~std::uint64_t{0}}}}, "abcd"),
                  {"tensor 'w'"});
  expect_st_error("st_overlap",
                  safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                        "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                    kTwoFloats),
                  {"'a'", "'b'", "overlap"});
  expect_st_error("st_alias",
                  safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                        "b": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})",
                                    kTwoFloats),
                  {"overlap"});
  // Zero-length tensors occupy nothing; gaps between tensors are allowed.
  const fs::path p = put("st_gap", "m.safetensors",
                         safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                                               "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [6, 6]}})",
                                           kTwoFloats));
  EXPECT_EQ(read_safetensors(p).tensors.size(), 2u);
}

TEST(HostileSafetensors, ShapesAndDtypes) {
  expect_st_error("st_size_mismatch", header_with({{"dtype", "F16"}, {"shape", {3}}, {"data_offsets", {0, 8}}}, kTwoFloats),
                  {"tensor 'w'", "F16", "[3]", "6 bytes", "span 8"});
  expect_st_error("st_neg_dim", header_with({{"dtype", "F32"}, {"shape", {-1, 2}}, {"data_offsets", {0, 8}}}, kTwoFloats),
                  {"tensor 'w'", "shape"});
  expect_st_error("st_float_dim", header_with({{"dtype", "F32"}, {"shape", {2.5}}, {"data_offsets", {0, 8}}}, kTwoFloats),
                  {"tensor 'w'", "shape"});
  const std::int64_t big = std::int64_t{1} << 32;
  expect_st_error("st_overflow",
                  header_with({{"dtype", "F32"}, {"shape", {big, big, big}}, {"data_offsets", {0, 0}}}, ""),
                  {"tensor 'w'", "64 bits"});
  // 2^62 elements of 4 bytes overflow the byte count even though the element count fits.
  expect_st_error("st_overflow_bytes",
                  header_with({{"dtype", "F32"}, {"shape", {std::int64_t{1} << 62}}, {"data_offsets", {0, 0}}}, ""),
                  {"tensor 'w'", "64 bits"});
  expect_st_error("st_overflow_wrap",  // 2^64 wraps to 0 in unchecked arithmetic, matching the empty range
                  header_with({{"dtype", "U8"}, {"shape", {big, big}}, {"data_offsets", {0, 0}}}, ""),
                  {"tensor 'w'", "64 bits"});
  expect_st_error("st_fp8", header_with({{"dtype", "F8_E4M3"}, {"shape", {2}}, {"data_offsets", {0, 2}}}, "ab"),
                  {"tensor 'w'", "'F8_E4M3'", "not supported"});
  expect_st_error("st_no_dtype", header_with({{"shape", {2}}, {"data_offsets", {0, 2}}}, "ab"), {"tensor 'w'", "dtype"});
  expect_st_error("st_no_shape", header_with({{"dtype", "U8"}, {"data_offsets", {0, 2}}}, "ab"), {"tensor 'w'", "shape"});
}

// ---- index files ----

TEST(HostileIndex, ShardRules) {
  const std::string shard = safetensors_file({{"a", "F32", {2}, kTwoFloats}});
  auto folder = [&](const std::string& name, const std::string& index) {
    const fs::path dir = temp_dir(name);
    write_file(dir / "s.safetensors", shard);
    write_file(dir / "model.safetensors.index.json", index);
    return dir;
  };
  expect_input_error([&] { Checkpoint::open(folder("ix_missing", R"({"weight_map": {"a": "nope.safetensors"}})")); },
                     {"model.safetensors.index.json", "'nope.safetensors'", "does not exist"});
  expect_input_error([&] { Checkpoint::open(folder("ix_dotdot", R"({"weight_map": {"a": "../s.safetensors"}})")); },
                     {"model.safetensors.index.json", "'../s.safetensors'", ".."});
  expect_input_error([&] { Checkpoint::open(folder("ix_dotdot2", R"({"weight_map": {"a": "x/../../s.safetensors"}})")); },
                     {"'x/../../s.safetensors'"});
  expect_input_error([&] { Checkpoint::open(folder("ix_abs", R"({"weight_map": {"a": "/etc/passwd"}})")); },
                     {"'/etc/passwd'", "absolute"});
  expect_input_error([&] { Checkpoint::open(folder("ix_not_in_shard", R"({"weight_map": {"a": "s.safetensors", "zz": "s.safetensors"}})")); },
                     {"'zz'", "does not contain"});
  expect_input_error([&] { Checkpoint::open(folder("ix_json", R"({"weight_map": )")); }, {"index.json", "JSON"});
  expect_input_error([&] { Checkpoint::open(folder("ix_no_map", R"({"metadata": {}})")); }, {"weight_map"});
  expect_input_error([&] { Checkpoint::open(folder("ix_empty_map", R"({"weight_map": {}})")); }, {"weight_map"});
  expect_input_error([&] { Checkpoint::open(folder("ix_non_string", R"({"weight_map": {"a": 3}})")); }, {"'a'"});

  // The same tensor in two shards.
  const fs::path dir = folder("ix_dup", R"({"weight_map": {"a": "s.safetensors", "b": "t.safetensors"}})");
  write_file(dir / "t.safetensors", safetensors_file({{"a", "F32", {2}, kTwoFloats}, {"b", "F32", {0}, ""}}));
  expect_input_error([&] { Checkpoint::open(dir); }, {"tensor 'a'", "twice", "s.safetensors", "t.safetensors"});
}

// ---- malicious pickles ----

TEST(HostileTorch, MaliciousGlobalsAreRefusedWithoutExecution) {
  const std::pair<const char*, const char*> cases[] = {
      {"evil_posix_system.bin", "'posix.system'"},         {"evil_os_system.bin", "'os.system'"},
      {"evil_eval.bin", "'builtins.eval'"},                {"evil_stack_global.bin", "'subprocess.call'"},
      {"evil_mixed.bin", "'os.system'"},                   {"evil_load_from_bytes.bin", "'torch.storage._load_from_bytes'"}};
  for (const auto& [file, global] : cases) {
    SCOPED_TRACE(file);
    fs::remove(kPwned);
    const fs::path p = torch_fixtures() / file;
    expect_input_error([&] { read_torch_checkpoint(p); }, {p.string(), global, "refusing to load"});
    // Through a model folder too.
    const fs::path dir = temp_dir("evil_folder");
    fs::copy_file(p, dir / "pytorch_model.bin");
    expect_input_error([&] { Checkpoint::open(dir); }, {"pytorch_model.bin", global});
    EXPECT_FALSE(fs::exists(kPwned)) << "a malicious pickle ran its payload";
  }
}

TEST(HostileTorch, CraftedGlobalsAndClassOpcodes) {
  using namespace pk;
  const std::pair<std::string, std::string> cases[] = {
      {G("builtins", "getattr"), "'builtins.getattr'"},
      {G("subprocess", "Popen"), "'subprocess.Popen'"},
      {G("__builtin__", "exec"), "'__builtin__.exec'"},
      {G("torch", "ComplexFloatStorage"), "'torch.ComplexFloatStorage'"},
      {G("torch._utils", "_rebuild_qtensor"), "'torch._utils._rebuild_qtensor'"},
      {std::string("\x8c\x02os\x8c\x06system\x93"), "'os.system'"},  // STACK_GLOBAL
      {"ios\nsystem\n", "'os.system'"},                              // INST names its class inline
  };
  for (const auto& [frag, global] : cases) {
    SCOPED_TRACE(global);
    expect_torch_error("crafted_global", torch_zip("\x80\x02(" + frag + U("echo") + "\x85R.", {}), {global});
  }
  // NEWOBJ of an allowed class is still refused: state dicts never instantiate classes.
  expect_torch_error("crafted_newobj", torch_zip("\x80\x02" + G("collections", "OrderedDict") + ")\x81.", {}),
                     {"NEWOBJ", "instantiates"});
  // Calling a storage type, or REDUCE on a non-callable.
  expect_torch_error("crafted_storage_call", torch_zip("\x80\x02" + G("torch", "FloatStorage") + ")R.", {}),
                     {"REDUCE"});
  expect_torch_error("crafted_reduce_str", torch_zip("\x80\x02" + U("x") + ")R.", {}), {"REDUCE on a str"});
  // OrderedDict with arguments (could smuggle an iterator).
  expect_torch_error("crafted_od_args", torch_zip("\x80\x02" + G("collections", "OrderedDict") + "]\x85R.", {}),
                     {"OrderedDict"});
  // BUILD on anything but a dict would be __setstate__.
  expect_torch_error("crafted_build", torch_zip("\x80\x02]}b.", {}), {"BUILD"});
}

// ---- zip structure ----

TEST(HostileTorch, EveryTruncationOfARealFixtureFails) {
  const std::string good = read_file(torch_fixtures() / "basic.bin");
  ASSERT_EQ(load_torch_bytes("zip_trunc_full", good).size(), 12u);
  const fs::path dir = temp_dir("zip_trunc");
  for (std::size_t n = 0; n < good.size(); ++n) {
    // A fresh name each time: rewriting one file in place makes ext4 flush it to disk on every close.
    const fs::path p = dir / ("cut" + std::to_string(n) + ".bin");
    write_file(p, good.substr(0, n));
    EXPECT_THROW(read_torch_checkpoint(p), InputError) << "cut at " << n;
  }
}

TEST(HostileTorch, ZipEntryClaimsHugeSize) {
  using namespace pk;
  const std::string pkl = state_dict({{"w", tensor("0", "FloatStorage", 2, 0, {2}, {1})}});
  ASSERT_EQ(load_torch_bytes("zip_ok", torch_zip(pkl, {{"0", kTwoFloats}})).size(), 1u);
  // A storage entry claiming 1 TB (zip64 extra field) or 4 GB-ish (classic fields).
  for (std::uint64_t claim : {std::uint64_t{1} << 40, std::uint64_t{0xFFFFFFF0}, std::uint64_t{100000}}) {
    SCOPED_TRACE(claim);
    std::vector<ZipSpec> e{{"archive/data.pkl", pkl}, {"archive/data/0", kTwoFloats, 0, claim}, {"archive/version", "3\n"}};
    expect_torch_error("zip_huge", zip_bytes(e), {"archive/data/0", "claims"});
  }
  // data.pkl claiming 1 TB, and a (deflate) data.pkl claiming a 1 TB uncompressed size.
  expect_torch_error("zip_huge_pkl", zip_bytes({{"archive/data.pkl", pkl, 0, std::uint64_t{1} << 40}}), {"claims"});
  std::vector<ZipSpec> deflated{{"archive/data.pkl", pkl, 8}, {"archive/version", "3\n"}};
  expect_torch_error("zip_deflate", zip_bytes(deflated), {"data.pkl", "compressed"});
  std::string bomb = zip_bytes(deflated);
  // Patch the central directory's uncompressed size of data.pkl to 0xFFFFFFFE.
  const std::size_t cd = bomb.find(std::string("PK\x01\x02", 4));
  ASSERT_NE(cd, std::string::npos);
  bomb.replace(cd + 24, 4, le(0xFFFFFFFE, 4));
  expect_torch_error("zip_bomb", bomb, {"data.pkl"});
  // A compressed storage.
  std::vector<ZipSpec> cstore{{"archive/data.pkl", pkl}, {"archive/data/0", kTwoFloats, 8}, {"archive/version", "3\n"}};
  expect_torch_error("zip_deflate_storage", zip_bytes(cstore), {"archive/data/0", "compressed"});
}

TEST(HostileTorch, Zip64ArchiveLoads) {
  // Every size and offset through zip64 records, as in checkpoints over 4 GB.
  using namespace pk;
  const std::string pkl = state_dict({{"w", tensor("0", "FloatStorage", 2, 0, {2}, {1})}});
  const std::string z = torch_zip(pkl, {{"0", kTwoFloats}}, /*zip64=*/true);
  const auto ts = load_torch_bytes("zip64_ok", z);
  ASSERT_EQ(ts.size(), 1u);
  EXPECT_EQ(ts[0].to_f32(), (std::vector<float>{1, 2}));
  // Break the zip64 record: its central directory offset, then its signature.
  const std::size_t record = z.size() - 22 - 20 - 56;
  std::string bad = z;
  bad.replace(record + 48, 8, le(std::uint64_t{1} << 50, 8));
  expect_torch_error("zip64_bad_cd", bad, {"central directory"});
  bad = z;
  bad[record] = 'X';
  expect_torch_error("zip64_bad_sig", bad, {"zip64"});
  bad = z;  // an entry's zip64 extra field cut short
  const std::size_t cd = bad.find(std::string("PK\x01\x02", 4));
  bad.replace(cd + 30, 2, le(4 + 8, 2));
  expect_torch_error("zip64_short_extra", bad, {"archive/data.pkl"});
}

TEST(HostileTorch, ZipDirectoryCorruption) {
  using namespace pk;
  const std::string pkl = state_dict({{"w", tensor("0", "FloatStorage", 2, 0, {2}, {1})}});
  const std::string good = torch_zip(pkl, {{"0", kTwoFloats}});
  const std::size_t eocd = good.size() - 22;
  const std::size_t cd = good.find(std::string("PK\x01\x02", 4));
  auto patched = [&](std::size_t at, const std::string& bytes) {
    std::string s = good;
    s.replace(at, bytes.size(), bytes);
    return s;
  };
  expect_torch_error("zip_entries", patched(eocd + 8, le(60000, 2) + le(60000, 2)), {"entries"});
  expect_torch_error("zip_cd_off", patched(eocd + 16, le(0xFFFFFFF0, 4)), {"central directory"});
  expect_torch_error("zip_cd_off64", patched(eocd + 16, le(0xFFFFFFFF, 4)), {"zip64"});
  expect_torch_error("zip_cd_off2", patched(eocd + 16, le(good.size(), 4)), {"central directory"});
  expect_torch_error("zip_cd_size", patched(eocd + 12, le(1 << 30, 4)), {"central directory"});
  expect_torch_error("zip_local_off", patched(cd + 42, le(0x7FFFFFFF, 4)), {"local header"});
  expect_torch_error("zip_name_len", patched(cd + 28, le(60000, 2)), {"corrupt"});
  expect_torch_error("zip_disk", patched(eocd + 4, le(1, 2)), {"multi-disk"});
  expect_torch_error("zip_encrypted", patched(cd + 8, le(1, 2)), {"encrypted"});
  expect_torch_error("zip_crc", patched(cd + 16, le(0x12345678, 4)), {"CRC"});
  // Duplicate names, missing data.pkl, two data.pkl, big-endian byte order, a missing storage entry.
  expect_torch_error("zip_dup", zip_bytes({{"archive/data.pkl", pkl}, {"archive/data.pkl", pkl}}), {"two entries"});
  expect_torch_error("zip_no_pkl", zip_bytes({{"archive/version", "3\n"}}), {"no <name>/data.pkl"});
  expect_torch_error("zip_two_pkl", zip_bytes({{"a/data.pkl", pkl}, {"b/data.pkl", pkl}}), {"two data.pkl"});
  expect_torch_error("zip_big_endian",
                     zip_bytes({{"archive/data.pkl", pkl}, {"archive/data/0", kTwoFloats}, {"archive/byteorder", "big"}}),
                     {"byte order"});
  expect_torch_error("zip_no_storage", torch_zip(pkl, {}), {"storage '0'", "archive/data/0"});
  expect_torch_error("zip_not_zip", "hello world, not a zip", {"not a PyTorch checkpoint"});
  expect_torch_error("zip_tar", std::string(257, '\0') + "ustar" + std::string(300, '\0'), {"legacy"});
  // Zip64 end records pointing nowhere.
  std::string z64 = good;
  z64.insert(eocd, le(0x07064b50, 4) + le(0, 4) + le(0xFFFFFFFFFFull, 8) + le(1, 4));
  expect_torch_error("zip64_locator", z64, {"zip64"});
}

// ---- pickle structure ----

TEST(HostileTorch, StorageAndTensorBounds) {
  using namespace pk;
  // A storage claiming far more elements than its blob holds: refused before anything is allocated.
  expect_torch_error("pk_numel",
                     torch_zip(state_dict({{"w", tensor("0", "FloatStorage", std::int64_t{1} << 60, 0, {2}, {1})}}),
                               {{"0", kTwoFloats}}),
                     {"storage '0'", "claims", "holds only 8 bytes"});
  expect_torch_error("pk_numel_one_more",
                     torch_zip(state_dict({{"w", tensor("0", "FloatStorage", 3, 0, {2}, {1})}}), {{"0", kTwoFloats}}),
                     {"storage '0'"});
  expect_torch_error("pk_numel_neg",
                     torch_zip(state_dict({{"w", tensor("0", "FloatStorage", -1, 0, {2}, {1})}}), {{"0", kTwoFloats}}),
                     {"storage '0'"});
  // Tensor views past their storage, negative offsets and sizes, overflowing shapes, bad strides.
  const std::pair<std::string, std::string> bad_tensors[] = {
      {tensor("0", "FloatStorage", 2, 1, {2}, {1}), "run past the end"},
      {tensor("0", "FloatStorage", 2, -1, {2}, {1}), "run past the end"},
      {tensor("0", "FloatStorage", 2, 0, {-2}, {1}), "negative"},
      {tensor("0", "FloatStorage", 2, 0, {std::int64_t{1} << 40, std::int64_t{1} << 40}, {std::int64_t{1} << 40, 1}),
       "overflows"},
      {tensor("0", "FloatStorage", 2, 0, {2}, {1, 1}), "different lengths"},
      {tensor("0", "FloatStorage", 2, 0, {2, 1}, {1, 2}), "[2, 1]"},  // fine: size-1 dims ignore stride
      {tensor("0", "FloatStorage", 2, 0, {1, 2}, {1, 2}), "not contiguous"},
  };
  for (const auto& [frag, msg] : bad_tensors) {
    SCOPED_TRACE(msg);
    const std::string zip = torch_zip(state_dict({{"w", frag}}), {{"0", kTwoFloats}});
    if (msg == "[2, 1]") {
      EXPECT_EQ(load_torch_bytes("pk_size1", zip).at(0).shape, (std::vector<std::int64_t>{2, 1}));
      continue;
    }
    expect_torch_error("pk_bad_tensor", zip, {"tensor 'w'", msg});
  }
}

TEST(HostileTorch, PickleStructure) {
  using namespace pk;
  const std::map<std::string, std::string> st{{"0", kTwoFloats}};
  const std::string good = state_dict({{"w", tensor("0", "FloatStorage", 2, 0, {2}, {1})}});
  ASSERT_EQ(unpickle(good, st).size(), 1u);
  // Every truncation of a valid pickle fails cleanly.
  for (std::size_t n = 0; n < good.size(); ++n) EXPECT_THROW(unpickle(good.substr(0, n), st), InputError) << n;
  expect_input_error([&] { unpickle(good.substr(0, good.size() - 1), st); }, {"test.pkl", "truncated"});
  expect_input_error([&] { unpickle(good.substr(0, 40), st); }, {"truncated"});
  // Deep MARK nesting, unknown opcodes, a stack underflow, a memo miss, non-dict results.
  expect_input_error([&] { unpickle("\x80\x02" + std::string(1'000'000, '(') + ".", st); }, {"MARK", "deeper"});
  expect_input_error([&] { unpickle("\x80\x02}\xff.", st); }, {"0xff", "byte 3", "unknown"});
  expect_input_error([&] { unpickle("\x80\x02}\x8f.", st); }, {"EMPTY_SET", "not supported"});
  expect_input_error([&] { unpickle("\x80\x02}P0\n.", st); }, {"PERSID"});
  expect_input_error([&] { unpickle("\x80\x09}.", st); }, {"protocol 9"});
  expect_input_error([&] { unpickle("\x80\x02s.", st); }, {"underflow"});
  expect_input_error([&] { unpickle("\x80\x02h\x05.", st); }, {"memo entry 5"});
  expect_input_error([&] { unpickle("\x80\x02].", st); }, {"list", "not a state dict"});
  expect_input_error([&] { unpickle("\x80\x02}", st); }, {"without a STOP"});
  expect_input_error([&] { unpickle("", st); }, {"without a STOP"});
  expect_input_error([&] { unpickle("\x80\x02X\xff\xff\xff\xff", st); }, {"truncated"});  // 4 GB string claim
  expect_input_error([&] { unpickle("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff", st); }, {"truncated"});
  expect_input_error([&] { unpickle("\x80\x02\x8a\x09" + std::string(9, 'a') + ".", st); }, {"64 bits"});
  expect_input_error([&] { unpickle("\x80\x02(" + U("x") + "Q.", st); }, {"persistent id"});
  expect_input_error([&] { unpickle("\x80\x02" "c" + std::string(100000, 'a'), st); }, {"GLOBAL"});
  // Nested training checkpoints get a pointed message.
  const std::string inner = G("collections", "OrderedDict") + ")R(" + U("w") + tensor("0", "FloatStorage", 2, 0, {2}, {1}) + "u";
  expect_input_error([&] { unpickle("\x80\x02}(" + U("model") + inner + U("epoch") + "K\x03u.", st); },
                     {"nested under key 'model'"});
  // Duplicate names, and non-tensor values (skipped).
  expect_input_error([&] {
    unpickle(state_dict({{"w", tensor("0", "FloatStorage", 2, 0, {2}, {1})}, {"w", tensor("0", "FloatStorage", 2, 0, {1}, {1})}}), st);
  }, {"'w'", "twice"});
  EXPECT_EQ(unpickle(state_dict({{"n", "K\x07"}, {"s", U("x")}, {"f", "G" + std::string(8, '\0')}, {"none", "N"}}), st).size(), 0u);
  // A list that contains itself: no recursion, no hang.
  EXPECT_EQ(unpickle("\x80\x02}("s + U("loop") + "]q\x00h\x00"s + "au.", st).size(), 0u);
}

TEST(HostileTorch, ResourceLimits) {
  using namespace pk;
  UnpickleLimits small;
  small.max_objects = 1000;
  small.max_items = 1000;
  // Many objects, many container items, a huge stack.
  expect_input_error([&] { unpickle("\x80\x02" + std::string(5000, ']') + ".", {}, small); }, {"objects"});
  expect_input_error([&] { unpickle("\x80\x02]q\x00"s + std::string(5000, '2') + ".", {}, small); }, {"stack"});
  std::string appends = "\x80\x02]q\x00"s;
  for (int i = 0; i < 2000; ++i) appends += "h\x00" "a"s;
  expect_input_error([&] { unpickle(appends + ".", {}, small); }, {"items"});
  small.max_pickle_bytes = 100;
  expect_input_error([&] { unpickle(std::string(200, 'N'), {}, small); }, {"limit"});
  // The default limits hold against a megabyte of EMPTY_LIST too (it is within them: just check it finishes).
  expect_input_error([&] { unpickle("\x80\x02" + std::string(1 << 20, ']') + ".", {}); }, {"not a state dict"});
}

// ---- seeded fuzzing ----

namespace {

std::string mutate(std::string s, std::mt19937& rng, std::size_t focus_begin, std::size_t focus_end) {
  auto pick = [&](std::size_t lo, std::size_t hi) { return std::uniform_int_distribution<std::size_t>(lo, hi)(rng); };
  const int kind = static_cast<int>(pick(0, 5));
  if (s.empty()) return s;
  const bool focused = focus_end > focus_begin && pick(0, 3) != 0;
  auto pos = [&] { return focused ? pick(focus_begin, focus_end - 1) : pick(0, s.size() - 1); };
  switch (kind) {
    case 0:  // flip a few bits
    case 1:
      for (std::size_t k = 0, n = pick(1, 4); k < n; ++k) s[pos()] ^= static_cast<char>(1 << pick(0, 7));
      break;
    case 2: {  // overwrite with an interesting byte
      const char v[] = {'\0', '\xff', '\x7f', '\x80', '(', '.', 'q', 'h', 'R', '}'};
      for (std::size_t k = 0, n = pick(1, 3); k < n; ++k) s[pos()] = v[pick(0, sizeof v - 1)];
      break;
    }
    case 3:  // truncate
      s.resize(pick(0, s.size() - 1));
      break;
    case 4: {  // insert random bytes
      const std::size_t at = pos();
      std::string ins(pick(1, 8), '\0');
      for (auto& c : ins) c = static_cast<char>(pick(0, 255));
      s = s.substr(0, at) + ins + s.substr(at);
      break;
    }
    default: {  // duplicate a slice somewhere else
      const std::size_t a = pos(), n = pick(1, 16), at = pos();
      s = s.substr(0, at) + s.substr(a, n) + s.substr(at);
      break;
    }
  }
  return s;
}

// Loading must either succeed or throw InputError; anything else (another exception type, a crash) fails the test.
template <typename F>
void must_load_or_reject(F&& load, int i) {
  try {
    load();
  } catch (const InputError&) {
  } catch (const std::exception& e) {
    ADD_FAILURE() << "mutation " << i << ": unexpected " << typeid(e).name() << ": " << e.what();
  }
}

}  // namespace

TEST(Fuzz, SafetensorsMutations) {
  std::string base = safetensors_file({{"a.weight", "F32", {2, 2}, bytes_of(std::vector<float>{1, 2, 3, 4})},
                                       {"a.bias", "F16", {2}, std::string(4, '\x3c')},
                                       {"b", "BOOL", {3}, std::string("\1\0\1", 3)}},
                                      json{{"format", "pt"}});
  const std::size_t header_end = 8 + load_le64(reinterpret_cast<const std::byte*>(base.data()));
  const fs::path dir = temp_dir("fuzz_st");
  std::mt19937 rng(1234);
  int loaded = 0;
  for (int i = 0; i < 400; ++i) {
    const fs::path p = dir / (std::to_string(i) + ".safetensors");
    write_file(p, mutate(base, rng, 0, header_end));
    must_load_or_reject([&] { loaded += !read_safetensors(p).tensors.empty(); }, i);
  }
  EXPECT_GT(loaded, 0);  // some mutations land in the data and still load
}

TEST(Fuzz, TorchArchiveMutations) {
  for (const char* name : {"basic.bin", "shared_storage.bin", "protocol4.bin"}) {
    SCOPED_TRACE(name);
    const std::string base = read_file(torch_fixtures() / name);
    // Focus on the central directory and local headers: the last part of the file and the first bytes.
    const fs::path dir = temp_dir("fuzz_zip");
    std::mt19937 rng(42);
    for (int i = 0; i < 300; ++i) {
      const fs::path p = dir / (std::to_string(i) + ".bin");
      write_file(p, mutate(base, rng, base.size() > 1024 ? base.size() - 1024 : 0, base.size()));
      must_load_or_reject([&] { read_torch_checkpoint(p); }, i);
    }
  }
}

TEST(Fuzz, PickleMutations) {
  // Mutate data.pkl of real fixtures and run the unpickler on it against the fixture's real storages (going
  // through the zip would stop most mutations at the CRC check).
  for (const char* name : {"basic.bin", "module_state.bin", "protocol4.bin", "parameter.bin", "shared_storage.bin"}) {
    SCOPED_TRACE(name);
    const auto file = MappedFile::open(torch_fixtures() / name);
    const ZipArchive zip(file);
    std::string pickle, prefix;
    for (const auto& e : zip.entries())
      if (e.name.ends_with("/data.pkl")) {
        const auto b = zip.stored_bytes(e);
        pickle.assign(reinterpret_cast<const char*>(b.data()), b.size());
        prefix = e.name.substr(0, e.name.size() - 8);
      }
    ASSERT_FALSE(pickle.empty());
    const StorageLookup lookup = [&](const std::string& key) {
      const auto* e = zip.find(prefix + "data/" + key);
      if (e == nullptr) throw InputError("no storage " + key);
      return zip.stored_bytes(*e);
    };
    auto run = [&](const std::string& p) {
      return unpickle_state_dict({reinterpret_cast<const std::byte*>(p.data()), p.size()}, lookup, file, name);
    };
    ASSERT_FALSE(run(pickle).empty());
    std::mt19937 rng(7);
    for (int i = 0; i < 400; ++i) {
      const std::string m = mutate(pickle, rng, 0, pickle.size());
      must_load_or_reject([&] {
        for (const auto& t : run(m)) {  // whatever loads must lie inside the mapping
          ASSERT_GE(t.data, file->data());
          ASSERT_LE(t.data + t.nbytes(), file->data() + file->size());
        }
      }, i);
    }
  }
}
