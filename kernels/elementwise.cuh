#pragma once
// Elementwise ops of the forward pass on the GPU: the CUDA twins of rptq::ops::{bias_relu, bias_gelu,
// bias_gelu_tanh, silu_mul, add_bias, add} (same arguments and meaning, on device pointers), and the token /
// positional embedding gather of Model::embed.
// Matrices are row-major float32 [rows, cols]; bias is [cols] and may be null where the CPU op allows it.
// The activations use CUDA's erff / tanhf / expf (within 2 ulp) where the CPU uses glibc's: results agree to a
// few ulp, not bit for bit; relu, add_bias, add, broadcast and the gathers are exact.
// Asynchronous on `stream`; shapes are checked (std::invalid_argument) before any CUDA call.
// Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cstdint>

namespace rptq::cuda {

// In place: x = act(x + bias) per row.
void bias_relu(float* x, std::int64_t rows, std::int64_t cols, const float* bias, cudaStream_t stream = 0);
void bias_gelu(float* x, std::int64_t rows, std::int64_t cols, const float* bias, cudaStream_t stream = 0);
void bias_gelu_tanh(float* x, std::int64_t rows, std::int64_t cols, const float* bias, cudaStream_t stream = 0);
// gate[r, c] = silu(gate[r, c]) * up[r, c].
void silu_mul(float* gate, const float* up, std::int64_t rows, std::int64_t cols, cudaStream_t stream = 0);
// x[r, c] += bias[c] (bias not null).
void add_bias(float* x, std::int64_t rows, std::int64_t cols, const float* bias, cudaStream_t stream = 0);
// x += y, n elements.
void add(float* x, const float* y, std::int64_t n, cudaStream_t stream = 0);
// x *= s elementwise, n elements, each product rounded once (OPT's q scaling by head_dim^-0.5).
void scale(float* x, std::int64_t n, float s, cudaStream_t stream = 0);
// y[r, :] = row (or 0 when row is null): the start of a linear layer with a bias.
void broadcast_rows(float* y, std::int64_t rows, std::int64_t cols, const float* row, cudaStream_t stream = 0);

// Token embedding: out[i, :] = table[ids[i], :], table [vocab, dim]. An id outside [0, vocab) cannot throw from a
// kernel; its row is written as NaN so it cannot pass unnoticed (Model::embed rejects such ids on the host first).
void embedding(const std::int32_t* ids, std::int64_t n, const float* table, std::int64_t vocab, std::int64_t dim,
               float* out, cudaStream_t stream = 0);
// OPT's learned positions: h[i, :] += pos_table[past + i % seq + offset, :] for the n = batch * seq rows of equal
// sequences of length seq continuing `past` cached tokens (OPT's offset is 2). pos_table is [pos_rows, dim];
// every row used must exist (checked).
void add_positions(float* h, std::int64_t n, std::int64_t seq, std::int64_t past, const float* pos_table,
                   std::int64_t pos_rows, std::int64_t dim, std::int64_t offset, cudaStream_t stream = 0);
// Both in one pass (embed_dim == hidden): out[i, :] = table[ids[i], :] + pos_table[past + i % seq + offset, :].
void embedding_with_positions(const std::int32_t* ids, std::int64_t n, const float* table, std::int64_t vocab,
                              std::int64_t dim, std::int64_t seq, std::int64_t past, const float* pos_table,
                              std::int64_t pos_rows, std::int64_t offset, float* out, cudaStream_t stream = 0);

}  // namespace rptq::cuda
