#include "rptq/model/model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "rptq/model/blas.h"
#include "rptq/io/checkpoint.h"
#include "rptq/base/error.h"
#include "rptq/model/ops.h"
#include "rptq/model/packed_weight.h"
#include "model/decoder_layer.h"

namespace rptq {

int available_cpus() { return std::max(1, omp_get_num_procs()); }

void set_num_threads(int n) {
  const int cpus = available_cpus();
  if (n <= 0 || n > cpus) n = cpus;
  omp_set_num_threads(n);
  blas::set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

// ---------------------------------------------------------------------------------------------------------------
// Scratch buffers of one layer's forward pass, kept per thread and reused: a fresh multi-megabyte buffer per op is
// page-faulted in every time, which costs more than some of the GEMMs. A forward pass started from inside a hook
// on the same thread (nested) gets its own buffers.

struct Model::Scratch {
  Tensor x, q, k, v, attn, hidden, up, embed, head_x, head_y;
  std::vector<float> wtile;  // a tile of a packed linear's weight, dequantized
};

namespace {
thread_local Model::Scratch* t_scratch = nullptr;
thread_local int t_scratch_depth = 0;
}  // namespace

class ScratchLease {
 public:
  ScratchLease() : nested_(t_scratch_depth++ > 0) {
    if (!nested_ && !t_scratch) t_scratch = new Model::Scratch();  // lives as long as the thread
  }
  ~ScratchLease() { --t_scratch_depth; }
  Model::Scratch& get() { return nested_ ? own_ : *t_scratch; }

 private:
  bool nested_;
  Model::Scratch own_;
};

namespace {

// y[rows, out] = x[rows, in] * W^T (+ bias) (+ y when accumulate) for a float or a packed weight.
void run_linear(const LinearWeights& l, const float* x, std::int64_t ldx, std::int64_t rows, const float* bias,
                float* y, bool accumulate, std::vector<float>& tile) {
  if (l.packed) return packed_linear(x, ldx, rows, *l.packed, bias, y, accumulate, tile);
  ops::linear(x, ldx, rows, l.in(), l.weight.data(), bias, l.out(), y, accumulate);
}
}  // namespace

std::int64_t LinearWeights::in() const { return packed ? packed->in : weight.dim(1); }
std::int64_t LinearWeights::out() const { return packed ? packed->out : weight.dim(0); }

Tensor LinearWeights::dense() const {
  if (!packed) return weight;
  Tensor t = Tensor::uninitialized({packed->out, packed->in});
  packed->dequantize(t.data());
  return t;
}

std::size_t LinearWeights::bytes() const {
  return (packed ? packed->bytes() : static_cast<std::size_t>(weight.numel()) * sizeof(float)) +
         static_cast<std::size_t>(bias.numel()) * sizeof(float);
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

namespace {

// Finds a weight under the name prefixes Hugging Face checkpoints use (with and without the "model." of the
// *ForCausalLM wrapper) and converts it to float32 after checking its shape.
class WeightReader {
 public:
  WeightReader(const Checkpoint& ckpt, std::vector<std::string> prefixes, const LoadOptions& opts, std::size_t total)
      : ckpt_(ckpt), prefixes_(std::move(prefixes)), opts_(opts), total_(total) {}

  const RawTensor* find(const std::string& name) const {
    for (const auto& p : prefixes_)
      if (ckpt_.contains(p + name)) return &ckpt_.get(p + name);
    return nullptr;
  }

  Tensor get(const std::string& name, std::vector<std::int64_t> shape) {
    const RawTensor* t = find(name);
    if (!t)
      throw InputError(ckpt_.dir().string() + ": missing tensor \"" + prefixes_.front() + name +
                       "\" (the model's config.json says it should be there)");
    return convert(*t, std::move(shape));
  }

  // A packed linear given in LoadOptions under one of the prefixed names, or null.
  std::shared_ptr<const PackedWeight> packed(const std::string& name) const {
    for (const auto& p : prefixes_) {
      auto it = opts_.packed.find(p + name);
      if (it != opts_.packed.end()) return it->second;
    }
    return nullptr;
  }
  std::string dir() const { return ckpt_.dir().string(); }

  Tensor get_optional(const std::string& name, std::vector<std::int64_t> shape) {
    const RawTensor* t = find(name);
    return t ? convert(*t, std::move(shape)) : Tensor();
  }

  Tensor convert(const RawTensor& t, std::vector<std::int64_t> shape) {
    if (t.shape != shape)
      throw InputError(t.file + ": tensor \"" + t.name + "\" has shape " + t.shape_string() + ", expected " +
                       shape_to_string(shape) + " from config.json");
    Tensor out = Tensor::uninitialized(shape);
    t.to_f32(out.data());
    done_ += t.nbytes();
    if (opts_.progress && !opts_.progress(total_ ? static_cast<double>(done_) / total_ : 1.0, t.name))
      throw Cancelled();
    return out;
  }

 private:
  const Checkpoint& ckpt_;
  std::vector<std::string> prefixes_;
  const LoadOptions& opts_;
  std::size_t total_;
  std::size_t done_ = 0;
};

LinearWeights read_linear(WeightReader& r, const std::string& name, std::int64_t out, std::int64_t in, bool bias) {
  LinearWeights l;
  if (auto p = r.packed(name + ".weight")) {
    if (p->out != out || p->in != in)
      throw InputError(r.dir() + ": packed weight \"" + name + ".weight\" is [" + std::to_string(p->out) + ", " +
                       std::to_string(p->in) + "], expected [" + std::to_string(out) + ", " + std::to_string(in) +
                       "] from config.json");
    l.packed = std::move(p);
  } else {
    l.weight = r.get(name + ".weight", {out, in});
  }
  if (bias) l.bias = r.get(name + ".bias", {out});
  return l;
}

NormWeights read_norm(WeightReader& r, const std::string& name, std::int64_t dim, bool affine, bool has_beta) {
  NormWeights n;
  if (affine) {
    n.gamma = r.get(name + ".weight", {dim});
    if (has_beta) n.beta = r.get(name + ".bias", {dim});
  }
  return n;
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::filesystem::path& model_dir, const LoadOptions& opts) {
  const ModelConfig cfg = ModelConfig::load(model_dir);
  const Checkpoint ckpt = Checkpoint::open(model_dir);
  return from_checkpoint(cfg, ckpt, opts);
}

std::unique_ptr<Model> Model::from_checkpoint(const ModelConfig& cfg, const Checkpoint& ckpt,
                                              const LoadOptions& opts) {
  std::unique_ptr<Model> m(new Model());
  m->cfg_ = cfg;
  std::size_t total = 0;
  for (const auto& [name, t] : ckpt.tensors()) total += t.nbytes();
  const std::int64_t d = cfg.hidden;
  const std::string L = "layers.";

  if (cfg.arch == Architecture::OPT) {
    WeightReader r(ckpt, {"model.decoder.", "decoder.", ""}, opts, total);
    m->embed_tokens_ = r.get("embed_tokens.weight", {cfg.vocab, cfg.embed_dim});
    m->embed_positions_ = r.get("embed_positions.weight", {cfg.max_positions + 2, d});
    if (cfg.embed_dim != d) {
      m->project_in_.weight = r.get("project_in.weight", {d, cfg.embed_dim});
      m->project_out_.weight = r.get("project_out.weight", {cfg.embed_dim, d});
    }
    if (cfg.final_layer_norm) m->final_norm_ = read_norm(r, "final_layer_norm", d, cfg.norm_affine, true);
    for (std::int64_t i = 0; i < cfg.layers; ++i) {
      const std::string p = L + std::to_string(i) + ".";
      DecoderLayerWeights w;
      w.attn_norm = read_norm(r, p + "self_attn_layer_norm", d, cfg.norm_affine, true);
      w.ffn_norm = read_norm(r, p + "final_layer_norm", d, cfg.norm_affine, true);
      w.q = read_linear(r, p + "self_attn.q_proj", d, d, cfg.linear_bias);
      w.k = read_linear(r, p + "self_attn.k_proj", d, d, cfg.linear_bias);
      w.v = read_linear(r, p + "self_attn.v_proj", d, d, cfg.linear_bias);
      w.o = read_linear(r, p + "self_attn.out_proj", d, d, cfg.linear_bias);
      w.fc1 = read_linear(r, p + "fc1", cfg.intermediate, d, cfg.linear_bias);
      w.fc2 = read_linear(r, p + "fc2", d, cfg.intermediate, cfg.linear_bias);
      m->layers_.push_back(std::move(w));
    }
    WeightReader top(ckpt, {""}, opts, total);
    if (!cfg.tie_embeddings) m->lm_head_ = top.get("lm_head.weight", {cfg.vocab, cfg.embed_dim});
  } else {
    WeightReader r(ckpt, {"model.", ""}, opts, total);
    m->embed_tokens_ = r.get("embed_tokens.weight", {cfg.vocab, d});
    m->final_norm_ = read_norm(r, "norm", d, true, false);
    for (std::int64_t i = 0; i < cfg.layers; ++i) {
      const std::string p = L + std::to_string(i) + ".";
      DecoderLayerWeights w;
      w.attn_norm = read_norm(r, p + "input_layernorm", d, true, false);
      w.ffn_norm = read_norm(r, p + "post_attention_layernorm", d, true, false);
      w.q = read_linear(r, p + "self_attn.q_proj", cfg.q_dim(), d, cfg.qkv_bias);
      w.k = read_linear(r, p + "self_attn.k_proj", cfg.kv_dim(), d, cfg.qkv_bias);
      w.v = read_linear(r, p + "self_attn.v_proj", cfg.kv_dim(), d, cfg.qkv_bias);
      w.o = read_linear(r, p + "self_attn.o_proj", d, cfg.q_dim(), cfg.o_bias);
      w.gate = read_linear(r, p + "mlp.gate_proj", cfg.intermediate, d, cfg.mlp_bias);
      w.up = read_linear(r, p + "mlp.up_proj", cfg.intermediate, d, cfg.mlp_bias);
      w.down = read_linear(r, p + "mlp.down_proj", d, cfg.intermediate, cfg.mlp_bias);
      m->layers_.push_back(std::move(w));
    }
    WeightReader top(ckpt, {""}, opts, total);
    if (!cfg.tie_embeddings) m->lm_head_ = top.get("lm_head.weight", {cfg.vocab, d});
  }
  return m;
}

std::int64_t Model::parameter_count() const {
  std::int64_t n = embed_tokens_.numel() + embed_positions_.numel() + lm_head_.numel();
  auto lin = [](const LinearWeights& l) { return (l.packed ? l.out() * l.in() : l.weight.numel()) + l.bias.numel(); };
  auto nrm = [](const NormWeights& w) { return w.gamma.numel() + w.beta.numel(); };
  n += lin(project_in_) + lin(project_out_) + nrm(final_norm_);
  for (const auto& w : layers_) {
    n += nrm(w.attn_norm) + nrm(w.ffn_norm) + lin(w.q) + lin(w.k) + lin(w.v) + lin(w.o);
    n += lin(w.fc1) + lin(w.fc2) + lin(w.gate) + lin(w.up) + lin(w.down);
  }
  return n;
}

std::size_t Model::weight_bytes() const {
  auto t = [](const Tensor& x) { return static_cast<std::size_t>(x.numel()) * sizeof(float); };
  auto nrm = [&](const NormWeights& w) { return t(w.gamma) + t(w.beta); };
  std::size_t n = t(embed_tokens_) + t(embed_positions_) + t(lm_head_) + project_in_.bytes() + project_out_.bytes() +
                  nrm(final_norm_);
  for (const auto& w : layers_) {
    n += nrm(w.attn_norm) + nrm(w.ffn_norm) + w.q.bytes() + w.k.bytes() + w.v.bytes() + w.o.bytes();
    n += w.fc1.bytes() + w.fc2.bytes() + w.gate.bytes() + w.up.bytes() + w.down.bytes();
  }
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Forward pass

void Model::norm(const NormWeights& n, const float* x, float* y, std::int64_t rows, std::int64_t cols) const {
  const float* gamma = n.gamma.empty() ? nullptr : n.gamma.data();
  const std::int32_t* gather = n.gather.empty() ? nullptr : n.gather.data();
  if (cfg_.arch == Architecture::OPT)
    ops::layer_norm(x, y, rows, cols, gamma, n.beta.empty() ? nullptr : n.beta.data(), cfg_.norm_eps, gather);
  else
    ops::rms_norm(x, y, rows, cols, gamma, cfg_.norm_eps, gather);
}

// The CPU's op set of the decoder layer (decoder_layer.h): ops_cpu.cpp's operators, the per-thread scratch, the
// ActivationHook and the host KvCache.
class Model::CpuLayerOps {
 public:
  CpuLayerOps(const Model& m, Scratch& ws, ActivationHook* hook, KvCache* cache)
      : m_(m), ws_(ws), hook_(hook), cache_(cache) {}

  float* buffer(layer::LayerBuffer id, std::size_t n) {
    Tensor* t = nullptr;
    switch (id) {
      case layer::LayerBuffer::X: t = &ws_.x; break;
      case layer::LayerBuffer::Q: t = &ws_.q; break;
      case layer::LayerBuffer::K: t = &ws_.k; break;
      case layer::LayerBuffer::V: t = &ws_.v; break;
      case layer::LayerBuffer::Attn: t = &ws_.attn; break;
      case layer::LayerBuffer::Hidden: t = &ws_.hidden; break;
      case layer::LayerBuffer::Up: t = &ws_.up; break;
      case layer::LayerBuffer::Embed: t = &ws_.embed; break;
      case layer::LayerBuffer::HeadX: t = &ws_.head_x; break;
      case layer::LayerBuffer::HeadY: t = &ws_.head_y; break;
    }
    t->resize({static_cast<std::int64_t>(n)});
    return t->data();
  }
  void linear(const LinearWeights& w, const float* x, std::int64_t ldx, std::int64_t rows, float* y, bool accumulate,
              bool bias) {
    run_linear(w, x, ldx, rows, bias ? w.bias_data() : nullptr, y, accumulate, ws_.wtile);
  }
  void norm(const NormWeights& n, const float* x, float* y, std::int64_t rows) {
    m_.norm(n, x, y, rows, m_.cfg_.hidden);
  }
  void copy(float* dst, const float* src, std::size_t n) { std::memcpy(dst, src, n * sizeof(float)); }
  void scale(float* x, std::size_t n, float s) {
    const auto count = static_cast<std::int64_t>(n);
#pragma omp parallel for schedule(static) if (count > (1 << 14))
    for (std::int64_t i = 0; i < count; ++i) x[i] *= s;
  }
  void rotary(float* x, std::int64_t rows, std::int64_t heads, std::int64_t group, const DecoderLayerWeights& w,
              const layer::LayerPass& p) {
    pos_.resize(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) pos_[static_cast<std::size_t>(r)] = p.past + r % p.seq;
    const ModelConfig& cfg = m_.cfg_;
    ops::rotary(x, rows, heads, cfg.head_dim, pos_.data(), cfg.rope_theta,
                w.rope_index.empty() ? nullptr : w.rope_index.data(), group);
  }
  void bias_activation(layer::Activation a, float* x, std::int64_t rows, std::int64_t cols, const LinearWeights& w) {
    switch (a) {
      case layer::Activation::Relu: return ops::bias_relu(x, rows, cols, w.bias_data());
      case layer::Activation::GeluTanh: return ops::bias_gelu_tanh(x, rows, cols, w.bias_data());
      case layer::Activation::Gelu: return ops::bias_gelu(x, rows, cols, w.bias_data());
    }
  }
  void silu_mul(float* gate, const float* up, std::int64_t rows, std::int64_t cols) {
    ops::silu_mul(gate, up, rows, cols);
  }
  void attention(const float* q, const float* k, const float* v, float* out, const AttentionShape& s) {
    ops::attention(q, k, v, out, s);
  }
  void tap(int layer, Tap t, float* x, std::int64_t cols, const layer::LayerPass& p) {
    if (hook_) hook_->on_activation(layer, t, {x, p.rows(), cols, cols, p.seq, p.past});
  }
  KvStore* cache() { return cache_; }

  void embedding(std::span<const std::int32_t> tokens, float* y) {
    const auto n = static_cast<std::int64_t>(tokens.size());
    const std::int64_t e = m_.cfg_.embed_dim;
    const float* table = m_.embed_tokens_.data();
#pragma omp parallel for schedule(static) if (n * e > (1 << 14))
    for (std::int64_t i = 0; i < n; ++i)
      std::memcpy(y + i * e, table + static_cast<std::int64_t>(tokens[static_cast<std::size_t>(i)]) * e,
                  static_cast<std::size_t>(e) * sizeof(float));
  }
  void add_positions(float* h, const layer::LayerPass& p) {
    // OPT's learned positions start at offset 2 (fairseq's padding convention).
    const std::int64_t n = p.rows(), d = m_.cfg_.hidden;
    const float* table = m_.embed_positions_.data();
#pragma omp parallel for schedule(static) if (n * d > (1 << 14))
    for (std::int64_t i = 0; i < n; ++i) {
      const float* pe = table + (p.past + i % p.seq + 2) * d;
      float* hr = h + i * d;
      for (std::int64_t c = 0; c < d; ++c) hr[c] += pe[c];
    }
  }
  void embedding_with_positions(std::span<const std::int32_t> tokens, const layer::LayerPass& p, float* y) {
    embedding(tokens, y);
    add_positions(y, p);
  }
  void project(layer::Projection which, const float* x, std::int64_t rows, float* y) {
    const ModelConfig& cfg = m_.cfg_;
    const std::int64_t d = cfg.hidden, e = cfg.embed_dim;
    switch (which) {
      case layer::Projection::In:
        return ops::linear(x, e, rows, e, m_.project_in_.weight.data(), nullptr, d, y);
      case layer::Projection::Out:
        return ops::linear(x, d, rows, d, m_.project_out_.weight.data(), nullptr, e, y);
      case layer::Projection::Head: {
        const Tensor& w = m_.lm_head_.empty() ? m_.embed_tokens_ : m_.lm_head_;
        return ops::linear(x, e, rows, e, w.data(), nullptr, cfg.vocab, y);
      }
    }
  }
  void final_norm(const float* x, float* y, std::int64_t rows) {
    m_.norm(m_.final_norm_, x, y, rows, m_.cfg_.hidden);
  }

 private:
  const Model& m_;
  Scratch& ws_;
  ActivationHook* hook_;
  KvCache* cache_;
  std::vector<std::int64_t> pos_;
};

void Model::layer_forward(int layer, Tensor& h, std::int64_t batch, KvCache* cache, ActivationHook* hook,
                          bool taps_only) const {
  if (layer < 0 || layer >= static_cast<int>(layers_.size()))
    throw std::out_of_range("layer " + std::to_string(layer) + " out of range");
  const std::int64_t rows = h.dim(0);
  layer::LayerPass p;
  p.nseq = batch;
  p.seq = rows / batch;
  p.past = cache ? cache->length() : 0;
  if (cache && (cache->batch() != batch || p.past + p.seq > cache->capacity()))
    throw InputError("KV cache holds " + std::to_string(cache->batch()) + " x " + std::to_string(cache->capacity()) +
                     " tokens; " + std::to_string(batch) + " x " + std::to_string(p.past + p.seq) + " needed");
  ScratchLease lease;
  CpuLayerOps ops(*this, lease.get(), hook, cache);
  layer::layer_forward(ops, cfg_, layer, layers_[static_cast<std::size_t>(layer)], h.data(), p, taps_only);
}

Tensor Model::embed(std::span<const std::int32_t> tokens, std::int64_t batch, std::int64_t past) const {
  layer::LayerPass p;
  p.nseq = batch;
  p.seq = layer::check_tokens(cfg_, tokens, batch, past);
  p.past = past;
  Tensor h = Tensor::uninitialized({p.rows(), cfg_.arch == Architecture::OPT ? cfg_.hidden : cfg_.embed_dim});
  ScratchLease lease;
  CpuLayerOps ops(*this, lease.get(), nullptr, nullptr);
  layer::embed(ops, cfg_, tokens, p, h.data());
  return h;
}

Tensor Model::head(const Tensor& hidden) const {
  Tensor logits;
  head(hidden.data(), hidden.dim(0), logits);
  return logits;
}

void Model::head(const float* hidden, std::int64_t rows, Tensor& logits) const {
  logits.resize({rows, cfg_.vocab});
  ScratchLease lease;
  CpuLayerOps ops(*this, lease.get(), nullptr, nullptr);
  layer::head(ops, cfg_, hidden, rows, logits.data());
}

Tensor Model::forward(std::span<const std::int32_t> tokens, std::int64_t batch, KvCache* cache,
                      ActivationHook* hook, bool last_only) const {
  Tensor logits;
  forward(tokens, batch, logits, cache, hook, last_only);
  return logits;
}

void Model::forward(std::span<const std::int32_t> tokens, std::int64_t batch, Tensor& logits, KvCache* cache,
                    ActivationHook* hook, bool last_only) const {
  const std::int64_t past = cache ? cache->length() : 0;
  Tensor h = embed(tokens, batch, past);
  const std::int64_t seq = h.dim(0) / batch;
  for (int l = 0; l < static_cast<int>(layers_.size()); ++l) layer_forward(l, h, batch, cache, hook);
  if (cache) cache->advance(seq);
  if (last_only && seq > 1) {
    const std::int64_t d = cfg_.hidden;
    Tensor last = Tensor::uninitialized({batch, d});
    for (std::int64_t b = 0; b < batch; ++b)
      std::memcpy(last.data() + b * d, h.data() + ((b + 1) * seq - 1) * d, static_cast<std::size_t>(d) * 4);
    head(last.data(), batch, logits);
    return;
  }
  head(h.data(), h.dim(0), logits);
}

}  // namespace rptq
