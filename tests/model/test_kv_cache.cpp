// The packed KV cache: K and V stored as 3- or 4-bit codes with per-cluster parameters.
#include <cmath>
#include <cstring>

#include "rptq/base/bitpack.h"
#include "rptq/method/calibration.h"
#include "rptq/base/error.h"
#include "rptq/eval/generate.h"
#include "rptq/method/quantize.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

// A model config with a small KV width: only kv_dim and layers matter to the cache.
rptq::ModelConfig small_config(std::int64_t kv_heads, std::int64_t head_dim, std::int64_t layers) {
  rptq::ModelConfig c;
  c.layers = layers;
  c.heads = kv_heads;
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.hidden = kv_heads * head_dim;
  return c;
}

std::shared_ptr<rptq::KvQuantization> grid(int bits, std::int64_t kv_dim, std::int64_t layers) {
  auto q = std::make_shared<rptq::KvQuantization>();
  for (std::int64_t l = 0; l < layers; ++l)
    for (auto* side : {&q->k, &q->v}) {
      rptq::KvSideQuantization s;
      s.bits = bits;
      s.boundaries = {0, kv_dim / 3, kv_dim};
      s.scale = {0.25f + 0.125f * static_cast<float>(l), 0.0625f};
      s.zero_point = {-1.0f, 3.0f};
      side->push_back(s);
    }
  return q;
}

// Values on the cluster grids go in and come out exactly, for 3 and 4 bits and a width that is not a multiple of 8;
// the allocation is the packed size.
TEST(KvCache, PackedRoundTripIsExact) {
  for (int bits : {3, 4}) {
    const std::int64_t kvd = 21, layers = 2, batch = 2, cap = 9;
    const rptq::ModelConfig cfg = small_config(3, 7, layers);
    auto q = grid(bits, kvd, layers);
    rptq::KvCache cache(cfg, batch, cap, q);
    ASSERT_TRUE(cache.packed());
    const std::size_t row = rptq::packed_bytes(kvd, bits);
    EXPECT_EQ(row, static_cast<std::size_t>((kvd * bits + 7) / 8));
    EXPECT_EQ(cache.bytes(), 2 * layers * batch * cap * row + 2 * layers * 2 * 2 * sizeof(float));
    EXPECT_EQ(cache.fp16_bytes(), static_cast<std::size_t>(2 * layers * batch * cap * kvd * 2));
    // Every code of the range, cycled through positions and channels.
    const std::int32_t lo = -(1 << (bits - 1)), levels = 1 << bits;
    auto value = [&](int layer, int side, std::int64_t b, std::int64_t t, std::int64_t c) {
      const auto& s = side ? q->v[layer] : q->k[layer];
      const int cl = c < s.boundaries[1] ? 0 : 1;
      const std::int32_t code = lo + static_cast<std::int32_t>((b * 7 + t * 3 + c + side + layer) % levels);
      return (static_cast<float>(code) - s.zero_point[cl]) * s.scale[cl];
    };
    for (int l = 0; l < layers; ++l) {
      // Two appends: 5 tokens, then 4.
      for (auto [past, seq] : {std::pair<std::int64_t, std::int64_t>{0, 5}, {5, 4}}) {
        std::vector<float> k(static_cast<std::size_t>(batch * seq * kvd)), v(k.size());
        for (std::int64_t b = 0; b < batch; ++b)
          for (std::int64_t t = 0; t < seq; ++t)
            for (std::int64_t c = 0; c < kvd; ++c) {
              k[(b * seq + t) * kvd + c] = value(l, 0, b, past + t, c);
              v[(b * seq + t) * kvd + c] = value(l, 1, b, past + t, c);
            }
        cache.store(l, k.data(), v.data(), seq, past);
      }
      std::vector<float> k(static_cast<std::size_t>(batch * cap * kvd)), v(k.size());
      cache.load(l, cap, k.data(), v.data());
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t t = 0; t < cap; ++t)
          for (std::int64_t c = 0; c < kvd; ++c) {
            ASSERT_EQ(k[(b * cap + t) * kvd + c], value(l, 0, b, t, c)) << bits << "-bit K " << b << "," << t << "," << c;
            ASSERT_EQ(v[(b * cap + t) * kvd + c], value(l, 1, b, t, c)) << bits << "-bit V " << b << "," << t << "," << c;
          }
    }
  }
}

TEST(KvCache, BadQuantizationIsRefused) {
  const rptq::ModelConfig cfg = small_config(2, 4, 2);
  auto q = grid(4, 8, 1);  // one layer for a two-layer model
  EXPECT_THROW(rptq::KvCache(cfg, 1, 4, q), rptq::InputError);
  q = grid(9, 8, 2);
  EXPECT_THROW(rptq::KvCache(cfg, 1, 4, q), rptq::InputError);
  q = grid(4, 8, 2);
  q->k[1].boundaries = {0, 7};
  EXPECT_THROW(rptq::KvCache(cfg, 1, 4, q), rptq::InputError);
}

class PackedGeneration : public ::testing::TestWithParam<const char*> {};

// Generation with the packed 4-/3-bit cache gives exactly the tokens and logits of generation with a float cache
// holding the same quantized values (the KV quantizers run either way); the cache is a fraction of FP16.
TEST_P(PackedGeneration, EqualsFloatCacheOfQuantizedValues) {
  const auto dir = rptq::test::shared_model(GetParam());
  auto tok = rptq::Tokenizer::load(dir);
  const auto ids = tok->encode(rptq::test::read_file(rptq::test::shared_file("data/stories.txt")), true);
  auto fp = rptq::Model::load(dir);
  rptq::CalibrationSettings cs;
  cs.samples = 2;
  cs.seqlen = 64;
  const rptq::ChannelStats stats = rptq::calibrate(*fp, dir.string(), ids, "", "", cs);
  for (const char* preset : {"W4A4KV", "W4A3KV"}) {
    SCOPED_TRACE(preset);
    rptq::QuantConfig qc = rptq::QuantConfig::preset(preset);
    qc.weight_method = rptq::WeightMethod::RTN;
    auto q = rptq::quantize(rptq::Model::load(dir), stats, qc);
    const auto prompt = std::span(ids).first(12);
    rptq::GenerateOptions go;
    go.max_new_tokens = 20;
    go.stop_at_eos = false;
    const rptq::GenerateResult plain = rptq::generate(q->model(), prompt, go, {}, q->hook());
    go.kv_quant = q->kv_quantization();
    ASSERT_TRUE(go.kv_quant);
    const rptq::GenerateResult packed = rptq::generate(q->model(), prompt, go, {}, q->hook());
    EXPECT_EQ(packed.tokens, plain.tokens);
    const int bits = qc.kv_bits();
    EXPECT_EQ(packed.kv_bits, bits);
    EXPECT_EQ(plain.kv_bits, 32);
    EXPECT_EQ(packed.kv_cache_fp16_bytes, plain.kv_cache_fp16_bytes);
    // Measured from the allocation: bits/16 of FP16 for the codes (kv_dim * bits is a whole number of bytes here),
    // plus one float scale and zero point per cluster, layer and side.
    std::size_t params = 0;
    for (const auto* side : {&go.kv_quant->k, &go.kv_quant->v})
      for (const auto& sq : *side) params += (sq.scale.size() + sq.zero_point.size()) * sizeof(float);
    EXPECT_EQ(packed.kv_cache_bytes, packed.kv_cache_fp16_bytes * static_cast<std::size_t>(bits) / 16 + params);

    // Logits, step by step, bit for bit.
    const rptq::ModelConfig& cfg = q->model().config();
    rptq::KvCache a(cfg, 1, 40), b(cfg, 1, 40, go.kv_quant);
    rptq::Tensor la = q->model().forward(prompt, 1, &a, q->hook(), true);
    rptq::Tensor lb = q->model().forward(prompt, 1, &b, q->hook(), true);
    for (int step = 0; step < 8; ++step) {
      ASSERT_EQ(std::memcmp(la.data(), lb.data(), static_cast<std::size_t>(la.numel()) * 4), 0) << "step " << step;
      const std::int32_t next = ids[static_cast<std::size_t>(12 + step)];
      la = q->model().forward(std::span(&next, 1), 1, &a, q->hook(), true);
      lb = q->model().forward(std::span(&next, 1), 1, &b, q->hook(), true);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SharedModels, PackedGeneration, ::testing::Values("stories260k", "tiny-opt-16m"));

}  // namespace
