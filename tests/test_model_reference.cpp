// The forward pass and perplexity against ../shared/reference (an independent PyTorch implementation, fp32).
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>

#include "rptq/model/model.h"
#include "rptq/eval/perplexity.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::test::shared_dir;

struct ReferenceLogits {
  std::vector<std::int32_t> ids;
  std::int64_t tokens = 0, vocab = 0;
  std::vector<float> logits;
};

ReferenceLogits read_reference(const std::string& model) {
  const auto dir = shared_dir() / "reference";
  auto j = nlohmann::json::parse(rptq::test::read_file(dir / ("logits-" + model + ".json")));
  ReferenceLogits r;
  r.ids = j.at("ids").get<std::vector<std::int32_t>>();
  r.tokens = j.at("shape")[0];
  r.vocab = j.at("shape")[1];
  const std::string raw = rptq::test::read_file(dir / ("logits-" + model + ".f32"));
  EXPECT_EQ(raw.size(), static_cast<std::size_t>(r.tokens * r.vocab) * 4);
  r.logits.resize(raw.size() / 4);
  std::memcpy(r.logits.data(), raw.data(), raw.size());
  return r;
}

// Largest absolute difference between our logits for the reference ids and the reference's.
float max_logit_error(const rptq::Model& m, const ReferenceLogits& ref) {
  rptq::Tensor logits = m.forward(ref.ids, 1);
  EXPECT_EQ(logits.dim(0), ref.tokens);
  EXPECT_EQ(logits.dim(1), ref.vocab);
  float err = 0.0f;
  for (std::int64_t i = 0; i < logits.numel(); ++i) err = std::max(err, std::abs(logits[i] - ref.logits[i]));
  return err;
}

TEST(ModelReference, Stories260kLogitsMatch) {
  RPTQ_REQUIRE_SHARED();
  auto m = rptq::Model::load(shared_dir() / "models/stories260k");
  EXPECT_LT(max_logit_error(*m, read_reference("stories260k")), 1e-4f);
}

TEST(ModelReference, TinyOptLogitsMatch) {
  RPTQ_REQUIRE_SHARED();
  auto m = rptq::Model::load(shared_dir() / "models/tiny-opt-16m");
  EXPECT_LT(max_logit_error(*m, read_reference("tiny-opt-16m")), 1e-4f);
}

TEST(ModelReference, BinAndSafetensorsGiveIdenticalLogits) {
  RPTQ_REQUIRE_SHARED();
  auto a = rptq::Model::load(shared_dir() / "models/tiny-opt-16m");
  auto b = rptq::Model::load(shared_dir() / "models/tiny-opt-16m-bin");
  const auto ref = read_reference("tiny-opt-16m");
  rptq::Tensor la = a->forward(ref.ids, 1), lb = b->forward(ref.ids, 1);
  ASSERT_EQ(la.numel(), lb.numel());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), static_cast<std::size_t>(la.numel()) * 4), 0);
  EXPECT_EQ(a->parameter_count(), b->parameter_count());
}

TEST(ModelReference, ParameterCounts) {
  RPTQ_REQUIRE_SHARED();
  // stories260k: 512*64 embedding (tied) + 5 layers * (2*64 norms + 64*64 q + 2*32*64 k,v + 64*64 o + 3*172*64)
  // + 64 final norm.
  const std::int64_t stories = 512 * 64 + 5 * (2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 172 * 64) + 64;
  EXPECT_EQ(rptq::Model::load(shared_dir() / "models/stories260k")->parameter_count(), stories);
}

// Every row of perplexity.json to 1e-4 relative, with the whole file tokenized once.
TEST(ModelReference, PerplexityRowsMatch) {
  RPTQ_REQUIRE_SHARED();
  auto rows = nlohmann::json::parse(rptq::test::read_file(shared_dir() / "reference/perplexity.json"));
  ASSERT_FALSE(rows.empty());
  std::map<std::string, std::unique_ptr<rptq::Model>> models;
  std::map<std::string, std::unique_ptr<rptq::Tokenizer>> tokenizers;
  for (const auto& row : rows) {
    const std::string model = row.at("model"), data = row.at("data");
    SCOPED_TRACE(model + " on " + data + " seqlen " + std::to_string(row.at("seqlen").get<int>()));
    if (!models.count(model)) {
      models[model] = rptq::Model::load(shared_dir() / model);
      tokenizers[model] = rptq::Tokenizer::load(shared_dir() / model);
    }
    const auto ids = tokenizers[model]->encode(rptq::test::read_file(shared_dir() / data), true);
    EXPECT_EQ(static_cast<std::int64_t>(ids.size()), row.at("tokens_in_file").get<std::int64_t>());
    rptq::PerplexityOptions po;
    po.seqlen = row.at("seqlen");
    po.max_windows = row.at("max_windows").is_null() ? 0 : row.at("max_windows").get<std::int64_t>();
    po.batch = 4;
    const auto r = rptq::perplexity(*models[model], ids, po);
    EXPECT_EQ(r.windows, row.at("windows").get<std::int64_t>());
    const double want = row.at("ppl");
    EXPECT_NEAR(r.ppl, want, 1e-4 * want);
  }
}

}  // namespace
