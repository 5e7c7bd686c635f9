#include "rptq/eval/perplexity.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/model/ops.h"

namespace rptq {

void finish_perplexity(PerplexityResult& res, double seconds) {
  res.seconds = seconds;
  res.tokens_per_s = seconds > 0 ? static_cast<double>(res.tokens) / seconds : 0.0;
  double mean = 0.0;
  for (double v : res.window_nll) mean += v;
  mean /= static_cast<double>(res.window_nll.size());
  res.ppl = std::exp(mean);
}

double window_mean_nll(const float* logits, std::int64_t vocab, std::span<const std::int32_t> ids) {
  const std::int64_t n = static_cast<std::int64_t>(ids.size());
  if (n < 2) return 0.0;
  double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (std::int64_t t = 0; t < n - 1; ++t) {
    const float* row = logits + t * vocab;
    sum += static_cast<double>(ops::log_sum_exp(row, vocab)) - row[ids[static_cast<std::size_t>(t + 1)]];
  }
  return sum / static_cast<double>(n - 1);
}

PerplexityResult perplexity_windows(std::span<const std::int32_t> ids, const PerplexityOptions& opts) {
  if (opts.seqlen < 2) throw InputError("sequence length must be at least 2");
  if (opts.batch < 1) throw InputError("batch must be at least 1");
  PerplexityResult res;
  res.seqlen = opts.seqlen;
  res.tokens_in_text = static_cast<std::int64_t>(ids.size());
  std::int64_t windows = res.tokens_in_text / opts.seqlen;
  if (windows == 0)
    throw InputError("the text has " + std::to_string(ids.size()) + " tokens, fewer than one window of " +
                     std::to_string(opts.seqlen));
  if (opts.max_windows > 0) windows = std::min(windows, opts.max_windows);
  res.windows = windows;
  res.tokens = windows * opts.seqlen;
  return res;
}

PerplexityResult perplexity(const Model& model, std::span<const std::int32_t> ids, const PerplexityOptions& opts,
                            ActivationHook* hook) {
  PerplexityResult res = perplexity_windows(ids, opts);
  const std::int64_t windows = res.windows;

  const auto start = std::chrono::steady_clock::now();
  const std::int64_t vocab = model.config().vocab;
  // The output head runs in chunks of rows so a window's [seqlen, vocab] logits never all exist at once
  // for long windows and large vocabularies.
  const std::int64_t chunk_rows = 512;
  Tensor logits;  // reused: a fresh 100 MB buffer per chunk would be page-faulted in every time
  for (std::int64_t w0 = 0; w0 < windows; w0 += opts.batch) {
    const std::int64_t nb = std::min(opts.batch, windows - w0);
    auto batch_ids = ids.subspan(static_cast<std::size_t>(w0 * opts.seqlen), static_cast<std::size_t>(nb * opts.seqlen));
    Tensor h = model.embed(batch_ids, nb);
    for (int l = 0; l < static_cast<int>(model.config().layers); ++l) model.layer_forward(l, h, nb, nullptr, hook);
    const std::int64_t d = model.config().hidden;
    for (std::int64_t b = 0; b < nb; ++b) {
      double sum = 0.0;
      for (std::int64_t r0 = 0; r0 < opts.seqlen - 1; r0 += chunk_rows) {
        // Rows r0..r1-1 predict tokens r0+1..r1.
        const std::int64_t r1 = std::min(opts.seqlen - 1, r0 + chunk_rows);
        model.head(h.data() + (b * opts.seqlen + r0) * d, r1 - r0, logits);
        auto win = batch_ids.subspan(static_cast<std::size_t>(b * opts.seqlen + r0), static_cast<std::size_t>(r1 - r0 + 1));
        sum += window_mean_nll(logits.data(), vocab, win) * static_cast<double>(r1 - r0);
      }
      res.window_nll.push_back(sum / static_cast<double>(opts.seqlen - 1));
    }
    if (opts.progress && !opts.progress(w0 + nb, windows)) throw Cancelled();
  }
  finish_perplexity(res, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return res;
}

}  // namespace rptq
