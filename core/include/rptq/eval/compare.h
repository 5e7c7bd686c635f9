#pragma once
// The FP model and its quantized version side by side on the same windows (GPTQ/RPTQ perplexity convention):
// perplexity of each, the KL divergence of the quantized next-token distribution from the FP one, and how often
// their top-1 predictions agree.
#include <cstdint>
#include <span>

#include "rptq/eval/perplexity.h"

namespace rptq {

class Model;
class ActivationHook;

struct CompareResult {
  PerplexityResult fp, q;
  double kl = 0;              // mean over predicted positions of KL(P_fp || P_q), in nats
  double top1_agreement = 0;  // fraction of predicted positions where argmax P_fp == argmax P_q
  std::int64_t positions = 0; // predicted positions: windows x (seqlen - 1)
  double seconds = 0;
};

// fp and q may be the same Model object (with q_hook the only difference). Throws InputError as perplexity() does.
CompareResult compare_models(const Model& fp, ActivationHook* fp_hook, const Model& q, ActivationHook* q_hook,
                             std::span<const std::int32_t> ids, const PerplexityOptions& opts);

// compare_models' bookkeeping, shared by the CPU and the GPU path (core/src/cuda/cuda_runner.h): the windows of `ids` (throws
// InputError as perplexity() does), the per-window NLL of both models and the KL / top-1 sums, and the result.
class CompareAccumulator {
 public:
  CompareAccumulator(std::span<const std::int32_t> ids, const PerplexityOptions& opts, std::int64_t fp_vocab,
                     std::int64_t q_vocab);
  std::int64_t windows() const { return windows_; }
  std::span<const std::int32_t> window(std::int64_t w) const;
  // Logit rows [n, vocab] of both models at positions r0 .. r0 + n - 1 of window w (each predicting the next).
  void add_rows(std::int64_t w, const float* fp_logits, const float* q_logits, std::int64_t r0, std::int64_t n);
  // The same from sums over n rows that another device computed (the GPU's compare_logits_rows): the targets' NLLs
  // under each model, the KL divergences, and the count of rows whose argmaxes agree.
  void add_sums(std::int64_t n, double nll_fp, double nll_q, double kl, std::int64_t agree);
  // Closes window w: its mean NLLs, and the forward seconds of each model.
  void end_window(double fp_seconds, double q_seconds);
  CompareResult finish(double seconds);

 private:
  std::span<const std::int32_t> ids_;
  std::int64_t windows_ = 0, seqlen_ = 0, vocab_ = 0;
  double nll_fp_ = 0, nll_q_ = 0, kl_sum_ = 0;
  std::int64_t agree_ = 0;
  CompareResult res_;
};

// KL(P || Q) between the softmax distributions of two logit rows (nats), and whether their argmaxes agree.
double kl_from_logits(const float* p_logits, const float* q_logits, std::int64_t n, bool* same_argmax = nullptr);

}  // namespace rptq
