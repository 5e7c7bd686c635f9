#pragma once
// A decoder-only language model (OPT or LLaMA family) on the CPU: float32 weights, OpenBLAS GEMMs, OpenMP for
// the rest. Every activation RPTQ quantizes passes through an ActivationHook, so calibration, reordering and
// quantization observe and transform them without a copy of the layer code.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "rptq/model/model_config.h"
#include "rptq/model/tap.h"
#include "rptq/base/tensor.h"

namespace rptq {

class Checkpoint;


// A row-major [rows, cols] view of an activation with rows `ld` floats apart.
struct ActivationView {
  float* data = nullptr;
  std::int64_t rows = 0, cols = 0, ld = 0;
  // The rows are sequences of `seq` consecutive tokens (0: all rows are one sequence), the first of each at
  // position `past` (a KV cache's length), so a hook can tell the tokens apart (QuantConfig::fp_prefix).
  std::int64_t seq = 0, past = 0;
  float* row(std::int64_t r) const { return data + r * ld; }
};

// Observes (and may change, in place) every tap of every layer. Called from the forward-pass thread.
class ActivationHook {
 public:
  virtual ~ActivationHook() = default;
  virtual void on_activation(int layer, Tap tap, const ActivationView& act) = 0;
};

struct PackedWeight;  // packed_weight.h

struct LinearWeights {
  Tensor weight;  // [out, in], as Hugging Face's nn.Linear stores it; empty when the weight is packed
  Tensor bias;    // [out] or empty
  // A quantized linear: its packed codes and group quantizers, dequantized tile by tile in the forward pass.
  std::shared_ptr<const PackedWeight> packed;
  std::int64_t in() const;
  std::int64_t out() const;
  const float* bias_data() const { return bias.empty() ? nullptr : bias.data(); }
  // The weight as float32 [out, in]: a copy of `weight`, or `packed` dequantized.
  Tensor dense() const;
  // Bytes the weight and bias take in memory.
  std::size_t bytes() const;
};

struct NormWeights {
  Tensor gamma;  // empty when the norm has no affine weight
  Tensor beta;   // empty for RMSNorm or no bias
  std::vector<std::int32_t> gather;  // when non-empty, the norm writes channel gather[k] to position k (R1/R4)
};

struct DecoderLayerWeights {
  NormWeights attn_norm;  // OPT self_attn_layer_norm / LLaMA input_layernorm
  NormWeights ffn_norm;   // OPT final_layer_norm / LLaMA post_attention_layernorm
  LinearWeights q, k, v, o;
  LinearWeights fc1, fc2;          // OPT
  LinearWeights gate, up, down;    // LLaMA
  // LLaMA after an R2 reorder: [kv_heads, head_dim / 2], the original rotary pair each reordered pair is (empty:
  // the identity). See ops::rotary.
  std::vector<std::int32_t> rope_index;
  // RPTQ: quantize the attention probabilities on the fixed 8-bit grid round(p * 255) / 255.
  bool quantize_softmax = false;
};

// RPTQ's quantized KV cache: per layer, K and V stored as integer codes of their bit width, packed densely
// (bitpack.h), with static per-cluster parameters over the (reordered) channels, shared by all tokens.
struct KvSideQuantization {
  int bits = 0;                          // 2..8
  std::vector<std::int64_t> boundaries;  // clusters over kv_dim channels
  std::vector<float> scale, zero_point;  // per cluster: value = (code - zero_point) * scale
};
struct KvQuantization {
  std::vector<KvSideQuantization> k, v;  // per layer
};
struct KvChannelParams;  // kv_cache.cpp

// What attention reads of a KV cache once a step's keys and values are appended: positions 0 .. length() + seq - 1
// of every sequence, float32 rows kv_dim wide, sequence b's at keys + b * batch_stride (host or device memory, as
// the cache is).
struct KvView {
  const float* keys = nullptr;
  const float* values = nullptr;
  std::int64_t batch_stride = 0;
};

// The keys and values of the tokens seen so far, per layer, for incremental generation: the one interface the
// decoder layer (core/src/model/decoder_layer.h) writes through, with a host implementation (KvCache, below) and a
// device one (the CUDA runner's, core/src/cuda/device_kv_cache.h).
class KvStore {
 public:
  virtual ~KvStore() = default;
  std::int64_t length() const { return length_; }      // tokens cached per sequence
  std::int64_t capacity() const { return capacity_; }
  std::int64_t batch() const { return batch_; }
  std::int64_t kv_dim() const { return kv_dim_; }
  virtual bool packed() const = 0;    // RPTQ's packed codes (a KvQuantization) rather than float32
  virtual std::size_t bytes() const = 0;  // bytes of the allocations holding K and V (codes and cluster parameters)
  // What the same cache takes in FP16: 2 (K, V) x layers x batch x capacity x kv_dim x 2 bytes.
  std::size_t fp16_bytes() const {
    return 2 * static_cast<std::size_t>(layers_ * batch_ * capacity_ * kv_dim_) * 2;
  }
  void clear() { length_ = 0; }

  // Appends layer `layer`'s keys and values of a step, rows [batch, seq, kv_dim] (the cache's memory), at positions
  // length() .. length() + seq - 1, and returns what attention reads. A packed cache rounds each value to its code
  // (they must already be on the cluster grids, as RPTQ's K/V quantizers leave them) and reads the codes back.
  virtual KvView append(int layer, const float* k, const float* v, std::int64_t seq) = 0;
  // Once every layer has appended a step of `seq` tokens: they count as cached.
  void advance(std::int64_t seq);

 protected:
  KvStore(std::int64_t layers, std::int64_t batch, std::int64_t capacity, std::int64_t kv_dim);
  // Throws InputError when a step of `seq` tokens does not fit.
  void check_room(std::int64_t seq) const;

  std::int64_t layers_, batch_, capacity_, kv_dim_, length_ = 0;
};

// The host cache: float32, or packed codes when made with a KvQuantization (then attention reads each layer's K/V
// dequantized into a scratch pair the cache keeps).
class KvCache : public KvStore {
 public:
  KvCache(const ModelConfig& cfg, std::int64_t batch, std::int64_t capacity,
          std::shared_ptr<const KvQuantization> quant = nullptr);
  bool packed() const override { return quant_ != nullptr; }
  std::size_t bytes() const override;
  KvView append(int layer, const float* k, const float* v, std::int64_t seq) override;

  // Float cache: layer l's K or V, [batch, capacity, kv_dim].
  float* keys(int layer) { return k_[layer].data(); }
  float* values(int layer) { return v_[layer].data(); }

  // Packed cache: stores rows [batch, seq, kv_dim] of K and V at positions past .. past + seq - 1 (the values must
  // already be on the cluster grids, as RPTQ's K/V quantizers leave them; each is rounded to its code), and reads
  // positions 0 .. len - 1 back as float [batch, len, kv_dim].
  void store(int layer, const float* k, const float* v, std::int64_t seq, std::int64_t past);
  void load(int layer, std::int64_t len, float* k, float* v) const;

 private:
  std::vector<Tensor> k_, v_;
  std::shared_ptr<const KvQuantization> quant_;
  std::size_t k_row_bytes_ = 0, v_row_bytes_ = 0;
  std::vector<std::vector<std::uint8_t>> kq_, vq_;  // per layer: [batch, capacity, row bytes]
  std::vector<std::shared_ptr<const KvChannelParams>> kp_, vp_;  // per layer: parameters expanded per channel
  std::vector<float> k_read_, v_read_;  // packed: the layer being attended, read back [batch, length, kv_dim]
};

struct LoadOptions {
  // Called with (fraction done, what) while weights load; returning false cancels (throws Cancelled).
  std::function<bool(double, const std::string&)> progress;
  // Linears that come already packed (a quantized checkpoint), by their weight's name in the checkpoint
  // ("layers.0.self_attn.q_proj.weight"): used instead of a float tensor of that name.
  std::map<std::string, std::shared_ptr<const PackedWeight>> packed;
};

class Model {
 public:
  // Loads config.json and the weights of a Hugging Face model folder into float32.
  // Throws InputError naming the file and the problem (missing tensor, wrong shape, unsupported architecture).
  static std::unique_ptr<Model> load(const std::filesystem::path& model_dir, const LoadOptions& opts = {});
  static std::unique_ptr<Model> from_checkpoint(const ModelConfig& cfg, const Checkpoint& ckpt,
                                                const LoadOptions& opts = {});

  const ModelConfig& config() const { return cfg_; }
  std::int64_t parameter_count() const;  // counted as Hugging Face does (tied head counted once)

  // Full forward pass over tokens [batch, seq] (row-major, equal lengths). With a cache, the tokens continue the
  // cached sequences and their K/V are appended. Returns logits [batch * seq, vocab] (or, when last_only, only
  // each sequence's last position: [batch, vocab]).
  Tensor forward(std::span<const std::int32_t> tokens, std::int64_t batch, KvCache* cache = nullptr,
                 ActivationHook* hook = nullptr, bool last_only = false) const;
  // The same into `logits`, reusing its allocation: a loop that keeps the buffer does not page-fault a fresh
  // [rows, vocab] matrix in on every call.
  void forward(std::span<const std::int32_t> tokens, std::int64_t batch, Tensor& logits, KvCache* cache = nullptr,
               ActivationHook* hook = nullptr, bool last_only = false) const;

  // The pieces of forward(), for layer-by-layer work (calibration). `hidden` is [batch * seq, hidden].
  Tensor embed(std::span<const std::int32_t> tokens, std::int64_t batch, std::int64_t past = 0) const;
  // taps_only: stop after the layer's last tap (FfnHidden), skipping the down projection; `hidden` is left
  // half-updated (a measuring pass that throws the outputs away).
  void layer_forward(int layer, Tensor& hidden, std::int64_t batch, KvCache* cache = nullptr,
                     ActivationHook* hook = nullptr, bool taps_only = false) const;
  // Final norm (+ project_out) then the output head: logits [rows, vocab] for hidden [rows, hidden].
  Tensor head(const Tensor& hidden) const;
  // The same into `logits`, reusing its allocation (evaluation loops call this once per chunk of rows).
  void head(const float* hidden, std::int64_t rows, Tensor& logits) const;

  DecoderLayerWeights& layer(int i) { return layers_.at(static_cast<std::size_t>(i)); }
  const DecoderLayerWeights& layer(int i) const { return layers_.at(static_cast<std::size_t>(i)); }
  // The weights outside the decoder layers, read-only (for export); a tensor the architecture lacks is empty.
  struct OuterWeights {
    const Tensor& embed_tokens;
    const Tensor& embed_positions;                 // OPT
    const LinearWeights &project_in, &project_out;  // OPT when word_embed_proj_dim != hidden
    const NormWeights& final_norm;
    const Tensor& lm_head;  // empty when tied to embed_tokens
  };
  OuterWeights outer_weights() const {
    return {embed_tokens_, embed_positions_, project_in_, project_out_, final_norm_, lm_head_};
  }

  // Weight bytes held in memory: float32 tensors, and packed linears as their codes and group quantizers.
  std::size_t weight_bytes() const;

  struct Scratch;  // implementation detail: per-thread buffers of one layer's pass (model.cpp)

 private:
  class CpuLayerOps;  // the decoder layer's CPU op set (model.cpp)
  Model() = default;
  void norm(const NormWeights& n, const float* x, float* y, std::int64_t rows, std::int64_t cols) const;

  ModelConfig cfg_;
  Tensor embed_tokens_;     // [vocab, embed_dim]
  Tensor embed_positions_;  // OPT: [max_positions + 2, hidden]
  LinearWeights project_in_, project_out_;  // OPT when word_embed_proj_dim != hidden (no bias)
  NormWeights final_norm_;
  Tensor lm_head_;          // [vocab, embed_dim]; empty when tied to embed_tokens_
  std::vector<DecoderLayerWeights> layers_;
};

// Sets the threads used by OpenMP loops and OpenBLAS: 0 (or fewer) = all available CPUs; more than the available
// CPUs is clamped to them (oversubscribing only slows the GEMMs, and OpenBLAS's threads, each with its own buffers,
// can spin when short of memory).
void set_num_threads(int n);
int num_threads();
// The CPUs this process may run on (its affinity mask).
int available_cpus();

}  // namespace rptq
