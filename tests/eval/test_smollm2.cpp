// SmolLM2-135M-Instruct, a real trained LLaMA-family LLM (30 layers, grouped-query attention, tied head,
// rope_theta 100000), against transformers: token ids, logits and perplexity from tests/data/smollm2 (made by
// make_reference.py there, with transformers' own GGUF loading). scripts/fetch-models.sh converts the model into
// ${XDG_CACHE_HOME:-~/.cache}/rptq/models/smollm2-135m-instruct; RPTQ_SMOLLM2_DIR names another folder. Without
// the folder the tests skip, except when RPTQ_SMOLLM2_DIR is set (CI sets it): then a missing folder fails.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "cli_support.h"
#include "rptq/model/model.h"
#include "rptq/eval/perplexity.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path data_dir() { return fs::path(RPTQ_RESOURCES_DIR).parent_path() / "tests/data/smollm2"; }

json read_json(const std::string& name) { return json::parse(rptq::test::read_file(data_dir() / name)); }

// The converted folder, or "" with the reason to skip in *why.
fs::path model_dir(std::string* why, bool* required) {
  const char* env = std::getenv("RPTQ_SMOLLM2_DIR");
  *required = env && *env;
  fs::path dir;
  if (*required) {
    dir = env;
  } else {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    const fs::path cache = xdg && *xdg ? fs::path(xdg) : fs::path(home ? home : "") / ".cache";
    dir = cache / "rptq/models/smollm2-135m-instruct";
  }
  if (fs::exists(dir / "model.safetensors") && fs::exists(dir / "tokenizer.json")) return dir;
  *why = "SmolLM2 folder not found at " + dir.string() + " (run scripts/fetch-models.sh)";
  return {};
}

#define RPTQ_REQUIRE_SMOLLM2(dir)                       \
  fs::path dir;                                         \
  do {                                                  \
    std::string why_;                                   \
    bool required_ = false;                             \
    dir = model_dir(&why_, &required_);                 \
    if (dir.empty() && required_) {                     \
      FAIL() << why_;                                   \
    }                                                   \
    if (dir.empty()) {                                  \
      GTEST_SKIP() << why_;                             \
    }                                                   \
  } while (0)

// One model for the whole suite (loading 540 MB of F32 weights takes a moment).
const rptq::Model& model(const fs::path& dir) {
  static std::unique_ptr<rptq::Model> m = rptq::Model::load(dir);
  return *m;
}

TEST(SmolLM2, ConfigFromTheGguf) {
  RPTQ_REQUIRE_SMOLLM2(dir);
  const auto c = rptq::ModelConfig::load(dir);
  EXPECT_EQ(c.arch, rptq::Architecture::Llama);
  EXPECT_EQ(c.layers, 30);
  EXPECT_EQ(c.hidden, 576);
  EXPECT_EQ(c.intermediate, 1536);
  EXPECT_EQ(c.heads, 9);
  EXPECT_EQ(c.kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab, 49152);
  EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.bos_token, 1);
  EXPECT_EQ(c.eos_token, 2);
}

// The same folder with its config.json as transformers 5 saves it (rope_parameters: {rope_theta 100000, rope_type
// default}, no top-level rope_theta) computes exactly what the transformers 4 style config does. Before
// rope_parameters was read, such a folder ran silently with theta 10000 (logits off by 2.2, WikiText-2 ppl 33.94
// instead of 30.36).
TEST(SmolLM2, Transformers5ConfigGivesTheSameLogits) {
  RPTQ_REQUIRE_SMOLLM2(dir);
  const auto v5 = rptq::test::temp_dir("smollm2-transformers5");
  fs::copy_file(data_dir() / "config-transformers5.json", v5 / "config.json");
  for (const char* f : {"model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    fs::create_symlink(fs::absolute(dir / f), v5 / f);
  const auto cfg = rptq::ModelConfig::load(v5);
  EXPECT_FLOAT_EQ(cfg.rope_theta, 100000.0f);
  const auto m5 = rptq::Model::load(v5);
  const auto ids = read_json("logits.json").at("ids").get<std::vector<std::int32_t>>();
  const rptq::Tensor a = model(dir).forward(ids, 1), b = m5->forward(ids, 1);
  ASSERT_EQ(a.numel(), b.numel());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * 4), 0);
  fs::remove_all(v5);
}

// Token ids exactly as transformers gives them (no BOS: SmolLM2's tokenizer adds none), and back to the text.
TEST(SmolLM2, TokenIdsMatchTransformers) {
  RPTQ_REQUIRE_SMOLLM2(dir);
  const auto tok = rptq::Tokenizer::load(dir);
  EXPECT_FALSE(tok->adds_bos());
  const json ref = read_json("tokens.json");
  ASSERT_GE(ref.at("texts").size(), 8u);
  for (const json& t : ref.at("texts")) {
    const std::string text = t.at("text");
    SCOPED_TRACE(text);
    const auto ids = tok->encode(text, true);
    EXPECT_EQ(ids, t.at("ids").get<std::vector<std::int32_t>>());
    if (text.find("<|im_start|>") == std::string::npos) {  // decode drops special tokens
      EXPECT_EQ(tok->decode(ids), text);
    }
  }
  // The perplexity text's first windows, tokenized here as a whole, against transformers' ids.
  const json ppl = read_json("perplexity.json");
  const auto ids = tok->encode(rptq::test::read_file(data_dir() / ppl.at("data").get<std::string>()), true);
  EXPECT_EQ(static_cast<std::int64_t>(ids.size()), ppl.at("tokens_in_file").get<std::int64_t>());
  const auto want = ppl.at("ids").get<std::vector<std::int32_t>>();
  ASSERT_GE(ids.size(), want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), ids.begin()));
}

// The whole WikiText-2 test file, when ../shared is there: the token count transformers gives.
TEST(SmolLM2, WikiTextTokenCountMatchesTransformers) {
  RPTQ_REQUIRE_SHARED_FILE("data/wikitext2-test.txt");
  RPTQ_REQUIRE_SMOLLM2(dir);
  const auto tok = rptq::Tokenizer::load(dir);
  const auto ids = tok->encode(rptq::test::read_file(rptq::test::shared_file("data/wikitext2-test.txt")), true);
  const json ppl = read_json("perplexity.json");
  EXPECT_EQ(static_cast<std::int64_t>(ids.size()), ppl.at("wikitext2_test").at("tokens_in_file").get<std::int64_t>());
}

// Logits of a 29-token text: the last 4 rows over the whole vocabulary, and every row's logsumexp and argmax.
// Measured on the 2-core VM against PyTorch float32 eager (logits span about -20..25): max |difference| 4.2e-5
// (oneDNN GEMMs) / 4.8e-5 (RPTQ_GEMM=openblas) over the 4 x 49152 logits, logsumexp 6.3e-5 / 4.0e-5, the same at
// 1 and 2 threads. Bounds: 2e-4 and 2.5e-4, about 4x the worst measured. For scale (measured in transformers):
// theta 10000 instead of 100000 moves the logits by 2.2, q/k rows left in GGML's rotary order by 19,
// rms_norm_eps 1e-6 instead of 1e-5 by 6e-3.
constexpr double kLogitBound = 2e-4, kLogsumexpBound = 2.5e-4;

TEST(SmolLM2, LogitsMatchTransformers) {
  RPTQ_REQUIRE_SMOLLM2(dir);
  const json ref = read_json("logits.json");
  const auto ids = ref.at("ids").get<std::vector<std::int32_t>>();
  const std::int64_t vocab = ref.at("vocab"), first = ref.at("full_rows").at("first_position");
  const std::string raw = rptq::test::read_file(data_dir() / "logits.f32");
  const std::int64_t rows = static_cast<std::int64_t>(ids.size()) - first;
  ASSERT_EQ(raw.size(), static_cast<std::size_t>(rows * vocab) * 4);
  std::vector<float> want(raw.size() / 4);
  std::memcpy(want.data(), raw.data(), raw.size());

  const rptq::Tensor logits = model(dir).forward(ids, 1);
  ASSERT_EQ(logits.dim(0), static_cast<std::int64_t>(ids.size()));
  ASSERT_EQ(logits.dim(1), vocab);
  double err = 0.0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t v = 0; v < vocab; ++v)
      err = std::max(err, std::abs(double(logits[(first + r) * vocab + v]) - want[r * vocab + v]));
  EXPECT_LT(err, kLogitBound) << "max |logit difference| over the last " << rows << " positions";

  double lse_err = 0.0;
  for (std::size_t p = 0; p < ids.size(); ++p) {
    const float* row = logits.data() + p * vocab;
    double mx = row[0];
    std::int64_t arg = 0;
    for (std::int64_t v = 1; v < vocab; ++v) {
      if (row[v] > mx) {
        mx = row[v];
        arg = v;
      }
    }
    double sum = 0.0;
    for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - mx);
    lse_err = std::max(lse_err, std::abs(mx + std::log(sum) - ref.at("logsumexp")[p].get<double>()));
    // A top-2 tie closer than the error bound may legitimately flip.
    if (ref.at("margin")[p].get<double>() > 2 * kLogitBound) {
      EXPECT_EQ(arg, ref.at("argmax")[p].get<std::int64_t>()) << p;
    }
  }
  EXPECT_LT(lse_err, kLogsumexpBound) << "max |logsumexp difference| over all positions";
  std::printf("[ measured ] logits max |diff| %.3g, logsumexp max |diff| %.3g\n", err, lse_err);
}

// Perplexity of 4 windows x 512 tokens of WikiText-2 test (the committed head of the file), with the reference
// convention. Measured: 29.9827195 (oneDNN) / 29.9827225 (OpenBLAS) against transformers' 29.9827217, relative
// difference 7.4e-8 / 2.9e-8; window mean NLL max |difference| 1.8e-7 / 3.9e-7. Bounds: 2e-6 per window NLL
// (5x), 1e-6 relative on the perplexity.
constexpr double kWindowNllBound = 2e-6, kPplRelBound = 1e-6;

TEST(SmolLM2, PerplexityMatchesTransformers) {
  RPTQ_REQUIRE_SMOLLM2(dir);
  const json ref = read_json("perplexity.json");
  const auto ids = ref.at("ids").get<std::vector<std::int32_t>>();
  rptq::PerplexityOptions po;
  po.seqlen = ref.at("seqlen");
  po.batch = 2;
  const auto r = rptq::perplexity(model(dir), ids, po);
  ASSERT_EQ(r.windows, ref.at("windows").get<std::int64_t>());
  double nll_err = 0.0;
  for (std::size_t w = 0; w < r.window_nll.size(); ++w) {
    const double d = std::abs(r.window_nll[w] - ref.at("window_nll")[w].get<double>());
    EXPECT_LT(d, kWindowNllBound) << "window " << w;
    nll_err = std::max(nll_err, d);
  }
  const double want = ref.at("ppl");
  EXPECT_NEAR(r.ppl, want, kPplRelBound * want);
  std::printf("[ measured ] ppl %.7f, transformers %.7f, relative difference %.3g; window NLL max |diff| %.3g\n",
              r.ppl, want, std::abs(r.ppl - want) / want, nll_err);
}

// `rptq eval` on the committed text: the same perplexity through the command line.
TEST(SmolLM2, CliEvalMatchesTransformers) {
  RPTQ_REQUIRE_SMOLLM2(dir);
  const json ref = read_json("perplexity.json");
  const rptq::test::CliRun r =
      rptq::test::rptq_cli({"eval", dir.string(), "--data", (data_dir() / ref.at("data").get<std::string>()).string(),
                            "--seqlen", "512", "--max-windows", "4", "--batch", "2", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("windows"), 4);
  EXPECT_EQ(j.at("tokens_in_file"), ref.at("tokens_in_file"));
  const double want = ref.at("ppl");
  EXPECT_NEAR(j.at("ppl").get<double>(), want, kPplRelBound * want);
}

}  // namespace
