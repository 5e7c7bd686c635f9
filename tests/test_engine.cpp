// rptq/engine.h: the operations with the device chosen once. On the CPU each gives exactly what the CPU function it
// wraps gives (same bits); asked for a GPU where none is usable, each refuses with the reason, as an InputError.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "rptq/engine.h"
#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

TEST(Engine, CpuExecutionIsTheCpuPath) {
  const auto dir = rptq::test::resources_dir() / "models" / "stories260k";
  auto fp = rptq::Model::load(dir);
  const auto ids = rptq::Tokenizer::load(dir)->encode(
      rptq::test::read_file(rptq::test::resources_dir() / "data" / "stories.txt"), true);
  const rptq::Execution cpu;  // the default: the CPU
  EXPECT_EQ(cpu.describe().rfind("CPU (", 0), 0u) << cpu.describe();

  rptq::CalibrationSettings cs;
  cs.samples = 2;
  cs.seqlen = 48;
  const rptq::ChannelStats a = rptq::calibrate(*fp, dir.string(), ids, "stories.txt", "", cs);
  const rptq::ChannelStats b = rptq::calibrate(*fp, dir.string(), ids, "stories.txt", "", cs, {}, cpu);
  ASSERT_EQ(a.ranges.size(), b.ranges.size());
  EXPECT_EQ(a.ranges[1].tap(rptq::Tap::FfnHidden).hi(rptq::RangeStat::Ema),
            b.ranges[1].tap(rptq::Tap::FfnHidden).hi(rptq::RangeStat::Ema));

  rptq::QuantConfig c = rptq::QuantConfig::preset("W4A8");
  c.weight_method = rptq::WeightMethod::RTN;
  auto q1 = rptq::quantize(rptq::Model::load(dir), a, c);
  auto q2 = rptq::quantize(rptq::Model::load(dir), a, c, {}, cpu);

  rptq::PerplexityOptions po;
  po.seqlen = 48;
  po.max_windows = 2;
  EXPECT_EQ(rptq::perplexity(q1->model(), ids, po, q1->hook()).ppl,
            rptq::perplexity(q2->model(), q2.get(), ids, po, cpu).ppl);
  EXPECT_EQ(rptq::perplexity(*fp, ids, po).ppl, rptq::perplexity(*fp, nullptr, ids, po, cpu).ppl);

  const rptq::CompareResult r1 = rptq::compare_models(*fp, nullptr, q1->model(), q1->hook(), ids, po);
  const rptq::CompareResult r2 = rptq::compare_models(*fp, nullptr, q2->model(), q2.get(), ids, po, cpu);
  EXPECT_EQ(r1.kl, r2.kl);
  EXPECT_EQ(r1.top1_agreement, r2.top1_agreement);

  rptq::GenerateOptions go;
  go.max_new_tokens = 8;
  go.temperature = 0.0f;
  const std::vector<std::int32_t> prompt(ids.begin(), ids.begin() + 6);
  EXPECT_EQ(rptq::generate(q1->model(), prompt, go, {}, q1->hook()).tokens,
            rptq::generate(q2->model(), q2.get(), prompt, go, {}, cpu).tokens);
}

TEST(Engine, GpuExecutionWithoutAUsableGpuSaysWhy) {
  const rptq::DeviceInfo info = rptq::device_info();
  if (info.cuda_devices > 0) GTEST_SKIP() << "a GPU is usable here: " << info.description;
  const auto dir = rptq::test::resources_dir() / "models" / "stories260k";
  auto fp = rptq::Model::load(dir);
  const std::vector<std::int32_t> ids(200, 5);
  rptq::Execution gpu;
  gpu.device = rptq::Device::CUDA;
  rptq::PerplexityOptions po;
  po.seqlen = 48;
  for (int what = 0; what < 3; ++what) {
    try {
      if (what == 0) rptq::perplexity(*fp, nullptr, ids, po, gpu);
      if (what == 1) rptq::compare_models(*fp, nullptr, *fp, nullptr, ids, po, gpu);
      if (what == 2) gpu.describe();
      ADD_FAILURE() << "case " << what << " ran without a GPU";
    } catch (const rptq::InputError& e) {
      const std::string m = e.what();
      EXPECT_TRUE(m.find(info.unavailable_reason) != std::string::npos ||
                  m.find("not compiled in") != std::string::npos)
          << m;
    }
  }
}

}  // namespace
