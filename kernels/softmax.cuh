#pragma once
// The per-row negative log-likelihood of target ids that perplexity sums, on the GPU: the CUDA twin of
// rptq::ops::log_sum_exp over every row of a matrix, less the target's logit.
// x is row-major float32 [rows, cols] with row stride ld >= cols (logits [tokens, vocab]).
// Asynchronous on `stream`; shapes are checked (std::invalid_argument) before any CUDA call.
// Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cstdint>

namespace rptq::cuda {

// nll[r] = log_sum_exp(x[r, :]) - x[r, targets[r]] in double, with the log-sum-exp rounded to float first, exactly
// the term perplexity's window_mean_nll adds per token. A target outside [0, cols) gives NaN (a kernel cannot
// throw). When total is not null, *total = the sum of nll over the rows, in double and in a fixed order (the same
// bits on every run). nll, total and targets are device pointers.
void nll_rows(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, const std::int32_t* targets,
              double* nll, double* total = nullptr, cudaStream_t stream = 0);

}  // namespace rptq::cuda
