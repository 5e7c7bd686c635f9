#pragma once
// The parts of a Hugging Face config.json that decide how a decoder-only model computes.
#include <cstdint>
#include <filesystem>
#include <string>

namespace rptq {

enum class Architecture { OPT, Llama };  // Llama covers llama, mistral and qwen2 (they differ only in config)

struct ModelConfig {
  Architecture arch = Architecture::Llama;
  std::string model_type;  // as written in config.json: "opt", "llama", "mistral", "qwen2"

  std::int64_t hidden = 0;        // residual stream width
  std::int64_t intermediate = 0;  // FFN hidden width (OPT ffn_dim)
  std::int64_t layers = 0;
  std::int64_t heads = 0;
  std::int64_t kv_heads = 0;  // grouped-query attention: heads sharing one K/V head = heads / kv_heads
  std::int64_t head_dim = 0;
  std::int64_t vocab = 0;
  std::int64_t max_positions = 0;
  float norm_eps = 1e-5f;
  bool tie_embeddings = true;

  // OPT
  bool pre_layer_norm = true;       // do_layer_norm_before (false: post-LN, as OPT-350m)
  bool final_layer_norm = true;     // pre-LN OPT has one unless _remove_final_layer_norm
  std::int64_t embed_dim = 0;       // word_embed_proj_dim; != hidden means project_in/project_out exist
  bool linear_bias = true;          // OPT enable_bias
  bool norm_affine = true;          // layer_norm_elementwise_affine
  std::string activation = "relu";  // OPT activation_function / LLaMA hidden_act

  // LLaMA family
  float rope_theta = 10000.0f;  // top-level rope_theta (transformers 4) or rope_parameters.rope_theta (5)
  bool qkv_bias = false;       // qwen2 always; llama attention_bias
  bool o_bias = false;         // llama attention_bias
  bool mlp_bias = false;       // llama mlp_bias
  std::int64_t sliding_window = 0;  // mistral; 0 = full causal attention

  std::int32_t bos_token = -1;
  std::int32_t eos_token = -1;
  std::int32_t pad_token = -1;

  // Reads DIR/config.json. Throws InputError naming the file and the field for a missing or bad field, an
  // unsupported model_type, an unsupported rope_scaling or rope_parameters rope_type (only "default"), or a
  // top-level rope_theta that disagrees with rope_parameters'.
  static ModelConfig load(const std::filesystem::path& model_dir);
  static ModelConfig parse(const std::string& json_text, const std::string& source_name);

  std::int64_t q_dim() const { return heads * head_dim; }
  std::int64_t kv_dim() const { return kv_heads * head_dim; }
  std::string arch_name() const;  // "OPT (pre-LN)", "LLaMA", "Mistral", "Qwen2"
};

}  // namespace rptq
