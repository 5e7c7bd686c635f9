#include "rptq/model/model_config.h"

#include <algorithm>
#include <climits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "rptq/base/error.h"
#include "rptq/io/files.h"

namespace rptq {

namespace {

using json = nlohmann::json;

struct Reader {
  const json& j;
  const std::string& src;

  bool has(const char* key) const { return j.contains(key) && !j.at(key).is_null(); }

  std::int64_t integer(const char* key) const {
    if (!has(key)) throw InputError(src + ": missing field \"" + key + "\"");
    return integer_value(key);
  }
  std::int64_t integer(const char* key, std::int64_t fallback) const { return has(key) ? integer_value(key) : fallback; }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    if (!j.at(key).is_number()) throw InputError(src + ": field \"" + key + "\" must be a number");
    return j.at(key).get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j.at(key).is_boolean()) throw InputError(src + ": field \"" + key + "\" must be true or false");
    return j.at(key).get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j.at(key).is_string()) throw InputError(src + ": field \"" + key + "\" must be a string");
    return j.at(key).get<std::string>();
  }
  // Token ids may be an int or a list of ints (eos_token_id in newer configs); take the first.
  std::int32_t token(const char* key) const {
    if (!has(key)) return -1;
    const json* v = &j.at(key);
    if (v->is_array() && !v->empty()) v = &v->front();
    if (!v->is_number_integer()) throw InputError(src + ": field \"" + std::string(key) + "\" must be a token id");
    if (v->is_number_unsigned() ? v->get<std::uint64_t>() > std::uint64_t{INT32_MAX} : v->get<std::int64_t>() > INT32_MAX)
      throw InputError(src + ": field \"" + std::string(key) + "\" = " + v->dump() + " is not a token id");
    return static_cast<std::int32_t>(std::max<std::int64_t>(-1, v->get<std::int64_t>()));  // -1 (or less): none
  }

 private:
  std::int64_t integer_value(const char* key) const {
    const json& v = j.at(key);
    if (!v.is_number_integer()) throw InputError(src + ": field \"" + std::string(key) + "\" must be an integer");
    return v.get<std::int64_t>();
  }
};

// A number in the open interval (lo, hi), as a float; InputError naming the file and the key otherwise (also NaN).
float check_open_range(const std::string& src, const char* key, double v, double lo, double hi) {
  if (!(v > lo && v < hi)) {
    std::ostringstream msg;
    msg << src << ": " << key << " = " << v << " is outside the supported range (" << lo << ", " << hi << ")";
    throw InputError(msg.str());
  }
  return static_cast<float>(v);
}

float check_theta(const std::string& src, const char* what, double theta) {
  return check_open_range(src, what, theta, 1.0, 1e12);
}

// A normalization epsilon: a small positive number (transformers' configs: 1e-5, 1e-6). Zero, a negative value,
// infinity or an epsilon of 1 or more would make the norms divide by zero or swamp the variance.
float check_eps(const std::string& src, const char* key, double eps) { return check_open_range(src, key, eps, 0.0, 1.0); }

void require_positive(const std::string& src, const char* what, std::int64_t v, std::int64_t limit) {
  if (v <= 0 || v > limit)
    throw InputError(src + ": " + what + " = " + std::to_string(v) + " is outside the supported range 1.." +
                     std::to_string(limit));
}

// The rotary base of a LLaMA-family config. transformers 4 writes a top-level `rope_theta` (and `rope_scaling`);
// transformers 5 writes `rope_parameters: {"rope_theta": ..., "rope_type": "default"}` and no top-level key
// (SmolLM2 saved by transformers 5.25: "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}).
// transformers 5 takes rope_parameters' value over a top-level one; transformers 4 reads only the top level. A
// config where the two disagree runs differently under the two versions, so it is refused rather than guessed.
// Only plain rotary embedding is supported: another rope_type (llama3, yarn, linear, dynamic, ...) is refused.
float read_rope_theta(const json& j, const Reader& r, const std::string& src) {
  const double top = r.number("rope_theta", 10000.0);
  if (!r.has("rope_parameters")) return check_theta(src, "rope_theta", top);
  const json& rp = j.at("rope_parameters");
  if (!rp.is_object()) throw InputError(src + ": field \"rope_parameters\" must be an object");
  for (const auto& [key, value] : rp.items())
    if (value.is_object())  // {"full_attention": {...}, "sliding_attention": {...}}: Gemma-style, per layer type
      throw InputError(src + ": rope_parameters per layer type (\"" + key + "\") are not supported");
  std::string type = "default";
  for (const char* k : {"rope_type", "type"}) {
    if (!rp.contains(k) || rp.at(k).is_null()) continue;
    if (!rp.at(k).is_string()) throw InputError(src + ": rope_parameters " + k + " must be a string");
    type = rp.at(k).get<std::string>();
    break;
  }
  if (type != "default")
    throw InputError(src + ": rope_parameters rope_type \"" + type +
                     "\" is not supported (only \"default\", plain rotary embedding with rope_theta)");
  if (rp.contains("partial_rotary_factor") && !rp.at("partial_rotary_factor").is_null() &&
      !(rp.at("partial_rotary_factor").is_number() && rp.at("partial_rotary_factor").get<double>() == 1.0))
    throw InputError(src + ": rope_parameters partial_rotary_factor is not supported (rotary over the whole head)");
  if (!rp.contains("rope_theta") || rp.at("rope_theta").is_null()) return check_theta(src, "rope_theta", top);
  if (!rp.at("rope_theta").is_number()) throw InputError(src + ": rope_parameters rope_theta must be a number");
  const double theta = rp.at("rope_theta").get<double>();
  if (r.has("rope_theta") && static_cast<float>(top) != static_cast<float>(theta)) {
    std::ostringstream msg;
    msg << src << ": rope_theta " << top << " disagrees with rope_parameters rope_theta " << theta
        << " (transformers 4 would use the first, transformers 5 the second)";
    throw InputError(msg.str());
  }
  return check_theta(src, "rope_parameters rope_theta", theta);
}

}  // namespace

ModelConfig ModelConfig::load(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !std::filesystem::is_symlink(path, ec))
    throw InputError(path.string() + ": no such file (is " + model_dir.string() + " a Hugging Face model folder?)");
  // read_file refuses a FIFO or device without blocking on it; a config of more than 16 MiB is not a config.
  return parse(read_file(path, std::uint64_t{16} << 20), path.string());
}

ModelConfig ModelConfig::parse(const std::string& text, const std::string& src) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw InputError(src + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw InputError(src + ": expected a JSON object");
  // A checkpoint quantized by another tool (or our compressed-tensors export) has no float weights to read.
  if (const auto qc = j.find("quantization_config"); qc != j.end() && qc->is_object()) {
    const auto m = qc->find("quant_method");
    const std::string method = m != qc->end() && m->is_string() ? m->get<std::string>() : "not given";
    throw InputError(src + ": the weights are already quantized (quantization_config, quant_method " + method +
                     "); the workbench quantizes float checkpoints" +
                     (method == "compressed-tensors" ? "; serve this folder with vLLM or SGLang (docs/serving.md)" : ""));
  }
  Reader r{j, src};
  ModelConfig c;
  c.model_type = r.string("model_type", "");
  if (c.model_type.empty()) throw InputError(src + ": missing field \"model_type\"");

  if (c.model_type == "opt") {
    c.arch = Architecture::OPT;
    c.hidden = r.integer("hidden_size");
    c.intermediate = r.integer("ffn_dim");
    c.layers = r.integer("num_hidden_layers");
    c.heads = r.integer("num_attention_heads");
    c.kv_heads = c.heads;
    c.vocab = r.integer("vocab_size");
    c.max_positions = r.integer("max_position_embeddings", 2048);
    c.pre_layer_norm = r.boolean("do_layer_norm_before", true);
    c.final_layer_norm = c.pre_layer_norm && !r.boolean("_remove_final_layer_norm", false);
    c.embed_dim = r.integer("word_embed_proj_dim", c.hidden);
    c.linear_bias = r.boolean("enable_bias", true);
    c.norm_affine = r.boolean("layer_norm_elementwise_affine", true);
    c.activation = r.string("activation_function", "relu");
    c.tie_embeddings = r.boolean("tie_word_embeddings", true);
    c.norm_eps = 1e-5f;
    // transformers' OPT ignores layer_norm_eps (its LayerNorms use 1e-5); a value present must still be sane.
    if (r.has("layer_norm_eps")) check_eps(src, "layer_norm_eps", r.number("layer_norm_eps", 1e-5));
    if (c.activation != "relu" && c.activation != "gelu" && c.activation != "gelu_new")
      throw InputError(src + ": activation_function \"" + c.activation + "\" is not supported (relu, gelu, gelu_new)");
  } else if (c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2") {
    c.arch = Architecture::Llama;
    c.hidden = r.integer("hidden_size");
    c.intermediate = r.integer("intermediate_size");
    c.layers = r.integer("num_hidden_layers");
    c.heads = r.integer("num_attention_heads");
    c.kv_heads = r.integer("num_key_value_heads", c.heads);
    c.vocab = r.integer("vocab_size");
    c.max_positions = r.integer("max_position_embeddings", 2048);
    c.norm_eps = check_eps(src, "rms_norm_eps", r.number("rms_norm_eps", 1e-6));
    c.rope_theta = read_rope_theta(j, r, src);
    c.tie_embeddings = r.boolean("tie_word_embeddings", c.model_type == "qwen2" ? false : false);
    c.activation = r.string("hidden_act", "silu");
    if (c.activation != "silu")
      throw InputError(src + ": hidden_act \"" + c.activation + "\" is not supported (silu)");
    if (c.model_type == "qwen2") {
      c.qkv_bias = true;
      // Qwen2's sliding window applies to some layers only (max_window_layers) and differs between
      // implementations; no released Qwen2 enables it, so refuse rather than guess.
      if (r.boolean("use_sliding_window", false))
        throw InputError(src + ": use_sliding_window = true is not supported for qwen2");
    } else {
      c.qkv_bias = c.o_bias = r.boolean("attention_bias", false);
      c.mlp_bias = r.boolean("mlp_bias", false);
      if (c.model_type == "mistral") c.sliding_window = r.integer("sliding_window", 0);
    }
    if (r.has("rope_scaling")) {
      const json& rs = j.at("rope_scaling");
      std::string type = "unknown";
      if (rs.is_object()) {
        for (const char* k : {"rope_type", "type"})
          if (rs.contains(k) && rs.at(k).is_string()) { type = rs.at(k).get<std::string>(); break; }
      }
      if (type != "default")
        throw InputError(src + ": rope_scaling type \"" + type +
                         "\" is not supported (only plain rotary embedding with rope_theta)");
    }
    if (r.has("head_dim")) {
      c.head_dim = r.integer("head_dim");
    } else {
      require_positive(src, "num_attention_heads", c.heads, 1 << 16);
      c.head_dim = c.hidden / c.heads;
    }
    c.embed_dim = c.hidden;
  } else {
    throw InputError(src + ": model_type \"" + c.model_type +
                     "\" is not supported (supported: opt, llama, mistral, qwen2)");
  }

  require_positive(src, "hidden_size", c.hidden, 1 << 17);
  require_positive(src, "intermediate size", c.intermediate, 1 << 20);
  require_positive(src, "num_hidden_layers", c.layers, 4096);
  require_positive(src, "num_attention_heads", c.heads, 1 << 16);
  require_positive(src, "num_key_value_heads", c.kv_heads, 1 << 16);
  require_positive(src, "vocab_size", c.vocab, 1 << 24);
  require_positive(src, "max_position_embeddings", c.max_positions, 1 << 24);
  require_positive(src, "word_embed_proj_dim", c.embed_dim, 1 << 17);
  if (c.arch == Architecture::OPT) {
    if (c.hidden % c.heads != 0)
      throw InputError(src + ": hidden_size " + std::to_string(c.hidden) + " is not divisible by num_attention_heads " +
                       std::to_string(c.heads));
    c.head_dim = c.hidden / c.heads;
  }
  require_positive(src, "head_dim", c.head_dim, 4096);
  if (c.heads % c.kv_heads != 0)
    throw InputError(src + ": num_attention_heads " + std::to_string(c.heads) +
                     " is not a multiple of num_key_value_heads " + std::to_string(c.kv_heads));
  if (c.arch == Architecture::Llama && c.head_dim % 2 != 0)
    throw InputError(src + ": head_dim " + std::to_string(c.head_dim) + " must be even for rotary embedding");
  if (c.sliding_window < 0) throw InputError(src + ": sliding_window must not be negative");

  c.bos_token = r.token("bos_token_id");
  c.eos_token = r.token("eos_token_id");
  c.pad_token = r.token("pad_token_id");
  return c;
}

std::string ModelConfig::arch_name() const {
  if (arch == Architecture::OPT) return pre_layer_norm ? "OPT (pre-LayerNorm)" : "OPT (post-LayerNorm)";
  if (model_type == "mistral") return "Mistral";
  if (model_type == "qwen2") return "Qwen2";
  return "LLaMA";
}

}  // namespace rptq
