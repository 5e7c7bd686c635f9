// GPU LayerNorm / RMSNorm (kernels/norm.cu) against the CPU operators (rptq::ops), with and without the fused
// gather and gamma/beta, over shapes that cover one partial warp, cols not a multiple of 32, rows cached in the
// default 48 KiB of shared memory, rows that need the opt-in limit (12288 columns: OPT-175B's hidden size) and rows
// too long for shared memory (70000 columns: the global-memory path).
//
// Tolerance: |gpu - cpu| <= 1e-5 * max(1, |cpu|). The data are unit scale (x ~ N(0, 1), gamma ~ 1 + N(0, 0.1),
// beta ~ N(0, 0.1)). The CPU takes the row statistics in double and rounds them to float; the GPU accumulates in
// float, whose relative error at these lengths is ~1e-6 (see norm.cu); that error multiplies each output through
// rstd, so outputs of magnitude ~1-5 differ by a few 1e-6 at most: 1e-5 leaves a margin of a few times. (A CPU
// emulation of the kernel's float summation order on these shapes and seeds stayed under 4e-7 relative.)
// For rows with a large common offset the output is only defined to ulp(offset) / std (x itself is rounded that
// coarsely: 6e-5 at 1000), and the two sides may round their float mean to neighbouring floats; that test allows
// 1e-5 + 2 ulp(offset) / std.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/device.h"
#include "test_support.h"
#include "rptq/model/ops.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#include "norm.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::DeviceBuffer;

constexpr float kTolerance = 1e-5f;

struct Shape {
  std::int64_t rows, cols;
};

// Small and odd, one warp, several warps, long rows (opt-in shared memory), too long for shared memory.
const std::vector<Shape> kShapes = {{1, 1},    {3, 7},     {5, 31},   {4, 32},   {7, 100},   {16, 768},
                                    {3, 1000}, {9, 4096},  {4, 5120}, {2, 12288}, {3, 12289}, {2, 70000}};

using rptq::test::normal;

std::vector<std::int32_t> permutation(std::int64_t n, std::uint32_t seed) {
  std::vector<std::int32_t> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  std::shuffle(p.begin(), p.end(), std::mt19937(seed));
  return p;
}

// Compares all elements; reports the worst one instead of one failure per element.
void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, std::int64_t cols, float tolerance) {
  ASSERT_EQ(gpu.size(), cpu.size());
  double worst = 0.0;
  std::size_t worst_at = 0, failures = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const double err = std::fabs(static_cast<double>(gpu[i]) - cpu[i]);
    const double allowed = tolerance * std::max(1.0, std::fabs(static_cast<double>(cpu[i])));
    if (!(err <= allowed)) ++failures;  // also catches NaN
    if (!(err <= worst)) {
      worst = err;
      worst_at = i;
    }
  }
  EXPECT_EQ(failures, 0u) << "worst at row " << worst_at / cols << " col " << worst_at % cols << ": gpu "
                          << gpu[worst_at] << " cpu " << cpu[worst_at] << " (|diff| " << worst << ")";
}

struct Options {
  bool gamma, beta, gather;
};

std::string describe(const Shape& s, const Options& o) {
  std::string text = std::to_string(s.rows) + " x " + std::to_string(s.cols);
  if (o.gamma) text += " gamma";
  if (o.beta) text += " beta";
  if (o.gather) text += " gather";
  return text;
}

void check_layer_norm(const Shape& s, const Options& o, float offset = 0.0f, float tolerance = kTolerance) {
  SCOPED_TRACE("layer_norm " + describe(s, o));
  const std::size_t n = static_cast<std::size_t>(s.rows * s.cols), c = static_cast<std::size_t>(s.cols);
  const std::vector<float> x = normal(n, offset, 1.0f, 1);
  const std::vector<float> gamma = normal(c, 1.0f, 0.1f, 2), beta = normal(c, 0.0f, 0.1f, 3);
  const std::vector<std::int32_t> gather = permutation(s.cols, 4);
  const float eps = 1e-5f;

  std::vector<float> expected(n);
  rptq::ops::layer_norm(x.data(), expected.data(), s.rows, s.cols, o.gamma ? gamma.data() : nullptr,
                        o.beta ? beta.data() : nullptr, eps, o.gather ? gather.data() : nullptr);

  DeviceBuffer<float> dx(x), dy(n), dgamma(gamma), dbeta(beta);
  DeviceBuffer<std::int32_t> dgather(gather);
  rptq::cuda::layer_norm(dx.data(), dy.data(), s.rows, s.cols, o.gamma ? dgamma.data() : nullptr,
                         o.beta ? dbeta.data() : nullptr, eps, o.gather ? dgather.data() : nullptr);
  expect_close(dy.to_host(), expected, s.cols, tolerance);
}

void check_rms_norm(const Shape& s, const Options& o) {
  SCOPED_TRACE("rms_norm " + describe(s, o));
  const std::size_t n = static_cast<std::size_t>(s.rows * s.cols), c = static_cast<std::size_t>(s.cols);
  const std::vector<float> x = normal(n, 0.3f, 1.0f, 5);
  const std::vector<float> gamma = normal(c, 1.0f, 0.1f, 6);
  const std::vector<std::int32_t> gather = permutation(s.cols, 7);
  const float eps = 1e-6f;

  std::vector<float> expected(n);
  rptq::ops::rms_norm(x.data(), expected.data(), s.rows, s.cols, o.gamma ? gamma.data() : nullptr, eps,
                      o.gather ? gather.data() : nullptr);

  DeviceBuffer<float> dx(x), dy(n), dgamma(gamma);
  DeviceBuffer<std::int32_t> dgather(gather);
  rptq::cuda::rms_norm(dx.data(), dy.data(), s.rows, s.cols, o.gamma ? dgamma.data() : nullptr, eps,
                       o.gather ? dgather.data() : nullptr);
  expect_close(dy.to_host(), expected, s.cols, kTolerance);
}

}  // namespace

TEST(CudaNorm, LayerNormMatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  for (const Shape& s : kShapes)
    for (const Options& o : {Options{false, false, false}, Options{true, true, false}, Options{true, false, false}})
      check_layer_norm(s, o);
}

TEST(CudaNorm, LayerNormGatherMatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  for (const Shape& s : kShapes)
    for (const Options& o : {Options{false, false, true}, Options{true, true, true}, Options{false, true, true}})
      check_layer_norm(s, o);
}

TEST(CudaNorm, RmsNormMatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  for (const Shape& s : kShapes)
    for (const Options& o : {Options{false, false, false}, Options{true, false, false}, Options{false, false, true},
                             Options{true, false, true}})
      check_rms_norm(s, o);
}

// A mean far from zero against the spread: a one-pass E[x^2] - E[x]^2 in float would return garbage here.
TEST(CudaNorm, LayerNormLargeOffset) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const float offset = 1000.0f;  // std 1
  const float ulp = std::nextafter(offset, 2.0f * offset) - offset;
  for (const Shape& s : {Shape{4, 768}, Shape{2, 12288}, Shape{2, 70000}})
    check_layer_norm(s, {true, true, true}, offset, kTolerance + 2.0f * ulp);
}

// Without gather the output may overwrite the input (the forward pass normalises in place).
TEST(CudaNorm, InPlaceWithoutGather) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Shape s{6, 1000};
  const std::vector<float> x = normal(static_cast<std::size_t>(s.rows * s.cols), 0.0f, 1.0f, 11);
  const std::vector<float> gamma = normal(static_cast<std::size_t>(s.cols), 1.0f, 0.1f, 12);
  std::vector<float> ln(x.size()), rms(x.size());
  rptq::ops::layer_norm(x.data(), ln.data(), s.rows, s.cols, gamma.data(), nullptr, 1e-5f);
  rptq::ops::rms_norm(x.data(), rms.data(), s.rows, s.cols, gamma.data(), 1e-5f);

  DeviceBuffer<float> a(x), b(x), dgamma(gamma);
  rptq::cuda::layer_norm(a.data(), a.data(), s.rows, s.cols, dgamma.data(), nullptr, 1e-5f);
  rptq::cuda::rms_norm(b.data(), b.data(), s.rows, s.cols, dgamma.data(), 1e-5f);
  expect_close(a.to_host(), ln, s.cols, kTolerance);
  expect_close(b.to_host(), rms, s.cols, kTolerance);
}

TEST(CudaNorm, RunsOnAStream) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Shape s{8, 4096};
  const std::vector<float> x = normal(static_cast<std::size_t>(s.rows * s.cols), 0.0f, 1.0f, 21);
  const std::vector<std::int32_t> gather = permutation(s.cols, 22);
  std::vector<float> expected(x.size());
  rptq::ops::rms_norm(x.data(), expected.data(), s.rows, s.cols, nullptr, 1e-6f, gather.data());

  DeviceBuffer<float> dx(x), dy(x.size());
  DeviceBuffer<std::int32_t> dgather(gather);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  rptq::cuda::rms_norm(dx.data(), dy.data(), s.rows, s.cols, nullptr, 1e-6f, dgather.data(), stream);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  expect_close(dy.to_host(), expected, s.cols, kTolerance);
}

// Shapes are checked, and empty ones return, before any CUDA call: no GPU needed.
TEST(CudaNorm, EmptyAndInvalidShapes) {
  EXPECT_NO_THROW(rptq::cuda::layer_norm(nullptr, nullptr, 0, 768, nullptr, nullptr, 1e-5f));
  EXPECT_NO_THROW(rptq::cuda::rms_norm(nullptr, nullptr, 4, 0, nullptr, 1e-5f));
  EXPECT_THROW(rptq::cuda::rms_norm(nullptr, nullptr, -1, 8, nullptr, 1e-5f), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::layer_norm(nullptr, nullptr, 1, std::int64_t{1} << 32, nullptr, nullptr, 1e-5f),
               std::invalid_argument);
}

#else

TEST(CudaNorm, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
