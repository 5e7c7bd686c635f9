#pragma once
// What an RPTQ quantization does: bit widths of weights, of each activation tap and of the softmax probabilities,
// the cluster count of each reorder index, and the quantizer conventions. The presets are the settings of the
// paper and the reference code (W4A8, W4A4KV, ...), with exactly their meaning (docs: rptq-method.md).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "rptq/base/dtype.h"
#include "rptq/model/tap.h"

namespace rptq {

// The integer grid of an asymmetric uniform quantizer with n bits on [min, max].
enum class QuantGrid {
  Exact,      // scale = (max - min) / (2^n - 1): min and max are both on the grid (the default)
  Reference,  // scale = (max - min) / 2^n, as the RPTQ reference code: the top of the range saturates one step low
};

// How static activation ranges are formed from calibration.
enum class RangeStat {
  Ema,     // per calibration sample min/max, v = 0.99 v + 0.01 new (the reference's default)
  MinMax,  // plain running min/max over all samples
};

enum class WeightMethod { RTN, GPTQ };

// How a weight group's [min, max] is chosen (weight_quant.h). MinMax is the paper's and the reference's; Mse is
// GPTQ's optional grid search (quant.py find_params with mse=True), here with the error weighted by each input
// channel's Hessian diagonal (the mean square of its activation) where a Hessian exists: a remedy, not a paper
// setting.
enum class WeightClip { MinMax, Mse };

// Where activation ranges come from.
enum class RangeMode {
  Static,   // from calibration (the default)
  Dynamic,  // each forward computes the ranges of its own activations, per cluster
};

// Not a paper setting: a serving format the quantization is made to fit exactly (docs/serving.md), so the model
// the workbench evaluates is the one an existing engine serves and the export loses nothing.
//   CompressedTensors: compressed-tensors "pack-quantized" weights for vLLM and SGLang: 4- or 8-bit asymmetric
//   integer weights in uniform groups of 32, 64 or 128 columns (or one per output channel, weight_group -1) of the
//   linear's input as the folder stores it, every range holding 0 (the zero point is a code), scales in
//   QuantConfig::scale_dtype; activations in float. Only the reorders a Hugging Face model can hold in its weights
//   are kept: R3 (v rows with o columns) and R5 (fc1 or gate/up rows with fc2 or down columns); R1, R2 and R4 stay
//   in the source order.
enum class ServeTarget { None, CompressedTensors };
// FP8 (E4M3) KV cache scales from calibration, for an engine's FP8 KV cache (compressed-tensors kv_cache_scheme):
// one per layer for K and one for V (Tensor), or one per KV head (Head). The evaluation then rounds K and V to
// E4M3 with those scales, as the engine's cache stores them.
enum class KvFp8 { Off, Tensor, Head };

constexpr int kFullPrecisionBits = 16;  // a bit width of 16 means "not quantized" (kept in float)
constexpr int kReorderIndices = 5;      // R1..R5

// Not a paper setting: a change of some (layer, tap) quantizers of one quantization (mixed precision, or dynamic
// ranges where a static range cannot hold the values). Written "[SELECT:]SET", e.g. "layers=0,attn_output:abits=16"
// or "layers=25-29+0,ffn_hidden:dynamic": SELECT is a comma list of layers=A[-B][+...] (default: every layer) and
// tap names or reorder indices R1..R5 (the taps each clusters; default: every tap but K and V); SET is a comma list
// of abits=N (2..8, or 16 to keep them in float), wbits=N (the weights of the linears reading a selected tap:
// attn_input for q/k/v, attn_output for o, ffn_input for fc1 or gate/up, ffn_hidden for fc2 or down; 16 keeps them
// in float), clusters=N (the cluster count of the selected taps' reorder index in the selected layers: R1, R4 or
// R5 only, since R2 and R3 also order K and V; without a tap selection it sets R1, R4 and R5), dynamic, per-token
// (dynamic ranges of each token alone), static.
// K and V are one KV cache layout for all layers and cannot be overridden.
struct TapOverride {
  std::string spec;                 // as written
  std::vector<int> layer_list;      // the layers= list, ranges expanded; empty: every layer
  std::uint32_t taps = 0;           // bit (1 << Tap)
  int abits = 0;                    // 0: unchanged
  int wbits = 0;                    // 0: unchanged; else the weight bits of the linears reading a selected tap
  int clusters = 0;                 // 0: unchanged; else the clusters of R1 / R4 / R5 where a selected tap is theirs
  int dynamic = -1;                 // -1 unchanged, 0 static, 1 dynamic, 2 per-token (dynamic per row)
  bool selects(int layer, Tap t) const;
};
// Parses one override spec; throws InputError naming the bad part.
TapOverride parse_override(const std::string& spec);

struct QuantConfig {
  std::string name = "custom";  // preset name, or "custom"
  int wbits = kFullPrecisionBits;
  WeightMethod weight_method = WeightMethod::GPTQ;
  int weight_group = 0;            // 0: groups are (output row) x (input cluster); else a fixed group size
                                   // (-1, a serving target's only: one group per output row, "channel")
  double gptq_damp = 0.01;         // fraction of the mean Hessian diagonal added to the diagonal
  int gptq_block = 128;            // columns per lazy-update block
  // Not paper settings (remedies for weights): the group range search, and GPTQ's act-order (desc_act: columns
  // quantized in the order of decreasing Hessian diagonal; groups stay the same column sets).
  WeightClip weight_clip = WeightClip::MinMax;
  bool act_order = false;
  std::array<int, kTapCount> abits{kFullPrecisionBits, kFullPrecisionBits, kFullPrecisionBits, kFullPrecisionBits,
                                   kFullPrecisionBits, kFullPrecisionBits, kFullPrecisionBits};  // indexed by Tap
  int softmax_bits = kFullPrecisionBits;  // 8 when the attention probabilities are quantized (fixed [0, 1] grid)
  std::array<int, kReorderIndices> clusters{32, 4, 4, 32, 32};  // R1..R5; R2 and R3 count per head
  QuantGrid grid = QuantGrid::Exact;
  RangeMode range_mode = RangeMode::Static;
  // Not a paper setting (a remedy, 0 = off): the first fp_prefix positions of every sequence keep their activations
  // and K/V in full precision, and are left out of the ranges measured for the quantizers. LLaMA-family models put
  // token-specific massive activations on the first token (the attention sink), which a static per-cluster range
  // cannot hold without wiping out the other tokens' values in those channels (docs/rptq-results.md).
  int fp_prefix = 0;

  ServeTarget target = ServeTarget::None;
  // The serving target's weight scale dtype (F32, F16 or BF16): scales are values of it and a dequantized weight
  // (code - zero point) * scale is rounded to it, as compressed-tensors dequantizes in the scale's dtype.
  DType scale_dtype = DType::BF16;
  KvFp8 kv_fp8 = KvFp8::Off;

  std::vector<TapOverride> overrides;  // in order: a later one wins where two select the same (layer, tap)

  int bits(Tap t) const { return abits[static_cast<int>(t)]; }
  // With the overrides: what layer l's tap t gets.
  int bits(int layer, Tap t) const;
  bool dynamic(int layer, Tap t) const;    // per-token taps are dynamic too
  bool per_token(int layer, Tap t) const;
  // The weight bits of layer l's linears that read tap `input` (attn_input: q, k, v; attn_output: o; ffn_input:
  // fc1 or gate and up; ffn_hidden: fc2 or down): wbits, or an override's (16: the linear stays in float).
  int weight_bits(int layer, Tap input) const;
  // The overrides' specs joined by ";" ("" without any), as the checkpoint records them.
  std::string overrides_spec() const;
  bool quantizes(Tap t) const { return bits(t) < kFullPrecisionBits; }
  bool quantizes_weights() const { return wbits < kFullPrecisionBits; }
  bool quantizes_activations() const;  // any tap or the softmax
  int kv_bits() const;                 // bits of the KV cache: min of K and V bits (16 when neither is quantized)
  int clusters_of(int reorder_index) const { return clusters.at(static_cast<std::size_t>(reorder_index - 1)); }
  // With the overrides: the clusters of reorder index 1..5 in layer l (R2 and R3 are never overridden).
  int clusters_of(int layer, int reorder_index) const;
  // Whether any override changes cluster counts (the memory model then counts layer by layer).
  bool overrides_clusters() const;

  // Throws InputError naming the bad value (bits outside 2..8 or 16, clusters < 1, ...).
  void validate() const;
  // One line, e.g. "W4A4 (weights 4-bit GPTQ; attn_output, ffn_hidden, q, k, v 4-bit; ...)".
  std::string describe() const;

  // W16A16, W4A16, W4A8, W4A4, W4A4KV, W4A3KV, W3A3KV (case-insensitive). Throws InputError listing the names.
  static QuantConfig preset(const std::string& name);
  static const std::vector<std::string>& preset_names();
  // Custom bits: weights W; every tap but K and V at A; K and V (the KV cache) at B; the softmax probabilities at
  // 8 bits when any activation is quantized.
  static QuantConfig custom(int wbits, int abits, int kvbits);
};

// "R1=32,R2=4,R3=4,R4=32,R5=32" (any subset; the rest keep their values) or "N" (every index N).
// Throws InputError naming the bad part.
void parse_clusters(const std::string& spec, QuantConfig& cfg);

const char* grid_name(QuantGrid g);          // "exact", "reference"
QuantGrid parse_grid(const std::string& s);  // throws InputError
const char* range_stat_name(RangeStat s);    // "ema", "minmax"
RangeStat parse_range_stat(const std::string& s);
const char* weight_method_name(WeightMethod m);  // "rtn", "gptq"
const char* weight_clip_name(WeightClip c);      // "minmax", "mse"
const char* target_name(ServeTarget t);           // "none", "compressed-tensors"
ServeTarget parse_target(const std::string& s);   // throws InputError
const char* kv_fp8_name(KvFp8 k);                 // "off", "tensor", "head"
KvFp8 parse_kv_fp8(const std::string& s);         // throws InputError
DType parse_scale_dtype(const std::string& s);    // "f32", "f16", "bf16" (any case); throws InputError
WeightClip parse_weight_clip(const std::string& s);  // throws InputError
WeightMethod parse_weight_method(const std::string& s);

}  // namespace rptq
