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
// W4A4 (static activation ranges) is checked more loosely: a tie can move one code (test_cuda_model's header).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

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
    EXPECT_GT(c.kl, 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CudaCompareTest, ::testing::Values("tiny-opt-16m", "stories260k"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
