#include "rptq/eval/compare.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/model/ops.h"

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

double kl_percentile(std::span<const double> sorted, double p) {
  const std::int64_t n = static_cast<std::int64_t>(sorted.size());
  if (n == 0) return 0.0;
  const double x = p * static_cast<double>(n) / 100.0;
  const std::int64_t rank = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(x)), 1, n);
  return sorted[static_cast<std::size_t>(rank - 1)];
}

std::vector<std::string> default_compare_texts() { return {"data/wikitext2-sample.txt", "data/c4-sample.txt"}; }

std::int64_t compare_texts_windows(std::span<const CompareText> texts, const PerplexityOptions& opts) {
  std::int64_t total = 0;
  for (const CompareText& t : texts) {
    try {
      total += perplexity_windows(t.ids, opts).windows;
    } catch (const InputError& e) {
      throw InputError("text '" + t.name + "' (" + t.path + "): " + e.what());
    }
  }
  return total;
}

CompareAccumulator::CompareAccumulator(std::span<const std::int32_t> ids, const PerplexityOptions& opts,
                                       std::int64_t fp_vocab, std::int64_t q_vocab)
    : ids_(ids), seqlen_(opts.seqlen), vocab_(fp_vocab) {
  if (fp_vocab != q_vocab) throw InputError("the two models have different vocabularies");
  res_.fp = res_.q = perplexity_windows(ids, opts);
  windows_ = res_.fp.windows;
  row_kl_.reserve(static_cast<std::size_t>(windows_ * (seqlen_ - 1)));
}

std::span<const std::int32_t> CompareAccumulator::window(std::int64_t w) const {
  return ids_.subspan(static_cast<std::size_t>(w * seqlen_), static_cast<std::size_t>(seqlen_));
}

void CompareAccumulator::add_rows(std::int64_t w, const float* lf, const float* lq, std::int64_t r0, std::int64_t n) {
  const std::int64_t V = vocab_;
  const auto tgt = window(w).subspan(static_cast<std::size_t>(r0), static_cast<std::size_t>(n + 1));
  nll_fp_ += window_mean_nll(lf, V, tgt) * static_cast<double>(n);
  nll_q_ += window_mean_nll(lq, V, tgt) * static_cast<double>(n);
  double ks = 0;
  std::int64_t ag = 0;
  const std::size_t first = row_kl_.size();
  row_kl_.resize(first + static_cast<std::size_t>(n));
  double* rows = row_kl_.data() + first;
#pragma omp parallel for reduction(+ : ks, ag) schedule(static)
  for (std::int64_t r = 0; r < n; ++r) {
    bool same = false;
    rows[r] = kl_from_logits(lf + r * V, lq + r * V, V, &same);
    ks += rows[r];
    ag += same ? 1 : 0;
  }
  kl_sum_ += ks;
  agree_ += ag;
}

void CompareAccumulator::add_sums(std::int64_t n, double nll_fp, double nll_q, double kl, std::int64_t agree,
                                  std::span<const double> row_kl) {
  if (static_cast<std::int64_t>(row_kl.size()) != n)
    throw std::invalid_argument("CompareAccumulator::add_sums: " + std::to_string(row_kl.size()) +
                                " row KLs for " + std::to_string(n) + " rows");
  row_kl_.insert(row_kl_.end(), row_kl.begin(), row_kl.end());
  nll_fp_ += nll_fp;
  nll_q_ += nll_q;
  kl_sum_ += kl;
  agree_ += agree;
}

void CompareAccumulator::end_window(double fp_seconds, double q_seconds) {
  res_.fp.seconds += fp_seconds;
  res_.q.seconds += q_seconds;
  res_.fp.window_nll.push_back(nll_fp_ / static_cast<double>(seqlen_ - 1));
  res_.q.window_nll.push_back(nll_q_ / static_cast<double>(seqlen_ - 1));
  nll_fp_ = nll_q_ = 0;
}

CompareResult CompareAccumulator::finish(double seconds) {
  res_.positions = windows_ * (seqlen_ - 1);
  res_.kl = kl_sum_ / static_cast<double>(res_.positions);
  res_.top1_agreement = static_cast<double>(agree_) / static_cast<double>(res_.positions);
  res_.top1_changed = static_cast<double>(res_.positions - agree_) / static_cast<double>(res_.positions);
  std::sort(row_kl_.begin(), row_kl_.end());
  res_.kl_p50 = kl_percentile(row_kl_, 50);
  res_.kl_p90 = kl_percentile(row_kl_, 90);
  res_.kl_p99 = kl_percentile(row_kl_, 99);
  res_.kl_max = kl_percentile(row_kl_, 100);
  for (PerplexityResult* r : {&res_.fp, &res_.q}) {
    double mean = 0;
    for (double v : r->window_nll) mean += v;
    r->ppl = std::exp(mean / static_cast<double>(r->window_nll.size()));
    r->tokens_per_s = r->seconds > 0 ? static_cast<double>(r->tokens) / r->seconds : 0;
  }
  res_.seconds = seconds;
  return res_;
}

CompareResult compare_models(const Model& fp, ActivationHook* fp_hook, const Model& q, ActivationHook* q_hook,
                             std::span<const std::int32_t> ids, const PerplexityOptions& opts) {
  CompareAccumulator acc(ids, opts, fp.config().vocab, q.config().vocab);
  const std::int64_t T = opts.seqlen, chunk = 256;
  const auto start = std::chrono::steady_clock::now();
  Tensor lf, lq;
  for (std::int64_t w = 0; w < acc.windows(); ++w) {
    const auto win = acc.window(w);
    const auto t0 = std::chrono::steady_clock::now();
    Tensor hf = fp.embed(win, 1);
    for (int l = 0; l < static_cast<int>(fp.config().layers); ++l) fp.layer_forward(l, hf, 1, nullptr, fp_hook);
    const auto t1 = std::chrono::steady_clock::now();
    Tensor hq = q.embed(win, 1);
    for (int l = 0; l < static_cast<int>(q.config().layers); ++l) q.layer_forward(l, hq, 1, nullptr, q_hook);
    const auto t2 = std::chrono::steady_clock::now();
    for (std::int64_t r0 = 0; r0 < T - 1; r0 += chunk) {
      const std::int64_t n = std::min(T - 1, r0 + chunk) - r0;
      fp.head(hf.data() + r0 * fp.config().hidden, n, lf);
      q.head(hq.data() + r0 * q.config().hidden, n, lq);
      acc.add_rows(w, lf.data(), lq.data(), r0, n);
    }
    acc.end_window(std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count());
    if (opts.progress && !opts.progress(w + 1, acc.windows())) throw Cancelled();
  }
  return acc.finish(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace rptq
