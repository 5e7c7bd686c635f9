#pragma once
// The FP model and its quantized version side by side on the same windows (GPTQ/RPTQ perplexity convention):
// perplexity of each, the KL divergence of the quantized next-token distribution from the FP one, and how often
// their top-1 predictions agree, with the distribution of the per-position KL (its percentiles and maximum, as
// llama.cpp's KL-divergence statistics report it). Several texts at once: compare_texts in rptq/engine.h.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "rptq/eval/perplexity.h"

namespace rptq {

class Model;
class ActivationHook;

struct CompareResult {
  PerplexityResult fp, q;
  double kl = 0;              // mean over predicted positions of KL(P_fp || P_q), in nats
  // The distribution of the per-position KL(P_fp || P_q) (nats): nearest-rank percentiles (kl_percentile) of the
  // positions' values, and their maximum. Each is one position's KL, never an interpolation.
  double kl_p50 = 0, kl_p90 = 0, kl_p99 = 0, kl_max = 0;
  double top1_agreement = 0;  // fraction of predicted positions where argmax P_fp == argmax P_q
  double top1_changed = 0;    // the others' fraction: positions whose top-1 token changed, (positions - agreeing) /
                              // positions (llama.cpp reports 1 - this as "same top p")
  std::int64_t positions = 0; // predicted positions: windows x (seqlen - 1)
  double seconds = 0;
};

// The p-th percentile (0 < p <= 100) of `sorted` (ascending) by the nearest-rank definition: the smallest value
// with at least p% of the values at or below it, sorted[ceil(p * N / 100) - 1] for N values (the rank clamped to
// [1, N]; p * N / 100 is computed in double, exact for whole-number p). p = 100 gives the maximum, p = 50 of an even
// count the lower middle value. llama.cpp interpolates linearly between neighbours instead; on the thousands of
// positions of a comparison the two differ by about one position's spacing. 0 for no values.
double kl_percentile(std::span<const double> sorted, double p);

// One text of a multi-text comparison: its name in tables ("wikitext2-sample"), the file it came from (reported,
// not read here) and its token ids, the whole text tokenized with one BOS as perplexity() expects.
struct CompareText {
  std::string name, path;
  std::vector<std::int32_t> ids;
};

// The default texts of a multi-text comparison, as paths relative to the shipped resources folder (resources/ of
// the source tree, share/rptq-workbench/resources when installed): the WikiText-2 and the C4 sample. PTB is not
// shipped (resources/README.md says why).
std::vector<std::string> default_compare_texts();

// The evaluation windows of every text under opts (perplexity_windows), added up: what a multi-text comparison's
// progress counts to. Checks every text before any work: a text shorter than one window throws InputError naming it
// ("text 'ptb' (data/ptb.txt): the text has 90 tokens, fewer than one window of 128").
std::int64_t compare_texts_windows(std::span<const CompareText> texts, const PerplexityOptions& opts);

// fp and q may be the same Model object (with q_hook the only difference). Throws InputError as perplexity() does.
CompareResult compare_models(const Model& fp, ActivationHook* fp_hook, const Model& q, ActivationHook* q_hook,
                             std::span<const std::int32_t> ids, const PerplexityOptions& opts);

// compare_models' bookkeeping, shared by the CPU and the GPU path (core/src/cuda/cuda_runner.h): the windows of `ids`
// (throws InputError as perplexity() does), the per-window NLL of both models, the KL / top-1 sums, every position's
// KL (8 bytes per predicted position, for the percentiles), and the result.
class CompareAccumulator {
 public:
  CompareAccumulator(std::span<const std::int32_t> ids, const PerplexityOptions& opts, std::int64_t fp_vocab,
                     std::int64_t q_vocab);
  std::int64_t windows() const { return windows_; }
  std::span<const std::int32_t> window(std::int64_t w) const;
  // Logit rows [n, vocab] of both models at positions r0 .. r0 + n - 1 of window w (each predicting the next).
  void add_rows(std::int64_t w, const float* fp_logits, const float* q_logits, std::int64_t r0, std::int64_t n);
  // The same from sums over n rows that another device computed (the GPU's compare_logits_rows): the targets' NLLs
  // under each model, the KL divergences, the count of rows whose argmaxes agree, and the n rows' KLs in row order
  // (row_kl.size() == n, else std::invalid_argument). The mean KL is the kl sums' (the rows' KLs give only the
  // percentiles).
  void add_sums(std::int64_t n, double nll_fp, double nll_q, double kl, std::int64_t agree,
                std::span<const double> row_kl);
  // Closes window w: its mean NLLs, and the forward seconds of each model.
  void end_window(double fp_seconds, double q_seconds);
  // The result; call once (it sorts the kept per-position KLs in place).
  CompareResult finish(double seconds);

 private:
  std::span<const std::int32_t> ids_;
  std::int64_t windows_ = 0, seqlen_ = 0, vocab_ = 0;
  double nll_fp_ = 0, nll_q_ = 0, kl_sum_ = 0;
  std::int64_t agree_ = 0;
  std::vector<double> row_kl_;  // every predicted position's KL, in the order added
  CompareResult res_;
};

// KL(P || Q) between the softmax distributions of two logit rows (nats), and whether their argmaxes agree.
double kl_from_logits(const float* p_logits, const float* q_logits, std::int64_t n, bool* same_argmax = nullptr);

}  // namespace rptq
