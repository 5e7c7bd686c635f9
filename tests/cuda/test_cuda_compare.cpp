// The FP / quantized comparison on the GPU (compare_models_gpu: both forward passes there, the NLL, KL and top-1
// sums by kernels/compare_logits.cuh, only the sums copied back) against compare_models on the CPU. Skipped (with
// the reason) without a usable GPU.
//
// Tolerances, and why (a W4A16 model: quantized weights, float activations, so no rounding tie can flip a code):
// - perplexities: 1e-5 relative (logits within ~1e-6 relative, test_cuda_model; measured under the emulator 1e-7);
// - KL: |gpu - cpu| <= 1e-3 * cpu + 1e-6 (a difference of two close distributions: each log-probability carries
//   the logits' ~1e-6 error, the KL's terms their difference);
// - top-1 agreement: within 2 positions of the CPU's count (a position whose two largest logits are within the
//   GPU's rounding may go either way).
// - KL percentiles and maximum (from the per-row KLs the kernel writes): as the KL, at twice its relative tolerance
//   (an order statistic moves no more than the values do, and a single row's error is not averaged down);
// W4A4 (static activation ranges) is checked more loosely: a tie can move one code (test_cuda_model's header).
// compare_texts_gpu (two texts, the models uploaded once): each text as compare_models_gpu gives it alone (the same
// bits: the device sums are deterministic) and as the CPU's compare_texts at the tolerances above.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "rptq/engine.h"
#include "rptq/method/calibration.h"
#include "rptq/eval/compare.h"
#include "cuda/cuda_runner.h"
#include "rptq/device.h"
#include "rptq/model/model.h"
#include "rptq/method/quantize.h"
#include "rptq/tokenizer/tokenizer.h"
#include "cuda_test_support.h"

namespace {


class CudaCompareTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaCompareTest, MatchesCpuComparison) {
  SKIP_WITHOUT_GPU();
  const rptq::test::Calibrated cal = rptq::test::calibrated(GetParam(), 2, 32);
  const auto& dir = cal.dir;
  const auto& fp = cal.fp;
  const auto& ids = cal.ids;
  const auto& stats = cal.stats;
  rptq::PerplexityOptions po;
  po.seqlen = 128;
  po.max_windows = 3;
  for (const char* preset : {"W4A16", "W4A4"}) {
    rptq::QuantConfig qc = rptq::QuantConfig::preset(preset);
    qc.weight_method = rptq::WeightMethod::RTN;
    rptq::QuantizeOptions qo;
    qo.sequential = false;
    auto q = rptq::quantize(rptq::Model::load(dir), stats, qc, qo);
    const rptq::CompareResult c = rptq::compare_models(*fp, nullptr, q->model(), q->hook(), ids, po);
    const rptq::CompareResult g = rptq::compare_models_gpu(*fp, nullptr, q->model(), q.get(), ids, po);
    std::printf("[ compare ] %s %s: ppl FP %.6f / %.6f, quantized %.6f / %.6f, KL %.6g / %.6g, top-1 %.4f / %.4f "
                "(GPU / CPU)\n",
                GetParam(), preset, g.fp.ppl, c.fp.ppl, g.q.ppl, c.q.ppl, g.kl, c.kl, g.top1_agreement,
                c.top1_agreement);
    ASSERT_EQ(g.positions, c.positions);
    ASSERT_EQ(g.fp.window_nll.size(), c.fp.window_nll.size());
    EXPECT_NEAR(g.fp.ppl, c.fp.ppl, 1e-5 * c.fp.ppl);
    const bool exact = std::string(preset) == "W4A16";
    EXPECT_NEAR(g.q.ppl, c.q.ppl, (exact ? 1e-5 : 1e-2) * c.q.ppl);
    EXPECT_NEAR(g.kl, c.kl, exact ? 1e-3 * c.kl + 1e-6 : 0.1 * c.kl);
    EXPECT_NEAR(g.top1_agreement * g.positions, c.top1_agreement * c.positions, exact ? 2.0 : 0.05 * c.positions);
    EXPECT_NEAR(g.top1_changed * g.positions, c.top1_changed * c.positions, exact ? 2.0 : 0.05 * c.positions);
    for (auto [gv, cv] : {std::pair{g.kl_p50, c.kl_p50}, {g.kl_p90, c.kl_p90}, {g.kl_p99, c.kl_p99},
                          {g.kl_max, c.kl_max}})
      EXPECT_NEAR(gv, cv, exact ? 2e-3 * cv + 1e-6 : 0.2 * cv);
    std::printf("[ compare ] %s %s: KL p50 %.6g / %.6g, p90 %.6g / %.6g, p99 %.6g / %.6g, max %.6g / %.6g\n",
                GetParam(), preset, g.kl_p50, c.kl_p50, g.kl_p90, c.kl_p90, g.kl_p99, c.kl_p99, g.kl_max, c.kl_max);
    EXPECT_GT(c.kl, 0.0);
    EXPECT_GT(c.kl_p90, c.kl_p50);
  }
}

TEST_P(CudaCompareTest, TextsMatchSeparateRunsAndCpu) {
  SKIP_WITHOUT_GPU();
  const rptq::test::Calibrated cal = rptq::test::calibrated(GetParam(), 2, 32);
  auto tok = rptq::Tokenizer::load(cal.dir);
  std::vector<rptq::CompareText> texts;
  texts.push_back({"stories", "stories.txt", cal.ids});
  texts.push_back({"wikitext2-sample", "wikitext2-sample.txt",
                   tok->encode(rptq::test::read_file(rptq::test::resources_dir() / "data" / "wikitext2-sample.txt"),
                               true)});
  rptq::QuantConfig qc = rptq::QuantConfig::preset("W4A16");
  qc.weight_method = rptq::WeightMethod::RTN;
  rptq::QuantizeOptions qo;
  qo.sequential = false;
  auto q = rptq::quantize(rptq::Model::load(cal.dir), cal.stats, qc, qo);
  // One window of 64 tokens per text: the emulated run (CI's cut) stays about a minute.
  rptq::PerplexityOptions po;
  po.seqlen = 64;
  po.max_windows = 1;
  std::vector<std::int64_t> done;
  rptq::PerplexityOptions counted = po;
  counted.progress = [&](std::int64_t d, std::int64_t total) {
    done.push_back(d);
    EXPECT_EQ(total, 2);
    return true;
  };
  const auto g = rptq::compare_texts_gpu(*cal.fp, nullptr, q->model(), q.get(), texts, counted);
  const auto c = rptq::compare_texts(*cal.fp, nullptr, q->model(), q.get(), texts, po, rptq::Execution{});
  ASSERT_EQ(g.size(), 2u);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(done, (std::vector<std::int64_t>{1, 2}));
  for (std::size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE(texts[i].name);
    const rptq::CompareResult alone = rptq::compare_models_gpu(*cal.fp, nullptr, q->model(), q.get(), texts[i].ids, po);
    EXPECT_EQ(g[i].fp.ppl, alone.fp.ppl);
    EXPECT_EQ(g[i].q.ppl, alone.q.ppl);
    EXPECT_EQ(g[i].kl, alone.kl);
    EXPECT_EQ(g[i].kl_p50, alone.kl_p50);
    EXPECT_EQ(g[i].kl_p99, alone.kl_p99);
    EXPECT_EQ(g[i].kl_max, alone.kl_max);
    EXPECT_EQ(g[i].top1_agreement, alone.top1_agreement);
    EXPECT_NEAR(g[i].fp.ppl, c[i].fp.ppl, 1e-5 * c[i].fp.ppl);
    EXPECT_NEAR(g[i].q.ppl, c[i].q.ppl, 1e-5 * c[i].q.ppl);
    EXPECT_NEAR(g[i].kl, c[i].kl, 1e-3 * c[i].kl + 1e-6);
    EXPECT_NEAR(g[i].kl_p50, c[i].kl_p50, 2e-3 * c[i].kl_p50 + 1e-6);
    EXPECT_NEAR(g[i].kl_max, c[i].kl_max, 2e-3 * c[i].kl_max + 1e-6);
  }
  EXPECT_NE(g[0].kl, g[1].kl);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaCompareTest, ::testing::Values("tiny-opt-16m", "stories260k"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
