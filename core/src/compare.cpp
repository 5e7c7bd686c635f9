#include "rptq/compare.h"

#include <chrono>
#include <cmath>

#include "rptq/error.h"
#include "rptq/model.h"
#include "rptq/ops.h"

namespace rptq {

double kl_from_logits(const float* p, const float* q, std::int64_t n, bool* same_argmax) {
  const double lp = ops::log_sum_exp(p, n), lq = ops::log_sum_exp(q, n);
  double kl = 0;
  std::int64_t ap = 0, aq = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double logp = p[i] - lp, logq = q[i] - lq;
    kl += std::exp(logp) * (logp - logq);
    if (p[i] > p[ap]) ap = i;
    if (q[i] > q[aq]) aq = i;
  }
  if (same_argmax) *same_argmax = ap == aq;
  return kl > 0 ? kl : 0.0;  // rounding can make an exact zero slightly negative
}

CompareResult compare_models(const Model& fp, ActivationHook* fp_hook, const Model& q, ActivationHook* q_hook,
                             std::span<const std::int32_t> ids, const PerplexityOptions& opts) {
  if (opts.seqlen < 2) throw InputError("sequence length must be at least 2");
  if (fp.config().vocab != q.config().vocab) throw InputError("the two models have different vocabularies");
  std::int64_t windows = static_cast<std::int64_t>(ids.size()) / opts.seqlen;
  if (windows == 0)
    throw InputError("the text has " + std::to_string(ids.size()) + " tokens, fewer than one window of " +
                     std::to_string(opts.seqlen));
  if (opts.max_windows > 0) windows = std::min(windows, opts.max_windows);
  CompareResult res;
  for (PerplexityResult* r : {&res.fp, &res.q}) {
    r->seqlen = opts.seqlen;
    r->windows = windows;
    r->tokens = windows * opts.seqlen;
    r->tokens_in_text = static_cast<std::int64_t>(ids.size());
  }
  const std::int64_t V = fp.config().vocab, T = opts.seqlen, chunk = 256;
  const auto start = std::chrono::steady_clock::now();
  double kl_sum = 0;
  std::int64_t agree = 0;
  Tensor lf, lq;
  for (std::int64_t w = 0; w < windows; ++w) {
    const auto win = ids.subspan(static_cast<std::size_t>(w * T), static_cast<std::size_t>(T));
    const auto t0 = std::chrono::steady_clock::now();
    Tensor hf = fp.embed(win, 1);
    for (int l = 0; l < static_cast<int>(fp.config().layers); ++l) fp.layer_forward(l, hf, 1, nullptr, fp_hook);
    const auto t1 = std::chrono::steady_clock::now();
    Tensor hq = q.embed(win, 1);
    for (int l = 0; l < static_cast<int>(q.config().layers); ++l) q.layer_forward(l, hq, 1, nullptr, q_hook);
    const auto t2 = std::chrono::steady_clock::now();
    res.fp.seconds += std::chrono::duration<double>(t1 - t0).count();
    res.q.seconds += std::chrono::duration<double>(t2 - t1).count();
    double nll_f = 0, nll_q = 0;
    for (std::int64_t r0 = 0; r0 < T - 1; r0 += chunk) {
      const std::int64_t r1 = std::min(T - 1, r0 + chunk), n = r1 - r0;
      fp.head(hf.data() + r0 * fp.config().hidden, n, lf);
      q.head(hq.data() + r0 * q.config().hidden, n, lq);
      const auto tgt = win.subspan(static_cast<std::size_t>(r0), static_cast<std::size_t>(n + 1));
      nll_f += window_mean_nll(lf.data(), V, tgt) * static_cast<double>(n);
      nll_q += window_mean_nll(lq.data(), V, tgt) * static_cast<double>(n);
      double ks = 0;
      std::int64_t ag = 0;
#pragma omp parallel for reduction(+ : ks, ag) schedule(static)
      for (std::int64_t r = 0; r < n; ++r) {
        bool same = false;
        ks += kl_from_logits(lf.data() + r * V, lq.data() + r * V, V, &same);
        ag += same ? 1 : 0;
      }
      kl_sum += ks;
      agree += ag;
    }
    res.fp.window_nll.push_back(nll_f / static_cast<double>(T - 1));
    res.q.window_nll.push_back(nll_q / static_cast<double>(T - 1));
    if (opts.progress && !opts.progress(w + 1, windows)) throw Cancelled();
  }
  res.positions = windows * (T - 1);
  res.kl = kl_sum / static_cast<double>(res.positions);
  res.top1_agreement = static_cast<double>(agree) / static_cast<double>(res.positions);
  for (PerplexityResult* r : {&res.fp, &res.q}) {
    double mean = 0;
    for (double v : r->window_nll) mean += v;
    r->ppl = std::exp(mean / static_cast<double>(r->window_nll.size()));
    r->tokens_per_s = r->seconds > 0 ? static_cast<double>(r->tokens) / r->seconds : 0;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return res;
}

}  // namespace rptq
