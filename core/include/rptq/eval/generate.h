#pragma once
// Autoregressive generation with a KV cache: greedy when temperature is 0, otherwise seeded sampling from the
// temperature-scaled distribution restricted to the top-k tokens.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

namespace rptq {

class Model;
class ActivationHook;
struct KvQuantization;

struct GenerateOptions {
  std::int64_t max_new_tokens = 64;
  float temperature = 0.0f;  // 0 = greedy
  std::int64_t top_k = 0;    // 0 = no restriction
  std::uint64_t seed = 0;
  bool stop_at_eos = true;
  std::int32_t eos_id = -1;  // stop token (-1: none)
  std::shared_ptr<const KvQuantization> kv_quant;  // packed KV cache (RPTQ); null: float32 cache
};

struct GenerateResult {
  std::vector<std::int32_t> tokens;  // the generated tokens (prompt excluded)
  std::int64_t prompt_tokens = 0;
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
  std::size_t kv_cache_bytes = 0;       // bytes of the KV cache allocation (codes and parameters when packed)
  std::size_t kv_cache_fp16_bytes = 0;  // the same cache in FP16
  int kv_bits = 32;                     // bits per cached value (32: float32 cache)
  bool stopped_at_eos = false;
};

// on_token is called with each new token as soon as it is chosen; returning false stops generation.
GenerateResult generate(const Model& model, std::span<const std::int32_t> prompt, const GenerateOptions& opts,
                        const std::function<bool(std::int32_t)>& on_token = {}, ActivationHook* hook = nullptr);

// What generate() does around the forward passes, for every device that runs them (the CPU here, the GPU in
// cuda_runner.cpp):
// The KV cache's capacity: the prompt plus max_new_tokens, at most the model's positions (max_position_embeddings;
// generation stops there). Checks the prompt (InputError when longer than the positions) and options.
std::int64_t generation_capacity(const Model& model, std::span<const std::int32_t> prompt,
                                 const GenerateOptions& opts);
// The prefill and decoding loop. step(tokens) runs `tokens` after those already cached, appends them to the cache
// and returns the last one's logits (vocab floats, valid until the next call). Fills res.tokens, prompt_tokens,
// kv_bits, the seconds and stopped_at_eos; the caller fills the cache's bytes.
void generation_loop(GenerateResult& res, std::span<const std::int32_t> prompt, const GenerateOptions& opts,
                     std::int64_t vocab, std::int64_t capacity,
                     const std::function<const float*(std::span<const std::int32_t>)>& step,
                     const std::function<bool(std::int32_t)>& on_token);

// Picks the next token from one row of logits.
class Sampler {
 public:
  Sampler(float temperature, std::int64_t top_k, std::uint64_t seed);
  std::int32_t pick(const float* logits, std::int64_t vocab);

 private:
  float temperature_;
  std::int64_t top_k_;
  std::uint64_t state_;
  double uniform();  // [0, 1)
};

}  // namespace rptq
