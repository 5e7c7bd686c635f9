// The forward pass and perplexity against ../shared/reference (an independent PyTorch implementation, fp32), or
// without ../shared against the part of it the repo carries (tests/data/shared, resources/models, resources/data).
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>

#include "rptq/model/model.h"
#include "rptq/eval/perplexity.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::test::shared_file;
using rptq::test::shared_model;

struct ReferenceLogits {
  std::vector<std::int32_t> ids;
  std::int64_t tokens = 0, vocab = 0;
  std::vector<float> logits;
};

// `name` is a logits file of ../shared/reference without extension ("logits-stories260k"), or one the repo
// carries cut from one ("logits-tiny-opt-16m-head8": its first rows).
ReferenceLogits read_reference(const std::string& name) {
  auto j = nlohmann::json::parse(rptq::test::read_file(shared_file("reference/" + name + ".json")));
  ReferenceLogits r;
  r.ids = j.at("ids").get<std::vector<std::int32_t>>();
  r.tokens = j.at("shape")[0];
  r.vocab = j.at("shape")[1];
  EXPECT_EQ(static_cast<std::int64_t>(r.ids.size()), r.tokens);
  const std::string raw = rptq::test::read_file(shared_file("reference/" + name + ".f32"));
  EXPECT_EQ(raw.size(), static_cast<std::size_t>(r.tokens * r.vocab) * 4);
  r.logits.resize(raw.size() / 4);
  std::memcpy(r.logits.data(), raw.data(), raw.size());
  return r;
}

// tiny-opt-16m's logits: all 16 rows from ../shared when it is there, else the first 8 the repo carries.
ReferenceLogits tiny_opt_reference() {
  if (std::filesystem::exists(shared_file("reference/logits-tiny-opt-16m.f32")))
    return read_reference("logits-tiny-opt-16m");
  std::printf("  ../shared not found: comparing the first 8 of the 16 reference rows the repo carries\n");
  return read_reference("logits-tiny-opt-16m-head8");
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
  auto m = rptq::Model::load(shared_model("stories260k"));
  EXPECT_LT(max_logit_error(*m, read_reference("logits-stories260k")), 1e-4f);
}

TEST(ModelReference, TinyOptLogitsMatch) {
  auto m = rptq::Model::load(shared_model("tiny-opt-16m"));
  EXPECT_LT(max_logit_error(*m, tiny_opt_reference()), 1e-4f);
}

TEST(ModelReference, BinAndSafetensorsGiveIdenticalLogits) {
  RPTQ_REQUIRE_SHARED_FILE("models/tiny-opt-16m-bin");  // 32 MB, saved by PyTorch: not carried
  auto a = rptq::Model::load(shared_model("tiny-opt-16m"));
  auto b = rptq::Model::load(shared_model("tiny-opt-16m-bin"));
  const auto ref = tiny_opt_reference();
  rptq::Tensor la = a->forward(ref.ids, 1), lb = b->forward(ref.ids, 1);
  ASSERT_EQ(la.numel(), lb.numel());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), static_cast<std::size_t>(la.numel()) * 4), 0);
  EXPECT_EQ(a->parameter_count(), b->parameter_count());
}

TEST(ModelReference, ParameterCounts) {
  // stories260k: 512*64 embedding (tied) + 5 layers * (2*64 norms + 64*64 q + 2*32*64 k,v + 64*64 o + 3*172*64)
  // + 64 final norm.
  const std::int64_t stories = 512 * 64 + 5 * (2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 172 * 64) + 64;
  EXPECT_EQ(rptq::Model::load(shared_model("stories260k"))->parameter_count(), stories);
}

// One row of perplexity.json to 1e-4 relative, by its index there.
class PerplexityRow : public ::testing::TestWithParam<int> {};

// The rows, in the file's order (the name of each case; CoversEveryRow keeps the list complete).
constexpr const char* kPerplexityRows[] = {"stories260k_stories_128", "tiny_opt_16m_wikitext2_test_512",
                                           "tiny_opt_16m_ptb_test_512", "tiny_opt_16m_c4_test_512",
                                           "tiny_opt_16m_wikitext2_test_128"};
constexpr int kPerplexityRowCount = static_cast<int>(std::size(kPerplexityRows));

nlohmann::json perplexity_rows() {
  return nlohmann::json::parse(rptq::test::read_file(shared_file("reference/perplexity.json")));
}

TEST(ModelReference, PerplexityRowsCoverEveryRow) {
  EXPECT_EQ(static_cast<int>(perplexity_rows().size()), kPerplexityRowCount);
}

// The whole file tokenized once, as the reference did. Without ../shared, a row that reads at most max_windows x
// seqlen tokens of a file the repo does not carry whole reads its head from tests/data/shared (the first lines,
// whose tokens are the first tokens of the whole file: tests/test_shared_subset.cpp): the same windows, so the
// same perplexity. Only the whole file's token count is then left unchecked.
TEST_P(PerplexityRow, Matches) {
  const nlohmann::json row = perplexity_rows().at(static_cast<std::size_t>(GetParam()));
  const std::string model = row.at("model"), data = row.at("data");
  const std::int64_t seqlen = row.at("seqlen");
  const std::int64_t max_windows = row.at("max_windows").is_null() ? 0 : row.at("max_windows").get<std::int64_t>();
  SCOPED_TRACE(model + " on " + data + " seqlen " + std::to_string(seqlen));
  std::filesystem::path text = shared_file(data);
  const bool whole = std::filesystem::exists(text);
  if (!whole) {
    text = shared_file(std::filesystem::path(data).replace_extension().string() + "-head.txt");
    if (max_windows == 0 || !std::filesystem::exists(text)) RPTQ_REQUIRE_SHARED_FILE(data);
  }
  auto tok = rptq::Tokenizer::load(shared_file(model));
  const auto ids = tok->encode(rptq::test::read_file(text), true);
  if (whole)
    EXPECT_EQ(static_cast<std::int64_t>(ids.size()), row.at("tokens_in_file").get<std::int64_t>());
  else
    ASSERT_GE(static_cast<std::int64_t>(ids.size()), max_windows * seqlen) << text;
  rptq::PerplexityOptions po;
  po.seqlen = seqlen;
  po.max_windows = max_windows;
  po.batch = 4;
  const auto r = rptq::perplexity(*rptq::Model::load(shared_file(model)), ids, po);
  EXPECT_EQ(r.windows, row.at("windows").get<std::int64_t>());
  const double want = row.at("ppl");
  EXPECT_NEAR(r.ppl, want, 1e-4 * want);
}

INSTANTIATE_TEST_SUITE_P(ModelReference, PerplexityRow, ::testing::Range(0, kPerplexityRowCount),
                         [](const auto& info) { return std::string(kPerplexityRows[info.param]); });

}  // namespace
