// Pinned CPU logits: the engine's output recorded once (tests/data/pinned-logits.json) and required again bit for
// bit, so a refactoring that should change nothing (issue 15: layers written once over CPU and CUDA op sets, core/
// in folders) is shown to change nothing. The FP logits of the two bundled models and of SmolLM2 (when its folder
// is present), and the logits of a W4A8 RTN quantization of stories260k (calibration, k-means, reorder, packed
// weights and activation quantizers all in the path).
//
// Bits depend on the machine's GEMM kernels and thread count: on the machine kind the file was recorded on (its
// "signature": GEMM backend, OpenBLAS core, threads) the 64-bit FNV-1a hash of every logit's bytes must match; on
// another, the recorded sample (the last position's first 64 logits) must agree within 1e-4 * (1 + |v|) and the
// sum of all logits within 1e-6 relative, and the test says that the bits were not compared.
//
// Recording (only when the engine's output is meant to change, with the reason in the commit):
//   RPTQ_RECORD_PINNED=tests/data/pinned-logits.json build/tests/test_pinned_logits
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rptq/model/blas.h"
#include "rptq/method/calibration.h"
#include "rptq/model/model.h"
#include "rptq/method/quantize.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::size_t kTokens = 48, kSample = 64;

fs::path pinned_file() { return fs::path(RPTQ_RESOURCES_DIR).parent_path() / "tests/data/pinned-logits.json"; }

std::string signature() {
  return std::string(rptq::blas::gemm_backend_name(rptq::blas::gemm_backend())) + "/" + rptq::blas::info().corename +
         "/threads=" + std::to_string(rptq::num_threads());
}

std::uint64_t fnv1a(const float* v, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* b = reinterpret_cast<const unsigned char*>(v);
  for (std::size_t i = 0; i < n * sizeof(float); ++i) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

json describe(const rptq::Tensor& logits) {
  const std::size_t n = static_cast<std::size_t>(logits.numel());
  const std::int64_t vocab = logits.dim(1);
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) sum += logits.data()[i];
  std::vector<float> sample(logits.data() + (logits.dim(0) - 1) * vocab,
                            logits.data() + (logits.dim(0) - 1) * vocab + kSample);
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(fnv1a(logits.data(), n)));
  return {{"fnv1a", hash}, {"sum", sum}, {"sample", sample}, {"shape", {logits.dim(0), logits.dim(1)}}};
}

std::vector<std::int32_t> first_ids(const fs::path& model_dir, const fs::path& text) {
  auto ids = rptq::Tokenizer::load(model_dir)->encode(rptq::test::read_file(text), true);
  ids.resize(kTokens);
  return ids;
}

// What the engine gives now, per case; SmolLM2 only when its folder is there.
std::map<std::string, json> compute() {
  std::map<std::string, json> out;
  const fs::path res = rptq::test::resources_dir();
  for (const char* name : {"stories260k", "tiny-opt-16m"}) {
    const fs::path dir = res / "models" / name;
    const auto ids = first_ids(dir, res / "data" / (std::string(name) == "stories260k" ? "stories.txt" : "c4-sample.txt"));
    out[std::string(name) + " fp"] = describe(rptq::Model::load(dir)->forward(ids, 1));
  }
  {
    const fs::path dir = res / "models" / "stories260k";
    auto fp = rptq::Model::load(dir);
    const auto all = rptq::Tokenizer::load(dir)->encode(rptq::test::read_file(res / "data" / "stories.txt"), true);
    rptq::CalibrationSettings cs;
    cs.samples = 2;
    cs.seqlen = 48;
    const rptq::ChannelStats stats = rptq::calibrate(*fp, dir.string(), all, "stories.txt", "", cs);
    rptq::QuantConfig c = rptq::QuantConfig::preset("W4A8");
    c.weight_method = rptq::WeightMethod::RTN;
    auto q = rptq::quantize(rptq::Model::load(dir), stats, c);
    const std::vector<std::int32_t> ids(all.begin() + 100, all.begin() + 100 + kTokens);
    out["stories260k W4A8 rtn"] = describe(q->model().forward(ids, 1, nullptr, q->hook()));
  }
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const fs::path smol = (xdg && *xdg ? fs::path(xdg) : fs::path(home ? home : "") / ".cache") /
                        "rptq/models/smollm2-135m-instruct";
  if (fs::exists(smol / "model.safetensors")) {
    const auto ids = first_ids(smol, fs::path(RPTQ_RESOURCES_DIR).parent_path() / "tests/data/smollm2/wikitext2-test-head.txt");
    out["smollm2 fp"] = describe(rptq::Model::load(smol)->forward(ids, 1));
  }
  return out;
}

TEST(PinnedLogits, UnchangedSinceRecorded) {
  const std::map<std::string, json> now = compute();
  if (const char* rec = std::getenv("RPTQ_RECORD_PINNED"); rec && *rec) {
    json j;
    j["signature"] = signature();
    j["note"] = "Recorded by tests/model/test_pinned_logits.cpp (see its header); first " + std::to_string(kTokens) +
                " tokens of each model's bundled text, batch 1.";
    for (const auto& [k, v] : now) j["cases"][k] = v;
    std::ofstream(rec) << j.dump(1) << "\n";
    GTEST_SKIP() << "recorded " << now.size() << " cases into " << rec << " on " << signature();
  }
  const json want = json::parse(rptq::test::read_file(pinned_file()));
  const bool same_machine = want.at("signature") == signature();
  for (const auto& [name, w] : want.at("cases").items()) {
    SCOPED_TRACE(name);
    if (!now.contains(name)) {
      std::printf("[ skipped  ] %s: model not present here\n", name.c_str());
      continue;
    }
    const json& g = now.at(name);
    ASSERT_EQ(g.at("shape"), w.at("shape"));
    if (same_machine) {
      EXPECT_EQ(g.at("fnv1a"), w.at("fnv1a")) << "the logits' bits changed (sum " << g.at("sum").get<double>()
                                               << " against " << w.at("sum").get<double>() << ")";
      continue;
    }
    std::printf("[ note     ] %s: recorded on %s, running on %s: bits not compared, values within bounds\n",
                name.c_str(), want.at("signature").get<std::string>().c_str(), signature().c_str());
    const auto gs = g.at("sample").get<std::vector<float>>(), ws = w.at("sample").get<std::vector<float>>();
    for (std::size_t i = 0; i < ws.size(); ++i) EXPECT_NEAR(gs[i], ws[i], 1e-4 * (1.0 + std::abs(ws[i]))) << i;
    const double gsum = g.at("sum"), wsum = w.at("sum");
    EXPECT_NEAR(gsum, wsum, 1e-6 * std::abs(wsum) + 1e-3);
  }
}

}  // namespace
