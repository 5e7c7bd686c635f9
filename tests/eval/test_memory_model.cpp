// The memory model: weights, KV cache and activation bytes, checked against formulas written out by hand, against
// the published OPT configs, and against the parameter count of real loaded models.
#include <algorithm>
#include <cstdint>
#include <functional>

#include "rptq/base/error.h"
#include "rptq/eval/memory_model.h"
#include "rptq/model/model.h"
#include "test_support.h"

namespace {

using rptq::estimate_memory;
using rptq::MemoryEstimate;
using rptq::ModelConfig;
using rptq::QuantConfig;
using u64 = std::uint64_t;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const rptq::InputError& e) {
    return e.what();
  }
  return "";
}

// Every field ModelConfig::parse fills.
void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.hidden, b.hidden);
  EXPECT_EQ(a.intermediate, b.intermediate);
  EXPECT_EQ(a.layers, b.layers);
  EXPECT_EQ(a.heads, b.heads);
  EXPECT_EQ(a.kv_heads, b.kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab, b.vocab);
  EXPECT_EQ(a.max_positions, b.max_positions);
  EXPECT_FLOAT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.pre_layer_norm, b.pre_layer_norm);
  EXPECT_EQ(a.final_layer_norm, b.final_layer_norm);
  EXPECT_EQ(a.embed_dim, b.embed_dim);
  EXPECT_EQ(a.linear_bias, b.linear_bias);
  EXPECT_EQ(a.norm_affine, b.norm_affine);
  EXPECT_EQ(a.activation, b.activation);
  EXPECT_FLOAT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.o_bias, b.o_bias);
  EXPECT_EQ(a.mlp_bias, b.mlp_bias);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(a.bos_token, b.bos_token);
  EXPECT_EQ(a.eos_token, b.eos_token);
  EXPECT_EQ(a.pad_token, b.pad_token);
}

void expect_sums(const MemoryEstimate& e) {
  EXPECT_EQ(e.weights_bytes, e.linear_weight_bytes + e.linear_param_bytes + e.fp_weight_bytes);
  EXPECT_EQ(e.kv_cache_bytes, e.kv_data_bytes + e.kv_param_bytes);
  EXPECT_EQ(e.kv_data_bytes, e.kv_bytes_per_token * static_cast<u64>(e.batch * e.seqlen));
  EXPECT_EQ(e.activation_bytes, e.residual_bytes + std::max(e.attention_bytes, e.ffn_bytes));
  EXPECT_EQ(e.total_bytes, e.weights_bytes + e.kv_cache_bytes + e.activation_bytes);
}

// OPT-125m written out: d = 768, ffn f = 3072, L = 12 layers, 12 heads of 64, vocab 50272, 2048 + 2 positions.
constexpr u64 d = 768, f = 3072, L = 12, H = 12, V = 50272, P = 2050;
// FP16 parameters: token embedding, positions, per layer two LayerNorms (gamma + beta) and the biases of
// q, k, v, o (d each), fc1 (f), fc2 (d); the final LayerNorm. The head is tied.
constexpr u64 kFpParams = V * d + P * d + L * (2 * 2 * d + 4 * d + f + d) + 2 * d;
// Linear weights per layer: q, k, v, o [d, d]; fc1 [f, d]; fc2 [d, f].
constexpr u64 kLinear = L * (4 * d * d + 2 * f * d);
// W4 groups per (row, input cluster): q/k/v rows d x R1 32; o rows d x (12 heads x R3 4); fc1 rows f x R4 32;
// fc2 rows d x R5 32. Each group has an FP16 scale and an FP16 zero point: 4 bytes.
constexpr u64 kW4Params = L * (3 * d * 32 + d * (H * 4) + f * 32 + d * 32) * 4;

TEST(MemoryModel, Opt125mW16A16ByHand) {
  const auto e = estimate_memory(rptq::opt_arch("opt-125m"), QuantConfig::preset("W16A16"), 2, 16);
  const u64 T = 2 * 16;
  EXPECT_EQ(kFpParams, 125239296u - kLinear);  // OPT-125m has 125,239,296 parameters in all
  EXPECT_EQ(e.fp_weight_bytes, kFpParams * 2);
  EXPECT_EQ(e.linear_weight_bytes, kLinear * 2);
  EXPECT_EQ(e.linear_param_bytes, 0u);
  EXPECT_EQ(e.weights_bytes, 125239296u * 2);
  // KV: 2 (K, V) x L x d x FP16 per token.
  EXPECT_EQ(e.kv_bytes_per_token, 2 * L * d * 2);
  EXPECT_EQ(e.kv_cache_bytes, 2 * L * d * T * 2);
  EXPECT_EQ(e.kv_param_bytes, 0u);
  // Activations: residual T x d FP16 + max(q, k, v: 3 x T x d FP16; FFN hidden T x f FP16).
  EXPECT_EQ(e.residual_bytes, T * d * 2);
  EXPECT_EQ(e.attention_bytes, 3 * T * d * 2);
  EXPECT_EQ(e.ffn_bytes, T * f * 2);
  EXPECT_EQ(e.activation_bytes, T * d * 2 + T * f * 2);
  EXPECT_EQ(e.total_bytes, 125239296u * 2 + 2 * L * d * T * 2 + T * d * 2 + T * f * 2);
  EXPECT_EQ(e.wbits, 16);
  EXPECT_EQ(e.kv_bits, 16);
  EXPECT_EQ(e.preset, "W16A16");
  expect_sums(e);
}

TEST(MemoryModel, Opt125mW4A16ByHand) {
  const auto e = estimate_memory(rptq::opt_arch("opt-125m"), QuantConfig::preset("W4A16"), 2, 16);
  const u64 T = 2 * 16;
  EXPECT_EQ(e.linear_weight_bytes, kLinear / 2);  // 4 bits per weight
  EXPECT_EQ(kW4Params, 11206656u);
  EXPECT_EQ(e.linear_param_bytes, kW4Params);
  EXPECT_EQ(e.fp_weight_bytes, kFpParams * 2);
  EXPECT_EQ(e.weights_bytes, kLinear / 2 + kW4Params + kFpParams * 2);
  // Activations and KV cache stay FP16.
  EXPECT_EQ(e.kv_cache_bytes, 2 * L * d * T * 2);
  EXPECT_EQ(e.activation_bytes, T * d * 2 + T * f * 2);
  EXPECT_EQ(e.wbits, 4);
  expect_sums(e);
}

// Weight-bit overrides (mixed precision): layers 0-2's fc2 at 8 bits, layer 11's q/k/v in FP16; the rest 4-bit.
TEST(MemoryModel, Opt125mWeightBitOverridesByHand) {
  QuantConfig q = QuantConfig::preset("W4A16");
  q.overrides.push_back(rptq::parse_override("layers=0-2,ffn_hidden:wbits=8"));
  q.overrides.push_back(rptq::parse_override("layers=11,attn_input:wbits=16"));
  const auto e = estimate_memory(rptq::opt_arch("opt-125m"), q, 2, 16);
  // fc2 is [d, f]; q, k, v are [d, d]: 3 fc2 gain 4 bits per weight, 3 [d, d] go from 4 bits to 16 and lose their
  // group parameters (R1 = 32 groups per row).
  EXPECT_EQ(e.linear_weight_bytes, kLinear / 2 + 3 * d * f / 2 + 3 * d * d * 3 / 2);
  EXPECT_EQ(e.linear_param_bytes, kW4Params - 3 * d * 32 * 4);
  expect_sums(e);
  // Without an override the estimate is the preset's.
  EXPECT_EQ(estimate_memory(rptq::opt_arch("opt-125m"), QuantConfig::preset("W4A16"), 2, 16).linear_weight_bytes,
            kLinear / 2);
}

TEST(MemoryModel, Opt125mW4A4ByHand) {
  const auto e = estimate_memory(rptq::opt_arch("opt-125m"), QuantConfig::preset("W4A4"), 3, 10);
  const u64 T = 3 * 10;
  EXPECT_EQ(e.weights_bytes, kLinear / 2 + kW4Params + kFpParams * 2);
  // K and V at 4 bits: 2 x L x d / 2 bytes per token; static params: L x 12 heads x (R2 4 + R3 4) x 4 bytes.
  EXPECT_EQ(e.kv_bytes_per_token, 2 * L * d / 2);
  EXPECT_EQ(e.kv_data_bytes, 2 * L * d * T / 2);
  EXPECT_EQ(e.kv_param_bytes, L * H * (4 + 4) * 4);
  EXPECT_EQ(e.kv_cache_bytes, 2 * L * d * T / 2 + L * H * 8 * 4);
  // Residual FP16; q, k, v at 4 bits (3 x T x d / 2) vs FFN hidden at 4 bits (T x f / 2): the FFN is larger.
  EXPECT_EQ(e.residual_bytes, T * d * 2);
  EXPECT_EQ(e.attention_bytes, 3 * T * d / 2);
  EXPECT_EQ(e.ffn_bytes, T * f / 2);
  EXPECT_EQ(e.activation_bytes, T * d * 2 + T * f / 2);
  EXPECT_EQ(e.kv_bits, 4);
  expect_sums(e);
}

// Activation-bit overrides (mixed precision): one layer's q or FFN hidden at more bits makes that layer the widest;
// activation_bytes is one layer's peak, so it is the largest layer's, not a sum over layers.
TEST(MemoryModel, Opt125mActivationBitOverridesByHand) {
  const auto model = rptq::opt_arch("opt-125m");
  const u64 T = 3 * 10;
  QuantConfig q = QuantConfig::preset("W4A4");
  const auto base = estimate_memory(model, q, 3, 10);
  // Layer 2's q in FP16: its q, k, v are T x (16 d + 4 d + 4 d) / 8 = 3 T d bytes, above the FFN's T f / 2.
  q.overrides.push_back(rptq::parse_override("layers=2,q:abits=16"));
  auto e = estimate_memory(model, q, 3, 10);
  EXPECT_EQ(e.attention_bytes, T * (16 * d + 8 * d) / 8);
  EXPECT_EQ(e.ffn_bytes, T * f / 2);
  EXPECT_EQ(e.activation_bytes, T * d * 2 + T * (16 * d + 8 * d) / 8);
  EXPECT_EQ(e.weights_bytes, base.weights_bytes);    // activation bits change no weight
  EXPECT_EQ(e.kv_cache_bytes, base.kv_cache_bytes);  // nor the KV cache
  expect_sums(e);
  // Layers 5 and 7's FFN hidden at 8 bits: T f bytes, now the widest; two layers at 8 bits cost what one does.
  q.overrides.push_back(rptq::parse_override("layers=5+7,ffn_hidden:abits=8"));
  e = estimate_memory(model, q, 3, 10);
  EXPECT_EQ(e.ffn_bytes, T * f);
  EXPECT_EQ(e.activation_bytes, T * d * 2 + T * f);
  expect_sums(e);
  // Taps the model leaves out (the norm outputs, the attention output) change nothing.
  QuantConfig n = QuantConfig::preset("W4A4");
  n.overrides.push_back(rptq::parse_override("attn_input,attn_output,ffn_input:abits=16"));
  EXPECT_EQ(estimate_memory(model, n, 3, 10).total_bytes, base.total_bytes);
  // An override to fewer bits in one layer leaves the peak at the other layers'.
  QuantConfig fewer = QuantConfig::preset("W4A8");
  fewer.overrides.push_back(rptq::parse_override("layers=0,ffn_hidden:abits=4"));
  EXPECT_EQ(estimate_memory(model, fewer, 3, 10).ffn_bytes, T * f);
}

TEST(MemoryModel, OddBitWidthsRoundRowsToBytes) {
  // W3A3KV: weights 3-bit (matrix sizes are multiples of 8 bits here), K and V 3-bit: 768 x 3 / 8 = 288 bytes/row.
  const auto e = estimate_memory(rptq::opt_arch("opt-125m"), QuantConfig::preset("W3A3KV"), 1, 7);
  EXPECT_EQ(e.linear_weight_bytes, kLinear * 3 / 8);
  EXPECT_EQ(e.kv_bytes_per_token, L * 2 * 288);
  EXPECT_EQ(e.activation_bytes, 7 * d * 2 + 7 * f * 2);  // only K and V are quantized, the rest FP16
  // A row of 36 channels at 3 bits is 108 bits: 14 bytes (rounded up), K and V each.
  ModelConfig c = rptq::opt_arch("opt-125m");
  c.hidden = 36;
  c.heads = 3;
  c.kv_heads = 3;
  c.head_dim = 12;
  c.embed_dim = 36;
  c.layers = 2;
  const auto s = estimate_memory(c, QuantConfig::preset("W4A3KV"), 1, 5);
  EXPECT_EQ(s.kv_bytes_per_token, 2u * (14 + 14));
  expect_sums(s);
}

TEST(MemoryModel, GroupsAreCappedAndFixedGroupsCount) {
  QuantConfig q = QuantConfig::preset("W4A16");
  q.clusters = {1000, 4, 100, 1, 5000};  // R1 > 768 channels, R3 > 64 per head, R5 > 3072
  const auto capped = estimate_memory(rptq::opt_arch("opt-125m"), q, 1, 1);
  EXPECT_EQ(capped.linear_param_bytes, L * (3 * d * d + d * (H * 64) + f * 1 + d * f) * 4);
  q = QuantConfig::preset("W4A16");
  q.weight_group = 128;  // fixed groups: 768 / 128 = 6, 3072 / 128 = 24 per row
  const auto fixed = estimate_memory(rptq::opt_arch("opt-125m"), q, 1, 1);
  EXPECT_EQ(fixed.linear_param_bytes, L * (3 * d * 6 + d * 6 + f * 6 + d * 24) * 4);
}

TEST(MemoryModel, Opt66bHeadline) {
  // The paper: OPT-66b at batch 64, sequence 8192. FP16 KV = 2 x 64 layers x 9216 x 64 x 8192 x 2 = 1.237e12.
  const ModelConfig m = rptq::opt_arch("opt-66b");
  const auto w16 = estimate_memory(m, QuantConfig::preset("W4A16"), 64, 8192);
  const auto w4 = estimate_memory(m, QuantConfig::preset("W4A4"), 64, 8192);
  const u64 fp_kv = 2ull * 64 * 9216 * 64 * 8192 * 2;
  EXPECT_EQ(fp_kv, 1236950581248ull);
  EXPECT_EQ(w16.kv_cache_bytes, fp_kv);
  EXPECT_NEAR(w16.kv_cache_bytes / 1e9, 1237.0, 0.5);
  EXPECT_EQ(w4.kv_data_bytes, fp_kv / 4);
  EXPECT_EQ(w4.kv_param_bytes, 64u * 72 * (4 + 4) * 4);
  EXPECT_NEAR(w4.kv_cache_bytes / 1e9, 309.2, 0.1);
  // Weights are the same; the activations shrink too; the total saving is over 900 GB.
  EXPECT_EQ(w16.weights_bytes, w4.weights_bytes);
  EXPECT_LT(w4.activation_bytes, w16.activation_bytes);
  EXPECT_GT(w16.total_bytes - w4.total_bytes, 900'000'000'000ull);
  // Residual 524288 tokens x 9216 x 2; FFN hidden 524288 x 36864 x (2 | 0.5); q/k/v 3 x 524288 x 9216 x 0.5.
  const u64 T = 64 * 8192;
  EXPECT_EQ(w16.activation_bytes, T * 9216 * 2 + T * 36864 * 2);
  EXPECT_EQ(w4.activation_bytes, T * 9216 * 2 + std::max(T * 36864 / 2, 3 * T * 9216 / 2));
  // W16A16 weights: about 66 billion FP16 parameters.
  const auto fp = estimate_memory(m, QuantConfig::preset("W16A16"), 1, 1);
  EXPECT_NEAR(fp.weights_bytes / 2 / 1e9, 65.7, 0.3);
}

TEST(MemoryModel, OptArchMatchesPublishedConfigs) {
  const ModelConfig c125 = ModelConfig::parse(R"({"_name_or_path": "facebook/opt-125m", "activation_dropout": 0.0,
    "activation_function": "relu", "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2,
    "do_layer_norm_before": true, "dropout": 0.1, "eos_token_id": 2, "ffn_dim": 3072, "hidden_size": 768,
    "init_std": 0.02, "layerdrop": 0.0, "max_position_embeddings": 2048, "model_type": "opt",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1, "prefix": "</s>",
    "torch_dtype": "float16", "use_cache": true, "vocab_size": 50272, "word_embed_proj_dim": 768})",
                                                "opt-125m/config.json");
  expect_same_config(rptq::opt_arch("opt-125m"), c125);
  const ModelConfig c350 = ModelConfig::parse(R"({"_name_or_path": "facebook/opt-350m", "activation_dropout": 0.0,
    "activation_function": "relu", "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2,
    "do_layer_norm_before": false, "dropout": 0.1, "eos_token_id": 2, "ffn_dim": 4096, "hidden_size": 1024,
    "init_std": 0.02, "layerdrop": 0.0, "max_position_embeddings": 2048, "model_type": "opt",
    "num_attention_heads": 16, "num_hidden_layers": 24, "pad_token_id": 1, "prefix": "</s>",
    "torch_dtype": "float16", "use_cache": true, "vocab_size": 50272, "word_embed_proj_dim": 512})",
                                                "opt-350m/config.json");
  expect_same_config(rptq::opt_arch("OPT-350M"), c350);
  const ModelConfig c66 = ModelConfig::parse(R"({"activation_function": "relu", "bos_token_id": 2,
    "do_layer_norm_before": true, "eos_token_id": 2, "ffn_dim": 36864, "hidden_size": 9216,
    "max_position_embeddings": 2048, "model_type": "opt", "num_attention_heads": 72, "num_hidden_layers": 64,
    "pad_token_id": 1, "vocab_size": 50272, "word_embed_proj_dim": 9216})",
                                               "opt-66b/config.json");
  expect_same_config(rptq::opt_arch("facebook/opt-66b"), c66);

  // The shapes of all nine, and their parameter counts (W16A16 weights / 2) near the names.
  struct Shape {
    const char* name;
    std::int64_t layers, hidden, heads, ffn;
    double billions;
  };
  const Shape shapes[] = {{"opt-125m", 12, 768, 12, 3072, 0.125},     {"opt-350m", 24, 1024, 16, 4096, 0.331},
                          {"opt-1.3b", 24, 2048, 32, 8192, 1.316},    {"opt-2.7b", 32, 2560, 32, 10240, 2.652},
                          {"opt-6.7b", 32, 4096, 32, 16384, 6.658},   {"opt-13b", 40, 5120, 40, 20480, 12.853},
                          {"opt-30b", 48, 7168, 56, 28672, 29.975},   {"opt-66b", 64, 9216, 72, 36864, 65.7},
                          {"opt-175b", 96, 12288, 96, 49152, 174.6}};
  ASSERT_EQ(rptq::opt_arch_names().size(), 9u);
  for (const Shape& s : shapes) {
    const ModelConfig c = rptq::opt_arch(s.name);
    EXPECT_EQ(c.layers, s.layers) << s.name;
    EXPECT_EQ(c.hidden, s.hidden) << s.name;
    EXPECT_EQ(c.heads, s.heads) << s.name;
    EXPECT_EQ(c.intermediate, s.ffn) << s.name;
    EXPECT_EQ(c.vocab, 50272) << s.name;
    EXPECT_EQ(c.max_positions, 2048) << s.name;
    const double params = estimate_memory(c, QuantConfig::preset("W16A16"), 1, 1).weights_bytes / 2.0 / 1e9;
    EXPECT_NEAR(params, s.billions, s.billions * 0.01) << s.name;
  }
  const std::string err = error_of([] { rptq::opt_arch("opt-7b"); });
  EXPECT_NE(err.find("opt-7b"), std::string::npos) << err;
  EXPECT_NE(err.find("opt-125m"), std::string::npos) << err;
  EXPECT_NE(err.find("opt-175b"), std::string::npos) << err;
}

TEST(MemoryModel, BadInputThrows) {
  const ModelConfig m = rptq::opt_arch("opt-125m");
  const QuantConfig q = QuantConfig::preset("W4A4");
  EXPECT_NE(error_of([&] { estimate_memory(m, q, 0, 16); }).find("batch"), std::string::npos);
  EXPECT_NE(error_of([&] { estimate_memory(m, q, 1, -3); }).find("-3"), std::string::npos);
  EXPECT_NE(error_of([&] { estimate_memory(m, q, std::int64_t{1} << 40, std::int64_t{1} << 40); }).find("overflow"),
            std::string::npos);
  QuantConfig bad = q;
  bad.wbits = 1;
  EXPECT_FALSE(error_of([&] { estimate_memory(m, bad, 1, 1); }).empty());
  EXPECT_FALSE(error_of([&] { estimate_memory(ModelConfig{}, q, 1, 1); }).empty());
}

// A real model folder: the estimate from its config.json is the hand formula, and its FP16 weights are exactly
// 2 bytes per parameter of the loaded model.
TEST(MemoryModel, TinyOptFolder) {
  const auto dir = rptq::test::shared_model("tiny-opt-16m");
  const ModelConfig c = ModelConfig::load(dir);
  // 4 layers, hidden 256, ffn 1024, 4 heads of 64, vocab 50272, 512 + 2 positions, tied head, biases.
  const u64 l = 4, h = 256, ff = 1024, nh = 4, T = 3 * 20;
  const u64 fp = 50272 * h + 514 * h + l * (2 * 2 * h + 4 * h + ff + h) + 2 * h;
  const u64 lin = l * (4 * h * h + 2 * ff * h);
  const auto w16 = estimate_memory(c, QuantConfig::preset("W16A16"), 3, 20);
  EXPECT_EQ(w16.weights_bytes, (fp + lin) * 2);
  EXPECT_EQ(w16.kv_cache_bytes, 2 * l * h * T * 2);
  EXPECT_EQ(w16.activation_bytes, T * h * 2 + T * ff * 2);
  const auto w4 = estimate_memory(c, QuantConfig::preset("W4A4"), 3, 20);
  EXPECT_EQ(w4.weights_bytes, lin / 2 + l * (3 * h * 32 + h * nh * 4 + ff * 32 + h * 32) * 4 + fp * 2);
  EXPECT_EQ(w4.kv_cache_bytes, 2 * l * h * T / 2 + l * nh * 8 * 4);
  EXPECT_EQ(w4.activation_bytes, T * h * 2 + std::max(T * ff / 2, 3 * T * h / 2));
  const auto model = rptq::Model::load(dir);
  EXPECT_EQ(w16.weights_bytes, static_cast<u64>(model->parameter_count()) * 2);
}

TEST(MemoryModel, Stories260kFolder) {
  const auto dir = rptq::test::shared_model("stories260k");
  const ModelConfig c = ModelConfig::load(dir);
  // LLaMA: 5 layers, hidden 64, FFN 172, 8 heads and 4 KV heads of 8 (q_dim 64, kv_dim 32), vocab 512, tied head,
  // RMSNorm (gamma only), no biases.
  const u64 l = 5, h = 64, ff = 172, kv = 32, T = 2 * 9;
  const u64 fp = 512 * h + h + l * 2 * h;
  const u64 lin = l * (h * h + 2 * kv * h + h * h + 3 * ff * h);  // q, k, v, o, gate, up, down
  const auto w16 = estimate_memory(c, QuantConfig::preset("W16A16"), 2, 9);
  EXPECT_EQ(w16.weights_bytes, (fp + lin) * 2);
  EXPECT_EQ(w16.kv_cache_bytes, 2 * l * kv * T * 2);
  EXPECT_EQ(w16.attention_bytes, T * (h + 2 * kv) * 2);
  EXPECT_EQ(w16.activation_bytes, T * h * 2 + T * ff * 2);
  // W4A4: groups q (64 rows) k, v (32 rows) x R1 32; o 64 rows x 8 heads x 4; gate, up 172 x R4 32;
  // down 64 x min(R5 32, 172). K/V params: per KV head, R2 and R3 clusters 4 each (capped at head_dim 8).
  const auto w4 = estimate_memory(c, QuantConfig::preset("W4A4"), 2, 9);
  EXPECT_EQ(w4.linear_weight_bytes, lin / 2);
  EXPECT_EQ(w4.linear_param_bytes, l * ((h + 2 * kv) * 32 + h * 8 * 4 + 2 * ff * 32 + h * 32) * 4);
  EXPECT_EQ(w4.kv_cache_bytes, 2 * l * kv * T / 2 + l * 4 * (4 + 4) * 4);
  EXPECT_EQ(w4.activation_bytes, T * h * 2 + std::max(T * ff / 2, T * (h + 2 * kv) / 2));
  const auto model = rptq::Model::load(dir);
  EXPECT_EQ(w16.weights_bytes, static_cast<u64>(model->parameter_count()) * 2);
}

}  // namespace
