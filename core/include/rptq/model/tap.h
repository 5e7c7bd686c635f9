#pragma once
// The activations of a decoder layer that RPTQ observes and quantizes.

#include <cstdint>

namespace rptq {

// The quantizable activations ("taps") of one decoder layer, named by their role. Each is a [tokens, channels]
// matrix, given to the hook after it is computed and before anything consumes it.
enum class Tap : int {
  AttnInput = 0,  // R1: input of q/k/v (output of the attention LayerNorm/RMSNorm in pre-norm models)
  Q,              // input of QK^T: OPT q_proj output times head_dim^-0.5; LLaMA q_proj output after rotary
  K,              // input of QK^T and what the KV cache stores (LLaMA: after rotary)
  V,              // v_proj output, what the KV cache stores
  AttnOutput,     // R3: attention output, input of out_proj / o_proj
  FfnInput,       // R4: input of fc1 / gate_proj and up_proj
  FfnHidden,      // R5: input of fc2 / down_proj (after ReLU / SiLU(gate) * up)
};
constexpr int kTapCount = 7;
constexpr Tap kAllTaps[kTapCount] = {Tap::AttnInput, Tap::Q,          Tap::K,        Tap::V,
                                     Tap::AttnOutput, Tap::FfnInput, Tap::FfnHidden};
const char* tap_name(Tap t);  // "attn_input", "q", ...
// The reorder index whose clusters quantize a tap (1..5: R1 attn_input, R2 q and k, R3 v and attn_output,
// R4 ffn_input, R5 ffn_hidden).
int tap_reorder_index(Tap t);

struct ModelConfig;
// The tap's channel count in a model of this shape: hidden, heads x head_dim, kv_heads x head_dim or intermediate.
std::int64_t tap_channels(const ModelConfig& m, Tap t);

}  // namespace rptq
