#pragma once
// The shape of one causal multi-head attention call, shared by the CPU operator (rptq::ops::attention) and the
// CUDA kernel (rptq::cuda::attention, kernels/attention.cuh): one declaration, so the decoder layer
// (core/src/model/decoder_layer.h) fills it once for either device. Plain C++17, no other include: the kernels
// and the emulator (tools/cuda-emu) include it too.
//   q:    [batch * tq, heads * head_dim]; row b * tq + i is query i of sequence b, at absolute position past + i.
//   k, v: per sequence b, rows [0, past + tq) at k + b * kv_batch_stride with row stride kv_ld (kv_heads * head_dim
//         wide: query head h reads KV head h / (heads / kv_heads)).
//   out:  [batch * tq, heads * head_dim].
// Query i sees keys j <= past + i (and past + i - j < window when window > 0). Scores are scaled by `scale` before
// the softmax; quantize_probs puts the normalised probabilities on RPTQ's fixed 8-bit grid round(p * 255) / 255.
#include <cstdint>

namespace rptq {

struct AttentionShape {
  std::int64_t batch = 1, tq = 0, past = 0, heads = 0, kv_heads = 0, head_dim = 0;
  std::int64_t kv_batch_stride = 0, kv_ld = 0;
  std::int64_t window = 0;
  float scale = 1.0f;
  bool quantize_probs = false;
};

}  // namespace rptq
