// Export of a quantized model as a Hugging Face folder: the safetensors writer's layout, rounding, validation and
// atomicity; the exported folder's files, tensor names and metadata; its weights are exactly the quantized model's
// values in the source's channel order (checked against the FP source and, bit for bit, by folding the recorded
// reorder in again); its logits are the quantized model's without the activation hook; F16/BF16 exports within
// their rounding; and, when a Python with safetensors (and transformers) is at hand, the same folder read there.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "rptq/method/calibration.h"
#include "rptq/io/checkpoint.h"
#include "rptq/base/error.h"
#include "rptq/export/hf_export.h"
#include "rptq/method/quantize.h"
#include "rptq/method/reorder.h"
#include "rptq/io/safetensors.h"
#include "rptq/io/safetensors_writer.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using rptq::DType;
using rptq::InputError;
using rptq::SafetensorsTensor;
using rptq::Tensor;
using rptq::test::read_file;

using rptq::test::ScratchDir;  // the exports of tiny-opt-16m are 64 MB each

const char* const kTokenizerFiles[] = {"tokenizer.json",          "tokenizer_config.json", "vocab.json", "merges.txt",
                                       "special_tokens_map.json", "tokenizer.model",       "generation_config.json"};

fs::path variants_dir() { return fs::path(RPTQ_RESOURCES_DIR).parent_path() / "tests/data/variants"; }

std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

std::uint16_t u16_at(const std::string& bytes, std::size_t off) {
  std::uint16_t v;
  std::memcpy(&v, bytes.data() + off, 2);
  return v;
}

// Header JSON of a safetensors file, in file order, and the data section's offset.
nlohmann::ordered_json header_of(const std::string& bytes, std::size_t* data_start = nullptr) {
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (data_start) *data_start = 8 + n;
  return nlohmann::ordered_json::parse(bytes.substr(8, n));
}

// Expects InputError whose message contains `part`.
template <typename F>
void expect_input_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no InputError (expected one mentioning '" << part << "')";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The writer

// Header: 8-byte length, __metadata__ first, tensors sorted by name with contiguous offsets, data 8-byte aligned;
// our reader validates the file and gets every value back, from views and from produce functions alike.
TEST(SafetensorsWriter, LayoutIsSortedContiguousAndAligned) {
  const ScratchDir scratch("st-layout");
  const fs::path& dir = scratch.path();
  const std::vector<float> b = {1, 2, 3, 4, 5, 6}, a = {-7.5f};
  std::vector<SafetensorsTensor> t(4);
  t[0] = {"b", {2, 3}, b, {}};
  t[1] = {"a", {}, a, {}};
  t[2] = {"c", {0}, {}, {}};
  t[3] = {"d", {3}, {}, [](float* out) {
            for (int i = 0; i < 3; ++i) out[i] = 0.25f * static_cast<float>(i);
          }};
  rptq::write_safetensors(dir / "x.safetensors", t, DType::F32, {{"format", "pt"}, {"k", "v \"quoted\""}});
  const std::string bytes = read_file(dir / "x.safetensors");
  std::size_t data = 0;
  const auto h = header_of(bytes, &data);
  EXPECT_EQ(data % 8, 0u);
  EXPECT_EQ(bytes.size(), data + 4 * (1 + 6 + 0 + 3));
  std::vector<std::string> keys;
  for (const auto& [k, v] : h.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "a", "b", "c", "d"}));
  EXPECT_EQ(h["__metadata__"]["k"], "v \"quoted\"");
  EXPECT_EQ(h["a"]["data_offsets"], nlohmann::json({0, 4}));
  EXPECT_EQ(h["b"]["data_offsets"], nlohmann::json({4, 28}));
  EXPECT_EQ(h["c"]["data_offsets"], nlohmann::json({28, 28}));
  EXPECT_EQ(h["d"]["data_offsets"], nlohmann::json({28, 40}));
  EXPECT_EQ(h["b"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(h["a"]["shape"], nlohmann::json::array());
  EXPECT_EQ(h["d"]["dtype"], "F32");

  const rptq::SafetensorsFile f = rptq::read_safetensors(dir / "x.safetensors");
  EXPECT_EQ(f.metadata.at("format"), "pt");
  ASSERT_EQ(f.tensors.size(), 4u);
  EXPECT_EQ(f.tensors[1].name, "b");
  EXPECT_EQ(f.tensors[1].to_f32(), b);
  EXPECT_EQ(f.tensors[0].to_f32(), a);
  EXPECT_EQ(f.tensors[3].to_f32(), (std::vector<float>{0.0f, 0.25f, 0.5f}));
  EXPECT_EQ(files_in(dir), (std::set<std::string>{"x.safetensors"}));
}

// F16 and BF16 round to nearest, ties to even (checked on the stored bits), with F16 overflow to infinity and
// subnormals.
TEST(SafetensorsWriter, HalfPrecisionRoundsToNearestEven) {
  const ScratchDir scratch("st-half");
  const fs::path& dir = scratch.path();
  const float u = std::ldexp(1.0f, -11);  // half an F16 ulp at 1
  const std::vector<float> v = {1 + u, 1 + 3 * u, 1 + 1.5f * u, 65504.0f, 65520.0f, std::ldexp(1.0f, -24), -2.0f};
  rptq::write_safetensors(dir / "h.safetensors", {{"h", {7}, v, {}}}, DType::F16);
  std::string bytes = read_file(dir / "h.safetensors");
  std::size_t d = 0;
  EXPECT_EQ(header_of(bytes, &d)["h"]["dtype"], "F16");
  const std::uint16_t want[] = {0x3C00, 0x3C02, 0x3C01, 0x7BFF, 0x7C00, 0x0001, 0xC000};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(u16_at(bytes, d + 2 * i), want[i]) << "value " << v[i];

  const float b = std::ldexp(1.0f, -8);  // half a BF16 ulp at 1
  const std::vector<float> w = {1 + b, 1 + 3 * b, 1 + 1.5f * b, -3.0f};
  rptq::write_safetensors(dir / "b.safetensors", {{"b", {4}, w, {}}}, DType::BF16);
  bytes = read_file(dir / "b.safetensors");
  EXPECT_EQ(header_of(bytes, &d)["b"]["dtype"], "BF16");
  const std::uint16_t want_b[] = {0x3F80, 0x3F82, 0x3F81, 0xC040};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(u16_at(bytes, d + 2 * i), want_b[i]) << "value " << w[i];
  // Our reader accepts both.
  EXPECT_EQ(rptq::read_safetensors(dir / "b.safetensors").tensors[0].to_f32()[3], -3.0f);
}

// Bad input and failed writes throw InputError naming the file; nothing is left behind and an existing file is
// unchanged.
TEST(SafetensorsWriter, RefusesBadInputAndFailsAtomically) {
  const ScratchDir scratch("st-errors");
  const fs::path& dir = scratch.path();
  const fs::path p = dir / "m.safetensors";
  const std::vector<float> two = {1, 2};
  expect_input_error([&] { rptq::write_safetensors(p, {{"a", {2}, two, {}}, {"a", {2}, two, {}}}, DType::F32); },
                     "given twice");
  expect_input_error([&] { rptq::write_safetensors(p, {{"__metadata__", {2}, two, {}}}, DType::F32); }, "reserved");
  expect_input_error([&] { rptq::write_safetensors(p, {{"", {2}, two, {}}}, DType::F32); }, "empty name");
  expect_input_error([&] { rptq::write_safetensors(p, {{"a", {3}, two, {}}}, DType::F32); }, "2 values for shape [3]");
  expect_input_error([&] { rptq::write_safetensors(p, {{"a", {2}, two, {}}}, DType::F64); }, "F64");
  expect_input_error([&] { rptq::write_safetensors(dir / "no" / "m.safetensors", {{"a", {2}, two, {}}}, DType::F32); },
                     (dir / "no" / "m.safetensors").string());
  EXPECT_TRUE(fs::is_empty(dir));

  rptq::write_safetensors(p, {{"a", {2}, two, {}}}, DType::F32);
  const std::string before = read_file(p);
  const auto boom = [](float*) { throw std::runtime_error("producer failed"); };
  std::vector<SafetensorsTensor> failing = {{"a", {2}, two, {}}, {"b", {2}, {}, boom}};
  EXPECT_THROW(rptq::write_safetensors(p, failing, DType::F32), std::runtime_error);
  EXPECT_EQ(read_file(p), before);
  EXPECT_EQ(files_in(dir), (std::set<std::string>{"m.safetensors"}));

  rptq::write_file_atomic(dir / "c.json", "{}\n");
  EXPECT_EQ(read_file(dir / "c.json"), "{}\n");
  expect_input_error([&] { rptq::write_file_atomic(dir / "no" / "c.json", "x"); }, (dir / "no").string());
}

// ---------------------------------------------------------------------------------------------------------------
// The exported folder

struct ModelCase {
  const char* name;
  bool shared;  // a ../shared model (shipped in resources/models), else one of tests/data/variants
};

void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

fs::path model_dir(const ModelCase& c) {
  return c.shared ? rptq::test::shared_model(c.name) : variants_dir() / c.name;
}

// Calibrates on seeded random ids (3 x 32) and quantizes with RTN weights and small clusters: quick, and RTN
// bounds each weight's error by its group's step.
std::unique_ptr<rptq::QuantizedModel> quantize_quick(const fs::path& dir, const std::string& preset) {
  auto fp = rptq::Model::load(dir);
  const auto text = rptq::test::some_ids(400, static_cast<std::int32_t>(fp->config().vocab), 17);
  rptq::CalibrationSettings cs;
  cs.samples = 3;
  cs.seqlen = 32;
  const rptq::ChannelStats stats = rptq::calibrate(*fp, dir.string(), text, "", "", cs);
  rptq::QuantConfig qc = rptq::QuantConfig::preset(preset);
  qc.weight_method = rptq::WeightMethod::RTN;
  rptq::parse_clusters("R1=4,R2=2,R3=2,R4=4,R5=4", qc);
  return rptq::quantize(std::move(fp), stats, qc);
}

// Every tensor a model holds, by a name of its role, for tensor-by-tensor comparisons (a packed linear's weight
// dequantized: the values the model computes with).
std::vector<std::pair<std::string, Tensor>> tensors_of(const rptq::Model& m) {
  std::vector<std::pair<std::string, Tensor>> v;
  auto add = [&](const std::string& n, const Tensor& t) { v.emplace_back(n, t); };
  auto lin = [&](const std::string& n, const rptq::LinearWeights& l) {
    add(n + ".weight", l.dense());
    add(n + ".bias", l.bias);
  };
  auto norm = [&](const std::string& n, const rptq::NormWeights& w) {
    add(n + ".gamma", w.gamma);
    add(n + ".beta", w.beta);
  };
  const auto top = m.outer_weights();
  add("embed_tokens", top.embed_tokens);
  add("embed_positions", top.embed_positions);
  lin("project_in", top.project_in);
  lin("project_out", top.project_out);
  norm("final_norm", top.final_norm);
  add("lm_head", top.lm_head);
  for (int l = 0; l < static_cast<int>(m.config().layers); ++l) {
    const auto& w = m.layer(l);
    const std::string p = "layer" + std::to_string(l) + ".";
    norm(p + "attn_norm", w.attn_norm);
    norm(p + "ffn_norm", w.ffn_norm);
    lin(p + "q", w.q);
    lin(p + "k", w.k);
    lin(p + "v", w.v);
    lin(p + "o", w.o);
    lin(p + "fc1", w.fc1);
    lin(p + "fc2", w.fc2);
    lin(p + "gate", w.gate);
    lin(p + "up", w.up);
    lin(p + "down", w.down);
  }
  return v;
}

bool quantized_linear(const std::string& role) {
  return role.starts_with("layer") && role.ends_with(".weight");
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  double d = 0, m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
    m = std::max(m, static_cast<double>(std::abs(a[i])));
  }
  return d / m;
}

// The name a source checkpoint's tensor has in the export: canonical Hugging Face names, with "model." in front of
// the prefix-free keys of the original facebook/opt-* checkpoints.
std::string exported_name(const std::string& n) {
  return n.starts_with("model.") || n.starts_with("lm_head.") ? n : "model." + n;
}

class HfExport : public ::testing::TestWithParam<ModelCase> {
 protected:
  void SetUp() override { src = model_dir(GetParam()); }
  fs::path src;
};

// The folder holds config.json (the source's bytes), the source's tokenizer files, and model.safetensors with the
// source checkpoint's tensor names and shapes in F32 and the RPTQ metadata; nothing else, no temporary file.
TEST_P(HfExport, FolderHasTheSourceNamesFilesAndMetadata) {
  auto q = quantize_quick(src, "W4A16");
  const ScratchDir scratch(std::string("hf-files-") + GetParam().name);
  const fs::path out = scratch / "export";
  rptq::export_hf_folder(*q, src, out, false);

  std::set<std::string> want = {"config.json", "model.safetensors"};
  for (const char* t : kTokenizerFiles)
    if (fs::exists(src / t)) {
      want.insert(t);
      EXPECT_EQ(read_file(out / t), read_file(src / t)) << t;
    }
  EXPECT_EQ(files_in(out), want);
  EXPECT_EQ(read_file(out / "config.json"), read_file(src / "config.json"));

  const rptq::Checkpoint source = rptq::Checkpoint::open(src);
  const rptq::Checkpoint exported = rptq::Checkpoint::open(out);  // our reader's full validation
  EXPECT_EQ(exported.format(), "safetensors");
  std::set<std::string> names;
  for (const auto& [n, t] : source.tensors()) {
    // A tied head stored anyway would be dropped (the model ties it); none of these sources stores one.
    names.insert(exported_name(n));
    ASSERT_TRUE(exported.contains(exported_name(n))) << n;
    EXPECT_EQ(exported.get(exported_name(n)).shape, t.shape) << n;
  }
  std::set<std::string> got;
  for (const auto& [n, t] : exported.tensors()) {
    got.insert(n);
    EXPECT_EQ(t.dtype, DType::F32) << n;
  }
  EXPECT_EQ(got, names);
  const auto meta = rptq::read_safetensors(out / "model.safetensors").metadata;
  EXPECT_EQ(meta, (std::map<std::string, std::string>{{"format", "pt"}, {"rptq", q->config().describe()}}));
}

// W4A16 and W4A4: reloaded, the export's weights are the FP source's within one quantization step per row (so they
// are in the original channel order: a misplaced column would be off by a sizeable part of the row's range), the
// unquantized tensors are the source's exactly; folding the recorded reorder into the reloaded model gives the
// quantized model bit for bit (every tensor, gather and rotary index); and the reloaded model's logits are the
// quantized model's without its activation hook (1e-5 relative: only the GEMMs' summation order differs).
TEST_P(HfExport, WeightsAreTheQuantizedValuesInTheSourceLayout) {
  for (const char* preset : {"W4A16", "W4A4"}) {
    SCOPED_TRACE(preset);
    auto q = quantize_quick(src, preset);
    const ScratchDir scratch(std::string("hf-values-") + GetParam().name);
    const fs::path out = scratch / "export";
    rptq::export_hf_folder(*q, src, out, false);
    auto back = rptq::Model::load(out);
    const auto fp = rptq::Model::load(src);

    // Against the FP source, in the source layout.
    const auto tb = tensors_of(*back), tf = tensors_of(*fp);
    ASSERT_EQ(tb.size(), tf.size());
    int changed = 0;
    for (std::size_t i = 0; i < tb.size(); ++i) {
      const Tensor &b = tb[i].second, &f = tf[i].second;
      ASSERT_EQ(b.shape(), f.shape()) << tb[i].first;
      if (f.empty()) continue;  // a weight the architecture lacks (fc1 of LLaMA, ...)
      if (!quantized_linear(tb[i].first)) {
        EXPECT_EQ(std::memcmp(b.data(), f.data(), static_cast<std::size_t>(b.numel()) * 4), 0) << tb[i].first;
        continue;
      }
      const std::int64_t rows = f.dim(0), cols = f.dim(1);
      // Error over the row's step (range / 15): RTN is off by at most one step of its group (a step <= the row's),
      // plus 1% for scales stored in reduced precision.
      double worst = 0;
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* fr = f.data() + r * cols;
        const float* br = b.data() + r * cols;
        const auto [lo, hi] = std::minmax_element(fr, fr + cols);
        const double step = (static_cast<double>(*hi) - *lo) / 15.0 + 1e-12;
        for (std::int64_t c = 0; c < cols; ++c) {
          worst = std::max(worst, std::abs(static_cast<double>(br[c]) - fr[c]) / step);
          changed += br[c] != fr[c];
        }
      }
      EXPECT_LE(worst, 1.01) << tb[i].first;
    }
    EXPECT_GT(changed, 0) << "no weight was quantized";

    // Logits of the reloaded folder (before anything is reordered again). A Hugging Face model has no softmax
    // quantizer, so the quantized model's 8-bit softmax (W4A4) is switched off for the comparison.
    const auto ids = rptq::test::some_ids(40, static_cast<std::int32_t>(back->config().vocab), 5);
    for (int l = 0; l < q->layers(); ++l) q->model().layer(l).quantize_softmax = false;
    const Tensor want = q->model().forward(ids, 1), got = back->forward(ids, 1);
    EXPECT_LT(max_rel_diff(want, got), 1e-5);

    // Bit for bit: the reloaded weights with the recorded reorder folded in again are the quantized model's.
    for (int l = 0; l < q->layers(); ++l) rptq::apply_reorder(*back, l, q->layer(l).reorder);
    const auto tq = tensors_of(q->model()), tr = tensors_of(*back);
    for (std::size_t i = 0; i < tq.size(); ++i) {
      const Tensor &a = tq[i].second, &b = tr[i].second;
      ASSERT_EQ(a.shape(), b.shape()) << tq[i].first;
      if (a.numel() > 0) {  // (an empty tensor's data() is null, which memcmp must not be given)
        EXPECT_EQ(std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * 4), 0) << tq[i].first;
      }
    }
    for (int l = 0; l < q->layers(); ++l) {
      EXPECT_EQ(back->layer(l).attn_norm.gather, q->model().layer(l).attn_norm.gather) << l;
      EXPECT_EQ(back->layer(l).ffn_norm.gather, q->model().layer(l).ffn_norm.gather) << l;
      EXPECT_EQ(back->layer(l).rope_index, q->model().layer(l).rope_index) << l;
    }
  }
}

// F16 and BF16 exports: the header says so, our reader validates them, and every value is the quantized model's
// within half a unit in the last place of the format (F16: 2^-11 relative, or 2^-25 absolute among subnormals;
// BF16: 2^-8 relative).
TEST_P(HfExport, HalfPrecisionExportsRoundTripWithinRounding) {
  auto q = quantize_quick(src, "W4A16");
  for (const auto& [dtype, rel, floor] : {std::tuple{DType::F16, std::ldexp(1.0, -11), std::ldexp(1.0, -25)},
                                          std::tuple{DType::BF16, std::ldexp(1.0, -8), 0.0}}) {
    SCOPED_TRACE(std::string(rptq::dtype_name(dtype)));
    const ScratchDir scratch(std::string("hf-half-") + GetParam().name);
    const fs::path out = scratch / "export";
    rptq::export_hf_folder(*q, src, out, false, dtype);
    const rptq::Checkpoint written = rptq::Checkpoint::open(out);
    for (const auto& [n, t] : written.tensors()) EXPECT_EQ(t.dtype, dtype) << n;
    auto back = rptq::Model::load(out);
    for (int l = 0; l < q->layers(); ++l) rptq::apply_reorder(*back, l, q->layer(l).reorder);
    const auto tq = tensors_of(q->model()), tr = tensors_of(*back);
    double worst = 0;
    for (std::size_t i = 0; i < tq.size(); ++i) {
      const Tensor &a = tq[i].second, &b = tr[i].second;
      ASSERT_EQ(a.shape(), b.shape()) << tq[i].first;
      for (std::int64_t k = 0; k < a.numel(); ++k) {
        ASSERT_LT(std::abs(a[k]), 65504.0f) << tq[i].first;
        const double err = std::abs(static_cast<double>(a[k]) - b[k]);
        worst = std::max(worst, err / (rel * std::abs(a[k]) + floor + 1e-300));
      }
    }
    EXPECT_LE(worst, 1.0) << "error over the format's half ulp";
    EXPECT_GT(worst, 0.0) << "nothing was rounded: not a half-precision file?";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, HfExport,
                         ::testing::Values(ModelCase{"tiny-opt-16m", true}, ModelCase{"stories260k", true},
                                           ModelCase{"llama-untied-bias", false},
                                           ModelCase{"llama-bf16-sharded", false},
                                           ModelCase{"mistral-window", false}, ModelCase{"mistral-head-dim", false},
                                           ModelCase{"qwen2-tied", false}, ModelCase{"qwen2-untied", false},
                                           ModelCase{"opt-350m-style", false}, ModelCase{"opt-prefix-free", false},
                                           ModelCase{"opt-gelu-noaffine", false}, ModelCase{"opt-gelu-new", false}),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// A non-empty folder is refused without overwrite (and left as it was); with overwrite, the weights and tokenizer
// files of an earlier model that would shadow the export are removed and other files kept. The source folder
// itself, a file in the folder's place, a source folder of another model and a non-float dtype are refused.
TEST(HfExportFolder, RefusesOrReplacesExistingFolders) {
  const fs::path src = variants_dir() / "qwen2-tied";
  auto q = quantize_quick(src, "W4A16");
  const ScratchDir scratch("hf-folder");
  const fs::path& root = scratch.path();
  const fs::path out = root / "export";
  fs::create_directories(out);
  rptq::test::write_file(out / "notes.txt", "mine");
  expect_input_error([&] { rptq::export_hf_folder(*q, src, out, false); }, "not empty");
  EXPECT_EQ(files_in(out), (std::set<std::string>{"notes.txt"}));

  // Leftovers of an earlier sharded model with a tokenizer this source does not have.
  rptq::test::write_file(out / "model.safetensors.index.json",
                         R"({"weight_map": {"x": "model-00001-of-00002.safetensors"}})");
  rptq::test::write_file(out / "model-00001-of-00002.safetensors", "old");
  rptq::test::write_file(out / "pytorch_model.bin", "old");
  rptq::test::write_file(out / "tokenizer.json", "{}");
  rptq::test::write_file(out / "config.json", "{}");
  rptq::export_hf_folder(*q, src, out, true);
  EXPECT_EQ(files_in(out), (std::set<std::string>{"config.json", "model.safetensors", "notes.txt"}));
  EXPECT_EQ(read_file(out / "notes.txt"), "mine");
  EXPECT_EQ(read_file(out / "config.json"), read_file(src / "config.json"));
  auto back = rptq::Model::load(out);
  const auto ids = rptq::test::some_ids(20, static_cast<std::int32_t>(back->config().vocab), 3);
  EXPECT_LT(max_rel_diff(q->model().forward(ids, 1), back->forward(ids, 1)), 1e-5);

  // Into the folder the model came from (a copy, so a failure cannot touch the checkout).
  const fs::path copy = root / "source-copy";
  fs::copy(src, copy);
  auto qc = quantize_quick(copy, "W4A16");
  const std::set<std::string> before = files_in(copy);
  expect_input_error([&] { rptq::export_hf_folder(*qc, copy, copy, true); }, "source model's folder");
  EXPECT_EQ(files_in(copy), before);

  rptq::test::write_file(root / "a-file", "x");
  expect_input_error([&] { rptq::export_hf_folder(*q, src, root / "a-file", true); }, "not a folder");
  expect_input_error([&] { rptq::export_hf_folder(*q, variants_dir() / "llama-untied-bias", root / "other", false); },
                     "config.json");
  expect_input_error([&] { rptq::export_hf_folder(*q, src, root / "i8", false, DType::I8); }, "I8");
  EXPECT_FALSE(fs::exists(root / "other"));
  EXPECT_FALSE(fs::exists(root / "i8"));
}

// ---------------------------------------------------------------------------------------------------------------
// Python: Hugging Face's own safetensors reader and transformers, when installed (never installed by the test).
// Set RPTQ_TEST_PYTHON to an interpreter (a venv with safetensors and transformers) to have it tried first.

struct Python {
  std::string exe;
  bool safetensors = false, transformers = false;
};

bool python_imports(const std::string& exe, const std::string& modules) {
  const std::string cmd = "'" + exe + "' -c 'import " + modules + "' > /dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

Python probe_python(std::string& tried) {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("RPTQ_TEST_PYTHON"); env && *env) candidates.emplace_back(env);
  candidates.emplace_back("/usr/bin/python3");
  candidates.emplace_back("python3");
  Python best;
  for (const std::string& c : candidates) {
    tried += (tried.empty() ? "" : ", ") + c;
    Python p;
    p.exe = c;
    p.safetensors = python_imports(c, "numpy, safetensors.numpy");
    p.transformers = p.safetensors && python_imports(c, "torch, transformers");
    if (p.safetensors && (!best.safetensors || (p.transformers && !best.transformers))) best = p;
    if (best.transformers) break;
  }
  return best;
}

// Probed once per process (importing torch takes a while).
Python find_python(std::string& tried) {
  static std::string tried_once;
  static const Python found = probe_python(tried_once);
  tried = tried_once;
  return found;
}

// Reads the folder with safetensors.numpy (each tensor dumped as raw float32, plus the metadata) and, with a third
// argument "1", loads it with transformers' AutoModelForCausalLM (float32, eager attention) and dumps the logits.
constexpr const char* kPythonScript = R"PY(
import json, os, sys
folder, out, run_model = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
res = {}
from safetensors import safe_open
from safetensors.numpy import load_file
tensors = load_file(os.path.join(folder, "model.safetensors"))
for i, (name, a) in enumerate(sorted(tensors.items())):
    a.astype("<f4").tofile(os.path.join(out, "t%d.f32" % i))
res["names"] = sorted(tensors)
with safe_open(os.path.join(folder, "model.safetensors"), "np") as f:
    res["metadata"] = f.metadata()
if run_model:
    import torch, transformers
    torch.set_num_threads(1)
    ids = json.load(open(os.path.join(out, "ids.json")))
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        folder, torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    res["loading_info"] = {k: sorted(map(str, v)) for k, v in info.items()}
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    logits.numpy().astype("<f4").tofile(os.path.join(out, "logits.f32"))
    res["transformers"] = transformers.__version__
json.dump(res, open(os.path.join(out, "result.json"), "w"))
)PY";

class HfExportPython : public ::testing::TestWithParam<ModelCase> {
 protected:
  // Exports the W4A16 model and runs the script on it; `ready` stays false when it skipped or failed.
  void run(bool with_transformers) {
    std::string tried;
    py = find_python(tried);
    if (!py.safetensors || (with_transformers && !py.transformers))
      GTEST_SKIP() << "no Python with numpy and safetensors" << (with_transformers ? " and transformers + torch" : "")
                   << " (tried " << tried << "); set RPTQ_TEST_PYTHON to a venv that has them";
    const fs::path src = model_dir(GetParam());
    q = quantize_quick(src, "W4A16");
    scratch = std::make_unique<ScratchDir>(std::string("hf-python-") + GetParam().name);
    work = scratch->path();
    out = work / "export";
    rptq::export_hf_folder(*q, src, out, false);
    ids = rptq::test::some_ids(40, static_cast<std::int32_t>(q->model().config().vocab), 5);
    rptq::test::write_file(work / "ids.json", nlohmann::json(ids).dump());
    rptq::test::write_file(work / "check.py", kPythonScript);
    const std::string cmd = "'" + py.exe + "' '" + (work / "check.py").string() + "' '" + out.string() + "' '" +
                            work.string() + "' " + (with_transformers ? "1" : "0") + " > '" +
                            (work / "python.log").string() + "' 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << py.exe << ":\n" << read_file(work / "python.log");
    res = nlohmann::json::parse(read_file(work / "result.json"));
    ready = true;
  }
  bool ready = false;
  Python py;
  std::unique_ptr<ScratchDir> scratch;
  std::unique_ptr<rptq::QuantizedModel> q;
  fs::path work, out;
  std::vector<std::int32_t> ids;
  nlohmann::json res;
};

// Hugging Face's safetensors reads every tensor back bit for bit (the values our reader sees) with the metadata.
TEST_P(HfExportPython, SafetensorsReadsEveryTensor) {
  run(false);
  if (!ready) return;
  const rptq::Checkpoint ours = rptq::Checkpoint::open(out);
  const std::vector<std::string> names = ours.names();  // sorted (a std::map)
  ASSERT_EQ(res["names"].get<std::vector<std::string>>(), names);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::vector<float> want = ours.get(names[i]).to_f32();
    const std::string got = read_file(work / ("t" + std::to_string(i) + ".f32"));
    ASSERT_EQ(got.size(), want.size() * 4) << names[i];
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0) << names[i];
  }
  EXPECT_EQ(res["metadata"]["format"], "pt");
  EXPECT_EQ(res["metadata"]["rptq"], q->config().describe());
}

// transformers loads the folder with no missing, unexpected or mismatched keys, and its logits equal the quantized
// model's (W4A16: no activation quantization) to 1e-4, the tolerance of the FP reference tests.
TEST_P(HfExportPython, TransformersGivesTheQuantizedLogits) {
  run(true);
  if (!ready) return;
  for (const auto& [k, v] : res["loading_info"].items()) EXPECT_TRUE(v.empty()) << k << ": " << v.dump();
  const Tensor want = q->model().forward(ids, 1);
  const std::string got = read_file(work / "logits.f32");
  ASSERT_EQ(got.size(), static_cast<std::size_t>(want.numel()) * 4);
  std::vector<float> hf(static_cast<std::size_t>(want.numel()));
  std::memcpy(hf.data(), got.data(), got.size());
  double worst = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(want[i]) - hf[static_cast<std::size_t>(i)]));
  EXPECT_LT(worst, 1e-4) << "transformers " << res["transformers"];
}

// opt-gelu-new is left out: the engine computes exact GELU for it (a known bug, test_model_variants.cpp).
INSTANTIATE_TEST_SUITE_P(Models, HfExportPython,
                         ::testing::Values(ModelCase{"tiny-opt-16m", true}, ModelCase{"stories260k", true},
                                           ModelCase{"llama-untied-bias", false}, ModelCase{"mistral-head-dim", false},
                                           ModelCase{"mistral-window", false}, ModelCase{"qwen2-untied", false},
                                           ModelCase{"opt-350m-style", false}, ModelCase{"opt-gelu-noaffine", false}),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace

// Progress runs from 0 to 1 through every tensor in name order; returning false cancels with rptq::Cancelled and
// leaves the target as it was: a folder the export would have created does not appear, an existing earlier export
// keeps every file byte for byte (its stale files are only removed once the new weights are in place).
TEST(HfExportFolder, ProgressAndCancel) {
  const fs::path src = variants_dir() / "qwen2-tied";
  auto q = quantize_quick(src, "W4A16");
  const ScratchDir scratch("hf-folder-cancel");
  const fs::path& root = scratch.path();

  std::vector<std::pair<double, std::string>> calls;
  rptq::export_hf_folder(*q, src, root / "done", false, DType::F32, [&](double f, const std::string& what) {
    calls.emplace_back(f, what);
    return true;
  });
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(calls.front().first, 0.0);
  EXPECT_EQ(calls.back(), (std::pair<double, std::string>{1.0, "done"}));
  for (std::size_t i = 1; i + 1 < calls.size(); ++i) {
    EXPECT_GT(calls[i].first, calls[i - 1].first) << calls[i].second;  // every tensor here has values
    EXPECT_LT(calls[i].first, 1.0);
    EXPECT_LT(calls[i - 1].second, calls[i].second);  // the file's (name) order
  }
  const std::string whole = read_file(root / "done" / "model.safetensors");

  // Cancelled halfway into a new folder: nothing appears.
  const auto cancel_at = [&](std::size_t n) {
    return [n, seen = std::size_t{0}](double, const std::string&) mutable { return ++seen <= n; };
  };
  const fs::path fresh = root / "parent" / "fresh";
  fs::create_directories(root / "parent");
  EXPECT_THROW(rptq::export_hf_folder(*q, src, fresh, false, DType::F32, cancel_at(calls.size() / 2)),
               rptq::Cancelled);
  EXPECT_FALSE(fs::exists(fresh));
  EXPECT_TRUE(fs::is_empty(root / "parent"));  // no temporary file either

  // Cancelled while replacing an earlier export that has a stale shard index: every file stays as it was.
  rptq::test::write_file(root / "done" / "model.safetensors.index.json", "{}");
  const std::set<std::string> before = files_in(root / "done");
  EXPECT_THROW(rptq::export_hf_folder(*q, src, root / "done", true, DType::F16, cancel_at(calls.size() - 2)),
               rptq::Cancelled);
  EXPECT_EQ(files_in(root / "done"), before);
  EXPECT_EQ(read_file(root / "done" / "model.safetensors"), whole);
  EXPECT_EQ(read_file(root / "done" / "config.json"), read_file(src / "config.json"));
}
