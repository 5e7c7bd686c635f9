#pragma once
// The FP / quantized comparison's per-position statistics on the GPU: what rptq::CompareAccumulator::add_rows
// (core/src/eval/compare.cpp) computes on the host from two models' logit rows, without copying the [rows, vocab]
// logits of either model to the host.
// p and q are row-major float32 [rows, vocab] with row strides ld_p, ld_q >= vocab (the FP and the quantized
// model's logits at the same positions). Asynchronous on `stream`; shapes are checked (std::invalid_argument)
// before any CUDA call. Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cstdint>

namespace rptq::cuda {

// Sums over logit rows, in double. Zero it once (cudaMemset, or a value-initialised copy) and let
// compare_logits_rows add chunk after chunk of rows to it.
struct CompareRowSums {
  double nll_p = 0.0;      // sum of the NLL of the targets under p: perplexity's window_mean_nll terms
  double nll_q = 0.0;      // the same under q
  double kl = 0.0;         // sum of KL(P || Q) per row, as rptq::kl_from_logits, in nats
  std::int64_t agree = 0;  // rows whose argmax of p equals the argmax of q (kl_from_logits' same_argmax)
};

// Adds to *out (a device pointer) the sums over rows r = 0 .. rows - 1 of
//   nll_p += double(log_sum_exp(p[r, :])) - p[r, targets[r]]   (the log-sum-exp rounded to float first, exactly
//   nll_q += the same for q                                    the term window_mean_nll adds for its token)
//   kl    += kl_from_logits(p[r, :], q[r, :], vocab)
//   agree += 1 when kl_from_logits reports the same argmax (the first maximum of each row, NaN never chosen;
//            a row whose first entry is NaN has argmax 0, as the CPU's scan)
// targets[r] (device) is the token row r predicts: for a window's rows r0 .. r0 + rows - 1, ids r0 + 1 ..
// r0 + rows. A target outside [0, vocab) makes that row's NLL, and so the sum, NaN (a kernel cannot throw).
// row_kl (device, may be null): when given, row_kl[r] = row r's KL, the very term added to out->kl (clamped to
// >= 0, NaN as 0), for the distribution of the per-position KL (percentiles); writing it changes no sum.
// Deterministic: the rows' terms are added in a fixed order that depends only on `rows` (the same bits on every
// run), and a row's KL does not depend on the rows around it. The NLL terms are nll_rows' (softmax.cuh) and, for
// rows <= 2048, are added in the order of its total.
// Calls are ordered among themselves on the device in the order they are made, also from different streams (the
// op keeps partial sums in a fixed device scratch array that a call waits for); not for stream capture.
void compare_logits_rows(const float* p_logits, const float* q_logits, std::int64_t rows, std::int64_t vocab,
                         std::int64_t ld_p, std::int64_t ld_q, const std::int32_t* targets, CompareRowSums* out,
                         double* row_kl = nullptr, cudaStream_t stream = 0);

}  // namespace rptq::cuda
