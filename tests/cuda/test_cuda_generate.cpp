// Generation on the GPU (GpuRunner::start_cache / step / generate, core/src/cuda/cuda_runner.cpp) against the CPU's
// generate() and Model::forward with a KvCache: every decoding step's logits, the float32 and the packed KV cache,
// greedy tokens, and the errors. Skipped (with the reason) without a usable GPU; the no-GPU message is checked
// everywhere.
//
// Tolerances, and why:
// - FP32 step logits against the CPU with a KvCache: max |gpu - cpu| <= 2e-4 * (1 + max |cpu|), test_cuda_model's
//   bound for the same float32 ops in a different summation order (the attention over the cache is the same kernel
//   with past > 0).
//   Measured under tools/cuda-emu: 3.0e-7 .. 1.05e-6 over the 7 models.
// - Streamed against resident decoder layers: none, bit for bit.
// - Step logits against the GPU's own forward pass without a cache over the same tokens (the last row): the same
//   bound. Only the GEMMs' row counts and the attention's query tiling differ. Measured under the emulator: 0 (its
//   GEMM sums each row in one order whatever the row count); cuBLAS may pick other kernels for other shapes.
// - Packed KV cache (W4A4: K and V on 4-bit cluster grids, so unpack(pack(x)) == x): against the CPU with its packed
//   KvCache, relative Frobenius <= 2e-2 (test_cuda_model's static W4A4 bound: room for a rounding tie that moves
//   one code), and the cache bytes. Measured under the emulator: 2.4e-7 / 2.9e-7, and 12 of 12 greedy tokens equal.
// - Greedy tokens: equal to the CPU's, or where they first differ the CPU's own top two logits there are within
//   1e-3 of each other (a near tie the GPU's rounding may break the other way).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "rptq/method/calibration.h"
#include "cuda/cuda_runner.h"
#include "rptq/device.h"
#include "rptq/base/error.h"
#include "rptq/eval/generate.h"
#include "rptq/model/model.h"
#include "rptq/method/quantize.h"
#include "rptq/tokenizer/tokenizer.h"
#include "cuda_test_support.h"

namespace {

using rptq::test::gpu_available;
using rptq::test::max_abs;
using rptq::test::max_diff;
using rptq::test::rel_fro;
using rptq::test::variant_dir;

TEST(CudaGenerateNoGpu, GenerateThrowsInputErrorWithReason) {
  std::string reason;
  if (gpu_available(&reason)) GTEST_SKIP() << "a GPU is available";
  auto m = rptq::Model::load(variant_dir("qwen2-tied"));
  const std::vector<std::int32_t> prompt = {1, 2, 3};
  try {
    rptq::generate_gpu(*m, nullptr, prompt, {});
    FAIL() << "expected InputError";
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
}

using Case = rptq::test::ModelCase;

class CudaGenerateTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    const Case c = GetParam();
    dir = rptq::test::model_dir(c);
    fp = rptq::Model::load(dir);
    ids = rptq::test::case_ids(c, *fp, 64, 11);
  }
  std::filesystem::path dir;
  std::unique_ptr<rptq::Model> fp;
  std::vector<std::int32_t> ids;
};

// A prompt of 20 tokens, then 8 single-token steps (past 20 .. 27: beyond mistral-window's 16-token window), each
// step's logits against the CPU's with a float32 KvCache and against the GPU's forward pass over all tokens so far.
TEST_P(CudaGenerateTest, StepLogitsMatchCpuKvCacheAndUncachedForward) {
  const std::int64_t prompt = 20, steps = 8, cap = prompt + steps;
  const std::int64_t V = fp->config().vocab;
  rptq::KvCache cache(fp->config(), 1, cap);
  rptq::GpuRunner r(*fp);
  r.start_cache(cap);
  // Streamed layers give the same bits as resident ones (test_cuda_model's placement check, for the cached path).
  rptq::GpuOptions streamed;
  streamed.layers = rptq::GpuLayerPlacement::Stream;
  rptq::GpuRunner rs(*fp, nullptr, streamed);
  rs.start_cache(cap);
  EXPECT_EQ(r.memory().kv_cache_bytes, cache.bytes());
  double worst_cpu = 0, worst_full = 0;
  for (std::int64_t s = 0; s <= steps; ++s) {
    const std::int64_t b = s == 0 ? 0 : prompt + s - 1, n = s == 0 ? prompt : 1;
    const std::vector<std::int32_t> toks(ids.begin() + b, ids.begin() + b + n);
    const rptq::Tensor ref = fp->forward(toks, 1, &cache, nullptr, /*last_only=*/true);
    const rptq::Tensor got = r.step(toks);
    const rptq::Tensor got_streamed = rs.step(toks);
    ASSERT_EQ(got.dim(0), 1);
    ASSERT_EQ(got_streamed.numel(), got.numel());
    EXPECT_EQ(std::memcmp(got.data(), got_streamed.data(), static_cast<std::size_t>(got.numel()) * 4), 0)
        << "step " << s;
    ASSERT_EQ(got.dim(1), V);
    EXPECT_EQ(r.cache_length(), b + n);
    const double bound = 2e-4 * (1.0 + max_abs(ref));
    const double e_cpu = max_diff(got.data(), ref.data(), V);
    EXPECT_LE(e_cpu, bound) << "step " << s;
    // The same tokens without a cache: the last row of the full forward pass.
    const std::vector<std::int32_t> all(ids.begin(), ids.begin() + b + n);
    const rptq::Tensor full = r.forward(all, 1);
    const double e_full = max_diff(got.data(), full.data() + (b + n - 1) * V, V);
    EXPECT_LE(e_full, bound) << "step " << s;
    worst_cpu = std::max(worst_cpu, e_cpu / (1.0 + max_abs(ref)));
    worst_full = std::max(worst_full, e_full / (1.0 + max_abs(ref)));
  }
  std::printf("[ steps ] worst |gpu - cpu| / (1 + max |cpu|) %.3g; against the uncached GPU pass %.3g\n", worst_cpu,
              worst_full);
  // Full: one more token does not fit.
  const std::int32_t one = ids[static_cast<std::size_t>(cap)];
  EXPECT_THROW(r.step(std::span<const std::int32_t>(&one, 1)), rptq::InputError);
  // A new cache starts again at position 0.
  r.start_cache(4);
  EXPECT_EQ(r.cache_length(), 0);
  const rptq::Tensor again = r.step(std::span<const std::int32_t>(ids.data(), 3));
  rptq::KvCache fresh(fp->config(), 1, 4);
  const rptq::Tensor ref = fp->forward(std::span<const std::int32_t>(ids.data(), 3), 1, &fresh, nullptr, true);
  EXPECT_LE(max_diff(again.data(), ref.data(), V), 2e-4 * (1.0 + max_abs(ref)));
}

// Greedy generation: the CPU's tokens, except past a near tie of the CPU's own logits.
TEST_P(CudaGenerateTest, GreedyTokensMatchCpu) {
  rptq::GenerateOptions go;
  go.max_new_tokens = 24;
  go.stop_at_eos = false;
  const std::span<const std::int32_t> prompt(ids.data(), 12);
  const rptq::GenerateResult cpu = rptq::generate(*fp, prompt, go);
  std::vector<std::int32_t> streamed;
  const rptq::GenerateResult gpu = rptq::generate_gpu(*fp, nullptr, prompt, go, [&](std::int32_t id) {
    streamed.push_back(id);
    return true;
  });
  EXPECT_EQ(streamed, gpu.tokens);
  EXPECT_EQ(gpu.prompt_tokens, 12);
  EXPECT_EQ(gpu.kv_bits, 32);
  EXPECT_EQ(gpu.kv_cache_bytes, cpu.kv_cache_bytes);
  EXPECT_EQ(gpu.kv_cache_fp16_bytes, cpu.kv_cache_fp16_bytes);
  ASSERT_EQ(gpu.tokens.size(), cpu.tokens.size());
  for (std::size_t i = 0; i < cpu.tokens.size(); ++i) {
    if (gpu.tokens[i] == cpu.tokens[i]) continue;
    std::vector<std::int32_t> ctx(prompt.begin(), prompt.end());
    ctx.insert(ctx.end(), cpu.tokens.begin(), cpu.tokens.begin() + static_cast<std::ptrdiff_t>(i));
    const rptq::Tensor l = fp->forward(ctx, 1, nullptr, nullptr, true);
    const float a = l.data()[cpu.tokens[i]], b = l.data()[gpu.tokens[i]];
    EXPECT_LE(std::abs(a - b), 1e-3) << "token " << i << ": CPU " << cpu.tokens[i] << " (" << a << "), GPU "
                                     << gpu.tokens[i] << " (" << b << ")";
    break;  // past a tie the continuations may differ
  }
  // A cancelled generation: on_token returning false stops after that token.
  const rptq::GenerateResult stopped = rptq::generate_gpu(*fp, nullptr, prompt, go, [&](std::int32_t) { return false; });
  EXPECT_EQ(stopped.tokens.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaGenerateTest, ::testing::ValuesIn(rptq::test::gpu_model_cases()),
                         rptq::test::model_case_name);

// RPTQ's packed KV cache (W4A4: packed 4-bit linears, static activation quantizers, K and V cached as 4-bit codes)
// against the CPU's quantized model with its packed KvCache.
class CudaPackedKvTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaPackedKvTest, PackedCacheStepsMatchCpu) {
  SKIP_WITHOUT_GPU();
  const rptq::test::Calibrated cal = rptq::test::calibrated(GetParam(), 2, 32);
  const auto& dir = cal.dir;
  const auto& ids = cal.ids;
  const auto& stats = cal.stats;
  rptq::QuantConfig qc = rptq::QuantConfig::preset("W4A4");
  qc.weight_method = rptq::WeightMethod::RTN;
  rptq::QuantizeOptions qo;
  qo.sequential = false;
  auto q = rptq::quantize(rptq::Model::load(dir), stats, qc, qo);
  const auto kvq = q->kv_quantization();
  ASSERT_TRUE(kvq);
  const rptq::Model& qm = q->model();
  const std::int64_t prompt = 16, steps = 6, cap = prompt + steps;

  rptq::KvCache cache(qm.config(), 1, cap, kvq);
  rptq::GpuRunner r(qm, q.get());
  r.start_cache(cap, kvq);
  double worst = 0;
  for (std::int64_t s = 0; s <= steps; ++s) {
    const std::int64_t b = s == 0 ? 0 : prompt + s - 1, n = s == 0 ? prompt : 1;
    const std::vector<std::int32_t> toks(ids.begin() + b, ids.begin() + b + n);
    const rptq::Tensor ref = qm.forward(toks, 1, &cache, q->hook(), true);
    const rptq::Tensor got = r.step(toks);
    const double e = rel_fro(got, ref);
    worst = std::max(worst, e);
    EXPECT_LE(e, 2e-2) << "step " << s;
  }
  std::printf("[ packed KV ] %s: worst step relative Frobenius %.3g\n", GetParam(), worst);

  // generate() with the packed cache: bits, and the same greedy tokens as the CPU or a near tie (as above).
  rptq::GenerateOptions go;
  go.max_new_tokens = 12;
  go.stop_at_eos = false;
  go.kv_quant = kvq;
  const std::span<const std::int32_t> p(ids.data(), 10);
  const rptq::GenerateResult cpu = rptq::generate(qm, p, go, {}, q->hook());
  const rptq::GenerateResult gpu = rptq::generate_gpu(qm, q.get(), p, go);
  EXPECT_EQ(gpu.kv_bits, 4);
  EXPECT_EQ(gpu.kv_cache_fp16_bytes, cpu.kv_cache_fp16_bytes);
  // The codes take what the CPU's take; the device also keeps each side's parameters per channel and a float32
  // read-back pair.
  EXPECT_GT(gpu.kv_cache_bytes, 0u);
  EXPECT_LT(gpu.kv_cache_bytes, cpu.kv_cache_fp16_bytes);
  std::size_t agree = 0;
  while (agree < cpu.tokens.size() && agree < gpu.tokens.size() && cpu.tokens[agree] == gpu.tokens[agree]) ++agree;
  std::printf("[ packed KV ] %s: %zu of %zu greedy tokens as on the CPU\n", GetParam(), agree, cpu.tokens.size());
  EXPECT_GE(agree, std::min<std::size_t>(4, cpu.tokens.size()));
}

// A KV-cache quantization of another model's layer count, an empty cache, an empty step and a token outside the
// vocabulary are refused with clear errors.
TEST(CudaGenerateErrors, BadCacheAndStepsAreInputErrors) {
  SKIP_WITHOUT_GPU();
  auto m = rptq::Model::load(variant_dir("qwen2-tied"));
  auto bad = std::make_shared<rptq::KvQuantization>();
  rptq::GpuRunner r(*m);
  try {
    r.start_cache(8, bad);
    FAIL() << "expected InputError";
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("layers"), std::string::npos) << e.what();
  }
  EXPECT_THROW(r.start_cache(0), rptq::InputError);
  // A cache larger than the device: the out-of-memory InputError, and the runner still works afterwards.
  try {
    r.start_cache(std::int64_t{1} << 40);
    FAIL() << "a 2^40-token cache was allocated";
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  EXPECT_EQ(r.memory().kv_cache_bytes, 0u);
  const std::vector<std::int32_t> one = {1};
  EXPECT_THROW(r.step(one), std::logic_error);  // no cache was made
  const std::vector<std::int32_t> none;
  r.start_cache(4);
  EXPECT_THROW(r.step(none), rptq::InputError);
  const std::vector<std::int32_t> outside = {static_cast<std::int32_t>(m->config().vocab)};
  EXPECT_THROW(r.step(outside), rptq::InputError);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaPackedKvTest, ::testing::Values("tiny-opt-16m", "stories260k"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
