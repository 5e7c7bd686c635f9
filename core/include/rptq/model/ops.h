#pragma once
// CPU operators of the forward pass, on row-major float32 matrices [rows, cols]. Each validates nothing beyond
// what its caller guarantees (the model checks shapes once at load time); all are parallel over rows with OpenMP.
#include <cstdint>

#include "rptq/model/attention_shape.h"

namespace rptq::ops {

// y[r, k] = ((x[r, g] - mean_r) / sqrt(var_r + eps)) * gamma[g] + beta[g] with g = gather[k] (or k when gather is
// null): a LayerNorm that writes its output already reordered (RPTQ's R1/R4 fusion). gamma/beta may be null.
void layer_norm(const float* x, float* y, std::int64_t rows, std::int64_t cols, const float* gamma,
                const float* beta, float eps, const std::int32_t* gather = nullptr);

// y[r, k] = x[r, g] / sqrt(mean_r(x^2) + eps) * gamma[g] with g = gather[k] (or k). gamma may be null.
void rms_norm(const float* x, float* y, std::int64_t rows, std::int64_t cols, const float* gamma, float eps,
              const std::int32_t* gather = nullptr);

// y[rows, out] = x[rows, in] * w[out, in]^T (+ bias[out]) (+ y when accumulate). x has leading dimension ldx.
void linear(const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t in, const float* w,
            const float* bias, std::int64_t out, float* y, bool accumulate = false);

// In place: x = act(x + bias) per row (bias may be null).
void bias_relu(float* x, std::int64_t rows, std::int64_t cols, const float* bias);
void bias_gelu(float* x, std::int64_t rows, std::int64_t cols, const float* bias);       // exact erf GELU
void bias_gelu_tanh(float* x, std::int64_t rows, std::int64_t cols, const float* bias);  // tanh approximation
// h[r, c] = silu(gate[r, c]) * up[r, c], in place into gate.
void silu_mul(float* gate, const float* up, std::int64_t rows, std::int64_t cols);
// x[r, c] += bias[c]
void add_bias(float* x, std::int64_t rows, std::int64_t cols, const float* bias);
// x += y elementwise
void add(float* x, const float* y, std::int64_t n);

// Rotary embedding in Hugging Face's rotate-half layout, in place on x[rows, heads * head_dim]: channel i and
// i + head_dim/2 of each head rotate together by angle position * theta^(-2i/head_dim).
// positions[r] is the absolute position of row r.
// freq_index (RPTQ's R2 reorder moves channel pairs): when non-null, [heads / group, head_dim / 2]: in head h the
// pair at (i, i + head_dim/2) rotates with the frequency of original pair freq_index[(h / group) * head_dim/2 + i].
void rotary(float* x, std::int64_t rows, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
            float theta, const std::int32_t* freq_index = nullptr, std::int64_t group = 1);

// Causal multi-head attention with grouped-query heads: the shape and its meaning in attention_shape.h.
using rptq::AttentionShape;
void attention(const float* q, const float* k, const float* v, float* out, const AttentionShape& s);

// Row-wise log-softmax support: returns log(sum(exp(x))) of one row (numerically stable).
float log_sum_exp(const float* x, std::int64_t n);

}  // namespace rptq::ops
