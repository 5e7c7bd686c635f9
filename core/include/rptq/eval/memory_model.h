#pragma once
// How much memory a model needs to serve batch x seqlen tokens under a quantization setting: weights, KV cache and
// the transient activations of one decoder layer. This is RPTQ's memory argument (docs: rptq-method.md, "Memory"):
// at large batch x sequence the KV cache, not the weights, dominates, so quantizing activations matters most.
//
// Conventions (all sizes in bytes):
// - FP means FP16 (2 bytes), the paper's baseline: every weight, KV entry or activation that is not quantized.
// - Linear weights (q/k/v/o, fc1/fc2 or gate/up/down) at wbits < 16 are packed densely (wbits / 8 bytes per
//   weight, each matrix rounded up to whole bytes), plus one FP16 scale and one FP16 zero point per
//   (output row, input group). The input groups of a linear are the clusters of the reorder index on its input:
//   R1 for q/k/v, R3 for o (per head: heads x R3 clusters), R4 for fc1 / gate / up, R5 for fc2 / down, each
//   capped at the input width (per head for R3), in each layer as overrides set them (QuantConfig::clusters_of
//   of the layer); with QuantConfig::weight_group > 0, ceil(in / weight_group).
//   At 16 bits: FP16, no parameters.
// - FP16 weights, never quantized: token embedding, OPT's learned positions (max_positions + 2 rows), OPT-350m's
//   project_in / project_out, lm_head when untied, every norm's gamma (and beta), every linear's bias.
// - KV cache: for every layer and token, one K row and one V row of kv_dim channels at the K and V taps' bits
//   (16 when not quantized), each row packed to whole bytes. With K and V at kv_bits this is exactly
//   2 x layers x kv_dim x batch x seqlen x kv_bits / 8. Quantized K and V also keep static per-cluster FP16 scale
//   and zero point (K: R2 clusters per KV head, V: R3 clusters per KV head, per layer), shared by all tokens:
//   reported as kv_param_bytes and included in kv_cache_bytes. The cache holds all seqlen tokens (no sliding
//   window), as the engine's KvCache does.
// - activation_bytes: the peak transient activation memory of one decoder layer's forward over
//   tokens = batch x seqlen at once (prefill), with every intermediate stored at its tap's bits (a producing GEMM
//   quantizes in its epilogue, with bias, ReLU or SiLU(gate) * up fused, so no FP copy is ever whole):
//     residual_bytes  = tokens x hidden x 2                    (the residual stream is never quantized)
//     attention_bytes = tokens x (q_dim x bits(q) + kv_dim x bits(k) + kv_dim x bits(v)) / 8
//                                                               (q, k, v outputs, all live while attention runs)
//     ffn_bytes       = tokens x intermediate x bits(ffn_hidden) / 8   (the FFN hidden, input of fc2 / down)
//     activation_bytes = residual_bytes + max(attention_bytes, ffn_bytes)
//   With per-layer activation-bit overrides (QuantConfig::bits(layer, tap)) attention_bytes and ffn_bytes are each
//   the largest over the layers: one layer runs at a time, so the peak is the widest layer's.
//   Left out to keep it simple (so this is a lower bound of the true peak): the norm outputs (attn_input,
//   ffn_input) and the attention output, each tokens x hidden and live beside only part of the sets above;
//   attention scores (the attention is tiled: its score tile does not grow with seqlen); the static per-cluster
//   activation quantizer parameters (a few KiB).
// - total_bytes = weights_bytes + kv_cache_bytes + activation_bytes.
#include <cstdint>
#include <string>
#include <vector>

#include "rptq/model/model_config.h"
#include "rptq/method/quant_config.h"

namespace rptq {

struct MemoryEstimate {
  std::uint64_t weights_bytes = 0;     // linear_weight_bytes + linear_param_bytes + fp_weight_bytes
  std::uint64_t kv_cache_bytes = 0;    // kv_data_bytes + kv_param_bytes
  std::uint64_t activation_bytes = 0;  // residual_bytes + max(attention_bytes, ffn_bytes)
  std::uint64_t total_bytes = 0;       // weights + KV cache + activations

  // Weights.
  std::uint64_t linear_weight_bytes = 0;  // the decoder layers' linear weights: packed at wbits, or FP16
  std::uint64_t linear_param_bytes = 0;   // their FP16 scale + zero point per (output row, input group); a serving
                                          // target: its scale dtype + the zero point packed at the weight bits
  std::uint64_t fp_weight_bytes = 0;      // FP16, never quantized: embeddings, positions, head if untied, norms, biases
  // KV cache.
  std::uint64_t kv_bytes_per_token = 0;  // K and V rows of every layer for one token of one sequence
  std::uint64_t kv_data_bytes = 0;       // kv_bytes_per_token x batch x seqlen
  std::uint64_t kv_param_bytes = 0;      // static per-cluster K/V scale + zero point (0 when K and V are FP)
  // Activations (one layer, batch x seqlen tokens).
  std::uint64_t residual_bytes = 0;
  std::uint64_t attention_bytes = 0;  // q, k, v outputs (of the layer where they are largest)
  std::uint64_t ffn_bytes = 0;        // FFN hidden (of the layer where it is largest)

  // The inputs.
  std::int64_t batch = 0;
  std::int64_t seqlen = 0;
  std::string preset;  // QuantConfig::name
  int wbits = kFullPrecisionBits;
  int kv_bits = kFullPrecisionBits;  // QuantConfig::kv_bits()
};

// Throws InputError for batch or seqlen < 1, an invalid QuantConfig, or sizes beyond 64-bit byte counts.
MemoryEstimate estimate_memory(const ModelConfig& model, const QuantConfig& quant, std::int64_t batch,
                               std::int64_t seqlen);

// The published OPT shapes, built as ModelConfig::load would build them from the Hugging Face config.json:
// opt-125m, opt-350m (post-LayerNorm, word_embed_proj_dim 512), opt-1.3b, opt-2.7b, opt-6.7b, opt-13b, opt-30b,
// opt-66b, opt-175b. Case-insensitive; a "facebook/" prefix is accepted. Throws InputError listing the names.
ModelConfig opt_arch(const std::string& name);
const std::vector<std::string>& opt_arch_names();

}  // namespace rptq
