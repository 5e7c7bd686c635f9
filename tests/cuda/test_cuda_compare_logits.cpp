// GPU comparison sums (kernels/compare_logits.cu) against the CPU's CompareAccumulator::add_rows terms: the NLL
// of each row's target as window_mean_nll adds it (double(ops::log_sum_exp(row)) - row[target]), KL(P || Q) and
// the same-argmax flag of rptq::kl_from_logits. Shapes: OPT's 50272 vocabulary, a small odd vocabulary (37, fewer
// columns than threads) with row strides above it, 1001 columns, and more rows (2100) than the op gives blocks
// (2048). Rows: q a perturbed p (a quantized model's logits), q == p (KL exactly 0, argmaxes agree), argmax ties
// (the first maximum wins: agreeing and disagreeing ties), outliers, a one-hot row, an unrelated q, masked (-inf)
// entries. Every row is also run alone to check it term by term. The optional per-row KL output (the percentiles'
// input): each row's value against kl_from_logits at the same tolerance, equal to the term the sums add (a one-row
// call's kl), the same bits however the rows are split into calls, and the sums unchanged by asking for it.
//
// Tolerances. Both sides round each row's log-sum-exp to float, from sums of exp(x - max) taken in different
// orders with different exps (CUDA's expf, the CPU's polynomial): test_cuda_softmax bounds the difference of the
// two log-sum-exps by kLse = 4e-6 * max(1, |lse|) (a few float ulps of a log-sum-exp near 10), and the NLL term
// differs by exactly that. KL(lse_p, lse_q) = sum_i exp(p_i - lse_p) (p_i - lse_p - q_i + lse_q) has
// d KL / d lse_p = -(KL + S) and d KL / d lse_q = S with S = sum_i P_i ~ 1, so a row's KL may differ by
// kLse_p * (KL + 1) + kLse_q; the rest (double exps and double sums in another order) is ~1e-15 relative, allowed
// as 1e-12 * |KL| + 1e-15. A sum's tolerance is the sum of its rows' (the differences are not assumed to cancel).
// Agreement counts are compared exactly. Observed differences are printed per case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/eval/compare.h"
#include "rptq/device.h"
#include "rptq/model/ops.h"
#include "rptq/eval/perplexity.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "compare_logits.cuh"
#include "device.cuh"
#include "softmax.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::CompareRowSums;
using rptq::cuda::DeviceBuffer;
using rptq::test::normal;

struct Shape {
  std::int64_t rows, vocab, ld_p, ld_q;
};

std::string describe(const Shape& s) {
  return std::to_string(s.rows) + " x " + std::to_string(s.vocab) + " ld " + std::to_string(s.ld_p) + " / " +
         std::to_string(s.ld_q);
}

double lse_tolerance(float lse) { return 4e-6 * std::max(1.0, std::fabs(static_cast<double>(lse))); }

// Logits of both models, [rows, ld] each (the entries past vocab are NaN: never read), and the targets.
struct Inputs {
  std::vector<float> p, q;
  std::vector<std::int32_t> targets;
};

Inputs make_inputs(const Shape& s, std::uint32_t seed) {
  const std::int64_t V = s.vocab;
  Inputs in;
  in.p.assign(static_cast<std::size_t>(s.rows * s.ld_p), std::nanf(""));
  in.q.assign(static_cast<std::size_t>(s.rows * s.ld_q), std::nanf(""));
  in.targets = rptq::test::some_ids(s.rows, static_cast<std::int32_t>(V), seed);
  std::mt19937 gen(seed + 1);
  for (std::int64_t r = 0; r < s.rows; ++r) {
    float* p = in.p.data() + r * s.ld_p;
    float* q = in.q.data() + r * s.ld_q;
    const std::vector<float> base = normal(static_cast<std::size_t>(V), 0.0f, 3.0f, seed + 17 * static_cast<std::uint32_t>(r));
    const std::vector<float> noise = normal(static_cast<std::size_t>(V), 0.0f, 0.3f, seed + 17 * static_cast<std::uint32_t>(r) + 5);
    for (std::int64_t c = 0; c < V; ++c) {
      p[c] = base[c];
      q[c] = base[c] + noise[c];  // a quantized model's logits: KL ~ 0.04
    }
    const std::int64_t a = 3 % V, b = (V * 2) / 3;  // two distinct columns when V > 4
    switch (r % 8) {
      case 0:  // q == p: KL exactly 0, argmaxes agree
        std::copy(p, p + V, q);
        break;
      case 1:  // both tie at a and b: the first maximum (a) agrees
        p[a] = p[b] = 40.0f;
        q[a] = q[b] = 39.0f;
        break;
      case 2:  // p ties at a and b (first: a), q's maximum is b alone: disagree
        p[a] = p[b] = 40.0f;
        q[b] = 40.0f;
        q[a] = 39.5f;
        break;
      case 3:  // outliers in different columns of p and q
        for (int k = 0; k < 4; ++k) {
          p[std::uniform_int_distribution<std::int64_t>(0, V - 1)(gen)] += 25.0f;
          q[std::uniform_int_distribution<std::int64_t>(0, V - 1)(gen)] += 25.0f;
        }
        break;
      case 4: {  // an unrelated q (large KL), offset
        const std::vector<float> other = normal(static_cast<std::size_t>(V), 5.0f, 3.0f, seed + 1000 + static_cast<std::uint32_t>(r));
        std::copy(other.begin(), other.end(), q);
        break;
      }
      case 5:  // one-hot p, q nearly so
        p[b] = 200.0f;
        q[b] = 150.0f;
        break;
      case 6:  // an exact copy shifted by a constant: the same distribution up to rounding
        for (std::int64_t c = 0; c < V; ++c) q[c] = p[c] + 1.0f;
        break;
      default:  // the perturbed q as drawn
        break;
    }
  }
  return in;
}

struct CpuRow {
  double nll_p, nll_q, kl;
  bool same;
  float lse_p, lse_q;
};

CpuRow cpu_row(const float* p, const float* q, std::int64_t V, std::int32_t t) {
  CpuRow c{};
  c.lse_p = rptq::ops::log_sum_exp(p, V);
  c.lse_q = rptq::ops::log_sum_exp(q, V);
  c.nll_p = static_cast<double>(c.lse_p) - p[t];
  c.nll_q = static_cast<double>(c.lse_q) - q[t];
  c.kl = rptq::kl_from_logits(p, q, V, &c.same);
  return c;
}

double kl_tolerance(const CpuRow& c) {
  return lse_tolerance(c.lse_p) * (c.kl + 1.0) + lse_tolerance(c.lse_q) + 1e-12 * c.kl + 1e-15;
}

// Rows r0 .. r0 + n - 1 in one call; with row_kl, their per-row KLs too (the device array is filled with NaN first,
// so a row the kernel skips shows).
CompareRowSums run(const DeviceBuffer<float>& dp, const DeviceBuffer<float>& dq, const DeviceBuffer<std::int32_t>& dt,
                   const Shape& s, std::int64_t r0, std::int64_t n, std::vector<double>* row_kl = nullptr) {
  DeviceBuffer<CompareRowSums> out(1);
  out.fill_zero();
  DeviceBuffer<double> rows(std::vector<double>(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)), std::nan("")));
  rptq::cuda::compare_logits_rows(dp.data() + r0 * s.ld_p, dq.data() + r0 * s.ld_q, n, s.vocab, s.ld_p, s.ld_q,
                                  dt.data() + r0, out.data(), row_kl ? rows.data() : nullptr);
  if (row_kl) {
    *row_kl = rows.to_host();
    row_kl->resize(static_cast<std::size_t>(n));
  }
  return out.to_host()[0];
}

bool same_bits(const CompareRowSums& a, const CompareRowSums& b) {
  return std::memcmp(&a.nll_p, &b.nll_p, sizeof(double)) == 0 && std::memcmp(&a.nll_q, &b.nll_q, sizeof(double)) == 0 &&
         std::memcmp(&a.kl, &b.kl, sizeof(double)) == 0 && a.agree == b.agree;
}

const std::vector<Shape> kShapes = {{16, 50272, 50272, 50272}, {24, 37, 41, 37}, {40, 1001, 1001, 1003},
                                    {2100, 33, 33, 40}};

}  // namespace

TEST(CudaCompareLogits, MatchesCpuTerms) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 11;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(describe(s));
    const Inputs in = make_inputs(s, seed += 100);
    DeviceBuffer<float> dp(in.p), dq(in.q);
    DeviceBuffer<std::int32_t> dt(in.targets);
    const CompareRowSums all = run(dp, dq, dt, s, 0, s.rows);
    std::vector<double> row_kl;
    const CompareRowSums with_rows = run(dp, dq, dt, s, 0, s.rows, &row_kl);
    EXPECT_TRUE(same_bits(all, with_rows)) << "asking for the per-row KLs changed the sums";
    double row_kl_sum = 0, worst_row_kl = 0;

    double nll_p = 0, nll_q = 0, kl = 0, tol_p = 0, tol_q = 0, tol_kl = 0;
    std::int64_t agree = 0;
    double worst_nll = 0, worst_kl = 0, worst_kl_rel = 0;
    // Rows one at a time (each a call of its own) only where that stays cheap under tools/cuda-emu.
    const bool per_row = s.rows <= 64;
    for (std::int64_t r = 0; r < s.rows; ++r) {
      const float* p = in.p.data() + r * s.ld_p;
      const float* q = in.q.data() + r * s.ld_q;
      const CpuRow c = cpu_row(p, q, s.vocab, in.targets[static_cast<std::size_t>(r)]);
      nll_p += c.nll_p;
      nll_q += c.nll_q;
      kl += c.kl;
      agree += c.same ? 1 : 0;
      tol_p += lse_tolerance(c.lse_p);
      tol_q += lse_tolerance(c.lse_q);
      tol_kl += kl_tolerance(c);
      if (r % 8 == 0) {
        ASSERT_EQ(c.kl, 0.0) << "row " << r << ": the CPU's KL of a row with itself";
      }
      const double rk = row_kl[static_cast<std::size_t>(r)];
      ASSERT_LE(std::fabs(rk - c.kl), kl_tolerance(c)) << "row " << r << ": per-row gpu " << rk << " cpu " << c.kl;
      if (r % 8 == 0) {
        ASSERT_EQ(rk, 0.0) << "row " << r << ": q == p";
      }
      row_kl_sum += rk;
      worst_row_kl = std::max(worst_row_kl, std::fabs(rk - c.kl));
      if (!per_row) continue;
      const CompareRowSums g = run(dp, dq, dt, s, r, 1);
      ASSERT_EQ(g.kl, rk) << "row " << r << ": the per-row KL is the term the sum adds";
      ASSERT_LE(std::fabs(g.nll_p - c.nll_p), lse_tolerance(c.lse_p)) << "row " << r;
      ASSERT_LE(std::fabs(g.nll_q - c.nll_q), lse_tolerance(c.lse_q)) << "row " << r;
      ASSERT_LE(std::fabs(g.kl - c.kl), kl_tolerance(c)) << "row " << r << ": gpu " << g.kl << " cpu " << c.kl;
      ASSERT_EQ(g.agree, c.same ? 1 : 0) << "row " << r;
      if (r % 8 == 0) {
        ASSERT_EQ(g.kl, 0.0) << "row " << r << ": q == p";
      }
      if (r % 8 == 1) {
        ASSERT_EQ(g.agree, 1) << "row " << r << ": equal ties";
      }
      if (r % 8 == 2) {
        ASSERT_EQ(g.agree, 0) << "row " << r << ": p's first maximum is not q's";
      }
      worst_nll = std::max({worst_nll, std::fabs(g.nll_p - c.nll_p), std::fabs(g.nll_q - c.nll_q)});
      worst_kl = std::max(worst_kl, std::fabs(g.kl - c.kl));
      if (c.kl > 0) worst_kl_rel = std::max(worst_kl_rel, std::fabs(g.kl - c.kl) / c.kl);
    }
    EXPECT_LE(std::fabs(all.nll_p - nll_p), tol_p + 1e-12 * std::fabs(nll_p));
    EXPECT_LE(std::fabs(all.nll_q - nll_q), tol_q + 1e-12 * std::fabs(nll_q));
    EXPECT_LE(std::fabs(all.kl - kl), tol_kl);
    // The per-row KLs add up to the sum, up to the order of the double additions.
    EXPECT_NEAR(row_kl_sum, all.kl, 1e-12 * all.kl);
    EXPECT_EQ(all.agree, agree);
    // What add_rows adds: window_mean_nll(rows) * rows (contiguous rows only).
    if (s.ld_p == s.vocab) {
      std::vector<std::int32_t> ids(static_cast<std::size_t>(s.rows + 1), 0);
      std::copy(in.targets.begin(), in.targets.end(), ids.begin() + 1);
      const double add_rows_nll = rptq::window_mean_nll(in.p.data(), s.vocab, ids) * static_cast<double>(s.rows);
      EXPECT_LE(std::fabs(all.nll_p - add_rows_nll), tol_p + 1e-12 * std::fabs(nll_p));
    }
    std::printf("[ compare  ] %s: sums |dnll_p| %.3g |dnll_q| %.3g (allowed %.3g) |dkl| %.3g of %.6g (allowed %.3g), "
                "agree %lld / %lld",
                describe(s).c_str(), std::fabs(all.nll_p - nll_p), std::fabs(all.nll_q - nll_q), tol_p,
                std::fabs(all.kl - kl), kl, tol_kl, static_cast<long long>(all.agree), static_cast<long long>(s.rows));
    std::printf("; per-row KLs: worst |dkl| %.3g", worst_row_kl);
    if (per_row) std::printf("; worst row |dnll| %.3g |dkl| %.3g (relative %.3g)", worst_nll, worst_kl, worst_kl_rel);
    std::printf("\n");
  }
}

// The NLL sums are nll_rows' terms added in its total's order (rows <= 2048): equal to its total up to double
// rounding (the same bits in the emulator; nvcc could in principle contract the two kernels' loops differently).
TEST(CudaCompareLogits, NllMatchesNllRowsTotal) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Shape s{300, 1001, 1003, 1001};
  const Inputs in = make_inputs(s, 7);
  DeviceBuffer<float> dp(in.p), dq(in.q);
  DeviceBuffer<std::int32_t> dt(in.targets);
  const CompareRowSums all = run(dp, dq, dt, s, 0, s.rows);
  DeviceBuffer<double> nll(static_cast<std::size_t>(s.rows)), tp(1), tq(1);
  rptq::cuda::nll_rows(dp.data(), s.rows, s.vocab, s.ld_p, dt.data(), nll.data(), tp.data());
  rptq::cuda::nll_rows(dq.data(), s.rows, s.vocab, s.ld_q, dt.data(), nll.data(), tq.data());
  const double p = tp.to_host()[0], q = tq.to_host()[0];
  EXPECT_NEAR(all.nll_p, p, 1e-12 * std::fabs(p));
  EXPECT_NEAR(all.nll_q, q, 1e-12 * std::fabs(q));
  std::printf("[ compare  ] against nll_rows' totals: nll_p %s, nll_q %s\n", all.nll_p == p ? "same bits" : "differs",
              all.nll_q == q ? "same bits" : "differs");
}

// The same inputs give the same bits on every run (the per-row KLs too); a call adds to what *out holds (x + x = 2x
// exactly), and chunks of rows (256, as compare_models) accumulate to the whole up to double rounding, their per-row
// KLs the same bits as one call's.
TEST(CudaCompareLogits, DeterministicAndAccumulates) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Shape s{1000, 1001, 1001, 1001};
  const Inputs in = make_inputs(s, 21);
  DeviceBuffer<float> dp(in.p), dq(in.q);
  DeviceBuffer<std::int32_t> dt(in.targets);
  std::vector<double> whole, again;  // the per-row KLs of both runs
  const CompareRowSums a = run(dp, dq, dt, s, 0, s.rows, &whole), b = run(dp, dq, dt, s, 0, s.rows, &again);
  EXPECT_TRUE(same_bits(a, b)) << a.nll_p << " " << b.nll_p << " / " << a.kl << " " << b.kl;
  EXPECT_EQ(std::memcmp(whole.data(), again.data(), whole.size() * sizeof(double)), 0);

  DeviceBuffer<CompareRowSums> acc(std::vector<CompareRowSums>{a});
  rptq::cuda::compare_logits_rows(dp.data(), dq.data(), s.rows, s.vocab, s.ld_p, s.ld_q, dt.data(), acc.data());
  const CompareRowSums twice = acc.to_host()[0];
  EXPECT_EQ(twice.nll_p, 2 * a.nll_p);
  EXPECT_EQ(twice.nll_q, 2 * a.nll_q);
  EXPECT_EQ(twice.kl, 2 * a.kl);
  EXPECT_EQ(twice.agree, 2 * a.agree);

  // Chunks of rows, each call writing its rows' KLs at their offset in one array: the same per-row bits as one
  // call's (a row's KL does not depend on the rows around it).
  DeviceBuffer<double> rows(std::vector<double>(static_cast<std::size_t>(s.rows), std::nan("")));
  acc.fill_zero();
  for (std::int64_t r0 = 0; r0 < s.rows; r0 += 256) {
    const std::int64_t n = std::min<std::int64_t>(256, s.rows - r0);
    rptq::cuda::compare_logits_rows(dp.data() + r0 * s.ld_p, dq.data() + r0 * s.ld_q, n, s.vocab, s.ld_p, s.ld_q,
                                    dt.data() + r0, acc.data(), rows.data() + r0);
  }
  const CompareRowSums chunks = acc.to_host()[0];
  const std::vector<double> chunked = rows.to_host();
  EXPECT_EQ(std::memcmp(chunked.data(), whole.data(), whole.size() * sizeof(double)), 0);
  EXPECT_NEAR(chunks.nll_p, a.nll_p, 1e-12 * std::fabs(a.nll_p));
  EXPECT_NEAR(chunks.nll_q, a.nll_q, 1e-12 * std::fabs(a.nll_q));
  EXPECT_NEAR(chunks.kl, a.kl, 1e-12 * std::fabs(a.kl));
  EXPECT_EQ(chunks.agree, a.agree);
}

// The CPU's argmax scan and its NaN / -inf behaviour: entry 0 NaN gives argmax 0 (nothing compares greater than
// it), a row of -inf gives 0, masked (-inf) entries in both rows make the KL NaN, which both clamp to 0, and a
// target outside the vocabulary makes the NLL NaN.
TEST(CudaCompareLogits, EdgeRowsAsCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const std::int64_t V = 300;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  std::vector<std::vector<float>> ps, qs;
  auto row = [&](std::uint32_t seed) { return normal(static_cast<std::size_t>(V), 0.0f, 2.0f, seed); };
  {  // p[0] NaN: p's argmax is 0; q's argmax 0 too
    std::vector<float> p = row(1), q = row(2);
    p[0] = nan;
    q[0] = 50.0f;
    ps.push_back(p);
    qs.push_back(q);
  }
  {  // p[0] NaN, q's maximum elsewhere: disagree
    std::vector<float> p = row(3), q = row(4);
    p[0] = nan;
    p[10] = 50.0f;
    q[10] = 50.0f;
    ps.push_back(p);
    qs.push_back(q);
  }
  {  // a NaN later in the row is skipped by the scan
    std::vector<float> p = row(5), q = row(6);
    p[7] = nan;
    p[8] = 30.0f;
    q[8] = 30.0f;
    ps.push_back(p);
    qs.push_back(q);
  }
  {  // all -inf in p: argmax 0 (q's at 0 as well)
    std::vector<float> p(static_cast<std::size_t>(V), -inf), q = row(7);
    q[0] = 50.0f;
    ps.push_back(p);
    qs.push_back(q);
  }
  {  // masked entries in both: KL NaN -> 0; both maxima at 50
    std::vector<float> p = row(8), q = row(9);
    for (int c = 100; c < 200; ++c) p[c] = q[c] = -inf;
    p[50] = q[50] = 20.0f;
    ps.push_back(p);
    qs.push_back(q);
  }
  {  // max at the last column only
    std::vector<float> p = row(10), q = row(11);
    p[V - 1] = q[V - 1] = 20.0f;
    ps.push_back(p);
    qs.push_back(q);
  }
  const std::int64_t rows = static_cast<std::int64_t>(ps.size());
  std::vector<float> hp, hq;
  for (std::int64_t r = 0; r < rows; ++r) {
    hp.insert(hp.end(), ps[r].begin(), ps[r].end());
    hq.insert(hq.end(), qs[r].begin(), qs[r].end());
  }
  std::vector<std::int32_t> targets = rptq::test::some_ids(rows, static_cast<std::int32_t>(V), 5);
  targets[4] = 150;  // a masked column: NLL +inf
  targets[5] = 1;
  DeviceBuffer<float> dp(hp), dq(hq);
  DeviceBuffer<std::int32_t> dt(targets);
  const Shape s{rows, V, V, V};
  for (std::int64_t r = 0; r < rows; ++r) {
    SCOPED_TRACE("row " + std::to_string(r));
    const CpuRow c = cpu_row(ps[r].data(), qs[r].data(), V, targets[static_cast<std::size_t>(r)]);
    const CompareRowSums g = run(dp, dq, dt, s, r, 1);
    EXPECT_EQ(g.agree, c.same ? 1 : 0);
    EXPECT_EQ(std::isnan(g.nll_p), std::isnan(c.nll_p));
    EXPECT_EQ(std::isnan(g.nll_q), std::isnan(c.nll_q));
    if (std::isfinite(c.nll_p)) {
      EXPECT_LE(std::fabs(g.nll_p - c.nll_p), lse_tolerance(c.lse_p));
    } else if (!std::isnan(c.nll_p)) {
      EXPECT_EQ(g.nll_p, c.nll_p);
    }
    if (std::isfinite(c.nll_q)) {
      EXPECT_LE(std::fabs(g.nll_q - c.nll_q), lse_tolerance(c.lse_q));
    } else if (!std::isnan(c.nll_q)) {
      EXPECT_EQ(g.nll_q, c.nll_q);
    }
    if (std::isnan(c.lse_p) || std::isnan(c.lse_q) || c.kl == 0.0) {
      EXPECT_EQ(g.kl, c.kl);
    } else {
      EXPECT_LE(std::fabs(g.kl - c.kl), kl_tolerance(c));
    }
  }
  // The expected agreement of these rows, spelled out.
  const std::vector<std::int64_t> expect_agree = {1, 0, 1, 1, 1, 1};
  for (std::int64_t r = 0; r < rows; ++r) EXPECT_EQ(run(dp, dq, dt, s, r, 1).agree, expect_agree[r]) << "row " << r;
  const CompareRowSums masked = run(dp, dq, dt, s, 4, 1);
  EXPECT_EQ(masked.kl, 0.0) << "masked entries: KL NaN, clamped to 0";
  // The per-row KLs of the edge rows: what a one-row call adds, the masked row's 0 included (never NaN).
  std::vector<double> edge_kl;
  run(dp, dq, dt, s, 0, rows, &edge_kl);
  for (std::int64_t r = 0; r < rows; ++r)
    EXPECT_EQ(edge_kl[static_cast<std::size_t>(r)], run(dp, dq, dt, s, r, 1).kl) << "row " << r;
  EXPECT_EQ(edge_kl[4], 0.0);
  EXPECT_EQ(masked.nll_p, std::numeric_limits<double>::infinity()) << "the target is masked";

  // A target outside the vocabulary: NaN NLL sums, the other sums unaffected.
  DeviceBuffer<std::int32_t> bad(std::vector<std::int32_t>{static_cast<std::int32_t>(V), 0, -1, 0, 0, 0});
  DeviceBuffer<CompareRowSums> out(1);
  out.fill_zero();
  rptq::cuda::compare_logits_rows(dp.data() + 5 * V, dq.data() + 5 * V, 1, V, V, V, bad.data(), out.data());
  const CompareRowSums o = out.to_host()[0];
  EXPECT_TRUE(std::isnan(o.nll_p));
  EXPECT_TRUE(std::isnan(o.nll_q));
  EXPECT_FALSE(std::isnan(o.kl));
  EXPECT_EQ(o.agree, 1);
}

// Shape checks run before any CUDA call (no GPU needed).
TEST(CudaCompareLogits, EmptyAndInvalidShapes) {
  float f = 0.0f;
  std::int32_t t = 0;
  CompareRowSums host{};
  auto call = [&](const float* p, const float* q, std::int64_t rows, std::int64_t vocab, std::int64_t ld_p,
                  std::int64_t ld_q, const std::int32_t* targets, CompareRowSums* out) {
    rptq::cuda::compare_logits_rows(p, q, rows, vocab, ld_p, ld_q, targets, out);
  };
  EXPECT_NO_THROW(call(nullptr, nullptr, 0, 10, 10, 10, nullptr, &host));  // no rows: nothing added, no CUDA call
  EXPECT_NO_THROW(call(nullptr, nullptr, 0, 0, 0, 0, nullptr, &host));
  EXPECT_EQ(host.nll_p, 0.0);
  EXPECT_THROW(call(&f, &f, -1, 10, 10, 10, &t, &host), std::invalid_argument);
  EXPECT_THROW(call(&f, &f, 2, -1, 10, 10, &t, &host), std::invalid_argument);
  EXPECT_THROW(call(&f, &f, 2, 0, 0, 0, &t, &host), std::invalid_argument);  // rows of no columns
  EXPECT_THROW(call(&f, &f, 2, 10, 9, 10, &t, &host), std::invalid_argument);
  EXPECT_THROW(call(&f, &f, 2, 10, 10, 9, &t, &host), std::invalid_argument);
  EXPECT_THROW(call(nullptr, &f, 2, 10, 10, 10, &t, &host), std::invalid_argument);
  EXPECT_THROW(call(&f, nullptr, 2, 10, 10, 10, &t, &host), std::invalid_argument);
  EXPECT_THROW(call(&f, &f, 2, 10, 10, 10, nullptr, &host), std::invalid_argument);
  EXPECT_THROW(call(&f, &f, 2, 10, 10, 10, &t, nullptr), std::invalid_argument);
  EXPECT_THROW(call(&f, &f, 0, 10, 10, 10, &t, nullptr), std::invalid_argument);
  const std::int64_t huge = std::numeric_limits<int>::max();
  EXPECT_THROW(call(&f, &f, 1, huge, huge, huge, &t, &host), std::invalid_argument);
}

#else

TEST(CudaCompareLogits, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
