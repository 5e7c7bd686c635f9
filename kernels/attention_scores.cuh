#pragma once
// The attention-score ranges that calibration records, on the GPU: the CUDA twin of rptq::attention_score_range
// (core/src/method/calibration.cpp) for a batch of sequences. For each sequence b and query head h, the max and the min of
// the softmax input scale * q_i . k_j over the entries the causal (and sliding-window) mask keeps: keys j <= i, and
// i - j < window when window > 0 (no past: every sequence starts at position 0).
//   q: [batch * seq, heads * head_dim] with row stride q_ld; row b * seq + i is query i of sequence b.
//   k: [batch * seq, kv_heads * head_dim] with row stride k_ld; head h reads kv head h / (heads / kv_heads).
//   mx, mn: [batch, heads] float32, written (entry b * heads + h).
// scale is the factor the CPU's sgemm applies to each product sum (1 for OPT, whose Q tap is already scaled;
// 1 / sqrt(head_dim) for LLaMA). As on the CPU a NaN score is never chosen (all NaN: -inf / +inf).
// Numerics: each score is a float dot product summed in another order than the CPU's sgemm; the max / min over the
// scores are exact, so a range differs from the CPU's only by that one dot product's rounding.
// head_dim up to 256. Asynchronous on `stream`; shapes are checked (std::invalid_argument) before any CUDA call.
// Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cstdint>

namespace rptq::cuda {

struct ScoreRangeShape {
  std::int64_t batch = 1, seq = 0, heads = 0, kv_heads = 0, head_dim = 0;
  std::int64_t q_ld = 0, k_ld = 0;  // row strides of q and k, at least heads * head_dim and kv_heads * head_dim
  std::int64_t window = 0;
  float scale = 1.0f;
};

constexpr std::int64_t kScoreRangeMaxHeadDim = 256;

void attention_score_range(const float* q, const float* k, float* mx, float* mn, const ScoreRangeShape& s,
                           cudaStream_t stream = 0);

}  // namespace rptq::cuda
