#pragma once
// Perplexity with the GPTQ/RPTQ convention: the whole text tokenized once (one BOS at its start), cut into
// non-overlapping windows of `seqlen` tokens (the tail is dropped), ppl = exp(mean over windows of the window's
// mean next-token negative log-likelihood).
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace rptq {

class Model;
class ActivationHook;

struct PerplexityOptions {
  std::int64_t seqlen = 2048;
  std::int64_t max_windows = 0;  // 0 = every full window
  std::int64_t batch = 1;        // windows per forward pass
  // Called after each batch with (windows done, windows total); returning false cancels (throws Cancelled).
  std::function<bool(std::int64_t, std::int64_t)> progress;
};

struct PerplexityResult {
  double ppl = 0.0;
  std::int64_t windows = 0;
  std::int64_t seqlen = 0;
  std::int64_t tokens = 0;          // tokens evaluated: windows * seqlen
  std::int64_t tokens_in_text = 0;  // tokens of the whole text, BOS included
  double seconds = 0.0;             // forward passes only (not tokenization)
  double tokens_per_s = 0.0;
  std::vector<double> window_nll;   // mean NLL of each window
};

// The windows an evaluation of `ids` covers: seqlen, windows, tokens and tokens_in_text filled in, nothing
// measured yet. Throws InputError for seqlen < 2, batch < 1 or a text shorter than one window.
PerplexityResult perplexity_windows(std::span<const std::int32_t> ids, const PerplexityOptions& opts);
// Completes a result whose window_nll is filled: seconds (of the forward passes), tokens_per_s and ppl, the exp of
// the mean window NLL.
void finish_perplexity(PerplexityResult& res, double seconds);

// Throws InputError when the text has fewer than seqlen tokens.
PerplexityResult perplexity(const Model& model, std::span<const std::int32_t> ids, const PerplexityOptions& opts,
                            ActivationHook* hook = nullptr);

// Mean next-token NLL of one window's logits [seqlen, vocab] against its ids (positions 0..seqlen-2 predict 1..).
double window_mean_nll(const float* logits, std::int64_t vocab, std::span<const std::int32_t> ids);

}  // namespace rptq
