#include "rptq/eval/memory_model.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <utility>

#include "rptq/base/error.h"

namespace rptq {

namespace {

using u64 = std::uint64_t;

constexpr u64 kFpBytes = 2;     // FP16
constexpr u64 kParamBytes = 4;  // one FP16 scale + one FP16 zero point

// Checked arithmetic: absurd batch x seqlen must not wrap around into a plausible number.
u64 mul(u64 a, u64 b) {
  u64 r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw InputError("memory estimate overflows 64-bit byte counts (batch x seqlen is too large)");
  return r;
}
u64 mul(std::initializer_list<u64> xs) {
  u64 r = 1;
  for (u64 x : xs) r = mul(r, x);
  return r;
}
u64 add(u64 a, u64 b) {
  u64 r = 0;
  if (__builtin_add_overflow(a, b, &r))
    throw InputError("memory estimate overflows 64-bit byte counts (batch x seqlen is too large)");
  return r;
}
u64 bits_to_bytes(u64 bits) { return bits / 8 + (bits % 8 != 0 ? 1 : 0); }
u64 u(std::int64_t v) { return static_cast<u64>(v); }

// One linear [out, in] whose input is split into `heads` equal parts of `clusters` clusters each.
struct LinearShape {
  std::int64_t out, in;
  int index;  // the reorder index on its input, whose clusters (per head) are its input groups
  std::int64_t heads;
  Tap input;  // the tap it reads (its weight bits and clusters may be overridden per layer)
};

// Input groups per output row: the clusters of the reorder index on the input (per head), capped at the width.
u64 input_groups(const QuantConfig& q, const LinearShape& l, std::int64_t clusters) {
  if (q.weight_group > 0) return (u(l.in) + u(q.weight_group) - 1) / u(q.weight_group);
  if (q.weight_group < 0) return 1;  // one group per output channel (a serving target's)
  return mul(u(l.heads), u(std::min(clusters, l.in / l.heads)));
}

std::vector<LinearShape> layer_linears(const ModelConfig& m) {
  const std::int64_t d = m.hidden, f = m.intermediate;
  std::vector<LinearShape> ls = {{m.q_dim(), d, 1, 1, Tap::AttnInput},
                                 {m.kv_dim(), d, 1, 1, Tap::AttnInput},
                                 {m.kv_dim(), d, 1, 1, Tap::AttnInput},
                                 {d, m.q_dim(), 3, m.heads, Tap::AttnOutput}};
  if (m.arch == Architecture::OPT) {
    ls.push_back({f, d, 4, 1, Tap::FfnInput});   // fc1
    ls.push_back({d, f, 5, 1, Tap::FfnHidden});  // fc2
  } else {
    ls.push_back({f, d, 4, 1, Tap::FfnInput});   // gate
    ls.push_back({f, d, 4, 1, Tap::FfnInput});   // up
    ls.push_back({d, f, 5, 1, Tap::FfnHidden});  // down
  }
  return ls;
}

// Parameters kept in FP16 whatever the setting: embeddings, positions, projections, head, norms, biases.
u64 fp_parameters(const ModelConfig& m) {
  const u64 d = u(m.hidden), f = u(m.intermediate), L = u(m.layers), V = u(m.vocab);
  if (m.arch == Architecture::OPT) {
    const u64 e = u(m.embed_dim);
    u64 n = mul(V, e) + mul(u(m.max_positions) + 2, d);  // tokens, learned positions (offset 2)
    if (m.embed_dim != m.hidden) n += 2 * mul(d, e);        // project_in, project_out
    if (!m.tie_embeddings) n += mul(V, e);
    if (m.norm_affine) n += mul({L, 2, 2, d}) + (m.final_layer_norm ? 2 * d : 0);  // gamma + beta
    if (m.linear_bias) n += mul(L, 4 * d + f + d);  // q, k, v, o, fc1, fc2
    return n;
  }
  u64 n = mul(V, d) + d + mul({L, 2, d});  // tokens, final norm, two RMSNorms per layer
  if (!m.tie_embeddings) n += mul(V, d);
  if (m.qkv_bias) n += mul(L, u(m.q_dim()) + 2 * u(m.kv_dim()));
  if (m.o_bias) n += mul(L, d);
  if (m.mlp_bias) n += mul(L, 2 * f + d);
  return n;
}

void check_config(const ModelConfig& m) {
  auto positive = [](const char* what, std::int64_t v) {
    if (v < 1) throw InputError(std::string("memory estimate: model ") + what + " = " + std::to_string(v) +
                                " must be positive");
  };
  positive("hidden", m.hidden);
  positive("intermediate", m.intermediate);
  positive("layers", m.layers);
  positive("heads", m.heads);
  positive("kv_heads", m.kv_heads);
  positive("head_dim", m.head_dim);
  positive("vocab", m.vocab);
  positive("max_positions", m.max_positions);
  if (m.arch == Architecture::OPT) positive("embed_dim", m.embed_dim);
}

}  // namespace

MemoryEstimate estimate_memory(const ModelConfig& m, const QuantConfig& q, std::int64_t batch, std::int64_t seqlen) {
  if (batch < 1) throw InputError("batch must be at least 1; got " + std::to_string(batch));
  if (seqlen < 1) throw InputError("sequence length must be at least 1; got " + std::to_string(seqlen));
  check_config(m);
  q.validate();

  MemoryEstimate e;
  e.batch = batch;
  e.seqlen = seqlen;
  e.preset = q.name;
  e.wbits = q.wbits;
  e.kv_bits = q.kv_bits();

  // Weights: the layers' linears packed (or FP16), their per-group parameters, and the FP16 rest.
  // Layers counted by (weight bits, input clusters): all alike, unless overrides set some layers' bits or clusters.
  const bool per_layer = q.overrides_clusters() || std::any_of(q.overrides.begin(), q.overrides.end(),
                                                               [](const TapOverride& o) { return o.wbits > 0; });
  for (const LinearShape& l : layer_linears(m)) {
    const u64 n = mul(u(l.out), u(l.in));
    std::map<std::pair<int, int>, u64> layers_at;  // (bits, clusters) -> layers
    if (!q.quantizes_weights())
      layers_at[{kFullPrecisionBits, 0}] = u(m.layers);
    else if (!per_layer)
      layers_at[{q.wbits, q.clusters_of(l.index)}] = u(m.layers);
    else
      for (std::int64_t layer = 0; layer < m.layers; ++layer) {
        const int li = static_cast<int>(layer);
        ++layers_at[{q.weight_bits(li, l.input), q.clusters_of(li, l.index)}];
      }
    for (const auto& [key, count] : layers_at) {
      const auto [bits, clusters] = key;
      if (bits < kFullPrecisionBits) {
        e.linear_weight_bytes = add(e.linear_weight_bytes, mul(count, bits_to_bytes(mul(n, u(bits)))));
        const u64 cells = mul({count, u(l.out), input_groups(q, l, clusters)});
        // RPTQ: an FP16 scale and zero point per group. A serving target: its scale dtype, and the zero point
        // packed at the weight's bit width.
        e.linear_param_bytes =
            add(e.linear_param_bytes, q.target == ServeTarget::None
                                          ? mul(cells, kParamBytes)
                                          : add(mul(cells, u(dtype_size(q.scale_dtype))), bits_to_bytes(mul(cells, u(bits)))));
      } else {
        e.linear_weight_bytes = add(e.linear_weight_bytes, mul({count, n, kFpBytes}));
      }
    }
  }
  e.fp_weight_bytes = mul(fp_parameters(m), kFpBytes);
  e.weights_bytes = add(add(e.linear_weight_bytes, e.linear_param_bytes), e.fp_weight_bytes);

  // KV cache: one K and one V row per layer and token, each packed to whole bytes.
  const u64 kv_dim = u(m.kv_dim()), tokens = mul(u(batch), u(seqlen));
  const int kb = q.bits(Tap::K), vb = q.bits(Tap::V);
  e.kv_bytes_per_token = mul(u(m.layers), bits_to_bytes(mul(kv_dim, u(kb))) + bits_to_bytes(mul(kv_dim, u(vb))));
  e.kv_data_bytes = mul(e.kv_bytes_per_token, tokens);
  const std::int64_t hd = m.head_dim;
  if (kb < kFullPrecisionBits)
    e.kv_param_bytes += mul({u(m.layers), u(m.kv_heads), u(std::min<std::int64_t>(q.clusters_of(2), hd)), kParamBytes});
  if (vb < kFullPrecisionBits)
    e.kv_param_bytes += mul({u(m.layers), u(m.kv_heads), u(std::min<std::int64_t>(q.clusters_of(3), hd)), kParamBytes});
  e.kv_cache_bytes = add(e.kv_data_bytes, e.kv_param_bytes);

  // Activations of one layer over all tokens: residual (FP16) + the larger of {q, k, v} and the FFN hidden, in the
  // layer where each is largest (overrides may give layers other bits of q and the FFN hidden; K and V are one
  // layout).
  e.residual_bytes = mul({tokens, u(m.hidden), kFpBytes});
  for (std::int64_t layer = 0; layer < m.layers; ++layer) {
    const int li = static_cast<int>(layer);
    const u64 qkv_bits = add(mul(u(m.q_dim()), u(q.bits(li, Tap::Q))), mul(kv_dim, u(kb + vb)));
    e.attention_bytes = std::max(e.attention_bytes, bits_to_bytes(mul(tokens, qkv_bits)));
    const u64 ffn = bits_to_bytes(mul({tokens, u(m.intermediate), u(q.bits(li, Tap::FfnHidden))}));
    e.ffn_bytes = std::max(e.ffn_bytes, ffn);
  }
  e.activation_bytes = add(e.residual_bytes, std::max(e.attention_bytes, e.ffn_bytes));

  e.total_bytes = add(add(e.weights_bytes, e.kv_cache_bytes), e.activation_bytes);
  return e;
}

namespace {
struct OptShape {
  const char* name;
  std::int64_t layers, hidden, heads, ffn;
};
constexpr OptShape kOptShapes[] = {
    {"opt-125m", 12, 768, 12, 3072},    {"opt-350m", 24, 1024, 16, 4096},   {"opt-1.3b", 24, 2048, 32, 8192},
    {"opt-2.7b", 32, 2560, 32, 10240},  {"opt-6.7b", 32, 4096, 32, 16384},  {"opt-13b", 40, 5120, 40, 20480},
    {"opt-30b", 48, 7168, 56, 28672},   {"opt-66b", 64, 9216, 72, 36864},   {"opt-175b", 96, 12288, 96, 49152},
};
}  // namespace

const std::vector<std::string>& opt_arch_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& s : kOptShapes) v.emplace_back(s.name);
    return v;
  }();
  return names;
}

ModelConfig opt_arch(const std::string& name_in) {
  std::string n;
  for (char c : name_in) n += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n.rfind("facebook/", 0) == 0) n = n.substr(9);
  for (const auto& s : kOptShapes) {
    if (n != s.name) continue;
    // The fields ModelConfig::parse fills for model_type "opt", with the published config.json's values.
    ModelConfig c;
    c.arch = Architecture::OPT;
    c.model_type = "opt";
    c.hidden = s.hidden;
    c.intermediate = s.ffn;
    c.layers = s.layers;
    c.heads = s.heads;
    c.kv_heads = s.heads;
    c.head_dim = s.hidden / s.heads;
    c.vocab = 50272;
    c.max_positions = 2048;
    c.pre_layer_norm = n != "opt-350m";  // OPT-350m: do_layer_norm_before = false
    c.final_layer_norm = c.pre_layer_norm;
    c.embed_dim = n == "opt-350m" ? 512 : s.hidden;  // word_embed_proj_dim
    c.linear_bias = true;
    c.norm_affine = true;
    c.activation = "relu";
    c.tie_embeddings = true;
    c.norm_eps = 1e-5f;
    c.bos_token = 2;
    c.eos_token = 2;
    c.pad_token = 1;
    return c;
  }
  std::string all;
  for (const auto& a : opt_arch_names()) all += (all.empty() ? "" : ", ") + a;
  throw InputError("unknown architecture \"" + name_in + "\" (known: " + all + ")");
}

}  // namespace rptq
