// The per-position KL distribution of a comparison (CompareResult::kl_p50 .. kl_max, top1_changed) and the
// multi-text comparison (rptq::compare_texts, rptq/engine.h) on the CPU:
// - kl_percentile against the nearest-rank definition written out as a count (the smallest value v with
//   100 * #{x <= v} >= p * N, integer arithmetic), on small lists spelled out by hand and on random ones with ties;
// - CompareAccumulator::add_sums (the GPU path's bookkeeping) keeps the rows' KLs it is given;
// - on a real comparison (stories260k, W4A8): every position's KL recomputed from both models' full forward passes
//   with kl_from_logits, and the percentiles, the mean and the top-1 changes of those against the result's;
// - compare_texts gives each text exactly what compare_models gives it alone, counts progress over all texts,
//   cancels, and refuses a text shorter than a window by name before any work.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/base/error.h"
#include "rptq/engine.h"
#include "rptq/eval/compare.h"
#include "rptq/model/model.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

// The nearest-rank percentile by its definition, by counting: the smallest value v of xs with
// 100 * #{x in xs : x <= v} >= p * N (p a whole number, so the comparison is exact).
double by_count(const std::vector<double>& xs, int p) {
  const std::int64_t n = static_cast<std::int64_t>(xs.size());
  double best = INFINITY;
  for (double v : xs) {
    const std::int64_t at_or_below = std::count_if(xs.begin(), xs.end(), [&](double x) { return x <= v; });
    if (100 * at_or_below >= static_cast<std::int64_t>(p) * n) best = std::min(best, v);
  }
  return best;
}

std::vector<double> sorted(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(KlPercentile, NearestRankOnSmallLists) {
  // Ten values 0.1 .. 1.0: the p-th percentile is the value of rank ceil(p / 10).
  const std::vector<double> ten = {0.3, 0.1, 0.7, 0.2, 1.0, 0.5, 0.9, 0.4, 0.6, 0.8};
  const std::vector<double> s = sorted(ten);
  EXPECT_EQ(rptq::kl_percentile(s, 50), 0.5);  // rank 5: at least half the values are <= 0.5
  EXPECT_EQ(rptq::kl_percentile(s, 90), 0.9);  // rank 9
  EXPECT_EQ(rptq::kl_percentile(s, 99), 1.0);  // rank ceil(9.9) = 10
  EXPECT_EQ(rptq::kl_percentile(s, 100), 1.0);
  EXPECT_EQ(rptq::kl_percentile(s, 10), 0.1);
  EXPECT_EQ(rptq::kl_percentile(s, 11), 0.2);  // rank ceil(1.1) = 2
  EXPECT_EQ(rptq::kl_percentile(s, 0.5), 0.1);  // rank clamped to 1
  // Five values: the median is the middle one (rank ceil(2.5) = 3), p90 rank ceil(4.5) = 5.
  const std::vector<double> five = sorted({4.0, 0.0, 2.0, 8.0, 1.0});
  EXPECT_EQ(rptq::kl_percentile(five, 50), 2.0);
  EXPECT_EQ(rptq::kl_percentile(five, 90), 8.0);
  EXPECT_EQ(rptq::kl_percentile(five, 20), 0.0);  // rank 1 exactly
  EXPECT_EQ(rptq::kl_percentile(five, 21), 1.0);
  // Four values: the lower middle one (rank 2), not an interpolation.
  EXPECT_EQ(rptq::kl_percentile(sorted({1.0, 3.0, 2.0, 10.0}), 50), 2.0);
  EXPECT_EQ(rptq::kl_percentile(std::vector<double>{7.0}, 50), 7.0);
  EXPECT_EQ(rptq::kl_percentile({}, 50), 0.0);
}

TEST(KlPercentile, MatchesTheCountingDefinition) {
  std::mt19937 gen(5);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t n = 1 + gen() % 300;
    std::vector<double> xs(n);
    // Few distinct values in half the trials: ties at the ranks that matter.
    const bool ties = trial % 2 == 0;
    for (double& x : xs) x = ties ? static_cast<double>(gen() % 7) : std::exponential_distribution<double>(20.0)(gen);
    const std::vector<double> s = sorted(xs);
    for (int p : {1, 25, 50, 90, 99, 100})
      ASSERT_EQ(rptq::kl_percentile(s, p), by_count(xs, p)) << "n " << n << " p " << p << " trial " << trial;
  }
}

// The GPU path hands the accumulator each chunk's sums and its rows' KLs: the percentiles come from those rows, the
// mean from the sums; a count that does not match is refused.
TEST(CompareAccumulator, AddSumsKeepsTheRowKls) {
  const std::vector<std::int32_t> ids(9, 1);  // two windows of 4 tokens (3 predicted positions each), one left over
  rptq::PerplexityOptions po;
  po.seqlen = 4;
  rptq::CompareAccumulator acc(ids, po, 10, 10);
  ASSERT_EQ(acc.windows(), 2);
  const std::vector<double> w0 = {0.5, 0.0, 2.0}, w1 = {0.25, 1.0, 4.0};
  acc.add_sums(3, 3.0, 3.3, 2.5, 2, w0);
  acc.end_window(0, 0);
  EXPECT_THROW(acc.add_sums(3, 0, 0, 0, 0, std::vector<double>{1.0}), std::invalid_argument);
  acc.add_sums(2, 2.0, 2.2, 1.25, 1, std::span<const double>(w1).first(2));
  acc.add_sums(1, 1.0, 1.1, 4.0, 0, std::span<const double>(w1).last(1));
  acc.end_window(0, 0);
  const rptq::CompareResult r = acc.finish(0);
  EXPECT_EQ(r.positions, 6);
  EXPECT_EQ(r.kl, 7.75 / 6);  // the sums' mean
  // Sorted: 0, 0.25, 0.5, 1, 2, 4. p50: rank 3; p90: rank ceil(5.4) = 6; p99: rank 6.
  EXPECT_EQ(r.kl_p50, 0.5);
  EXPECT_EQ(r.kl_p90, 4.0);
  EXPECT_EQ(r.kl_p99, 4.0);
  EXPECT_EQ(r.kl_max, 4.0);
  EXPECT_EQ(r.top1_agreement, 3.0 / 6);
  EXPECT_EQ(r.top1_changed, 3.0 / 6);
}

struct Fixture {
  std::filesystem::path dir = rptq::test::resources_dir() / "models" / "stories260k";
  std::unique_ptr<rptq::Model> fp = rptq::Model::load(dir);
  std::unique_ptr<rptq::Tokenizer> tok = rptq::Tokenizer::load(dir);
  std::unique_ptr<rptq::QuantizedModel> q;

  Fixture() {
    const auto ids = ids_of("stories.txt");
    rptq::CalibrationSettings cs;
    cs.samples = 2;
    cs.seqlen = 64;
    const rptq::ChannelStats stats = rptq::calibrate(*fp, dir.string(), ids, "stories.txt", "", cs);
    rptq::QuantConfig c = rptq::QuantConfig::preset("W4A8");
    c.weight_method = rptq::WeightMethod::RTN;
    q = rptq::quantize(rptq::Model::load(dir), stats, c);
  }
  std::vector<std::int32_t> ids_of(const char* file) const {
    return tok->encode(rptq::test::read_file(rptq::test::resources_dir() / "data" / file), true);
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

// Every position's KL from the two models' whole forward passes (logits of all positions at once, the quantized
// model's through its hook), with kl_from_logits; against the result's percentiles, mean and top-1 changes.
TEST(CompareTexts, PercentilesOfARealComparison) {
  const Fixture& f = fixture();
  const auto ids = f.ids_of("wikitext2-sample.txt");
  rptq::PerplexityOptions po;
  po.seqlen = 96;
  po.max_windows = 3;
  const rptq::CompareResult r = rptq::compare_models(*f.fp, nullptr, f.q->model(), f.q.get(), ids, po, {});
  const std::int64_t T = po.seqlen, V = f.fp->config().vocab;
  std::vector<double> kls;
  std::int64_t changed = 0;
  for (std::int64_t w = 0; w < r.fp.windows; ++w) {
    const std::span<const std::int32_t> win(ids.data() + w * T, static_cast<std::size_t>(T));
    const rptq::Tensor lf = f.fp->forward(win, 1);
    const rptq::Tensor lq = f.q->model().forward(win, 1, nullptr, f.q->hook());
    for (std::int64_t t = 0; t < T - 1; ++t) {
      bool same = false;
      kls.push_back(rptq::kl_from_logits(lf.data() + t * V, lq.data() + t * V, V, &same));
      changed += same ? 0 : 1;
    }
  }
  ASSERT_EQ(static_cast<std::int64_t>(kls.size()), r.positions);
  double mean = 0;
  for (double k : kls) mean += k;
  mean /= static_cast<double>(kls.size());
  // The same arithmetic on logits of another GEMM shape (all rows at once, not chunks): within float rounding of
  // the logits, a few 1e-7 relative; 1e-5 relative allows it. Order statistics move no more than the values do.
  const double tol = 1e-5;
  EXPECT_NEAR(r.kl, mean, tol * mean);
  double worst = std::fabs(r.kl - mean) / mean;
  for (int p : {50, 90, 99, 100}) {
    const double want = by_count(kls, p);
    const double got = p == 50 ? r.kl_p50 : p == 90 ? r.kl_p90 : p == 99 ? r.kl_p99 : r.kl_max;
    EXPECT_NEAR(got, want, tol * want + 1e-12) << "p" << p;
    worst = std::max(worst, std::fabs(got - want) / want);
  }
  std::printf("[ compare  ] %lld positions: KL mean %.6g p50 %.6g p90 %.6g p99 %.6g max %.6g, top-1 changed %.4f; "
              "worst relative difference from the recomputation %.3g\n",
              static_cast<long long>(r.positions), r.kl, r.kl_p50, r.kl_p90, r.kl_p99, r.kl_max, r.top1_changed, worst);
  EXPECT_LT(r.kl_p50, r.kl_p90);
  EXPECT_LT(r.kl_p90, r.kl_max);
  EXPECT_GT(r.kl_p50, 0.0);
  EXPECT_EQ(r.top1_changed, static_cast<double>(changed) / static_cast<double>(r.positions));
  EXPECT_NEAR(r.top1_changed, 1.0 - r.top1_agreement, 1e-15);
  EXPECT_GT(changed, 0);
}

void expect_same(const rptq::CompareResult& a, const rptq::CompareResult& b) {
  EXPECT_EQ(a.fp.ppl, b.fp.ppl);
  EXPECT_EQ(a.q.ppl, b.q.ppl);
  EXPECT_EQ(a.fp.window_nll, b.fp.window_nll);
  EXPECT_EQ(a.q.window_nll, b.q.window_nll);
  EXPECT_EQ(a.kl, b.kl);
  EXPECT_EQ(a.kl_p50, b.kl_p50);
  EXPECT_EQ(a.kl_p90, b.kl_p90);
  EXPECT_EQ(a.kl_p99, b.kl_p99);
  EXPECT_EQ(a.kl_max, b.kl_max);
  EXPECT_EQ(a.top1_agreement, b.top1_agreement);
  EXPECT_EQ(a.top1_changed, b.top1_changed);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.fp.windows, b.fp.windows);
}

std::vector<rptq::CompareText> three_texts(const Fixture& f) {
  std::vector<rptq::CompareText> texts;
  for (const char* file : {"wikitext2-sample.txt", "stories.txt", "c4-sample.txt"})
    texts.push_back({file, (rptq::test::resources_dir() / "data" / file).string(), f.ids_of(file)});
  return texts;
}

TEST(CompareTexts, EachTextAsAloneAndProgressOverAll) {
  const Fixture& f = fixture();
  const std::vector<rptq::CompareText> texts = three_texts(f);
  rptq::PerplexityOptions po;
  po.seqlen = 64;
  po.max_windows = 2;
  std::vector<std::pair<std::int64_t, std::int64_t>> calls;
  rptq::PerplexityOptions with_progress = po;
  with_progress.progress = [&](std::int64_t done, std::int64_t total) {
    calls.emplace_back(done, total);
    return true;
  };
  const rptq::Execution cpu;
  const std::vector<rptq::CompareResult> all =
      rptq::compare_texts(*f.fp, nullptr, f.q->model(), f.q.get(), texts, with_progress, cpu);
  ASSERT_EQ(all.size(), texts.size());
  std::int64_t windows = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE(texts[i].name);
    const rptq::CompareResult alone = rptq::compare_models(*f.fp, nullptr, f.q->model(), f.q.get(), texts[i].ids, po, cpu);
    expect_same(all[i], alone);
    windows += alone.fp.windows;
  }
  // stories.txt has 2 windows of 64 tokens; the others are cut to 2 by max_windows.
  EXPECT_EQ(windows, 6);
  EXPECT_EQ(rptq::compare_texts_windows(texts, po), windows);
  ASSERT_EQ(static_cast<std::int64_t>(calls.size()), windows);
  for (std::size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].first, static_cast<std::int64_t>(i) + 1);
    EXPECT_EQ(calls[i].second, windows);
  }
  // The texts differ, and so do their results.
  EXPECT_NE(all[0].kl, all[1].kl);
  EXPECT_NE(all[0].fp.ppl, all[2].fp.ppl);
}

TEST(CompareTexts, CancelAndTooShortText) {
  const Fixture& f = fixture();
  std::vector<rptq::CompareText> texts = three_texts(f);
  rptq::PerplexityOptions po;
  po.seqlen = 64;
  po.max_windows = 2;
  std::int64_t last = 0;
  po.progress = [&](std::int64_t done, std::int64_t) {
    last = done;
    return done < 3;  // cancels inside the second text
  };
  const rptq::Execution cpu;
  EXPECT_THROW(rptq::compare_texts(*f.fp, nullptr, f.q->model(), f.q.get(), texts, po, cpu), rptq::Cancelled);
  EXPECT_EQ(last, 3);

  // A text shorter than one window: refused by name and path before any window runs.
  texts[1].ids.resize(10);
  last = 0;
  try {
    rptq::compare_texts(*f.fp, nullptr, f.q->model(), f.q.get(), texts, po, cpu);
    FAIL() << "a 10-token text was accepted";
  } catch (const rptq::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'stories.txt'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(texts[1].path), std::string::npos) << msg;
    EXPECT_NE(msg.find("fewer than one window of 64"), std::string::npos) << msg;
  }
  EXPECT_EQ(last, 0);
  // No text: no result.
  EXPECT_TRUE(rptq::compare_texts(*f.fp, nullptr, f.q->model(), f.q.get(), {}, po, cpu).empty());
}

TEST(CompareTexts, DefaultTextsAreShipped) {
  const std::vector<std::string> rel = rptq::default_compare_texts();
  ASSERT_EQ(rel.size(), 2u);
  EXPECT_EQ(rel[0], "data/wikitext2-sample.txt");
  EXPECT_EQ(rel[1], "data/c4-sample.txt");
  for (const std::string& r : rel) {
    const auto p = rptq::test::resources_dir() / r;
    EXPECT_TRUE(std::filesystem::is_regular_file(p)) << p;
    EXPECT_GT(std::filesystem::file_size(p), 100000u) << p;
  }
}

}  // namespace
