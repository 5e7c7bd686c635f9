// Checkpoint loading: the shared tiny models in both formats, the PyTorch fixtures from tests/data/torch, sharded
// folders built in temp dirs, and the folder-level rules (preference order, missing weights, index checks).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "rptq/io/checkpoint.h"
#include "rptq/base/error.h"
#include "rptq/io/safetensors.h"
#include "rptq/io/safetensors_writer.h"
#include "rptq/io/torch_pickle.h"
#include "test_checkpoint_util.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace rptq;
using namespace rptq::test;

namespace {

// The ../shared model folders (stories260k and tiny-opt-16m from resources/models, tiny-opt-16m-bin only there).
fs::path model(const std::string& name) { return shared_model(name); }

template <typename T>
std::vector<T> values(const RawTensor& t) {
  EXPECT_EQ(t.nbytes(), static_cast<std::size_t>(t.numel()) * sizeof(T));
  std::vector<T> v(static_cast<std::size_t>(t.numel()));
  if (!v.empty()) std::memcpy(v.data(), t.data, t.nbytes());
  return v;
}

std::vector<float> ramp(int n, float scale, float offset = 0) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(static_cast<float>(i) * scale + offset);
  return v;
}

// A folder holding `file` copied under the name `as`.
fs::path folder_with(const std::string& test, const fs::path& file, const std::string& as) {
  const fs::path dir = temp_dir(test);
  fs::copy_file(file, dir / as);
  return dir;
}

std::string f32_bytes(const std::vector<float>& v) { return bytes_of(v); }

}  // namespace

TEST(Checkpoint, TinyOptSafetensors) {
  const Checkpoint ck = Checkpoint::open(model("tiny-opt-16m"));
  EXPECT_EQ(ck.format(), "safetensors");
  ASSERT_EQ(ck.files().size(), 1u);
  EXPECT_EQ(ck.file_bytes(), fs::file_size(model("tiny-opt-16m") / "model.safetensors"));
  EXPECT_EQ(ck.tensors().size(), 68u);
  const RawTensor& emb = ck.get("model.decoder.embed_tokens.weight");
  EXPECT_EQ(emb.dtype, DType::F16);
  EXPECT_EQ(emb.shape, (std::vector<std::int64_t>{50272, 256}));
  EXPECT_NE(emb.file.find("model.safetensors"), std::string::npos);
  EXPECT_TRUE(ck.contains("model.decoder.layers.0.self_attn.q_proj.bias"));
  EXPECT_FALSE(ck.contains("lm_head.weight"));
  // Every tensor lies inside the mapping of its file.
  const SafetensorsFile st = read_safetensors(model("tiny-opt-16m") / "model.safetensors");
  EXPECT_EQ(st.metadata.at("format"), "pt");
  for (const auto& t : st.tensors) {
    EXPECT_GE(t.data, st.mapping->data());
    EXPECT_LE(t.data + t.nbytes(), st.mapping->data() + st.mapping->size());
  }
  const auto f = emb.to_f32();
  for (float x : f) ASSERT_TRUE(std::isfinite(x));
}

TEST(Checkpoint, TinyOptBinMatchesSafetensorsBitForBit) {
  RPTQ_REQUIRE_SHARED_FILE("models/tiny-opt-16m-bin");  // 32 MB, saved by PyTorch: not carried
  const Checkpoint st = Checkpoint::open(model("tiny-opt-16m"));
  const Checkpoint bin = Checkpoint::open(model("tiny-opt-16m-bin"));
  EXPECT_EQ(bin.format(), "pytorch .bin");
  EXPECT_EQ(bin.file_bytes(), fs::file_size(model("tiny-opt-16m-bin") / "pytorch_model.bin"));
  ASSERT_EQ(bin.tensors().size(), st.tensors().size());
  for (const auto& [name, t] : bin.tensors()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(st.contains("model." + name));
    const RawTensor& s = st.get("model." + name);
    EXPECT_EQ(t.dtype, s.dtype);
    EXPECT_EQ(t.shape, s.shape);
    ASSERT_EQ(t.nbytes(), s.nbytes());
    EXPECT_EQ(std::memcmp(t.data, s.data, t.nbytes()), 0);
  }
}

TEST(Checkpoint, Stories260kF32) {
  const Checkpoint ck = Checkpoint::open(model("stories260k"));
  EXPECT_EQ(ck.format(), "safetensors");
  EXPECT_EQ(ck.tensors().size(), 47u);  // 48 header entries, one is __metadata__
  const RawTensor& e = ck.get("model.embed_tokens.weight");
  EXPECT_EQ(e.dtype, DType::F32);
  EXPECT_EQ(e.shape.size(), 2u);
  std::uint64_t bytes = 0;
  for (const auto& [n, t] : ck.tensors()) {
    EXPECT_EQ(t.dtype, DType::F32) << n;
    bytes += t.nbytes();
  }
  EXPECT_LE(bytes, ck.file_bytes());
  EXPECT_EQ(values<float>(e), e.to_f32());
}

TEST(Checkpoint, TensorsOutliveTheCheckpoint) {
  RawTensor t;
  std::vector<float> expected;
  {
    const Checkpoint ck = Checkpoint::open(model("stories260k"));
    t = ck.get("model.norm.weight");
    expected = t.to_f32();
  }
  EXPECT_EQ(t.to_f32(), expected);  // the owner keeps the mapping alive
}

TEST(Checkpoint, MissingTensorError) {
  const Checkpoint ck = Checkpoint::open(model("stories260k"));
  expect_input_error([&] { ck.get("no.such.weight"); }, {"missing tensor no.such.weight in", "stories260k"});
  const auto names = ck.names();
  EXPECT_EQ(names.size(), ck.tensors().size());
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

// ---- PyTorch fixtures ----

TEST(TorchCheckpoint, AllDtypes) {
  const auto ts = read_torch_checkpoint(torch_fixtures() / "basic.bin");
  std::map<std::string, RawTensor> m;
  std::vector<std::string> order;
  for (const auto& t : ts) {
    order.push_back(t.name);
    m[t.name] = t;
  }
  EXPECT_EQ(order, (std::vector<std::string>{"f32", "f16", "bf16", "f64", "i64", "i32", "i16", "i8", "u8", "bool",
                                             "scalar", "empty"}));
  EXPECT_EQ(m["f32"].dtype, DType::F32);
  EXPECT_EQ(m["f32"].shape, (std::vector<std::int64_t>{3, 4}));
  EXPECT_EQ(m["f32"].to_f32(), ramp(12, 0.5f, -1.0f));
  EXPECT_EQ(m["f16"].dtype, DType::F16);
  EXPECT_EQ(m["f16"].to_f32(), ramp(6, 0.25f, 1.0f));
  EXPECT_EQ(m["bf16"].dtype, DType::BF16);
  EXPECT_EQ(m["bf16"].shape, (std::vector<std::int64_t>{2, 2, 2}));
  EXPECT_EQ(m["bf16"].to_f32(), ramp(8, -0.5f, 2.0f));
  EXPECT_EQ(m["f64"].dtype, DType::F64);
  EXPECT_EQ(values<double>(m["f64"]), (std::vector<double>{0.0, 1.0 / 3.0, 2.0 / 3.0}));
  EXPECT_EQ(values<std::int64_t>(m["i64"]), (std::vector<std::int64_t>{1, -2, 3, std::int64_t{1} << 40}));
  EXPECT_EQ(values<std::int32_t>(m["i32"]), (std::vector<std::int32_t>{-7, 8}));
  EXPECT_EQ(values<std::int16_t>(m["i16"]), (std::vector<std::int16_t>{300, -300, 5}));
  EXPECT_EQ(values<std::int8_t>(m["i8"]), (std::vector<std::int8_t>{-128, 127}));
  EXPECT_EQ(values<std::uint8_t>(m["u8"]), (std::vector<std::uint8_t>{0, 255, 17}));
  EXPECT_EQ(m["bool"].dtype, DType::Bool);
  EXPECT_EQ(values<std::uint8_t>(m["bool"]), (std::vector<std::uint8_t>{1, 0, 1}));
  EXPECT_TRUE(m["scalar"].shape.empty());
  EXPECT_EQ(m["scalar"].to_f32(), std::vector<float>{3.5f});
  EXPECT_EQ(m["empty"].shape, (std::vector<std::int64_t>{0, 4}));
  EXPECT_EQ(m["empty"].nbytes(), 0u);
  for (const auto& t : ts) EXPECT_NE(t.file.find("basic.bin"), std::string::npos);
}

TEST(TorchCheckpoint, Parameters) {
  const auto ts = read_torch_checkpoint(torch_fixtures() / "parameter.bin");
  ASSERT_EQ(ts.size(), 2u);
  EXPECT_EQ(ts[0].name, "weight");
  EXPECT_EQ(ts[0].shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(ts[0].to_f32(), ramp(6, 1.0f));
  EXPECT_EQ(ts[1].name, "bias");
  EXPECT_EQ(ts[1].to_f32(), ramp(2, -1.0f));
}

TEST(TorchCheckpoint, ModuleStateDictWithMetadata) {
  const auto ts = read_torch_checkpoint(torch_fixtures() / "module_state.bin");
  ASSERT_EQ(ts.size(), 4u);
  const char* names[] = {"0.weight", "0.bias", "1.weight", "1.bias"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(ts[i].name, names[i]);
    EXPECT_EQ(ts[i].to_f32(), ramp(static_cast<int>(ts[i].numel()), 0.125f, static_cast<float>(i)));
  }
  EXPECT_EQ(ts[0].shape, (std::vector<std::int64_t>{3, 4}));
}

TEST(TorchCheckpoint, Protocol4) {
  const auto ts = read_torch_checkpoint(torch_fixtures() / "protocol4.bin");
  ASSERT_EQ(ts.size(), 2u);
  EXPECT_EQ(ts[0].name, "a.weight");
  EXPECT_EQ(ts[0].dtype, DType::F16);
  EXPECT_EQ(ts[0].to_f32(), ramp(4, 0.5f));
  EXPECT_EQ(ts[1].name, "a.bias");
  EXPECT_EQ(ts[1].to_f32(), ramp(2, 2.0f));
}

TEST(TorchCheckpoint, SharedStorageViews) {
  const auto ts = read_torch_checkpoint(torch_fixtures() / "shared_storage.bin");
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_EQ(ts[0].name, "full");
  EXPECT_EQ(ts[0].to_f32(), ramp(10, 1.0f));
  EXPECT_EQ(ts[1].name, "middle");
  EXPECT_EQ(ts[1].to_f32(), ramp(4, 1.0f, 2.0f));
  EXPECT_EQ(ts[1].data, ts[0].data + 2 * sizeof(float));  // a view, not a copy
  EXPECT_EQ(ts[2].name, "tail");
  EXPECT_EQ(ts[2].shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(ts[2].to_f32(), ramp(4, 1.0f, 6.0f));
}

TEST(TorchCheckpoint, NonContiguousIsRefused) {
  expect_input_error([] { read_torch_checkpoint(torch_fixtures() / "noncontiguous.bin"); },
                     {"noncontiguous.bin", "tensor 't'", "not contiguous", "[3, 2]"});
}

TEST(TorchCheckpoint, LegacyFormatIsRefused) {
  expect_input_error([] { read_torch_checkpoint(torch_fixtures() / "legacy.bin"); },
                     {"legacy.bin", "legacy", "newer PyTorch", "safetensors"});
}

TEST(TorchCheckpoint, ThroughCheckpointOpen) {
  const fs::path dir = folder_with("ck_torch_single", torch_fixtures() / "basic.bin", "pytorch_model.bin");
  const Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.format(), "pytorch .bin");
  EXPECT_EQ(ck.tensors().size(), 12u);
  EXPECT_EQ(ck.file_bytes(), fs::file_size(dir / "pytorch_model.bin"));
  EXPECT_EQ(ck.get("f16").to_f32(), ramp(6, 0.25f, 1.0f));
}

// ---- sharded folders ----

TEST(Checkpoint, ShardedSafetensors) {
  const fs::path dir = temp_dir("ck_sharded_st");
  write_file(dir / "model-00001-of-00002.safetensors",
             safetensors_file({{"a.weight", "F32", {2, 2}, f32_bytes(ramp(4, 1))}, {"a.bias", "F32", {2}, f32_bytes(ramp(2, 2))}}));
  write_file(dir / "model-00002-of-00002.safetensors",
             safetensors_file({{"b.weight", "F32", {3}, f32_bytes(ramp(3, -1))}}));
  write_file(dir / "model.safetensors.index.json", R"({"metadata": {"total_size": 36}, "weight_map": {
      "a.weight": "model-00001-of-00002.safetensors", "a.bias": "model-00001-of-00002.safetensors",
      "b.weight": "model-00002-of-00002.safetensors"}})");
  write_file(dir / "config.json", "{}");
  const Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.format(), "safetensors (2 shards)");
  EXPECT_EQ(ck.files().size(), 2u);
  EXPECT_EQ(ck.file_bytes(), fs::file_size(dir / "model-00001-of-00002.safetensors") +
                                 fs::file_size(dir / "model-00002-of-00002.safetensors"));
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"a.bias", "a.weight", "b.weight"}));
  EXPECT_EQ(ck.get("a.weight").to_f32(), ramp(4, 1));
  EXPECT_EQ(ck.get("b.weight").to_f32(), ramp(3, -1));
  EXPECT_NE(ck.get("b.weight").file.find("model-00002-of-00002"), std::string::npos);
}

// A FIFO where a file is read (a shard index) or written is refused at once, naming it, instead of blocking.
TEST(Checkpoint, FifoIndexAndFifoOutputAreRefused) {
  const fs::path dir = temp_dir("ck_fifo");
  write_file(dir / "config.json", "{}");
  ASSERT_EQ(::mkfifo((dir / "model.safetensors.index.json").c_str(), 0600), 0);
  try {
    Checkpoint::open(dir);
    FAIL() << "a FIFO index was opened";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors.index.json: is a FIFO"), std::string::npos) << e.what();
  }
  ASSERT_EQ(::mkfifo((dir / "out.safetensors").c_str(), 0600), 0);
  const std::vector<float> v = {1.0f, 2.0f};
  try {
    write_safetensors(dir / "out.safetensors", {{"w", {2}, v, {}}}, DType::F32, {});
    FAIL() << "wrote through a FIFO";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("out.safetensors: is a FIFO"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_file_atomic(dir / "out.safetensors", "{}"), InputError);
  struct stat st {};
  ASSERT_EQ(::lstat((dir / "out.safetensors").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));  // not replaced
  // A tensor name that is not UTF-8 cannot go into the JSON header: an InputError, not a JSON exception.
  try {
    write_safetensors(dir / "bad-name.safetensors", {{std::string("w\xff"), {2}, v, {}}}, DType::F32, {});
    FAIL() << "wrote a non-UTF-8 name";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "bad-name.safetensors"));
}

TEST(Checkpoint, ShardedBin) {
  const fs::path dir = temp_dir("ck_sharded_bin");
  fs::copy_file(torch_fixtures() / "shard-00001-of-00002.bin", dir / "pytorch_model-00001-of-00002.bin");
  fs::copy_file(torch_fixtures() / "shard-00002-of-00002.bin", dir / "pytorch_model-00002-of-00002.bin");
  write_file(dir / "pytorch_model.bin.index.json", R"({"weight_map": {
      "layer.0.weight": "pytorch_model-00001-of-00002.bin", "layer.0.bias": "pytorch_model-00001-of-00002.bin",
      "layer.1.weight": "pytorch_model-00002-of-00002.bin", "layer.1.bias": "pytorch_model-00002-of-00002.bin"}})");
  const Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.format(), "pytorch .bin (2 shards)");
  EXPECT_EQ(ck.tensors().size(), 4u);
  EXPECT_EQ(ck.get("layer.0.weight").to_f32(), ramp(4, 1));
  EXPECT_EQ(ck.get("layer.1.weight").to_f32(), ramp(4, -1));
  EXPECT_EQ(ck.get("layer.1.bias").dtype, DType::F16);
  EXPECT_EQ(ck.get("layer.1.bias").to_f32(), ramp(2, 0.25f));
}

TEST(Checkpoint, ShardedSafetensorsInSubfolderAndSingleShard) {
  const fs::path dir = temp_dir("ck_sharded_sub");
  fs::create_directories(dir / "weights");
  write_file(dir / "weights" / "w.safetensors", safetensors_file({{"x", "F16", {0}, ""}}));
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"x": "weights/w.safetensors"}})");
  const Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.format(), "safetensors (1 shard)");
  EXPECT_EQ(ck.get("x").numel(), 0);
}

// ---- folder rules ----

TEST(Checkpoint, PreferenceOrder) {
  const std::string st = safetensors_file({{"from_safetensors", "F32", {1}, f32_bytes({1})}});
  const std::string st_shard = safetensors_file({{"from_index", "F32", {1}, f32_bytes({2})}});
  const fs::path dir = temp_dir("ck_preference");
  fs::copy_file(torch_fixtures() / "basic.bin", dir / "pytorch_model.bin");
  EXPECT_EQ(Checkpoint::open(dir).format(), "pytorch .bin");
  fs::copy_file(torch_fixtures() / "shard-00001-of-00002.bin", dir / "s1.bin");
  write_file(dir / "pytorch_model.bin.index.json", R"({"weight_map": {"layer.0.weight": "s1.bin"}})");
  EXPECT_EQ(Checkpoint::open(dir).format(), "pytorch .bin (1 shard)");
  write_file(dir / "model.safetensors", st);
  EXPECT_TRUE(Checkpoint::open(dir).contains("from_safetensors"));
  write_file(dir / "s1.safetensors", st_shard);
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"from_index": "s1.safetensors"}})");
  const Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.format(), "safetensors (1 shard)");
  EXPECT_TRUE(ck.contains("from_index"));
  EXPECT_FALSE(ck.contains("from_safetensors"));
}

TEST(Checkpoint, NoWeightsListsWhatItLookedFor) {
  const fs::path dir = temp_dir("ck_no_weights");
  write_file(dir / "config.json", "{}");
  write_file(dir / "model.gguf", "GGUF");
  expect_input_error([&] { Checkpoint::open(dir); },
                     {dir.string(), "no model weights", "model.safetensors.index.json", "model.safetensors,",
                      "pytorch_model.bin.index.json", "pytorch_model.bin"});
  expect_input_error([&] { Checkpoint::open(dir / "nope"); }, {"nope", "does not exist"});
  expect_input_error([&] { Checkpoint::open(dir / "config.json"); }, {"config.json", "a file, not a model folder"});
}

TEST(Checkpoint, EmptyWeightFileIsAnError) {
  const fs::path dir = temp_dir("ck_empty_file");
  write_file(dir / "model.safetensors", "");
  expect_input_error([&] { Checkpoint::open(dir); }, {"model.safetensors", "too short"});
  fs::remove(dir / "model.safetensors");
  write_file(dir / "pytorch_model.bin", "");
  expect_input_error([&] { Checkpoint::open(dir); }, {"pytorch_model.bin", "not a PyTorch checkpoint"});
  fs::remove(dir / "pytorch_model.bin");
  fs::create_directories(dir / "pytorch_model.bin");
  expect_input_error([&] { Checkpoint::open(dir); }, {"pytorch_model.bin", "not a regular file"});
}
