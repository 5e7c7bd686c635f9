#pragma once
// The decoder layer, written once: the order of its operations, where its taps are, its residual wiring and its
// KV-cache step, over an op set that runs them on the CPU (CpuLayerOps, model.cpp) or on a CUDA GPU (the runner's
// ops, cuda/cuda_runner.cpp). A new architecture variant, or a fix, is made here for both devices.
//
// An op set `Ops` provides, on its device's memory (float32 activations, row-major [rows, cols]):
//   float* buffer(LayerBuffer id, std::size_t n)   scratch of n floats, one per id, reused across calls
//   void linear(const Linear& w, const float* x, std::int64_t ldx, std::int64_t rows, float* y, bool accumulate,
//               bool bias)                          y (+)= x w^T (+ w's bias when `bias`)
//   void norm(const Norm& n, const float* x, float* y, std::int64_t rows)   the architecture's norm, n's gather
//   void copy(float* dst, const float* src, std::size_t n)
//   void scale(float* x, std::size_t n, float s)
//   void rotary(float* x, std::int64_t rows, std::int64_t heads, std::int64_t group, const Layer& w,
//               const LayerPass& p)                 rotary positions past + r % seq, w's rope_index
//   void bias_activation(Activation a, float* x, std::int64_t rows, std::int64_t cols, const Linear& w)
//   void silu_mul(float* gate, const float* up, std::int64_t rows, std::int64_t cols)
//   void attention(const float* q, const float* k, const float* v, float* out, const AttentionShape& s)
//   void tap(int layer, Tap t, float* x, std::int64_t cols, const LayerPass& p)   the activation hook
//   KvStore* cache()                                the KV cache the pass appends to, or null
// where Linear, Norm and Layer are the op set's weight types (Layer has attn_norm, ffn_norm, q, k, v, o, fc1, fc2,
// gate, up, down and quantize_softmax).
#include <cmath>
#include <cstdint>

#include "rptq/model/attention_shape.h"
#include "rptq/model/model.h"
#include "rptq/model/model_config.h"
#include "rptq/model/tap.h"

namespace rptq::layer {

// One pass over a layer: nseq sequences of seq tokens each, continuing `past` cached tokens (0 without a cache).
struct LayerPass {
  std::int64_t nseq = 1, seq = 0, past = 0;
  std::int64_t rows() const { return nseq * seq; }
};

enum class LayerBuffer { X, Q, K, V, Attn, Hidden, Up };

enum class Activation { Relu, Gelu, GeluTanh };

inline Activation ffn_activation(const ModelConfig& cfg) {
  if (cfg.activation == "relu") return Activation::Relu;
  if (cfg.activation == "gelu_new") return Activation::GeluTanh;
  return Activation::Gelu;
}

// out += o(attention(q(x), k(x), v(x))), with the Q, K, V and attn_output taps; appends K and V to the op set's
// cache, when it has one, and attends over the whole cache.
template <class Ops, class Layer>
void attention_block(Ops& ops, const ModelConfig& cfg, int l, const Layer& w, const float* x, float* out,
                     const LayerPass& p) {
  const std::int64_t rows = p.rows(), d = cfg.hidden, qd = cfg.q_dim(), kvd = cfg.kv_dim();
  float* q = ops.buffer(LayerBuffer::Q, static_cast<std::size_t>(rows * qd));
  float* k = ops.buffer(LayerBuffer::K, static_cast<std::size_t>(rows * kvd));
  float* v = ops.buffer(LayerBuffer::V, static_cast<std::size_t>(rows * kvd));
  ops.linear(w.q, x, d, rows, q, false, true);
  ops.linear(w.k, x, d, rows, k, false, true);
  ops.linear(w.v, x, d, rows, v, false, true);

  float scale = 1.0f / std::sqrt(static_cast<float>(cfg.head_dim));
  if (cfg.arch == Architecture::OPT) {
    // Hugging Face's OPT scales q (bias included) before QK^T; the Q tap sees that scaled q.
    ops.scale(q, static_cast<std::size_t>(rows * qd), scale);
    scale = 1.0f;
  } else {
    ops.rotary(q, rows, cfg.heads, cfg.heads / cfg.kv_heads, w, p);
    ops.rotary(k, rows, cfg.kv_heads, 1, w, p);
  }
  ops.tap(l, Tap::Q, q, qd, p);
  ops.tap(l, Tap::K, k, kvd, p);
  ops.tap(l, Tap::V, v, kvd, p);

  AttentionShape s;
  s.batch = p.nseq;
  s.tq = p.seq;
  s.past = p.past;
  s.heads = cfg.heads;
  s.kv_heads = cfg.kv_heads;
  s.head_dim = cfg.head_dim;
  s.kv_ld = kvd;
  s.window = cfg.sliding_window;
  s.scale = scale;
  s.quantize_probs = w.quantize_softmax;
  const float* keys = k;
  const float* values = v;
  s.kv_batch_stride = p.seq * kvd;
  if (KvStore* cache = ops.cache()) {
    const KvView kv = cache->append(l, k, v, p.seq);
    keys = kv.keys;
    values = kv.values;
    s.kv_batch_stride = kv.batch_stride;
  }
  float* attn = ops.buffer(LayerBuffer::Attn, static_cast<std::size_t>(rows * qd));
  ops.attention(q, keys, values, attn, s);
  ops.tap(l, Tap::AttnOutput, attn, qd, p);
  ops.linear(w.o, attn, qd, rows, out, /*accumulate=*/true, true);
}

// out += down(act(up(x))) (OPT: fc2(act(fc1(x))); LLaMA: down(silu(gate(x)) * up(x))), with the ffn_hidden tap.
// taps_only: stops after the tap (a measuring pass that throws the output away).
template <class Ops, class Layer>
void ffn_block(Ops& ops, const ModelConfig& cfg, int l, const Layer& w, const float* x, float* out,
               const LayerPass& p, bool taps_only) {
  const std::int64_t rows = p.rows(), d = cfg.hidden, f = cfg.intermediate;
  float* hidden = ops.buffer(LayerBuffer::Hidden, static_cast<std::size_t>(rows * f));
  if (cfg.arch == Architecture::OPT) {
    ops.linear(w.fc1, x, d, rows, hidden, false, /*bias=*/false);
    ops.bias_activation(ffn_activation(cfg), hidden, rows, f, w.fc1);
  } else {
    float* up = ops.buffer(LayerBuffer::Up, static_cast<std::size_t>(rows * f));
    ops.linear(w.gate, x, d, rows, hidden, false, true);
    ops.linear(w.up, x, d, rows, up, false, true);
    ops.silu_mul(hidden, up, rows, f);
  }
  ops.tap(l, Tap::FfnHidden, hidden, f, p);
  if (taps_only) return;
  ops.linear(cfg.arch == Architecture::OPT ? w.fc2 : w.down, hidden, f, rows, out, /*accumulate=*/true, true);
}

// One decoder layer over the pass's rows: h [rows, hidden] in place, with the attn_input and ffn_input taps.
// taps_only: stops after the layer's last tap, leaving h half-updated (see ffn_block).
template <class Ops, class Layer>
void layer_forward(Ops& ops, const ModelConfig& cfg, int l, const Layer& w, float* h, const LayerPass& p,
                   bool taps_only = false) {
  const std::int64_t rows = p.rows(), d = cfg.hidden;
  const auto n = static_cast<std::size_t>(rows * d);
  float* x = ops.buffer(LayerBuffer::X, n);
  if (cfg.pre_layer_norm) {
    // x = norm(h); h += attn(x); x = norm(h); h += ffn(x). The residual stream h keeps the original order.
    ops.norm(w.attn_norm, h, x, rows);
    ops.tap(l, Tap::AttnInput, x, d, p);
    attention_block(ops, cfg, l, w, x, h, p);
    ops.norm(w.ffn_norm, h, x, rows);
    ops.tap(l, Tap::FfnInput, x, d, p);
    ffn_block(ops, cfg, l, w, x, h, p, taps_only);
  } else {
    // Post-LN OPT (350m): h = LN(h + attn(h)); h = LN(h + ffn(h)).
    ops.copy(x, h, n);
    ops.tap(l, Tap::AttnInput, x, d, p);
    attention_block(ops, cfg, l, w, x, h, p);
    ops.norm(w.attn_norm, h, x, rows);
    ops.copy(h, x, n);
    ops.tap(l, Tap::FfnInput, x, d, p);
    ffn_block(ops, cfg, l, w, x, h, p, taps_only);
    if (taps_only) return;
    ops.norm(w.ffn_norm, h, x, rows);
    ops.copy(h, x, n);
  }
}

}  // namespace rptq::layer
