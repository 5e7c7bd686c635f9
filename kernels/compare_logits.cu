// The comparison's per-row NLL, KL and top-1 agreement of two logit matrices: one block of 256 threads per row
// (up to kMaxBlocks blocks; more rows are taken grid-stride, each block adding its rows in row order), three
// passes over both rows: the maxima and argmaxes, the sums of exp(x - max), then the KL terms (each row's KL also
// stored when asked: the percentiles). A second kernel of one block adds the blocks' partial sums in a fixed tree
// and adds the result to *out.
//
// Numerics, against the CPU (core/src/eval/compare.cpp, perplexity.cpp, ops_cpu.cpp):
// - log-sum-exp: the arithmetic of nll_rows (softmax.cu): each thread sums its strided share of exp(x - max) in
//   float (CUDA's expf), the partial sums are added in double, the log is taken in double, rounded to float and
//   added to the maximum in float. The CPU sums blocks of 256 terms of its polynomial exp in float and adds the
//   blocks in double; the two log-sum-exps agree to a few float ulps (test_cuda_softmax: 4e-6 * max(1, |lse|)).
// - NLL: double(lse) - double(x[target]), as window_mean_nll. CompareAccumulator::add_rows adds
//   window_mean_nll(rows) * rows, i.e. (sum / rows) * rows: one or two roundings of double away from the sum.
// - KL: as kl_from_logits, in double: logp = double(p) - double(lse_p), logq likewise, terms exp(logp) *
//   (logp - logq) with a double exp, and the result clamped to >= 0 (NaN, from -inf logits, gives 0 as on the
//   CPU). The terms are added per thread and then in a tree instead of in one sequential sum, and the product and
//   the sum are rounded separately (no FMA), as the CPU (baseline x86-64) does. The difference from the CPU is
//   dominated by the log-sum-exps: d kl / d lse_p = -(kl + sum P) ~ -(kl + 1), d kl / d lse_q = sum P ~ 1.
// - argmax: the first maximum (a strict > scan keeps the earliest), NaN never chosen; a row whose first entry is
//   NaN has argmax 0, as the CPU's scan (nothing compares greater than its start) does.
//
// The per-block partial sums live in a fixed device array (kMaxBlocks entries), so no call allocates. Calls are
// chained on the device with one event per device (each waits for the previous call's event and records its
// own), which keeps two calls on different streams from sharing the array at once.
#include "compare_logits.cuh"

#include <map>
#include <mutex>
#include <string>

#include "cuda_check.cuh"
#include "host_device.cuh"
#include "reduce.cuh"

namespace rptq::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 2048;     // rows of one launch that each get their own block
constexpr int kNone = 0x7fffffff;    // "no entry above -inf seen" as an argmax index: loses every tie

struct Partial {
  double nll_p, nll_q, kl, agree;  // agree: a count, exact in double
};

__device__ Partial g_partials[kMaxBlocks];

// Double product and sum rounded separately, as the CPU: nvcc would contract a * b + c into one FMA.
__device__ __forceinline__ double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
__device__ __forceinline__ double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// (value, index) pairs ordered by value, then by the lower index: the first maximum of the row.
__device__ __forceinline__ void argmax_merge(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const float ov = __shfl_xor_sync(kFullMask, v, offset);
    const int oi = __shfl_xor_sync(kFullMask, i, offset);
    argmax_merge(v, i, ov, oi);
  }
}

// Block-wide first maximum, returned to every thread; the closing barrier lets the caller reuse the scratch.
__device__ __forceinline__ void block_argmax(float& v, int& i, float* vscratch, int* iscratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  warp_argmax(v, i);
  if (lane == 0) {
    vscratch[warp] = v;
    iscratch[warp] = i;
  }
  __syncthreads();
  const bool live = lane < static_cast<int>(blockDim.x / kWarpSize);
  v = live ? vscratch[lane] : -INFINITY;
  i = live ? iscratch[lane] : kNone;
  warp_argmax(v, i);
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads)
    compare_rows_kernel(const float* __restrict__ p, const float* __restrict__ q, std::int64_t rows, int vocab,
                        std::int64_t ld_p, std::int64_t ld_q, const std::int32_t* __restrict__ targets,
                        double* __restrict__ row_kl) {
  __shared__ float vscratch[kWarpSize];
  __shared__ int iscratch[kWarpSize];
  __shared__ double dscratch[kWarpSize];
  Partial acc{0.0, 0.0, 0.0, 0.0};  // thread 0's is the block's
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* pr = p + r * ld_p;
    const float* qr = q + r * ld_q;
    // Pass 1: maxima and first argmaxes. A strict > from -inf: the maximum hd::max finds (NaN never chosen).
    float mp = -INFINITY, mq = -INFINITY;
    int ap = kNone, aq = kNone;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
      const float a = pr[c], b = qr[c];
      if (a > mp) {
        mp = a;
        ap = c;
      }
      if (b > mq) {
        mq = b;
        aq = c;
      }
    }
    block_argmax(mp, ap, vscratch, iscratch);
    block_argmax(mq, aq, vscratch, iscratch);
    // Pass 2: log-sum-exps, as nll_rows' row_log_sum_exp.
    float sp = 0.0f, sq = 0.0f;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
      sp += expf(pr[c] - mp);
      sq += expf(qr[c] - mq);
    }
    const double tp = block_sum(static_cast<double>(sp), dscratch);
    const double tq = block_sum(static_cast<double>(sq), dscratch);
    const float lse_p = hd::add(mp, static_cast<float>(log(tp)));
    const float lse_q = hd::add(mq, static_cast<float>(log(tq)));
    // Pass 3: KL(P || Q), as kl_from_logits.
    const double lp = lse_p, lq = lse_q;
    double kl = 0.0;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
      const double logp = static_cast<double>(pr[c]) - lp, logq = static_cast<double>(qr[c]) - lq;
      kl = dadd(kl, dmul(exp(logp), logp - logq));
    }
    kl = block_sum(kl, dscratch);
    if (threadIdx.x == 0) {
      const std::int32_t t = targets[r];
      const bool ok = t >= 0 && t < vocab;
      acc.nll_p += ok ? static_cast<double>(lse_p) - static_cast<double>(pr[t]) : NAN;
      acc.nll_q += ok ? static_cast<double>(lse_q) - static_cast<double>(qr[t]) : NAN;
      const double row = kl > 0.0 ? kl : 0.0;  // rounding can make an exact zero slightly negative; NaN gives 0
      acc.kl += row;
      if (row_kl) row_kl[r] = row;
      // The CPU's scan starts at entry 0 and moves on a strict >: with entry 0 NaN, or nothing above -inf, it
      // stays there.
      const int fp = (ap == kNone || pr[0] != pr[0]) ? 0 : ap;
      const int fq = (aq == kNone || qr[0] != qr[0]) ? 0 : aq;
      acc.agree += fp == fq ? 1.0 : 0.0;
    }
  }
  if (threadIdx.x == 0) g_partials[blockIdx.x] = acc;
}

// One block adds the blocks' partial sums: each thread a strided share in order, then a fixed tree (nll_rows'
// sum_kernel), and adds the totals to *out.
__global__ void __launch_bounds__(kThreads) sum_kernel(int n, CompareRowSums* out) {
  __shared__ double scratch[kWarpSize];
  double a = 0.0, b = 0.0, c = 0.0, d = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    a += g_partials[i].nll_p;
    b += g_partials[i].nll_q;
    c += g_partials[i].kl;
    d += g_partials[i].agree;
  }
  a = block_sum(a, scratch);
  b = block_sum(b, scratch);
  c = block_sum(c, scratch);
  d = block_sum(d, scratch);
  if (threadIdx.x == 0) {
    out->nll_p += a;
    out->nll_q += b;
    out->kl += c;
    out->agree += static_cast<std::int64_t>(d);
  }
}

// Per device: the event the last call recorded after its sum_kernel, which the next call waits for.
std::mutex g_mutex;
std::map<int, cudaEvent_t> g_last_call;  // never destroyed: the runtime may be gone at exit

}  // namespace

void compare_logits_rows(const float* p_logits, const float* q_logits, std::int64_t rows, std::int64_t vocab,
                         std::int64_t ld_p, std::int64_t ld_q, const std::int32_t* targets, CompareRowSums* out,
                         double* row_kl, cudaStream_t stream) {
  const char* op = "compare_logits_rows";
  require_shape(op, rows, vocab);
  require(ld_p >= vocab, op, "p row stride " + std::to_string(ld_p) + " is less than the " + std::to_string(vocab) +
                                 " columns");
  require(ld_q >= vocab, op, "q row stride " + std::to_string(ld_q) + " is less than the " + std::to_string(vocab) +
                                 " columns");
  require(vocab > 0 || rows == 0, op, "a row of no columns has no distribution");
  // int column indices (fewer registers: no spills on sm_80 with 64-bit ones), which step past vocab by < kThreads.
  require_int(op, vocab + kThreads, "vocab + 256");
  require_data(op, out, "out");
  if (rows == 0) return;
  require_data(op, p_logits, "p_logits");
  require_data(op, q_logits, "q_logits");
  require_data(op, targets, "targets");
  const int blocks = rows < kMaxBlocks ? static_cast<int>(rows) : kMaxBlocks;

  int device = 0;
  RPTQ_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(g_mutex);
  cudaEvent_t& last = g_last_call[device];
  if (last)
    RPTQ_CUDA_CHECK(cudaStreamWaitEvent(stream, last, 0));
  else
    RPTQ_CUDA_CHECK(cudaEventCreateWithFlags(&last, cudaEventDisableTiming));
  compare_rows_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      p_logits, q_logits, rows, static_cast<int>(vocab), ld_p, ld_q, targets, row_kl);
  RPTQ_CUDA_CHECK_LAUNCH();
  sum_kernel<<<1, kThreads, 0, stream>>>(blocks, out);
  RPTQ_CUDA_CHECK_LAUNCH();
  RPTQ_CUDA_CHECK(cudaEventRecord(last, stream));
}

}  // namespace rptq::cuda
