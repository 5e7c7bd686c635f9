// The forward pass of every architecture variant the engine claims to support, against Hugging Face transformers.
//
// tests/data/variants/<name>/ holds a tiny random model built and saved by transformers' own classes
// (tests/data/make_variants.py; versions in tests/data/variants/README.md) and HF's float32 logits for 40 fixed
// token ids. These fixtures live in the repository, so unlike test_model_reference.cpp nothing here needs ../shared.
//
// Tolerance: 1e-4 absolute on every logit, for every variant. The computation is float32 on both sides and the models
// are tiny (hidden <= 48, 2 layers), so the only differences are summation order and rounding of exp/cos/sin:
// observed errors are 1e-6 to 1.2e-5, the larger ones where logits reach 30-80 in magnitude (a relative error of
// ~4e-7). The BF16 variant's reference is HF's float32 pass over the BF16-rounded weights (upcast exactly), so the
// same tolerance applies to it.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <iomanip>
#include <span>
#include <sstream>

#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/model/model_config.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr float kTolerance = 1e-4f;
constexpr std::int64_t kPrefix = 30;  // KV-cache test: this many tokens at once, then the rest one at a time

fs::path variants_dir() { return fs::path(RPTQ_RESOURCES_DIR).parent_path() / "tests/data/variants"; }

struct Reference {
  std::vector<std::int32_t> ids;
  std::int64_t tokens = 0, vocab = 0;
  std::vector<float> logits;  // [tokens, vocab]
  const float* row(std::int64_t t) const { return logits.data() + t * vocab; }
};

Reference read_reference(const fs::path& dir) {
  const auto j = json::parse(rptq::test::read_file(dir / "reference.json"));
  Reference r;
  r.ids = j.at("ids").get<std::vector<std::int32_t>>();
  r.tokens = j.at("shape")[0];
  r.vocab = j.at("shape")[1];
  const std::string raw = rptq::test::read_file(dir / j.at("logits_file").get<std::string>());
  if (raw.size() != static_cast<std::size_t>(r.tokens * r.vocab) * sizeof(float))
    throw std::runtime_error(dir.string() + ": logits file has " + std::to_string(raw.size()) + " bytes");
  r.logits.resize(raw.size() / sizeof(float));
  std::memcpy(r.logits.data(), raw.data(), raw.size());  // little-endian float32, as the hosts we build on
  return r;
}

// Largest |got - want| over `rows` rows of logits, and where it is (for the failure message).
struct Error {
  float max = 0.0f;
  std::int64_t row = -1, col = -1;
  std::string where() const {
    std::ostringstream s;
    s << "max abs error " << max << " at token " << row << ", logit " << col;
    return s.str();
  }
};

Error compare(const float* got, const float* want, std::int64_t rows, std::int64_t vocab, std::int64_t first_row = 0) {
  Error e;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < vocab; ++c) {
      const float d = std::abs(got[r * vocab + c] - want[r * vocab + c]);
      if (!(d <= e.max)) {  // NaN counts as the worst error
        e.max = std::isnan(d) ? INFINITY : d;
        e.row = first_row + r;
        e.col = c;
      }
    }
  return e;
}

// Every variant whose reference the engine must reproduce. See make_variants.py for what each one exercises.
const char* const kVariants[] = {
    "llama-untied-bias",   // untied head, q/k/v/o and MLP biases, GQA 4/2, rope_theta 500000, head_dim 12
    "llama-bf16-sharded",  // the same weights as BF16 in two safetensors shards with model.safetensors.index.json
    "mistral-window",      // sliding_window 16 over 40 tokens, GQA 4/2
    "mistral-head-dim",    // explicit head_dim 16 != hidden 32 / 4 heads
    "qwen2-tied",          // q/k/v bias, tied head, use_sliding_window false
    "qwen2-untied",        // q/k/v bias, untied head
    "opt-350m-style",      // post-LN, word_embed_proj_dim 32 != hidden 48 (project_in/out), no final LayerNorm
    "opt-prefix-free",     // pre-LN, pytorch_model.bin with "decoder.*" keys (no "model." prefix), tied
    "opt-gelu-noaffine",   // pre-LN, exact GELU, enable_bias false, no LayerNorm affine, _remove_final_layer_norm
};

class ModelVariant : public ::testing::TestWithParam<const char*> {
 protected:
  fs::path dir() const { return variants_dir() / GetParam(); }
};

TEST_P(ModelVariant, FullForwardMatchesTransformers) {
  ASSERT_TRUE(fs::exists(dir() / "reference.json")) << dir();
  const Reference ref = read_reference(dir());
  auto m = rptq::Model::load(dir());
  ASSERT_EQ(m->config().vocab, ref.vocab);

  const rptq::Tensor logits = m->forward(ref.ids, 1);
  ASSERT_EQ(logits.dim(0), ref.tokens);
  ASSERT_EQ(logits.dim(1), ref.vocab);
  const Error e = compare(logits.data(), ref.row(0), ref.tokens, ref.vocab);
  EXPECT_LT(e.max, kTolerance) << GetParam() << ": " << e.where();
  std::ostringstream err;
  err << std::scientific << std::setprecision(2) << e.max;
  RecordProperty("max_abs_error", err.str());  // in --gtest_output=xml, to watch the margin

  // last_only gives the last row alone.
  const rptq::Tensor last = m->forward(ref.ids, 1, nullptr, nullptr, /*last_only=*/true);
  ASSERT_EQ(last.dim(0), 1);
  const Error el = compare(last.data(), ref.row(ref.tokens - 1), 1, ref.vocab, ref.tokens - 1);
  EXPECT_LT(el.max, kTolerance) << GetParam() << " (last_only): " << el.where();
}

TEST_P(ModelVariant, BatchOfTwoMatchesTransformers) {
  const Reference ref = read_reference(dir());
  auto m = rptq::Model::load(dir());
  // The reference sequence, and the same sequence reversed (whose reference we do not have) as the other row: the
  // first sequence's logits must not depend on what sits beside it in the batch.
  std::vector<std::int32_t> ids(ref.ids.rbegin(), ref.ids.rend());
  ids.insert(ids.end(), ref.ids.begin(), ref.ids.end());
  const rptq::Tensor logits = m->forward(ids, 2);
  ASSERT_EQ(logits.dim(0), 2 * ref.tokens);
  const Error e = compare(logits.data() + ref.tokens * ref.vocab, ref.row(0), ref.tokens, ref.vocab);
  EXPECT_LT(e.max, kTolerance) << GetParam() << " (batch row 1): " << e.where();
}

TEST_P(ModelVariant, KvCacheMatchesTransformers) {
  const Reference ref = read_reference(dir());
  ASSERT_GT(ref.tokens, kPrefix);
  auto m = rptq::Model::load(dir());
  rptq::KvCache cache(m->config(), 1, ref.tokens);

  const std::span<const std::int32_t> ids(ref.ids);
  const rptq::Tensor first = m->forward(ids.first(kPrefix), 1, &cache);
  ASSERT_EQ(first.dim(0), kPrefix);
  ASSERT_EQ(cache.length(), kPrefix);
  const Error e = compare(first.data(), ref.row(0), kPrefix, ref.vocab);
  EXPECT_LT(e.max, kTolerance) << GetParam() << " (prefix): " << e.where();

  for (std::int64_t t = kPrefix; t < ref.tokens; ++t) {
    const rptq::Tensor step = m->forward(ids.subspan(static_cast<std::size_t>(t), 1), 1, &cache);
    ASSERT_EQ(step.dim(0), 1);
    const Error es = compare(step.data(), ref.row(t), 1, ref.vocab, t);
    EXPECT_LT(es.max, kTolerance) << GetParam() << " (cached step " << t << "): " << es.where();
  }
  EXPECT_EQ(cache.length(), ref.tokens);
}

INSTANTIATE_TEST_SUITE_P(Variants, ModelVariant, ::testing::ValuesIn(kVariants),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(ModelVariants, ConfigsParseAsIntended) {
  // Guards the fixtures: each one must exercise the configuration its name promises.
  const auto cfg = [](const char* name) { return rptq::ModelConfig::load(variants_dir() / name); };
  {
    const auto c = cfg("llama-untied-bias");
    EXPECT_FALSE(c.tie_embeddings);
    EXPECT_TRUE(c.qkv_bias && c.o_bias && c.mlp_bias);
    EXPECT_LT(c.kv_heads, c.heads);
    EXPECT_EQ(c.rope_theta, 500000.0f);
  }
  EXPECT_EQ(cfg("mistral-window").sliding_window, 16);
  EXPECT_EQ(cfg("mistral-head-dim").head_dim, 16);
  EXPECT_EQ(cfg("mistral-head-dim").q_dim(), 2 * cfg("mistral-head-dim").hidden);
  EXPECT_TRUE(cfg("qwen2-tied").tie_embeddings);
  EXPECT_TRUE(cfg("qwen2-tied").qkv_bias);
  EXPECT_EQ(cfg("qwen2-tied").sliding_window, 0);
  EXPECT_FALSE(cfg("qwen2-untied").tie_embeddings);
  {
    const auto c = cfg("opt-350m-style");
    EXPECT_FALSE(c.pre_layer_norm);
    EXPECT_FALSE(c.final_layer_norm);
    EXPECT_NE(c.embed_dim, c.hidden);
  }
  {
    const auto c = cfg("opt-gelu-noaffine");
    EXPECT_TRUE(c.pre_layer_norm);
    EXPECT_FALSE(c.final_layer_norm);
    EXPECT_FALSE(c.linear_bias);
    EXPECT_FALSE(c.norm_affine);
    EXPECT_EQ(c.activation, "gelu");
  }
  EXPECT_TRUE(fs::exists(variants_dir() / "opt-prefix-free/pytorch_model.bin"));
  EXPECT_TRUE(fs::exists(variants_dir() / "llama-bf16-sharded/model.safetensors.index.json"));
}

// OPT activation_function "gelu_new" is transformers' tanh approximation (NewGELUActivation), not the exact erf
// GELU; computing the wrong one shifts these logits by ~2.8e-3.
TEST(ModelVariants, OptGeluNewMatchesTransformers) {
  const fs::path dir = variants_dir() / "opt-gelu-new";
  const Reference ref = read_reference(dir);
  auto m = rptq::Model::load(dir);
  const rptq::Tensor logits = m->forward(ref.ids, 1);
  const Error e = compare(logits.data(), ref.row(0), ref.tokens, ref.vocab);
  EXPECT_LT(e.max, kTolerance) << "opt-gelu-new: " << e.where();
}

// ---------------------------------------------------------------------------------------------------------------
// Configurations the engine must refuse (rather than silently compute something else).

// A copy of a variant's folder (weights included, so only the config can be at fault) with config.json edited.
fs::path edited_copy(const std::string& test_name, const char* variant, const std::function<void(json&)>& edit) {
  const fs::path dir = rptq::test::temp_dir(test_name);
  for (const auto& entry : fs::directory_iterator(variants_dir() / variant))
    fs::copy_file(entry.path(), dir / entry.path().filename());
  json cfg = json::parse(rptq::test::read_file(dir / "config.json"));
  edit(cfg);
  rptq::test::write_file(dir / "config.json", cfg.dump(2));
  return dir;
}

// The InputError message of loading DIR (fails the test when it loads).
std::string load_error(const fs::path& dir) {
  try {
    rptq::Model::load(dir);
  } catch (const rptq::InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << dir << " loaded, but should have been refused";
  return {};
}

TEST(ModelVariantsRefused, RopeScalingYarn) {
  const auto dir = edited_copy("variants-yarn", "llama-untied-bias", [](json& c) {
    c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32}};
  });
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("rope_scaling"), std::string::npos) << msg;
  EXPECT_NE(msg.find("yarn"), std::string::npos) << msg;
}

TEST(ModelVariantsRefused, RopeScalingLinear) {
  const auto dir = edited_copy("variants-linear", "qwen2-tied", [](json& c) {
    c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  });
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("rope_scaling"), std::string::npos) << msg;
  EXPECT_NE(msg.find("linear"), std::string::npos) << msg;
}

TEST(ModelVariantsRefused, RopeScalingLlama3OnMistral) {
  const auto dir = edited_copy("variants-llama3", "mistral-window", [](json& c) {
    c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  });
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("rope_scaling"), std::string::npos) << msg;
  EXPECT_NE(msg.find("llama3"), std::string::npos) << msg;
}

TEST(ModelVariantsRefused, ModelTypeGpt2) {
  const auto dir = edited_copy("variants-gpt2", "opt-350m-style", [](json& c) { c["model_type"] = "gpt2"; });
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("gpt2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model_type"), std::string::npos) << msg;
}

// The counterpart: a null rope_scaling (as many configs write it) or an explicit "default" one is plain RoPE.
TEST(ModelVariantsRefused, RopeScalingNullOrDefaultStillLoads) {
  const Reference ref = read_reference(variants_dir() / "llama-untied-bias");
  for (const json& rs : {json(nullptr), json{{"rope_type", "default"}}}) {
    const auto dir = edited_copy("variants-rope-default", "llama-untied-bias", [&](json& c) { c["rope_scaling"] = rs; });
    auto m = rptq::Model::load(dir);
    const rptq::Tensor logits = m->forward(ref.ids, 1);
    EXPECT_LT(compare(logits.data(), ref.row(0), ref.tokens, ref.vocab).max, kTolerance) << rs.dump();
  }
}

}  // namespace
