// Properties of the forward pass that hold for any weights: batching, the KV cache, hooks.
#include <cmath>
#include <cstring>

#include "rptq/base/error.h"
#include "rptq/eval/generate.h"
#include "rptq/model/model.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::test::shared_model;

using rptq::test::some_ids;

float max_diff(const float* a, const float* b, std::int64_t n) {
  float e = 0;
  for (std::int64_t i = 0; i < n; ++i) e = std::max(e, std::abs(a[i] - b[i]));
  return e;
}

class ForwardTest : public ::testing::TestWithParam<const char*> {};

// A batch of sequences gives each sequence's logits as when run alone.
TEST_P(ForwardTest, BatchEqualsSeparateSequences) {
  auto m = rptq::Model::load(shared_model(GetParam()));
  const std::int64_t T = 100, V = m->config().vocab;
  auto a = some_ids(T, static_cast<std::int32_t>(V), 1), b = some_ids(T, static_cast<std::int32_t>(V), 2);
  std::vector<std::int32_t> both(a);
  both.insert(both.end(), b.begin(), b.end());
  rptq::Tensor lab = m->forward(both, 2), la = m->forward(a, 1), lb = m->forward(b, 1);
  EXPECT_LT(max_diff(lab.data(), la.data(), T * V), 1e-4f);
  EXPECT_LT(max_diff(lab.data() + T * V, lb.data(), T * V), 1e-4f);
}

// forward() into a kept logits buffer gives exactly the logits of the allocating forward(), also when the buffer
// is reused for a shorter and then a longer sequence, and last_only reuses it for one row.
TEST_P(ForwardTest, ForwardIntoKeptBufferMatches) {
  auto m = rptq::Model::load(shared_model(GetParam()));
  const std::int64_t V = m->config().vocab;
  auto a = some_ids(90, static_cast<std::int32_t>(V), 11), b = some_ids(40, static_cast<std::int32_t>(V), 12);
  rptq::Tensor kept;
  for (const auto* ids : {&a, &b, &a}) {
    const rptq::Tensor fresh = m->forward(*ids, 1);
    m->forward(*ids, 1, kept);
    ASSERT_EQ(kept.shape(), fresh.shape());
    EXPECT_EQ(std::memcmp(kept.data(), fresh.data(), static_cast<std::size_t>(fresh.numel()) * 4), 0);
  }
  m->forward(a, 1, kept, nullptr, nullptr, /*last_only=*/true);
  ASSERT_EQ(kept.shape(), (std::vector<std::int64_t>{1, V}));
  const rptq::Tensor full = m->forward(a, 1);
  // One row through the head GEMM rounds differently from 90 rows (another kernel path): close, not identical.
  EXPECT_LT(max_diff(kept.data(), full.data() + 89 * V, V), 1e-5f);
}

// Feeding tokens one by one through the KV cache gives the logits of the full causal pass.
TEST_P(ForwardTest, KvCacheMatchesFullPass) {
  auto m = rptq::Model::load(shared_model(GetParam()));
  const std::int64_t T = 70, V = m->config().vocab;
  auto ids = some_ids(T, static_cast<std::int32_t>(V), 3);
  rptq::Tensor full = m->forward(ids, 1);
  rptq::KvCache cache(m->config(), 1, T);
  // A prompt of 50 tokens, then 20 single steps.
  rptq::Tensor first = m->forward(std::span(ids).first(50), 1, &cache);
  EXPECT_LT(max_diff(first.data(), full.data(), 50 * V), 1e-4f);
  for (std::int64_t t = 50; t < T; ++t) {
    rptq::Tensor step = m->forward(std::span(ids).subspan(static_cast<std::size_t>(t), 1), 1, &cache);
    EXPECT_LT(max_diff(step.data(), full.data() + t * V, V), 1e-4f) << "position " << t;
  }
  EXPECT_EQ(cache.length(), T);
  EXPECT_EQ(cache.bytes(), static_cast<std::size_t>(2 * m->config().layers * T * m->config().kv_dim() * 4));
}

// Every tap of every layer reaches the hook once with the documented width, and a hook that changes an
// activation changes the output.
class CountingHook : public rptq::ActivationHook {
 public:
  std::map<std::pair<int, int>, std::pair<std::int64_t, std::int64_t>> seen;
  bool zero_ffn = false;
  void on_activation(int layer, rptq::Tap tap, const rptq::ActivationView& a) override {
    seen[{layer, static_cast<int>(tap)}] = {a.rows, a.cols};
    if (zero_ffn && tap == rptq::Tap::FfnHidden)
      for (std::int64_t r = 0; r < a.rows; ++r) std::memset(a.row(r), 0, static_cast<std::size_t>(a.cols) * 4);
  }
};

std::pair<int, int> key(int l, rptq::Tap t) { return {l, static_cast<int>(t)}; }

TEST_P(ForwardTest, HookSeesEveryTap) {
  auto m = rptq::Model::load(shared_model(GetParam()));
  const auto& c = m->config();
  auto ids = some_ids(16, static_cast<std::int32_t>(c.vocab), 4);
  CountingHook hook;
  rptq::Tensor plain = m->forward(ids, 1);
  rptq::Tensor observed = m->forward(ids, 1, nullptr, &hook);
  EXPECT_EQ(std::memcmp(plain.data(), observed.data(), static_cast<std::size_t>(plain.numel()) * 4), 0);
  ASSERT_EQ(hook.seen.size(), static_cast<std::size_t>(c.layers * rptq::kTapCount));
  for (int l = 0; l < c.layers; ++l) {
    EXPECT_EQ(hook.seen[key(l, rptq::Tap::AttnInput)].second, c.hidden);
    EXPECT_EQ(hook.seen[key(l, rptq::Tap::Q)].second, c.q_dim());
    EXPECT_EQ(hook.seen[key(l, rptq::Tap::K)].second, c.kv_dim());
    EXPECT_EQ(hook.seen[key(l, rptq::Tap::V)].second, c.kv_dim());
    EXPECT_EQ(hook.seen[key(l, rptq::Tap::AttnOutput)].second, c.q_dim());
    EXPECT_EQ(hook.seen[key(l, rptq::Tap::FfnInput)].second, c.hidden);
    EXPECT_EQ(hook.seen[key(l, rptq::Tap::FfnHidden)].second, c.intermediate);
    EXPECT_EQ(hook.seen[key(l, rptq::Tap::FfnHidden)].first, 16);
  }
  hook.zero_ffn = true;
  rptq::Tensor changed = m->forward(ids, 1, nullptr, &hook);
  EXPECT_GT(max_diff(plain.data(), changed.data(), plain.numel()), 1e-3f);
}

// Greedy generation is deterministic and equals repeated argmax over full passes.
TEST_P(ForwardTest, GreedyGenerationMatchesArgmaxOfFullPasses) {
  auto m = rptq::Model::load(shared_model(GetParam()));
  const std::int64_t V = m->config().vocab;
  std::vector<std::int32_t> ids = some_ids(5, static_cast<std::int32_t>(V), 5);
  rptq::GenerateOptions go;
  go.max_new_tokens = 12;
  const auto r = rptq::generate(*m, ids, go);
  ASSERT_EQ(r.tokens.size(), 12u);
  for (auto t : r.tokens) {
    rptq::Tensor logits = m->forward(ids, 1, nullptr, nullptr, true);
    const auto best = static_cast<std::int32_t>(std::max_element(logits.data(), logits.data() + V) - logits.data());
    EXPECT_EQ(t, best);
    ids.push_back(t);
  }
  // Sampling with a seed reproduces itself.
  go.temperature = 0.8f;
  go.top_k = 20;
  go.seed = 7;
  EXPECT_EQ(rptq::generate(*m, ids, go).tokens, rptq::generate(*m, ids, go).tokens);
}

TEST_P(ForwardTest, BadTokenIdIsAnInputError) {
  auto m = rptq::Model::load(shared_model(GetParam()));
  std::vector<std::int32_t> ids{1, static_cast<std::int32_t>(m->config().vocab)};
  EXPECT_THROW(m->forward(ids, 1), rptq::InputError);
  std::vector<std::int32_t> odd{1, 2, 3};
  EXPECT_THROW(m->forward(odd, 2), rptq::InputError);
}

// Generation stops at the end of the model's context on every architecture, and a prompt longer than the context
// is an InputError; bad sampling options too.
TEST_P(ForwardTest, GenerationIsBoundedByTheContext) {
  auto m = rptq::Model::load(shared_model(GetParam()));
  const std::int64_t P = m->config().max_positions;
  const auto V = static_cast<std::int32_t>(m->config().vocab);
  rptq::GenerateOptions go;
  go.max_new_tokens = 1 << 20;
  const auto prompt = some_ids(P - 3, V, 9);
  EXPECT_EQ(rptq::generation_capacity(*m, prompt, go), P);
  go.stop_at_eos = false;
  EXPECT_EQ(rptq::generate(*m, prompt, go).tokens.size(), 4u);  // 3 positions left, plus the last token's logits
  const auto long_prompt = some_ids(P + 1, V, 9);
  try {
    rptq::generation_capacity(*m, long_prompt, go);
    ADD_FAILURE() << "a prompt longer than the context was accepted";
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("max_position_embeddings"), std::string::npos) << e.what();
  }
  for (float t : {std::nanf(""), INFINITY, -1.0f}) {
    go.temperature = t;
    EXPECT_THROW(rptq::generate(*m, some_ids(3, V, 1), go), rptq::InputError) << t;
  }
}

INSTANTIATE_TEST_SUITE_P(SharedModels, ForwardTest, ::testing::Values("stories260k", "tiny-opt-16m"));

// The Stories260K model greedily continues BOS with Karpathy's documented sample.
TEST(Stories260k, GreedySampleFromBos) {
  auto m = rptq::Model::load(shared_model("stories260k"));
  rptq::GenerateOptions go;
  go.max_new_tokens = 16;
  const std::vector<std::int32_t> bos{1};
  const auto r = rptq::generate(*m, bos, go);
  auto tok = rptq::Tokenizer::load(shared_model("stories260k"));
  EXPECT_EQ(tok->decode(r.tokens).rfind("Once upon a time, there was a little girl named Lily", 0), 0u)
      << tok->decode(r.tokens);
}

}  // namespace
