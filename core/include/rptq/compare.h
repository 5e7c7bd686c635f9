#pragma once
// The FP model and its quantized version side by side on the same windows (GPTQ/RPTQ perplexity convention):
// perplexity of each, the KL divergence of the quantized next-token distribution from the FP one, and how often
// their top-1 predictions agree.
#include <cstdint>
#include <span>

#include "rptq/perplexity.h"

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

// KL(P || Q) between the softmax distributions of two logit rows (nats), and whether their argmaxes agree.
double kl_from_logits(const float* p_logits, const float* q_logits, std::int64_t n, bool* same_argmax = nullptr);

}  // namespace rptq
