// The serving target (vLLM / SGLang via compressed-tensors "pack-quantized"): its limits; weight scales and values in
// the scale dtype with zero points in the code range; uniform groups and only the R3/R5 reorders; the exported
// folder's config and tensors, unpacked here independently of the exporter and compared with the quantized model's
// weights bit for bit; refusals; and, when a Python with compressed-tensors and transformers is at hand
// (RPTQ_TEST_PYTHON), the library's own decompression (bit for bit) and transformers' logits
// (tools/compressed-tensors/check_export.py).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "rptq/base/error.h"
#include "rptq/eval/memory_model.h"
#include "rptq/model/model_config.h"
#include "rptq/export/hf_export.h"
#include "rptq/export/qcheckpoint.h"
#include "rptq/io/safetensors_writer.h"
#include "rptq/method/calibration.h"
#include "rptq/method/quant_config_json.h"
#include "rptq/method/quantize.h"
#include "rptq/method/weight_quant.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using rptq::DType;
using rptq::InputError;
using rptq::QuantConfig;
using rptq::test::read_file;

template <typename F>
void expect_input_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no InputError (expected one mentioning '" << part << "')";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

using rptq::test::ScratchDir;

QuantConfig serving(int group, DType scale_dtype = DType::BF16, int wbits = 4) {
  QuantConfig c = QuantConfig::preset(wbits == 8 ? "W16A16" : "W4A16");
  c.wbits = wbits;
  c.target = rptq::ServeTarget::CompressedTensors;
  c.weight_group = group;
  c.scale_dtype = scale_dtype;
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// The setting

TEST(ServingConfig, ValidatesTheFormatsLimits) {
  EXPECT_NO_THROW(serving(128).validate());
  EXPECT_NO_THROW(serving(32, DType::F16, 8).validate());
  EXPECT_NO_THROW(serving(-1, DType::F32).validate());
  expect_input_error([] { serving(0).validate(); }, "32, 64 or 128");
  expect_input_error([] { serving(100).validate(); }, "got 100");
  expect_input_error([] { serving(128, DType::F16, 3).validate(); }, "4 or 8 bits");
  expect_input_error([] { serving(128, DType::I8).validate(); }, "scale dtype");
  QuantConfig a8 = QuantConfig::preset("W4A8");
  a8.target = rptq::ServeTarget::CompressedTensors;
  a8.weight_group = 128;
  expect_input_error([&] { a8.validate(); }, "stay in float");
  QuantConfig grid = serving(64);
  grid.grid = rptq::QuantGrid::Reference;
  expect_input_error([&] { grid.validate(); }, "exact grid");
  QuantConfig ov = serving(64);
  ov.overrides.push_back(rptq::parse_override("layers=0,attn_output:abits=8"));
  expect_input_error([&] { ov.validate(); }, "only wbits");
  ov.overrides = {rptq::parse_override("layers=0,attn_output:wbits=3")};
  expect_input_error([&] { ov.validate(); }, "4 or 8 bits, or 16");
  ov.overrides = {rptq::parse_override("layers=0,attn_output:wbits=8"), rptq::parse_override("ffn_hidden:wbits=16")};
  EXPECT_NO_THROW(ov.validate());
  QuantConfig no_group = QuantConfig::preset("W4A16");
  no_group.weight_group = -1;  // only a serving target's
  expect_input_error([&] { no_group.validate(); }, "one group per output channel");
  // The setting's JSON round-trips the serving fields; settings written before them read as RPTQ's own.
  const QuantConfig c = serving(64, DType::F16);
  const QuantConfig back = rptq::quant_config_from_json(rptq::quant_config_json(c), "test");
  EXPECT_EQ(back.target, rptq::ServeTarget::CompressedTensors);
  EXPECT_EQ(back.scale_dtype, DType::F16);
  EXPECT_EQ(back.weight_group, 64);
  nlohmann::json old = rptq::quant_config_json(QuantConfig::preset("W4A8"));
  old.erase("target");
  old.erase("scale_dtype");
  old.erase("kv_fp8");
  EXPECT_EQ(rptq::quant_config_from_json(old, "old").target, rptq::ServeTarget::None);
  EXPECT_NE(c.describe().find("serving compressed-tensors, scales F16"), std::string::npos) << c.describe();
}

// ---------------------------------------------------------------------------------------------------------------
// Weight scales and values in the scale dtype

// Every scale is a value of the dtype (F16: never 0, even for weights far below its range), every zero point an
// integer code, every group range holds 0, and dequantize() gives (code - zp) * scale rounded to the dtype: the
// arithmetic of compressed-tensors' decompression.
TEST(WeightFormat, ScalesAndValuesAreInTheScaleDtype) {
  const std::int64_t out = 24, in = 64;
  std::vector<float> w = rptq::test::normal(static_cast<std::size_t>(out * in), 0.0f, 0.02f, 3);
  for (std::int64_t c = 0; c < in; ++c) {
    w[static_cast<std::size_t>(c)] = 1e-9f * static_cast<float>(c + 1);                // row 0: tiny, all positive
    w[static_cast<std::size_t>(in + c)] = 3.0f + 0.01f * static_cast<float>(c);        // row 1: far from 0
  }
  const auto groups = rptq::fixed_group_boundaries(in, 32);
  rptq::HessianAccumulator h(in);
  const std::vector<float> x = rptq::test::normal(static_cast<std::size_t>(200 * in), 0.0f, 1.0f, 4);
  h.add(x.data(), 200, in);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    for (bool gptq : {false, true}) {
      const rptq::WeightFormat f{dt, true};
      const rptq::QuantizedWeight q =
          gptq ? rptq::quantize_gptq(w.data(), out, in, 4, rptq::QuantGrid::Exact, groups,
                                     rptq::gptq_factor(h), 128, rptq::WeightClip::MinMax, f)
               : rptq::quantize_rtn(w.data(), out, in, 4, rptq::QuantGrid::Exact, groups, rptq::WeightClip::MinMax, {},
                                    f);
      SCOPED_TRACE(std::string(rptq::dtype_name(dt)) + (gptq ? " gptq" : " rtn"));
      ASSERT_EQ(q.value_dtype, dt);
      for (std::size_t i = 0; i < q.scales.size(); ++i) {
        EXPECT_GT(q.scales[i], 0.0f);
        if (dt != DType::F32) {
          EXPECT_EQ(rptq::round_to_dtype(q.scales[i], dt), q.scales[i]) << i;
        }
        EXPECT_EQ(q.zero_points[i], std::nearbyint(q.zero_points[i]));
        EXPECT_GE(q.zero_points[i], -8.0f);
        EXPECT_LE(q.zero_points[i], 7.0f);
      }
      // Row 1 is all positive: with 0 in its range the zero point sits at the bottom code.
      EXPECT_EQ(q.zero_points[2], -8.0f);
      std::vector<float> deq(static_cast<std::size_t>(out * in));
      q.dequantize(deq.data());
      const rptq::PackedWeight p = rptq::PackedWeight::pack(q);
      std::vector<float> deq2(deq.size());
      p.dequantize(deq2.data());
      for (std::int64_t r = 0; r < out; ++r)
        for (std::int64_t c = 0; c < in; ++c) {
          const std::size_t g = static_cast<std::size_t>(r * 2 + c / 32), i = static_cast<std::size_t>(r * in + c);
          const float want = rptq::round_to_dtype((static_cast<float>(q.codes[i]) - q.zero_points[g]) * q.scales[g], dt);
          ASSERT_EQ(deq[i], want) << r << "," << c;
          ASSERT_EQ(deq2[i], want) << r << "," << c;
        }
      // Away from the tiny row every weight is within half a step (plus the dtype's rounding) for RTN.
      if (!gptq) {
        for (std::int64_t r = 1; r < out; ++r)
          for (std::int64_t c = 0; c < in; ++c) {
            const std::size_t g = static_cast<std::size_t>(r * 2 + c / 32), i = static_cast<std::size_t>(r * in + c);
            EXPECT_LE(std::abs(deq[i] - w[i]), q.scales[g] * 0.5f * 1.001f + std::abs(w[i]) * 0.008f) << r << "," << c;
          }
      }
    }
  }
  // F16 floors the tiny row's scales at its smallest subnormal step instead of flushing them to 0.
  const rptq::QuantizedWeight f16 = rptq::quantize_rtn(w.data(), out, in, 4, rptq::QuantGrid::Exact, groups,
                                                       rptq::WeightClip::MinMax, {}, {DType::F16, true});
  EXPECT_EQ(f16.scales[0], std::ldexp(1.0f, -24));
}

// round_to_dtype is the conversion of the safetensors writer (and so of the scales compressed-tensors reads).
TEST(WeightFormat, RoundToDtypeIsTheStorageConversion) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> e(-30.0f, 17.0f);
  for (int i = 0; i < 100000; ++i) {
    const float v = std::ldexp(1.0f + std::generate_canonical<float, 24>(rng), static_cast<int>(e(rng))) *
                    (i % 2 ? 1.0f : -1.0f);
    ASSERT_EQ(rptq::round_to_dtype(v, DType::F16), rptq::half_to_float(rptq::float_to_half(v))) << v;
    ASSERT_EQ(rptq::round_to_dtype(v, DType::BF16), rptq::bf16_to_float(rptq::float_to_bf16(v))) << v;
    ASSERT_EQ(rptq::round_to_dtype(v, DType::F32), v);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The quantized model and its folder

struct ModelCase {
  const char* name;
  bool shared;
  int group;
};
void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

// "smollm2": the converted SmolLM2-135M-Instruct (scripts/fetch-models.sh), at RPTQ_SMOLLM2_DIR or in the cache.
constexpr const char* kSmolLM2 = "smollm2";

fs::path model_dir(const ModelCase& c) {
  if (std::string(c.name) == kSmolLM2) {
    const char* env = std::getenv("RPTQ_SMOLLM2_DIR");
    if (env && *env) return env;
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    return (xdg && *xdg ? fs::path(xdg) : fs::path(home ? home : "") / ".cache") / "rptq/models/smollm2-135m-instruct";
  }
  return c.shared ? rptq::test::shared_model(c.name)
                  : fs::path(RPTQ_RESOURCES_DIR).parent_path() / "tests/data/variants" / c.name;
}

// Skips (or, with RPTQ_SMOLLM2_DIR set, as CI does, fails) when SmolLM2 is not there.
#define RPTQ_MODEL_OR_SKIP(c, dir)                                                                          \
  const fs::path dir = model_dir(c);                                                                      \
  if (!fs::exists(dir / "model.safetensors")) {                                                           \
    const char* env_ = std::getenv("RPTQ_SMOLLM2_DIR");                                                   \
    if (env_ && *env_) FAIL() << dir << ": no model.safetensors";                                         \
    GTEST_SKIP() << dir << ": not found (run scripts/fetch-models.sh)";                                   \
  }

std::unique_ptr<rptq::QuantizedModel> quantize_serving(const fs::path& dir, QuantConfig qc) {
  auto fp = rptq::Model::load(dir);
  const auto text = rptq::test::some_ids(600, static_cast<std::int32_t>(fp->config().vocab), 17);
  rptq::CalibrationSettings cs;
  cs.samples = 4;
  cs.seqlen = 48;
  const rptq::ChannelStats stats = rptq::calibrate(*fp, dir.string(), text, "", "", cs);
  rptq::parse_clusters("R1=4,R2=2,R3=2,R4=4,R5=4", qc);
  return rptq::quantize(std::move(fp), stats, qc);
}

// A safetensors file read here, independently of the product's reader: name -> (dtype, shape, bytes).
struct StTensor {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
  template <typename T>
  T at(std::size_t i) const {
    T v;
    std::memcpy(&v, bytes.data() + i * sizeof(T), sizeof(T));
    return v;
  }
};
std::map<std::string, StTensor> read_st(const fs::path& p, nlohmann::json* metadata = nullptr) {
  const std::string b = read_file(p);
  std::uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  const nlohmann::json h = nlohmann::json::parse(b.substr(8, n));
  std::map<std::string, StTensor> out;
  for (const auto& [k, v] : h.items()) {
    if (k == "__metadata__") {
      if (metadata) *metadata = v;
      continue;
    }
    const auto off = v["data_offsets"].get<std::vector<std::uint64_t>>();
    out[k] = {v["dtype"], v["shape"].get<std::vector<std::int64_t>>(), b.substr(8 + n + off[0], off[1] - off[0])};
  }
  return out;
}

float to_float(const StTensor& t, std::size_t i) {
  if (t.dtype == "F32") return t.at<float>(i);
  if (t.dtype == "F16") return rptq::half_to_float(t.at<std::uint16_t>(i));
  if (t.dtype == "BF16") return rptq::bf16_to_float(t.at<std::uint16_t>(i));
  ADD_FAILURE() << "unexpected dtype " << t.dtype;
  return 0;
}

// Element i of a row packed as compressed-tensors packs it: bits at i * bits of little-endian int32 words.
std::uint32_t unpack_at(const StTensor& t, std::size_t word0, std::int64_t i, int bits) {
  const std::int64_t bit = i * bits;
  std::uint64_t w = t.at<std::uint32_t>(word0 + static_cast<std::size_t>(bit / 32));
  if (bit % 32 + bits > 32) w |= static_cast<std::uint64_t>(t.at<std::uint32_t>(word0 + static_cast<std::size_t>(bit / 32) + 1)) << 32;
  return static_cast<std::uint32_t>(w >> (bit % 32)) & ((1u << bits) - 1);
}

// The module names and weights of a model's decoder linears, as the folder names them.
std::vector<std::pair<std::string, const rptq::LinearWeights*>> linears_of(const rptq::Model& m) {
  const bool opt = m.config().arch == rptq::Architecture::OPT;
  std::vector<std::pair<std::string, const rptq::LinearWeights*>> v;
  for (int l = 0; l < static_cast<int>(m.config().layers); ++l) {
    const auto& w = m.layer(l);
    const std::string p = std::string(opt ? "model.decoder." : "model.") + "layers." + std::to_string(l) + ".";
    v.emplace_back(p + "self_attn.q_proj", &w.q);
    v.emplace_back(p + "self_attn.k_proj", &w.k);
    v.emplace_back(p + "self_attn.v_proj", &w.v);
    v.emplace_back(p + (opt ? "self_attn.out_proj" : "self_attn.o_proj"), &w.o);
    if (opt) {
      v.emplace_back(p + "fc1", &w.fc1);
      v.emplace_back(p + "fc2", &w.fc2);
    } else {
      v.emplace_back(p + "mlp.gate_proj", &w.gate);
      v.emplace_back(p + "mlp.up_proj", &w.up);
      v.emplace_back(p + "mlp.down_proj", &w.down);
    }
  }
  return v;
}

// Checks every decoder linear of the folder against the model: a quantized one's packed codes, zero points, scales
// (in the scale dtype) and shape dequantize, with the format's arithmetic, to the model's weight bit for bit; a
// float one is stored as it is. Returns the bits of each module.
void check_linears(const rptq::QuantizedModel& q, const std::map<std::string, StTensor>& st,
                   std::map<std::string, int>& bits_of) {
  const QuantConfig& c = q.config();
  const std::string want_dtype(rptq::dtype_name(c.scale_dtype));
  for (const auto& [name, lw] : linears_of(q.model())) {
    SCOPED_TRACE(name);
    const rptq::Tensor dense = lw->dense();
    const std::int64_t out = lw->out(), in = lw->in();
    if (!lw->packed) {
      EXPECT_FALSE(st.contains(name + ".weight_packed"));
      const StTensor& t = st.at(name + ".weight");
      EXPECT_EQ(t.dtype, "F32");
      for (std::int64_t i = 0; i < dense.numel(); ++i) ASSERT_EQ(t.at<float>(static_cast<std::size_t>(i)), dense[i]);
      bits_of[name] = 16;
      continue;
    }
    EXPECT_FALSE(st.contains(name + ".weight"));
    const int bits = lw->packed->bits;
    bits_of[name] = bits;
    const std::int64_t group = c.weight_group > 0 ? c.weight_group : in, g = in / group;
    const StTensor& packed = st.at(name + ".weight_packed");
    const StTensor& scale = st.at(name + ".weight_scale");
    const StTensor& zp = st.at(name + ".weight_zero_point");
    const StTensor& shape = st.at(name + ".weight_shape");
    EXPECT_EQ(packed.dtype, "I32");
    const std::int64_t row_words = (in * bits + 31) / 32;
    EXPECT_EQ(packed.shape, (std::vector<std::int64_t>{out, row_words}));
    EXPECT_EQ(scale.dtype, want_dtype);
    EXPECT_EQ(scale.shape, (std::vector<std::int64_t>{out, g}));
    EXPECT_EQ(zp.dtype, "I32");
    const std::int64_t zrows = (out * bits + 31) / 32;
    EXPECT_EQ(zp.shape, (std::vector<std::int64_t>{zrows, g}));
    EXPECT_EQ(shape.dtype, "I64");
    EXPECT_EQ(shape.at<std::int64_t>(0), out);
    EXPECT_EQ(shape.at<std::int64_t>(1), in);
    // The zero points of column k, packed down the column: word w of column k is element (w, k) of [zrows, g].
    std::vector<std::int32_t> zps(static_cast<std::size_t>(out * g));
    for (std::int64_t k = 0; k < g; ++k) {
      StTensor col;
      col.dtype = "I32";
      for (std::int64_t w = 0; w < zrows; ++w) col.bytes += zp.bytes.substr(static_cast<std::size_t>((w * g + k) * 4), 4);
      for (std::int64_t r = 0; r < out; ++r)
        zps[static_cast<std::size_t>(r * g + k)] = static_cast<std::int32_t>(unpack_at(col, 0, r, bits)) - (1 << (bits - 1));
    }
    for (std::int64_t r = 0; r < out; ++r)
      for (std::int64_t col = 0; col < in; ++col) {
        const std::int64_t k = col / group;
        const std::int32_t code =
            static_cast<std::int32_t>(unpack_at(packed, static_cast<std::size_t>(r * row_words), col, bits)) -
            (1 << (bits - 1));
        const float s = to_float(scale, static_cast<std::size_t>(r * g + k));
        const float v = rptq::round_to_dtype(
            static_cast<float>(code - zps[static_cast<std::size_t>(r * g + k)]) * s, c.scale_dtype);
        ASSERT_EQ(v, dense[r * in + col]) << r << "," << col;
      }
    if (!lw->bias.empty()) {
      const StTensor& b = st.at(name + ".bias");
      for (std::int64_t i = 0; i < out; ++i) ASSERT_EQ(b.at<float>(static_cast<std::size_t>(i)), lw->bias[i]);
    }
  }
}

// The memory model counts a serving quantization's parameters as the folder stores them: per (row, group) one
// scale of the scale dtype and one zero point packed at the weight bits (one group per row with -1).
TEST(ServingMemory, ParametersAreTheFoldersScalesAndPackedZeroPoints) {
  rptq::ModelConfig m = rptq::ModelConfig::load(rptq::test::shared_model("tiny-opt-16m"));
  const std::int64_t d = m.hidden, f = m.intermediate, L = m.layers;
  const auto params = [&](const QuantConfig& c) { return rptq::estimate_memory(m, c, 1, 16).linear_param_bytes; };
  // q, k, v, o: [d, d]; fc1 [f, d]; fc2 [d, f]. Groups of 128: d / 128 and f / 128 per row.
  const std::uint64_t cells128 = static_cast<std::uint64_t>(L * (4 * d * (d / 128) + f * (d / 128) + d * (f / 128)));
  EXPECT_EQ(params(serving(128, DType::BF16)), cells128 * 2 + cells128 * 4 / 8);
  EXPECT_EQ(params(serving(128, DType::F32)), cells128 * 4 + cells128 * 4 / 8);
  const std::uint64_t rows = static_cast<std::uint64_t>(L * (4 * d + f + d));
  EXPECT_EQ(params(serving(-1, DType::F16, 8)), rows * 2 + rows);
}

// ---------------------------------------------------------------------------------------------------------------
// FP8 KV cache

// round_to_e4m3 returns the nearest of the format's values (found by search over all of them; ties to the even
// code), saturating at 448; every value of the format is returned as it is.
TEST(Fp8, RoundsToTheNearestE4m3Value) {
  std::vector<float> grid;  // the non-negative finite values of E4M3 (e4m3fn), by code
  for (int e = 0; e < 16; ++e)
    for (int f = 0; f < 8; ++f) {
      if (e == 15 && f == 7) continue;  // NaN
      grid.push_back(e == 0 ? std::ldexp(static_cast<float>(f), -9) : std::ldexp(1.0f + static_cast<float>(f) / 8, e - 7));
    }
  EXPECT_EQ(grid.back(), 448.0f);
  EXPECT_EQ(grid[1], std::ldexp(1.0f, -9));
  for (float g : grid) {
    EXPECT_EQ(rptq::round_to_e4m3(g), g);
    EXPECT_EQ(rptq::round_to_e4m3(-g), -g);
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> e(-13.0f, 9.5f);
  for (int i = 0; i < 200000; ++i) {
    const float v = std::ldexp(1.0f + std::generate_canonical<float, 24>(rng), static_cast<int>(e(rng)));
    std::size_t best = 0;
    for (std::size_t k = 1; k < grid.size(); ++k) {
      const float dk = std::abs(grid[k] - v), db = std::abs(grid[best] - v);
      if (dk < db || (dk == db && k % 2 == 0)) best = k;
    }
    const float want = v >= 448.0f ? 448.0f : grid[best];
    ASSERT_EQ(rptq::round_to_e4m3(v), want) << v;
    ASSERT_EQ(rptq::round_to_e4m3(-v), -want) << v;
  }
  EXPECT_EQ(rptq::round_to_e4m3(1e6f), 448.0f);
  EXPECT_EQ(rptq::round_to_e4m3(-470.0f), -448.0f);
  EXPECT_TRUE(std::isnan(rptq::round_to_e4m3(std::nanf(""))));
}

// The scales are absmax / 448 of the calibration ranges (per layer or per KV head), K and V are rounded to FP8 with
// them in the forward pass, and the folder carries them with the kv_cache_scheme.
TEST(Fp8, KvScalesFromCalibrationReachTheModelAndTheFolder) {
  const fs::path src = rptq::test::shared_model("stories260k");
  rptq::TapRanges r;
  r.max = {1.0f, -2.0f, 3.0f, 0.5f, 0.0f, 0.0f};
  r.min = {-4.0f, -3.0f, 1.0f, -0.25f, 0.0f, 0.0f};
  EXPECT_EQ(rptq::kv_fp8_scales(r, 2, rptq::KvFp8::Tensor), (std::vector<float>{4.0f / 448}));
  EXPECT_EQ(rptq::kv_fp8_scales(r, 2, rptq::KvFp8::Head), (std::vector<float>{4.0f / 448, 3.0f / 448, 1.0f}));
  expect_input_error([&] { rptq::kv_fp8_scales(r, 4, rptq::KvFp8::Head); }, "whole heads");
  QuantConfig kv = QuantConfig::preset("W4A16");
  kv.kv_fp8 = rptq::KvFp8::Tensor;
  expect_input_error([&] { kv.validate(); }, "serving target");

  for (rptq::KvFp8 k : {rptq::KvFp8::Tensor, rptq::KvFp8::Head}) {
    QuantConfig c = serving(-1);
    c.kv_fp8 = k;
    auto q = quantize_serving(src, c);
    const auto& m = q->model().config();
    for (int l = 0; l < q->layers(); ++l)
      for (rptq::Tap t : {rptq::Tap::K, rptq::Tap::V}) {
        const auto& tq = q->layer(l).taps[static_cast<std::size_t>(t)];
        EXPECT_EQ(tq.fp8_scales, rptq::kv_fp8_scales(q->layer(l).ranges.tap(t), m.head_dim, k));
      }
    // The hook rounds K and V to FP8 with those scales, element by element, and leaves the other taps alone.
    struct Watch : rptq::ActivationHook {
      rptq::ActivationHook* inner;
      const rptq::QuantizedModel* q;
      std::int64_t head_dim, checked = 0, moved = 0;
      void on_activation(int layer, rptq::Tap tap, const rptq::ActivationView& act) override {
        std::vector<float> before;
        for (std::int64_t r = 0; r < act.rows; ++r) before.insert(before.end(), act.row(r), act.row(r) + act.cols);
        inner->on_activation(layer, tap, act);
        const auto& sc = q->layer(layer).taps[static_cast<std::size_t>(tap)].fp8_scales;
        const bool kv = tap == rptq::Tap::K || tap == rptq::Tap::V;
        for (std::int64_t r = 0; r < act.rows; ++r)
          for (std::int64_t c = 0; c < act.cols; ++c) {
            const float x = before[static_cast<std::size_t>(r * act.cols + c)];
            const float s = kv ? sc[sc.size() == 1 ? 0 : static_cast<std::size_t>(c / head_dim)] : 0.0f;
            const float want = kv ? rptq::round_to_e4m3(x / s) * s : x;
            ASSERT_EQ(act.row(r)[c], want) << layer << " " << rptq::tap_name(tap) << " " << r << "," << c;
            moved += act.row(r)[c] != x;
          }
        checked += kv;
      }
    } watch;
    watch.inner = q->hook();
    watch.q = q.get();
    watch.head_dim = m.head_dim;
    const auto ids = rptq::test::some_ids(24, static_cast<std::int32_t>(m.vocab), 9);
    q->model().forward(ids, 1, nullptr, &watch);
    EXPECT_EQ(watch.checked, 2 * m.layers);
    EXPECT_GT(watch.moved, 0);
    const ScratchDir scratch("ct-fp8");
    rptq::export_compressed_tensors(*q, src, scratch / "out", false);
    const nlohmann::json qc = nlohmann::json::parse(read_file(scratch / "out" / "config.json"))["quantization_config"];
    EXPECT_EQ(qc["kv_cache_scheme"]["type"], "float");
    EXPECT_EQ(qc["kv_cache_scheme"]["num_bits"], 8);
    EXPECT_EQ(qc["kv_cache_scheme"]["strategy"], k == rptq::KvFp8::Head ? "attn_head" : "tensor");
    const auto st = read_st(scratch / "out" / "model.safetensors");
    const StTensor& ks = st.at("model.layers.1.self_attn.k_scale");
    EXPECT_EQ(ks.shape, k == rptq::KvFp8::Head ? (std::vector<std::int64_t>{m.kv_heads, 1, 1})
                                               : (std::vector<std::int64_t>{1}));
    const auto& want = q->layer(1).taps[static_cast<std::size_t>(rptq::Tap::K)].fp8_scales;
    for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(ks.at<float>(i), want[i]);
    EXPECT_TRUE(st.contains("model.layers.1.self_attn.v_scale"));
  }
}

class CtExport : public ::testing::TestWithParam<ModelCase> {};

// The serving quantization keeps R1, R2 and R4 in the source order and clusters R3 and R5; its folder holds
// config.json with the compressed-tensors quantization_config, the tokenizer files and every tensor, the linears
// packed so that they unpack to the model's weights bit for bit.
TEST_P(CtExport, FolderUnpacksToTheModelsWeights) {
  RPTQ_MODEL_OR_SKIP(GetParam(), src);
  // Both scale dtypes on the small models; SmolLM2 (a minute per quantization in CI) with the default only.
  const bool big = std::string(GetParam().name) == kSmolLM2;
  for (DType dt : big ? std::vector<DType>{DType::BF16} : std::vector<DType>{DType::BF16, DType::F32}) {
    SCOPED_TRACE(rptq::dtype_name(dt));
    auto q = quantize_serving(src, serving(GetParam().group, dt));
    for (int l = 0; l < q->layers(); ++l) {
      const rptq::LayerReorder& r = q->layer(l).reorder;
      EXPECT_TRUE(r.r1.is_identity() && r.r2.is_identity() && r.r4.is_identity()) << l;
      EXPECT_FALSE(r.r5.is_identity()) << l;  // clustered: 4 clusters of the hidden FFN channels
    }
    const ScratchDir scratch(std::string("ct-") + GetParam().name);
    const fs::path out = scratch / "served";
    rptq::export_compressed_tensors(*q, src, out, false);
    // config.json: the source's with the quantization_config added.
    const nlohmann::json src_cfg = nlohmann::json::parse(read_file(src / "config.json"));
    nlohmann::json cfg = nlohmann::json::parse(read_file(out / "config.json"));
    const nlohmann::json qc = cfg["quantization_config"];
    cfg.erase("quantization_config");
    EXPECT_EQ(cfg, src_cfg);
    EXPECT_EQ(qc["quant_method"], "compressed-tensors");
    EXPECT_EQ(qc["format"], "pack-quantized");
    EXPECT_EQ(qc["quantization_status"], "compressed");
    const bool projections = std::string(GetParam().name) == "opt-350m-style";  // word_embed_proj_dim != hidden
    EXPECT_EQ(qc["ignore"], projections ? nlohmann::json::array({"lm_head", "model.decoder.project_in",
                                                                  "model.decoder.project_out"})
                                        : nlohmann::json::array({"lm_head"}));
    ASSERT_EQ(qc["config_groups"].size(), 1u);
    const nlohmann::json& w = qc["config_groups"]["group_0"]["weights"];
    EXPECT_EQ(qc["config_groups"]["group_0"]["targets"], nlohmann::json::array({"Linear"}));
    EXPECT_EQ(w["num_bits"], 4);
    EXPECT_EQ(w["type"], "int");
    EXPECT_EQ(w["symmetric"], false);
    EXPECT_EQ(w["strategy"], GetParam().group > 0 ? "group" : "channel");
    if (GetParam().group > 0) {
      EXPECT_EQ(w["group_size"], GetParam().group);
    }
    for (const char* t : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"})
      EXPECT_EQ(fs::exists(out / t), fs::exists(src / t)) << t;
    nlohmann::json meta;
    const auto st = read_st(out / "model.safetensors", &meta);
    EXPECT_EQ(meta["rptq"], q->config().describe());
    std::map<std::string, int> bits;
    check_linears(*q, st, bits);
    for (const auto& [name, b] : bits) EXPECT_EQ(b, 4) << name;
    // Everything else is the model's float tensor as it is (the embeddings, for one).
    const rptq::Model::OuterWeights top = q->model().outer_weights();
    const bool opt = q->model().config().arch == rptq::Architecture::OPT;
    const StTensor& emb = st.at(std::string(opt ? "model.decoder." : "model.") + "embed_tokens.weight");
    EXPECT_EQ(emb.dtype, "F32");
    for (std::int64_t i = 0; i < top.embed_tokens.numel(); i += 97)
      ASSERT_EQ(emb.at<float>(static_cast<std::size_t>(i)), top.embed_tokens[i]);
    // The workbench does not load a quantized folder as if it were float: it says what it is.
    expect_input_error([&] { rptq::Model::load(out); }, "already quantized (quantization_config, quant_method "
                                                        "compressed-tensors)");
  }
}

// The shared OPT and LLaMA models, SmolLM2, and the Mistral / LLaMA-with-biases / OPT-350m variants, each with a
// group size that tiles it.
const auto kServingModels =
    ::testing::Values(ModelCase{"tiny-opt-16m", true, 128}, ModelCase{"stories260k", true, -1},
                      ModelCase{kSmolLM2, false, 64}, ModelCase{"mistral-head-dim", false, 32},
                      ModelCase{"llama-untied-bias", false, -1}, ModelCase{"opt-350m-style", false, -1});

std::string case_name(const ::testing::TestParamInfo<ModelCase>& info) {
  std::string n = info.param.name;
  for (char& c : n)
    if (c == '-') c = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Models, CtExport, kServingModels, case_name);

// Mixed precision: 8-bit and float linears by override become a second config group (named modules) and
// "ignore" entries; the 8-bit linears pack four codes to a word.
TEST(CtExportFolder, MixedBitsBecomeConfigGroupsAndIgnores) {
  const fs::path src = rptq::test::shared_model("tiny-opt-16m");
  QuantConfig c = serving(64, DType::F16);
  c.overrides = {rptq::parse_override("layers=0,ffn_hidden:wbits=8"), rptq::parse_override("layers=1,attn_input:wbits=16")};
  auto q = quantize_serving(src, c);
  const ScratchDir scratch("ct-mixed");
  rptq::export_compressed_tensors(*q, src, scratch / "out", false);
  const nlohmann::json qc = nlohmann::json::parse(read_file(scratch / "out" / "config.json"))["quantization_config"];
  EXPECT_EQ(qc["ignore"], nlohmann::json::array({"lm_head", "model.decoder.layers.1.self_attn.q_proj",
                                                 "model.decoder.layers.1.self_attn.k_proj",
                                                 "model.decoder.layers.1.self_attn.v_proj"}));
  ASSERT_EQ(qc["config_groups"].size(), 2u);
  EXPECT_EQ(qc["config_groups"]["group_1"]["weights"]["num_bits"], 8);
  EXPECT_EQ(qc["config_groups"]["group_1"]["targets"], nlohmann::json::array({"model.decoder.layers.0.fc2"}));
  EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["num_bits"], 4);
  EXPECT_EQ(qc["config_groups"]["group_0"]["targets"].size(), 4u * 6u - 1u - 3u);
  std::map<std::string, int> bits;
  check_linears(*q, read_st(scratch / "out" / "model.safetensors"), bits);
  EXPECT_EQ(bits.at("model.decoder.layers.0.fc2"), 8);
  EXPECT_EQ(bits.at("model.decoder.layers.1.self_attn.k_proj"), 16);
  EXPECT_EQ(bits.at("model.decoder.layers.1.fc2"), 4);
}

// Each format takes only its own quantization, and a group size that does not tile the model is refused by name.
TEST(CtExportFolder, RefusesOtherQuantizationsAndMisfitGroups) {
  const fs::path src = rptq::test::shared_model("tiny-opt-16m");
  const ScratchDir scratch("ct-refuse");
  QuantConfig rptq_own = QuantConfig::preset("W4A16");
  auto own = quantize_serving(src, rptq_own);
  expect_input_error([&] { rptq::export_compressed_tensors(*own, src, scratch / "a", false); }, "--serving");
  auto served = quantize_serving(src, serving(128));
  expect_input_error([&] { rptq::export_hf_folder(*served, src, scratch / "b", false); }, "--format compressed-tensors");
  rptq::ChannelStats none;
  expect_input_error([&] { rptq::export_checkpoint(*served, none, src, scratch / "c.h5", {}); }, "compressed-tensors");
  EXPECT_FALSE(fs::exists(scratch / "a"));
  EXPECT_FALSE(fs::exists(scratch / "b"));
  EXPECT_FALSE(fs::exists(scratch / "c.h5"));
  const fs::path odd = fs::path(RPTQ_RESOURCES_DIR).parent_path() / "tests/data/variants/opt-350m-style";
  expect_input_error([&] { quantize_serving(odd, serving(32)); }, "-1 (one group per output channel)");
}

// ---------------------------------------------------------------------------------------------------------------
// The libraries that serve the folder (Python; skipped where missing)

bool python_has(const std::string& exe) {
  const std::string cmd = "'" + exe + "' -c 'import torch, transformers, safetensors, compressed_tensors' > /dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

std::string find_ct_python(std::string& tried) {
  static std::string found, tried_once;
  static bool probed = false;
  if (!probed) {
    probed = true;
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("RPTQ_TEST_PYTHON"); env && *env) candidates.emplace_back(env);
    candidates.emplace_back("/usr/bin/python3");
    candidates.emplace_back("python3");
    for (const std::string& c : candidates) {
      tried_once += (tried_once.empty() ? "" : ", ") + c;
      if (python_has(c)) {
        found = c;
        break;
      }
    }
  }
  tried = tried_once;
  return found;
}

// Runs tools/compressed-tensors/check_export.py on FOLDER (extra arguments appended) and reads its result.json;
// false (with the log as a failure) when the script fails.
bool run_check_export(const std::string& py, const fs::path& folder, const ScratchDir& scratch,
                      const std::string& extra, nlohmann::json& res) {
  const fs::path script = fs::path(RPTQ_RESOURCES_DIR).parent_path() / "tools/compressed-tensors/check_export.py";
  const std::string cmd = "'" + py + "' '" + script.string() + "' '" + folder.string() + "' '" +
                          scratch.path().string() + "' " + extra + " > '" + (scratch / "python.log").string() + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << py << ":\n" << read_file(scratch / "python.log");
    return false;
  }
  res = nlohmann::json::parse(read_file(scratch / "result.json"));
  return true;
}

class CtExportPython : public ::testing::TestWithParam<ModelCase> {};

// compressed-tensors' PackedQuantizationCompressor decompresses every exported weight to exactly the quantized
// model's weight; transformers loads the folder with no missing, unexpected or mismatched key, holds those
// weights, and its logits equal the quantized model's within 1e-4 (the FP reference tests' tolerance; float32,
// eager attention, different summation order; SmolLM2: 2.5e-4, see below).
TEST_P(CtExportPython, LibrariesDecompressExactlyAndTransformersGivesTheLogits) {
  std::string tried;
  const std::string py = find_ct_python(tried);
  if (py.empty())
    GTEST_SKIP() << "no Python with torch, transformers, safetensors and compressed-tensors (tried " << tried
                 << "); set RPTQ_TEST_PYTHON to a venv that has them";
  RPTQ_MODEL_OR_SKIP(GetParam(), src);
  auto q = quantize_serving(src, serving(GetParam().group, DType::BF16));
  const ScratchDir scratch(std::string("ct-python-") + GetParam().name);
  const fs::path out = scratch / "served";
  rptq::export_compressed_tensors(*q, src, out, false);
  // The reference: every decoder linear's weight as the model computes with it.
  std::vector<rptq::Tensor> dense;
  std::vector<rptq::SafetensorsTensor> ref;
  const auto lins = linears_of(q->model());
  dense.reserve(lins.size());
  for (const auto& [name, lw] : lins) {
    dense.push_back(lw->dense());
    rptq::SafetensorsTensor t;
    t.name = name + ".weight";
    t.shape = dense.back().shape();
    t.values = dense.back().span();
    ref.push_back(std::move(t));
  }
  rptq::write_safetensors(scratch / "ref.safetensors", ref, DType::F32);
  const std::vector<std::int32_t> ids = rptq::test::some_ids(40, static_cast<std::int32_t>(q->model().config().vocab), 5);
  rptq::test::write_file(scratch / "ids.json", nlohmann::json(ids).dump());
  nlohmann::json res;
  ASSERT_TRUE(run_check_export(py, out, scratch,
                               "--reference '" + (scratch / "ref.safetensors").string() + "' --ids '" +
                                   (scratch / "ids.json").string() + "'",
                               res));
  EXPECT_EQ(res["modules"].size(), lins.size());
  EXPECT_TRUE(res["mismatches"].empty()) << res["mismatches"].dump();
  EXPECT_TRUE(res["transformers_weight_mismatches"].empty()) << res["transformers_weight_mismatches"].dump();
  EXPECT_EQ(res["scale_dtypes"], nlohmann::json::array({"torch.bfloat16"}));
  for (const auto& [k, v] : res["loading_info"].items()) EXPECT_TRUE(v.empty()) << k << ": " << v.dump();
  const rptq::Tensor want = q->model().forward(ids, 1);
  const std::string got = read_file(scratch / "logits.f32");
  ASSERT_EQ(got.size(), static_cast<std::size_t>(want.numel()) * 4);
  std::vector<float> hf(static_cast<std::size_t>(want.numel()));
  std::memcpy(hf.data(), got.data(), got.size());
  double worst = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(want[i]) - hf[static_cast<std::size_t>(i)]));
  // SmolLM2 (30 layers, logits about -20..25): 1.07e-4 measured over these 40 x 49152 logits on the 2-core VM, as
  // far from PyTorch as the FP model is (test_smollm2.cpp); bound 2.5e-4.
  const double bound = std::string(GetParam().name) == kSmolLM2 ? 2.5e-4 : 1e-4;
  EXPECT_LT(worst, bound) << "compressed-tensors " << res["compressed_tensors"] << ", transformers "
                          << res["transformers"];
}

INSTANTIATE_TEST_SUITE_P(Models, CtExportPython, kServingModels, case_name);

// The FP8 KV scales carry the names and shapes that compressed-tensors' own initialisation gives an attention
// module's k and v parameters (per tensor and per head); transformers, which dequantizes, reports them as its
// only unexpected keys.
TEST(CtExportPythonKv, Fp8ScalesHaveTheLibrarysNamesAndShapes) {
  std::string tried;
  const std::string py = find_ct_python(tried);
  if (py.empty())
    GTEST_SKIP() << "no Python with torch, transformers, safetensors and compressed-tensors (tried " << tried
                 << "); set RPTQ_TEST_PYTHON to a venv that has them";
  const fs::path src = rptq::test::shared_model("stories260k");
  for (rptq::KvFp8 k : {rptq::KvFp8::Tensor, rptq::KvFp8::Head}) {
    QuantConfig c = serving(-1);
    c.kv_fp8 = k;
    auto q = quantize_serving(src, c);
    const ScratchDir scratch("ct-python-kv");
    rptq::export_compressed_tensors(*q, src, scratch / "served", false);
    nlohmann::json res;
    ASSERT_TRUE(run_check_export(py, scratch / "served", scratch, "", res));
    const nlohmann::json& kv = res["kv_scales"];
    EXPECT_EQ(kv["expected"].size(), 2u * static_cast<std::size_t>(q->layers()));
    EXPECT_EQ(kv["expected"], kv["ours"]);
    std::vector<std::string> names;
    for (const auto& [name, shape] : kv["ours"].items()) names.push_back(name);
    EXPECT_EQ(res["loading_info"]["unexpected_keys"].get<std::vector<std::string>>(), names);
    EXPECT_TRUE(res["loading_info"]["missing_keys"].empty());
  }
}

}  // namespace
