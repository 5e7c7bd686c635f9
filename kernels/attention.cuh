#pragma once
// Causal multi-head attention with grouped-query heads on the GPU: the CUDA twin of rptq::ops::attention, float32,
// on device pointers, with the CPU's AttentionShape (rptq/model/attention_shape.h, a plain header with no other
// include; rptq::cuda::AttentionShape names the same type):
//   q:    [batch * tq, heads * head_dim]; row b * tq + i is query i of sequence b, at absolute position past + i.
//   k, v: per sequence b, rows [0, past + tq) at k + b * kv_batch_stride with row stride kv_ld (kv_heads * head_dim
//         wide: head h reads kv head h / (heads / kv_heads)).
//   out:  [batch * tq, heads * head_dim].
// Query i sees keys j <= past + i, and past + i - j < window when window > 0. Scores are scaled by `scale` before
// the softmax. quantize_probs puts the normalised probabilities on the 8-bit grid round(p * 255) / 255 (RPTQ's
// softmax quantizer) and uses them as they are, not renormalised, as the CPU does.
// head_dim up to 256. Asynchronous on `stream`; shapes are checked (std::invalid_argument) before any CUDA call.
// Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "host_device.cuh"
#include "rptq/model/attention_shape.h"

namespace rptq::cuda {

using rptq::AttentionShape;

constexpr std::int64_t kAttentionMaxHeadDim = 256;

void attention(const float* q, const float* k, const float* v, float* out, const AttentionShape& s,
               cudaStream_t stream = 0);

// ---------------------------------------------------------------------------------------------------------------
// The kernel's plan and its softmax steps, shared with host code that emulates it (tests).

// Queries per block and keys per shared-memory tile.
constexpr std::int64_t kAttentionQueryTile = 16;
constexpr std::int64_t kAttentionKeyTile = 32;

// Keys [begin, end) that queries [i0, i1) of a sequence see (the union of their causal / sliding windows).
struct KeyRange {
  std::int64_t begin = 0, end = 0;
};
RPTQ_HD KeyRange attention_keys_of_queries(std::int64_t past, std::int64_t i0, std::int64_t i1, std::int64_t window) {
  KeyRange r;
  r.begin = window > 0 ? (past + i0 - window + 1 > 0 ? past + i0 - window + 1 : 0) : 0;
  r.end = past + i1;
  return r;
}
// Keys [lo, hi] (inclusive) that query i sees.
RPTQ_HD void attention_keys_of_query(std::int64_t past, std::int64_t i, std::int64_t window, std::int64_t* lo,
                                     std::int64_t* hi) {
  const std::int64_t pos = past + i;
  *lo = window > 0 ? (pos - window + 1 > 0 ? pos - window + 1 : 0) : 0;
  *hi = pos;
}

// Online softmax (Milakov & Gimelshein 2018, as in flash attention): the running maximum m moves to cover a new
// tile whose maximum score is tile_max. Returns the factor exp(m_old - m_new) that rescales the running sum and the
// output accumulators: 1 when m does not move (also when the tile is fully masked, tile_max = -inf), 0 when
// nothing was seen before (m_old = -inf; the accumulators are 0 then anyway).
RPTQ_HD float online_softmax_rescale(float& m, float tile_max) {
  if (!(tile_max > m)) return 1.0f;
  const float factor = m == -INFINITY ? 0.0f : hd::exp(m - tile_max);
  m = tile_max;
  return factor;
}
// The softmax numerator of a score under running maximum m; masked scores are -inf and give 0.
RPTQ_HD float softmax_weight(float score, float m) { return score == -INFINITY ? 0.0f : hd::exp(score - m); }
// quantize_probs: numerator e of a row whose numerators sum to 1 / inv_sum, as the 8-bit probability the CPU
// feeds to P V: nearbyint(e * inv_sum * 255) / 255, each operation rounded as there.
RPTQ_HD float quantized_probability(float e, float inv_sum) {
  return hd::div(hd::round_half_even(hd::mul(hd::mul(e, inv_sum), 255.0f)), 255.0f);
}

}  // namespace rptq::cuda
