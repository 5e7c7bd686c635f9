// config.json parsing: the fields that decide how a model computes, and clear errors for what is unsupported.
#include "rptq/base/error.h"
#include "rptq/model/model_config.h"
#include "test_support.h"

namespace {

using rptq::ModelConfig;

ModelConfig parse(const std::string& json) { return ModelConfig::parse(json, "config.json"); }

std::string error_of(const std::string& json) {
  try {
    parse(json);
  } catch (const rptq::InputError& e) {
    return e.what();
  }
  return "";
}

const char* kLlama = R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
  "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512,
  "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "eos_token_id": [2, 3]})";

TEST(ModelConfig, LlamaFields) {
  const auto c = parse(kLlama);
  EXPECT_EQ(c.arch, rptq::Architecture::Llama);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.eos_token, 2);  // the first of a list
  EXPECT_EQ(c.sliding_window, 0);
}

TEST(ModelConfig, FamilyDifferencesAreConfig) {
  auto q = parse(R"({"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "sliding_window": 32,
    "use_sliding_window": false, "tie_word_embeddings": false})");
  EXPECT_TRUE(q.qkv_bias);
  EXPECT_FALSE(q.o_bias);
  EXPECT_EQ(q.sliding_window, 0);  // use_sliding_window false
  EXPECT_FALSE(q.tie_embeddings);
  auto m = parse(R"({"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
    "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 100, "sliding_window": 4096,
    "rope_theta": 1000000.0})");
  EXPECT_EQ(m.sliding_window, 4096);
  EXPECT_FLOAT_EQ(m.rope_theta, 1e6f);
  auto l = parse(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
    "num_attention_heads": 4, "vocab_size": 100, "attention_bias": true, "head_dim": 32,
    "rope_scaling": {"rope_type": "default"}})");
  EXPECT_TRUE(l.qkv_bias && l.o_bias);
  EXPECT_EQ(l.head_dim, 32);  // explicit head_dim wins over hidden / heads
  EXPECT_EQ(l.q_dim(), 128);
}

// transformers 5 writes the rotary settings as rope_parameters (SmolLM2-135M-Instruct saved by transformers 5.25:
// "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}, no top-level rope_theta or rope_scaling).
const char* kLlamaV5 = R"({"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
  "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
  "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "tie_word_embeddings": true, "bos_token_id": 1,
  "eos_token_id": 2, "pad_token_id": 2, "dtype": "float32", "transformers_version": "5.25.0",
  "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}})";

std::string with_rope(const std::string& rope) {
  std::string j = kLlamaV5;
  const std::string key = R"("rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"})";
  j.replace(j.find(key), key.size(), rope);
  return j;
}

TEST(ModelConfig, Transformers5RopeParameters) {
  EXPECT_FLOAT_EQ(parse(kLlamaV5).rope_theta, 100000.0f);  // was silently 10000
  // "type" as the older spelling of rope_type; rope_type omitted means default, as in transformers.
  EXPECT_FLOAT_EQ(parse(with_rope(R"("rope_parameters": {"rope_theta": 5e5, "type": "default"})")).rope_theta, 5e5f);
  EXPECT_FLOAT_EQ(parse(with_rope(R"("rope_parameters": {"rope_theta": 250000})")).rope_theta, 250000.0f);
  // Without a theta in rope_parameters, the top-level one, else 10000.
  EXPECT_FLOAT_EQ(parse(with_rope(R"("rope_parameters": {"rope_type": "default"}, "rope_theta": 40000)")).rope_theta,
                  40000.0f);
  EXPECT_FLOAT_EQ(parse(with_rope(R"("rope_parameters": {"rope_type": "default"})")).rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(parse(with_rope(R"("rope_parameters": null, "rope_theta": 40000)")).rope_theta, 40000.0f);
  // Both spellings agreeing, and with a default rope_scaling beside them: fine.
  EXPECT_FLOAT_EQ(parse(with_rope(R"("rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
    "rope_theta": 100000, "rope_scaling": {"rope_type": "default"})")).rope_theta, 100000.0f);
}

TEST(ModelConfig, Transformers5UnsupportedRopeTypeIsRefusedByName) {
  for (const char* type : {"llama3", "yarn", "linear", "dynamic", "longrope"}) {
    const std::string e = error_of(with_rope(std::string(R"("rope_parameters": {"rope_theta": 500000.0, "rope_type": ")") +
                                             type + R"(", "factor": 8.0})"));
    EXPECT_EQ(e.rfind("config.json: ", 0), 0u) << e;
    EXPECT_NE(e.find("rope_parameters"), std::string::npos) << e;
    EXPECT_NE(e.find(std::string("\"") + type + "\""), std::string::npos) << e;
  }
  // The older key name, too.
  EXPECT_NE(error_of(with_rope(R"("rope_parameters": {"rope_theta": 1e4, "type": "yarn"})")).find("yarn"),
            std::string::npos);
  // Per-layer-type parameters (Gemma 3 style) and partial rotary are not plain rotary embedding either.
  EXPECT_NE(error_of(with_rope(R"("rope_parameters": {"full_attention": {"rope_theta": 1e6, "rope_type": "default"}})"))
                .find("full_attention"),
            std::string::npos);
  EXPECT_NE(error_of(with_rope(R"("rope_parameters": {"rope_theta": 1e4, "partial_rotary_factor": 0.5})"))
                .find("partial_rotary_factor"),
            std::string::npos);
  // Malformed values name the field.
  EXPECT_NE(error_of(with_rope(R"("rope_parameters": [100000])")).find("rope_parameters"), std::string::npos);
  EXPECT_NE(error_of(with_rope(R"("rope_parameters": {"rope_theta": "1e5"})")).find("rope_theta"), std::string::npos);
  EXPECT_NE(error_of(with_rope(R"("rope_parameters": {"rope_theta": 0})")).find("rope_theta"), std::string::npos);
  EXPECT_NE(error_of(with_rope(R"("rope_theta": -1)")).find("rope_theta"), std::string::npos);
}

// A top-level rope_theta that disagrees with rope_parameters': transformers 4 would run the first and
// transformers 5 the second, so the config is refused with both values rather than guessed.
TEST(ModelConfig, ConflictingRopeThetaIsRefused) {
  const std::string e = error_of(with_rope(R"("rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
    "rope_theta": 10000.0)"));
  EXPECT_EQ(e.rfind("config.json: ", 0), 0u) << e;
  EXPECT_NE(e.find("100000"), std::string::npos) << e;
  EXPECT_NE(e.find("10000 "), std::string::npos) << e;
  EXPECT_NE(e.find("disagrees"), std::string::npos) << e;
}

TEST(ModelConfig, OptVariants) {
  auto c = parse(R"({"model_type": "opt", "hidden_size": 1024, "ffn_dim": 4096, "num_hidden_layers": 24,
    "num_attention_heads": 16, "vocab_size": 50272, "max_position_embeddings": 2048, "do_layer_norm_before": false,
    "word_embed_proj_dim": 512, "activation_function": "relu"})");
  EXPECT_EQ(c.arch, rptq::Architecture::OPT);
  EXPECT_FALSE(c.pre_layer_norm);
  EXPECT_FALSE(c.final_layer_norm);
  EXPECT_EQ(c.embed_dim, 512);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.arch_name(), "OPT (post-LayerNorm)");
}

TEST(ModelConfig, ClearErrors) {
  EXPECT_NE(error_of(R"({"model_type": "gpt_neox"})").find("gpt_neox"), std::string::npos);
  EXPECT_NE(error_of(R"({"hidden_size": 3})").find("model_type"), std::string::npos);
  EXPECT_NE(error_of("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("JSON object"), std::string::npos);
  std::string bad = kLlama;
  bad.replace(bad.find("\"num_key_value_heads\": 4"), 24, "\"num_key_value_heads\": 3");
  EXPECT_NE(error_of(bad).find("num_key_value_heads"), std::string::npos);
  bad = kLlama;
  bad.replace(bad.find("\"hidden_size\": 64"), 17, "\"hidden_size\": \"64\"");
  EXPECT_NE(error_of(bad).find("hidden_size"), std::string::npos);
  bad = kLlama;
  bad.replace(bad.find("\"vocab_size\": 512"), 17, "\"vocab_size\": -5");
  EXPECT_NE(error_of(bad).find("vocab_size"), std::string::npos);
  bad = kLlama;
  bad.insert(1, R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0}, )");
  const std::string e = error_of(bad);
  EXPECT_NE(e.find("rope_scaling"), std::string::npos) << e;
  EXPECT_NE(e.find("yarn"), std::string::npos) << e;
  bad = kLlama;
  bad.insert(1, R"("hidden_act": "gelu", )");
  EXPECT_NE(error_of(bad).find("hidden_act"), std::string::npos);
  // Every error names the file.
  EXPECT_EQ(error_of(R"({"model_type": "bert"})").rfind("config.json", 0), 0u);
}

// A norm epsilon or rotary base that is zero, negative, infinite, out of range or not a number is refused by key.
TEST(ModelConfig, BadEpsilonAndRopeThetaAreRefusedByKey) {
  const auto with = [](const std::string& key, const std::string& value) {
    std::string j = kLlama;
    const auto at = j.find("\"rms_norm_eps\": 1e-5");
    j.replace(at, std::string("\"rms_norm_eps\": 1e-5").size(), "\"" + key + "\": " + value);
    if (key != "rms_norm_eps") j.insert(1, "\"rms_norm_eps\": 1e-5, ");
    return j;
  };
  for (const std::string key : {"rms_norm_eps", "rope_theta"})
    for (const std::string v : {"-1e-5", "0", "-3", "\"1e-5\"", "true", "[1]", "1e30"}) {
      const std::string e = error_of(with(key, v));
      EXPECT_EQ(e.rfind("config.json: ", 0), 0u) << key << " = " << v << ": " << e;
      EXPECT_NE(e.find(key), std::string::npos) << key << " = " << v << ": " << e;
    }
  // NaN and Infinity are not JSON (Python's json module writes them), nor is a number beyond a double: refused as
  // invalid JSON, naming the file.
  for (const std::string v : {"NaN", "Infinity", "1e999", "-1e999"})
    EXPECT_EQ(error_of(with("rms_norm_eps", v)).rfind("config.json: not valid JSON", 0), 0u) << v;
  // OPT: transformers ignores layer_norm_eps, but a damaged one is still refused.
  const std::string opt = R"({"model_type": "opt", "hidden_size": 64, "ffn_dim": 256, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 512, "layer_norm_eps": )";
  for (const std::string v : {"-1", "0", "\"x\"", "2"}) {
    const std::string e = error_of(opt + v + "}");
    EXPECT_NE(e.find("layer_norm_eps"), std::string::npos) << v << ": " << e;
  }
  EXPECT_EQ(error_of(opt + "1e-5}"), "");
  // Token ids out of the int32 range are refused; -1 (some configs' pad_token_id) means none.
  std::string big = kLlama;
  big.insert(1, R"("bos_token_id": 99999999999, )");
  EXPECT_NE(error_of(big).find("bos_token_id"), std::string::npos);
  std::string none = kLlama;
  none.insert(1, R"("pad_token_id": -1, )");
  EXPECT_EQ(parse(none).pad_token, -1);
}

TEST(ModelConfig, MissingFolderNamesThePath) {
  try {
    ModelConfig::load("/nonexistent/model");
    FAIL();
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model"), std::string::npos);
  }
}

}  // namespace
