#include "rptq/method/quant_config.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <initializer_list>
#include <sstream>

#include "rptq/base/error.h"

namespace rptq {

namespace {
std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
void set_taps(QuantConfig& c, std::initializer_list<Tap> taps, int bits) {
  for (Tap t : taps) c.abits[static_cast<int>(t)] = bits;
}
// The serving target's limits (quant_config.h, ServeTarget).
void validate_compressed_tensors(const QuantConfig& c) {
  auto refuse = [](const std::string& why) { throw InputError("target compressed-tensors: " + why); };
  if (c.wbits != 4 && c.wbits != 8)
    refuse("weights must be 4 or 8 bits (pack-quantized integer weights); got " +
           (c.wbits == kFullPrecisionBits ? std::string("FP") : std::to_string(c.wbits) + " bits"));
  if (c.weight_group != 32 && c.weight_group != 64 && c.weight_group != 128 && c.weight_group != -1)
    refuse("the weight group size must be 32, 64 or 128 (the uniform groups vLLM's kernels take), or -1 (one group "
           "per output channel); got " +
           (c.weight_group == 0 ? std::string("groups per input cluster") : std::to_string(c.weight_group)));
  if (c.quantizes_activations())
    refuse("activations, the KV cache and the softmax stay in float (W4A16 / W8A16): no serving engine runs "
           "RPTQ's per-cluster activation quantizers (FP8 KV scales: --kv-fp8)");
  if (c.grid != QuantGrid::Exact) refuse("the exact grid only (compressed-tensors' scale is range / (2^n - 1))");
  if (c.fp_prefix > 0) refuse("a full-precision prefix is an activation remedy; activations are not quantized");
  if (c.scale_dtype != DType::F32 && c.scale_dtype != DType::F16 && c.scale_dtype != DType::BF16)
    refuse("scale dtype must be F32, F16 or BF16; got " + std::string(dtype_name(c.scale_dtype)));
  for (const TapOverride& o : c.overrides) {
    if (o.abits > 0 || o.dynamic >= 0)
      refuse("override \"" + o.spec + "\": activations are not quantized; only wbits=4|8|16 and clusters=N (R5) apply");
    if (o.wbits > 0 && o.wbits != 4 && o.wbits != 8 && o.wbits != kFullPrecisionBits)
      refuse("override \"" + o.spec + "\": weights are 4 or 8 bits, or 16 (left in float, listed in \"ignore\")");
  }
}

}  // namespace

bool TapOverride::selects(int layer, Tap t) const {
  if (!(taps & (1u << static_cast<unsigned>(t)))) return false;
  return layer_list.empty() || std::find(layer_list.begin(), layer_list.end(), layer) != layer_list.end();
}

TapOverride parse_override(const std::string& spec) {
  TapOverride o;
  o.spec = spec;
  auto bad = [&](const std::string& part, const std::string& why) {
    return InputError("override \"" + spec + "\": \"" + part + "\" " + why);
  };
  auto to_int = [&](const std::string& s, const std::string& part) {
    std::size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != s.size() || v < 0) throw bad(part, "is not a number >= 0");
    return v;
  };
  auto split = [](const std::string& s, char sep) {
    std::vector<std::string> v;
    std::stringstream ss(s);
    std::string p;
    while (std::getline(ss, p, sep)) v.push_back(p);
    if (!s.empty() && s.back() == sep) v.push_back("");
    return v;
  };
  const auto colon = spec.find(':');
  const std::string select = colon == std::string::npos ? "" : spec.substr(0, colon);
  const std::string set = colon == std::string::npos ? spec : spec.substr(colon + 1);
  bool have_layers = false;
  for (const std::string& part : select.empty() ? std::vector<std::string>{} : split(select, ',')) {
    const std::string l = lower(part);
    if (l.rfind("layers=", 0) == 0) {
      if (have_layers) throw bad(part, "repeats the layers");
      have_layers = true;
      for (const std::string& r : split(l.substr(7), '+')) {
        const auto dash = r.find('-');
        const int a = to_int(r.substr(0, dash), part);
        const int b = dash == std::string::npos ? a : to_int(r.substr(dash + 1), part);
        if (b < a) throw bad(part, "has a range that runs backwards");
        for (int i = a; i <= b; ++i) o.layer_list.push_back(i);
      }
      continue;
    }
    if (l.size() == 2 && l[0] == 'r' && l[1] >= '1' && l[1] <= '5') {
      static constexpr std::array<std::initializer_list<Tap>, 5> kByIndex = {
          {{Tap::AttnInput}, {Tap::Q}, {Tap::AttnOutput}, {Tap::FfnInput}, {Tap::FfnHidden}}};
      // R2 also orders K and R3 V, which cannot be overridden: the index selects its other taps.
      for (Tap t : kByIndex[static_cast<std::size_t>(l[1] - '1')]) o.taps |= 1u << static_cast<unsigned>(t);
      continue;
    }
    bool found = false;
    for (Tap t : kAllTaps)
      if (l == tap_name(t)) {
        if (t == Tap::K || t == Tap::V) throw bad(part, "is the KV cache, one layout for every layer: not overridable");
        o.taps |= 1u << static_cast<unsigned>(t);
        found = true;
      }
    if (!found) throw bad(part, "is neither layers=..., a tap name (attn_input, q, attn_output, ffn_input, "
                                "ffn_hidden) nor R1..R5");
  }
  const bool taps_named = o.taps != 0;
  if (o.taps == 0)
    for (Tap t : kAllTaps)
      if (t != Tap::K && t != Tap::V) o.taps |= 1u << static_cast<unsigned>(t);
  if (set.empty())
    throw bad(spec, "sets nothing (abits=N, wbits=N, clusters=N, dynamic, per-token or static after the colon)");
  for (const std::string& part : split(set, ',')) {
    const std::string l = lower(part);
    if (l.rfind("abits=", 0) == 0) {
      o.abits = to_int(l.substr(6), part);
      if (o.abits != kFullPrecisionBits && (o.abits < 2 || o.abits > 8)) throw bad(part, "needs 2..8 or 16 bits");
    } else if (l.rfind("wbits=", 0) == 0) {
      o.wbits = to_int(l.substr(6), part);
      if (o.wbits != kFullPrecisionBits && (o.wbits < 2 || o.wbits > 8)) throw bad(part, "needs 2..8 or 16 bits");
      constexpr std::uint32_t kLinearInputs = (1u << static_cast<unsigned>(Tap::AttnInput)) |
                                              (1u << static_cast<unsigned>(Tap::AttnOutput)) |
                                              (1u << static_cast<unsigned>(Tap::FfnInput)) |
                                              (1u << static_cast<unsigned>(Tap::FfnHidden));
      if ((o.taps & kLinearInputs) == 0)
        throw bad(part, "selects no linear's input (attn_input, attn_output, ffn_input or ffn_hidden; R1, R3, R4, R5)");
    } else if (l.rfind("clusters=", 0) == 0) {
      o.clusters = to_int(l.substr(9), part);
      if (o.clusters < 1) throw bad(part, "needs at least 1 cluster");
      constexpr std::uint32_t kShared = (1u << static_cast<unsigned>(Tap::Q)) |
                                        (1u << static_cast<unsigned>(Tap::AttnOutput));
      if (taps_named && (o.taps & kShared))
        throw bad(part, "selects R2 or R3 (q, attn_output), which also order K and V, one KV cache layout for every "
                        "layer: set their clusters for all layers with --clusters");
    } else if (l == "dynamic" || l == "static" || l == "per-token" || l == "per_token") {
      o.dynamic = l == "dynamic" ? 1 : l == "static" ? 0 : 2;
    } else {
      throw bad(part, "is not abits=N, wbits=N, clusters=N, dynamic, per-token or static");
    }
  }
  return o;
}

int QuantConfig::bits(int layer, Tap t) const {
  int b = bits(t);
  for (const TapOverride& o : overrides)
    if (o.abits > 0 && o.selects(layer, t)) b = o.abits;
  return b;
}

int QuantConfig::weight_bits(int layer, Tap input) const {
  int b = wbits;
  for (const TapOverride& o : overrides)
    if (o.wbits > 0 && o.selects(layer, input)) b = o.wbits;
  return b;
}

int QuantConfig::clusters_of(int layer, int reorder_index) const {
  int k = clusters_of(reorder_index);
  const Tap t = reorder_index == 1 ? Tap::AttnInput : reorder_index == 4 ? Tap::FfnInput : Tap::FfnHidden;
  if (reorder_index == 2 || reorder_index == 3) return k;  // they also order K / V: one layout for all layers
  for (const TapOverride& o : overrides)
    if (o.clusters > 0 && o.selects(layer, t)) k = o.clusters;
  return k;
}

bool QuantConfig::overrides_clusters() const {
  return std::any_of(overrides.begin(), overrides.end(), [](const TapOverride& o) { return o.clusters > 0; });
}

bool QuantConfig::dynamic(int layer, Tap t) const {
  bool d = range_mode == RangeMode::Dynamic;
  for (const TapOverride& o : overrides)
    if (o.dynamic >= 0 && o.selects(layer, t)) d = o.dynamic >= 1;
  return d;
}

bool QuantConfig::per_token(int layer, Tap t) const {
  bool p = false;
  for (const TapOverride& o : overrides)
    if (o.dynamic >= 0 && o.selects(layer, t)) p = o.dynamic == 2;
  return p;
}

std::string QuantConfig::overrides_spec() const {
  std::string s;
  for (const TapOverride& o : overrides) s += (s.empty() ? "" : ";") + o.spec;
  return s;
}

bool QuantConfig::quantizes_activations() const {
  if (softmax_bits < kFullPrecisionBits) return true;
  return std::any_of(abits.begin(), abits.end(), [](int b) { return b < kFullPrecisionBits; });
}

int QuantConfig::kv_bits() const { return std::min(bits(Tap::K), bits(Tap::V)); }

void QuantConfig::validate() const {
  auto check_bits = [](int b, const std::string& what) {
    if (b != kFullPrecisionBits && (b < 2 || b > 8))
      throw InputError(what + " bits must be 2..8, or 16 for full precision; got " + std::to_string(b));
  };
  check_bits(wbits, "weight");
  for (Tap t : kAllTaps) check_bits(bits(t), std::string("activation (") + tap_name(t) + ")");
  if (softmax_bits != kFullPrecisionBits && softmax_bits != 8)
    throw InputError("softmax probabilities are quantized on the fixed 8-bit grid or not at all; got " +
                     std::to_string(softmax_bits) + " bits");
  for (int i = 0; i < kReorderIndices; ++i)
    if (clusters[static_cast<std::size_t>(i)] < 1)
      throw InputError("R" + std::to_string(i + 1) + " needs at least 1 cluster; got " +
                       std::to_string(clusters[static_cast<std::size_t>(i)]));
  if (weight_group < 0 && !(weight_group == -1 && target != ServeTarget::None))
    throw InputError("weight group size must be 0 (per input cluster) or positive (-1, one group per output channel, "
                     "is a serving target's)");
  if (gptq_block < 1) throw InputError("GPTQ block size must be positive");
  if (act_order && weight_method != WeightMethod::GPTQ)
    throw InputError("act-order is a GPTQ option (it orders GPTQ's columns); RTN has no column order");
  if (!(gptq_damp > 0.0 && gptq_damp < 1.0)) throw InputError("GPTQ dampening must be in (0, 1)");
  if (fp_prefix < 0 || fp_prefix > (1 << 20))
    throw InputError("the full-precision prefix must be 0..1048576 tokens; got " + std::to_string(fp_prefix));
  for (const TapOverride& ov : overrides) {
    if (ov.dynamic >= 1 && fp_prefix > 0)
      throw InputError("override \"" + ov.spec + "\": dynamic ranges do not combine with a full-precision prefix");
    for (Tap t : {Tap::K, Tap::V})
      if (ov.taps & (1u << static_cast<unsigned>(t)))
        throw InputError("override \"" + ov.spec + "\": K and V (the KV cache) cannot be overridden");
    if (ov.wbits > 0 && !quantizes_weights())
      throw InputError("override \"" + ov.spec + "\": weight-bit overrides need quantized weights (wbits < 16)");
  }
  if (fp_prefix > 0 && range_mode == RangeMode::Dynamic)
    throw InputError("a full-precision prefix is for static ranges (dynamic ranges are measured per forward pass)");
  if (kv_fp8 != KvFp8::Off && target == ServeTarget::None)
    throw InputError("FP8 KV cache scales belong to a serving target (--serving compressed-tensors); RPTQ's own KV "
                     "cache is quantized with --kvbits");
  if (target == ServeTarget::CompressedTensors) validate_compressed_tensors(*this);
}

std::string QuantConfig::describe() const {
  std::ostringstream o;
  o << name << " (weights ";
  if (quantizes_weights())
    o << wbits << "-bit " << weight_method_name(weight_method)
      << (weight_group > 0    ? " group " + std::to_string(weight_group)
          : weight_group < 0  ? std::string(" per output channel")
                              : std::string(" per input cluster"))
      << (weight_clip == WeightClip::Mse ? ", mse ranges" : "")
      << (act_order && weight_method == WeightMethod::GPTQ ? ", act-order" : "");
  else
    o << "FP";
  // Group the taps by bit width.
  std::vector<int> widths;
  for (int b : abits)
    if (b < kFullPrecisionBits && std::find(widths.begin(), widths.end(), b) == widths.end()) widths.push_back(b);
  std::sort(widths.begin(), widths.end());
  if (widths.empty()) o << "; activations FP";
  for (int w : widths) {
    o << ";";
    for (Tap t : kAllTaps)
      if (bits(t) == w) o << " " << tap_name(t);
    o << " " << w << "-bit";
  }
  if (softmax_bits < kFullPrecisionBits) o << "; softmax 8-bit";
  if (quantizes_activations()) {
    o << "; clusters";
    for (int i = 0; i < kReorderIndices; ++i) o << (i ? "," : " ") << "R" << i + 1 << "=" << clusters[i];
    o << "; " << grid_name(grid) << " grid; " << (range_mode == RangeMode::Static ? "static" : "dynamic")
      << " ranges";
    if (fp_prefix > 0) o << "; first " << fp_prefix << (fp_prefix == 1 ? " token" : " tokens") << " FP";
  }
  if (!overrides.empty()) o << "; overrides " << overrides_spec();
  if (target != ServeTarget::None) {
    o << "; serving " << target_name(target) << ", scales " << dtype_name(scale_dtype) << ", clusters R3=" << clusters[2]
      << ",R5=" << clusters[4];
    if (kv_fp8 != KvFp8::Off) o << ", FP8 KV per " << kv_fp8_name(kv_fp8);
  }
  o << ")";
  return o.str();
}

const std::vector<std::string>& QuantConfig::preset_names() {
  static const std::vector<std::string> names = {"W16A16", "W4A16", "W4A8", "W4A4", "W4A4KV", "W4A3KV", "W3A3KV"};
  return names;
}

QuantConfig QuantConfig::preset(const std::string& name_in) {
  const std::string n = upper(name_in);
  QuantConfig c;
  c.name = n;
  if (n == "W16A16") return c;
  if (n == "W4A16") {
    c.wbits = 4;
  } else if (n == "W4A8") {
    c.wbits = 4;
    for (Tap t : kAllTaps) c.abits[static_cast<int>(t)] = 8;
    c.softmax_bits = 8;
  } else if (n == "W4A4") {
    // out_proj input, fc2 input, Q, K, V at 4 bits; the two norm outputs stay at 8 (the reference's W4A4).
    c.wbits = 4;
    set_taps(c, {Tap::AttnOutput, Tap::FfnHidden, Tap::Q, Tap::K, Tap::V}, 4);
    set_taps(c, {Tap::AttnInput, Tap::FfnInput}, 8);
    c.softmax_bits = 8;
  } else if (n == "W4A4KV" || n == "W4A3KV" || n == "W3A3KV") {
    c.wbits = n[1] - '0';
    set_taps(c, {Tap::K, Tap::V}, n[3] - '0');
  } else {
    std::string all;
    for (const auto& p : preset_names()) {
      if (!all.empty()) all += ", ";
      all += p;
    }
    throw InputError("unknown preset \"" + name_in + "\" (known: " + all + ")");
  }
  return c;
}

QuantConfig QuantConfig::custom(int wbits, int abits, int kvbits) {
  QuantConfig c;
  c.name = std::string("W").append(std::to_string(wbits)).append("A").append(std::to_string(abits));
  c.name.append("KV").append(std::to_string(kvbits));
  c.wbits = wbits;
  for (Tap t : kAllTaps) c.abits[static_cast<int>(t)] = abits;
  set_taps(c, {Tap::K, Tap::V}, kvbits);
  if (c.quantizes_activations()) c.softmax_bits = 8;
  c.validate();
  return c;
}

void parse_clusters(const std::string& spec, QuantConfig& cfg) {
  auto to_int = [&](const std::string& s) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != s.size() || v < 1)
      throw InputError("clusters: \"" + s + "\" is not a positive cluster count (in \"" + spec + "\")");
    return v;
  };
  if (spec.find('=') == std::string::npos) {
    const int n = to_int(spec);
    cfg.clusters.fill(n);
    return;
  }
  std::stringstream ss(spec);
  std::string part;
  while (std::getline(ss, part, ',')) {
    const auto eq = part.find('=');
    const std::string key = eq == std::string::npos ? part : upper(part.substr(0, eq));
    if (eq == std::string::npos || key.size() != 2 || key[0] != 'R' || key[1] < '1' || key[1] > '5')
      throw InputError("clusters: \"" + part + "\" is not of the form R1..R5=N (in \"" + spec + "\")");
    cfg.clusters[static_cast<std::size_t>(key[1] - '1')] = to_int(part.substr(eq + 1));
  }
}

const char* grid_name(QuantGrid g) { return g == QuantGrid::Exact ? "exact" : "reference"; }
QuantGrid parse_grid(const std::string& s) {
  const std::string l = lower(s);
  if (l == "exact") return QuantGrid::Exact;
  if (l == "reference") return QuantGrid::Reference;
  throw InputError("unknown quantization grid \"" + s + "\" (exact or reference)");
}
const char* range_stat_name(RangeStat s) { return s == RangeStat::Ema ? "ema" : "minmax"; }
RangeStat parse_range_stat(const std::string& s) {
  const std::string l = lower(s);
  if (l == "ema") return RangeStat::Ema;
  if (l == "minmax") return RangeStat::MinMax;
  throw InputError("unknown range statistic \"" + s + "\" (ema or minmax)");
}
const char* weight_method_name(WeightMethod m) { return m == WeightMethod::RTN ? "rtn" : "gptq"; }
WeightMethod parse_weight_method(const std::string& s) {
  const std::string l = lower(s);
  if (l == "rtn") return WeightMethod::RTN;
  if (l == "gptq") return WeightMethod::GPTQ;
  throw InputError("unknown weight quantization method \"" + s + "\" (rtn or gptq)");
}

const char* weight_clip_name(WeightClip c) { return c == WeightClip::Mse ? "mse" : "minmax"; }
WeightClip parse_weight_clip(const std::string& s) {
  const std::string l = lower(s);
  if (l == "minmax") return WeightClip::MinMax;
  if (l == "mse") return WeightClip::Mse;
  throw InputError("unknown weight range search \"" + s + "\" (minmax or mse)");
}

const char* target_name(ServeTarget t) { return t == ServeTarget::CompressedTensors ? "compressed-tensors" : "none"; }
ServeTarget parse_target(const std::string& s) {
  const std::string l = lower(s);
  if (l == "none" || l == "rptq") return ServeTarget::None;
  if (l == "compressed-tensors") return ServeTarget::CompressedTensors;
  throw InputError("unknown serving target \"" + s + "\" (none or compressed-tensors)");
}
const char* kv_fp8_name(KvFp8 k) { return k == KvFp8::Tensor ? "tensor" : k == KvFp8::Head ? "head" : "off"; }
KvFp8 parse_kv_fp8(const std::string& s) {
  const std::string l = lower(s);
  if (l == "off") return KvFp8::Off;
  if (l == "tensor") return KvFp8::Tensor;
  if (l == "head") return KvFp8::Head;
  throw InputError("unknown FP8 KV scale granularity \"" + s + "\" (off, tensor or head)");
}
DType parse_scale_dtype(const std::string& s) {
  const std::string l = lower(s);
  if (l == "f32" || l == "float32") return DType::F32;
  if (l == "f16" || l == "float16") return DType::F16;
  if (l == "bf16" || l == "bfloat16") return DType::BF16;
  throw InputError("unknown scale dtype \"" + s + "\" (f32, f16 or bf16)");
}

}  // namespace rptq
