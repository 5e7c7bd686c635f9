#include "rptq/eval/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "rptq/base/error.h"
#include "rptq/model/model.h"

namespace rptq {

Sampler::Sampler(float temperature, std::int64_t top_k, std::uint64_t seed)
    : temperature_(temperature), top_k_(top_k), state_(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))  // NaN fails the first test
    throw InputError("temperature must be a finite number, 0 or more; got " + std::to_string(temperature));
  if (top_k < 0) throw InputError("top-k must not be negative");
}

double Sampler::uniform() {
  // splitmix64: small, fast and the same on every platform, so a seed reproduces a sample everywhere.
  std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

std::int32_t Sampler::pick(const float* logits, std::int64_t vocab) {
  if (temperature_ == 0.0f) return static_cast<std::int32_t>(std::max_element(logits, logits + vocab) - logits);
  std::vector<std::int32_t> idx(static_cast<std::size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  std::int64_t n = vocab;
  if (top_k_ > 0 && top_k_ < vocab) {
    std::partial_sort(idx.begin(), idx.begin() + top_k_, idx.end(),
                      [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    n = top_k_;
  }
  float mx = -INFINITY;
  for (std::int64_t i = 0; i < n; ++i) mx = std::max(mx, logits[idx[i]]);
  std::vector<double> p(static_cast<std::size_t>(n));
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += p[i] = std::exp((logits[idx[i]] - mx) / temperature_);
  double u = uniform() * sum;
  for (std::int64_t i = 0; i < n; ++i) {
    u -= p[i];
    if (u < 0) return idx[i];
  }
  return idx[n - 1];
}

std::int64_t generation_capacity(const Model& model, std::span<const std::int32_t> prompt,
                                 const GenerateOptions& opts) {
  if (prompt.empty()) throw InputError("the prompt has no tokens");
  if (opts.max_new_tokens < 0) throw InputError("max-new-tokens must not be negative");
  const ModelConfig& cfg = model.config();
  const auto n = static_cast<std::int64_t>(prompt.size());
  // Every architecture stops at the end of its context: OPT has no position embeddings past it, and a LLaMA-family
  // model was not trained on positions past it (a 1M-token prompt would also run for hours).
  if (n > cfg.max_positions)
    throw InputError("the prompt has " + std::to_string(n) + " tokens; the model takes at most " +
                     std::to_string(cfg.max_positions) + " (max_position_embeddings)");
  return std::min(n + std::min(opts.max_new_tokens, cfg.max_positions), cfg.max_positions);
}

void generation_loop(GenerateResult& res, std::span<const std::int32_t> prompt, const GenerateOptions& opts,
                     std::int64_t vocab, std::int64_t capacity,
                     const std::function<const float*(std::span<const std::int32_t>)>& step,
                     const std::function<bool(std::int32_t)>& on_token) {
  res.prompt_tokens = static_cast<std::int64_t>(prompt.size());
  res.kv_bits = opts.kv_quant ? opts.kv_quant->k.front().bits : 32;
  Sampler sampler(opts.temperature, opts.top_k, opts.seed);

  auto t0 = std::chrono::steady_clock::now();
  const float* logits = step(prompt);
  std::int64_t cached = static_cast<std::int64_t>(prompt.size());
  auto t1 = std::chrono::steady_clock::now();
  res.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  for (std::int64_t i = 0; i < opts.max_new_tokens; ++i) {
    const std::int32_t next = sampler.pick(logits, vocab);
    res.tokens.push_back(next);
    const bool keep_going = !on_token || on_token(next);
    if (opts.stop_at_eos && opts.eos_id >= 0 && next == opts.eos_id) {
      res.stopped_at_eos = true;
      break;
    }
    if (!keep_going || i + 1 == opts.max_new_tokens || cached >= capacity) break;
    logits = step(std::span<const std::int32_t>(&next, 1));
    ++cached;
  }
  res.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
}

GenerateResult generate(const Model& model, std::span<const std::int32_t> prompt, const GenerateOptions& opts,
                        const std::function<bool(std::int32_t)>& on_token, ActivationHook* hook) {
  const std::int64_t capacity = generation_capacity(model, prompt, opts);
  GenerateResult res;
  KvCache cache(model.config(), 1, capacity, opts.kv_quant);
  res.kv_cache_bytes = cache.bytes();
  res.kv_cache_fp16_bytes = cache.fp16_bytes();
  Tensor logits;
  generation_loop(res, prompt, opts, model.config().vocab, capacity,
                  [&](std::span<const std::int32_t> tokens) {
                    model.forward(tokens, 1, logits, &cache, hook, /*last_only=*/true);
                    return logits.data();
                  },
                  on_token);
  return res;
}

}  // namespace rptq
