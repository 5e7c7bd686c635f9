#pragma once
// The decoder layer, written once: the order of its operations, where its taps are, its residual wiring and its
// KV-cache step, over an op set that runs them on the CPU (CpuLayerOps, model.cpp) or on a CUDA GPU (the runner's
// ops, cuda/cuda_runner.cpp). A new architecture variant, or a fix, is made here for both devices. The model's two
// ends (embed: token rows, OPT's projection and learned positions; head: final norm, projection, output head) are
// written here once too.
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
// and for the model's ends:
//   void embedding(std::span<const std::int32_t> tokens, float* y)      rows of the token embedding table
//   void add_positions(float* h, const LayerPass& p)                    OPT's learned positions (offset 2)
//   void embedding_with_positions(tokens, const LayerPass& p, float* y) the two at once (a kernel may fuse them)
//   void project(Projection which, const float* x, std::int64_t rows, float* y)   an outer weight, no bias
//   void final_norm(const float* x, float* y, std::int64_t rows)
// where Linear, Norm and Layer are the op set's weight types (Layer has attn_norm, ffn_norm, q, k, v, o, fc1, fc2,
// gate, up, down and quantize_softmax).
#include <cmath>
#include <cstdint>
#include <span>
#include <string>

#include "rptq/base/error.h"
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

enum class LayerBuffer { X, Q, K, V, Attn, Hidden, Up, Embed, HeadX, HeadY };

// The weights outside the decoder layers that the ends multiply by: OPT's project_in [hidden, embed_dim] and
// project_out [embed_dim, hidden], and the output head [vocab, embed_dim] (the token embeddings when tied).
enum class Projection { In, Out, Head };

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

// ---------------------------------------------------------------------------------------------------------------
// The model's ends

// Checks a pass's tokens against the model, on either device: nseq equal sequences, every id inside the vocabulary,
// and (OPT's learned positions) past + seq within the model's positions. Returns seq. Throws InputError.
inline std::int64_t check_tokens(const ModelConfig& cfg, std::span<const std::int32_t> tokens, std::int64_t nseq,
                                 std::int64_t past) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  if (nseq <= 0 || n % nseq != 0)
    throw InputError(std::to_string(n) + " tokens cannot form " + std::to_string(nseq) + " equal sequences");
  const std::int64_t seq = n / nseq;
  for (std::int32_t id : tokens)
    if (id < 0 || id >= cfg.vocab)
      throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (size " +
                       std::to_string(cfg.vocab) + ")");
  if (cfg.arch == Architecture::OPT && past + seq > cfg.max_positions)
    throw InputError("sequence of " + std::to_string(past + seq) + " tokens is longer than the model's " +
                     std::to_string(cfg.max_positions) + " positions");
  return seq;
}

// The hidden state h [rows, hidden] the first layer reads: the tokens' embedding rows; OPT projects them to hidden
// when embed_dim differs and adds the learned positions past + r % seq.
template <class Ops>
void embed(Ops& ops, const ModelConfig& cfg, std::span<const std::int32_t> tokens, const LayerPass& p, float* h) {
  const std::int64_t d = cfg.hidden, e = cfg.embed_dim;
  if (cfg.arch != Architecture::OPT) return ops.embedding(tokens, h);
  if (e == d) return ops.embedding_with_positions(tokens, p, h);
  float* tok = ops.buffer(LayerBuffer::Embed, static_cast<std::size_t>(p.rows() * e));
  ops.embedding(tokens, tok);
  ops.project(Projection::In, tok, p.rows(), h);
  ops.add_positions(h, p);
}

// Logits [rows, vocab] of the last layer's hidden rows [rows, hidden]: the final norm (OPT without one: none),
// OPT's project_out when embed_dim differs, then the output head.
template <class Ops>
void head(Ops& ops, const ModelConfig& cfg, const float* hidden, std::int64_t rows, float* logits) {
  const std::int64_t d = cfg.hidden, e = cfg.embed_dim;
  float* x = ops.buffer(LayerBuffer::HeadX, static_cast<std::size_t>(rows * d));
  if (cfg.arch != Architecture::OPT || cfg.final_layer_norm)
    ops.final_norm(hidden, x, rows);
  else
    ops.copy(x, hidden, static_cast<std::size_t>(rows * d));
  if (e != d) {
    float* y = ops.buffer(LayerBuffer::HeadY, static_cast<std::size_t>(rows * e));
    ops.project(Projection::Out, x, rows, y);
    x = y;
  }
  ops.project(Projection::Head, x, rows, logits);
}

}  // namespace rptq::layer
