// GPU row NLL (kernels/softmax.cu) against perplexity's per-token term (double(ops::log_sum_exp(row)) -
// row[target]): one column, odd widths, OPT's 50272 and Qwen's 151936 vocabularies, a row stride larger than the
// row, logits with a large common offset, and one huge logit (a row whose softmax is one-hot). Outputs are poisoned.
//
// Tolerance: |gpu - cpu| <= 4e-6 * max(1, |lse|). Both sides subtract the same exact maximum and add the terms in
// float blocks (the CPU's of 256, the GPU's of cols / 256 per thread, ~600 at 150k) whose partial sums they add in
// double; float error of such a block is ~sqrt(terms) roundings, ~1e-6 relative, and the exponentials differ by a
// few 1e-7 each (CUDA expf against the CPU's polynomial), averaging out. A relative error e of the sum is an
// absolute error e of its log; the final float addition to the maximum rounds once more (ulp(16) = 2e-6 for a
// typical log-sum-exp near 11-16). 4e-6 is twice the sum of those.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/device.h"
#include "rptq/model/ops.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#include "softmax.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::DeviceBuffer;

using rptq::test::normal;

struct Shape {
  std::int64_t rows, cols, ld;
  float offset;
};
const std::vector<Shape> kShapes = {{1, 1, 1, 0.0f},        {3, 7, 9, 0.0f},         {5, 1000, 1000, -3.0f},
                                    {4, 50272, 50272, 0.0f}, {2, 151936, 151940, 5.0f}, {2, 4096, 4096, 1000.0f},
                                    {300, 257, 300, 0.0f}};

constexpr double kTolerance = 4e-6;

std::string describe(const Shape& s) {
  return std::to_string(s.rows) + " x " + std::to_string(s.cols) + " ld " + std::to_string(s.ld) + " offset " +
         std::to_string(s.offset);
}

std::vector<float> logits_for(const Shape& s, std::uint32_t seed) {
  std::vector<float> x = normal(static_cast<std::size_t>(s.rows * s.ld), s.offset, 3.0f, seed);
  if (s.rows > 1 && s.cols > 1) x[s.ld + 1] = s.offset + 200.0f;  // row 1: one-hot softmax
  return x;
}

}  // namespace

TEST(CudaSoftmax, NllMatchesPerplexityTerm) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 200;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(describe(s));
    const std::vector<float> x = logits_for(s, seed += 2);
    std::vector<std::int32_t> targets = rptq::test::some_ids(s.rows, static_cast<std::int32_t>(s.cols), seed);
    if (s.rows > 1 && s.cols > 1) targets[1] = 1;  // the one-hot row's own peak: NLL ~ 0
    DeviceBuffer<float> dx(x);
    DeviceBuffer<std::int32_t> dt(targets);
    DeviceBuffer<double> dnll(std::vector<double>(static_cast<std::size_t>(s.rows), std::nan(""))), dtotal(1);
    rptq::cuda::nll_rows(dx.data(), s.rows, s.cols, s.ld, dt.data(), dnll.data(), dtotal.data());
    const std::vector<double> nll = dnll.to_host();
    double sum = 0.0, expected_sum = 0.0;
    for (std::int64_t r = 0; r < s.rows; ++r) {
      const float lse = rptq::ops::log_sum_exp(x.data() + r * s.ld, s.cols);
      const double cpu = static_cast<double>(lse) - x[r * s.ld + targets[r]];
      ASSERT_LE(std::fabs(nll[r] - cpu), kTolerance * std::max(1.0f, std::fabs(lse))) << "row " << r;
      sum += nll[r];
      expected_sum += cpu;
    }
    const double total = dtotal.to_host()[0];
    EXPECT_NEAR(total, sum, 1e-9 * std::max(1.0, std::fabs(sum)));
    EXPECT_NEAR(total, expected_sum, kTolerance * s.rows * std::max(1.0, std::fabs(expected_sum / s.rows)));
  }
  // A target outside the vocabulary gives NaN for its row only.
  const std::vector<float> x = normal(3 * 10, 0.0f, 1.0f, 300);
  DeviceBuffer<float> dx(x);
  DeviceBuffer<std::int32_t> dt(std::vector<std::int32_t>{3, 10, -1});
  DeviceBuffer<double> dnll(3);
  rptq::cuda::nll_rows(dx.data(), 3, 10, 10, dt.data(), dnll.data());
  const std::vector<double> nll = dnll.to_host();
  EXPECT_FALSE(std::isnan(nll[0]));
  EXPECT_TRUE(std::isnan(nll[1]));
  EXPECT_TRUE(std::isnan(nll[2]));
}

// The fixed-order total gives the same bits on every run.
TEST(CudaSoftmax, NllTotalIsDeterministic) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Shape s{2047, 5000, 5000, 0.0f};
  const std::vector<float> x = logits_for(s, 400);
  DeviceBuffer<float> dx(x);
  DeviceBuffer<std::int32_t> dt(rptq::test::some_ids(s.rows, static_cast<std::int32_t>(s.cols), 401));
  DeviceBuffer<double> dnll(static_cast<std::size_t>(s.rows)), a(1), b(1);
  rptq::cuda::nll_rows(dx.data(), s.rows, s.cols, s.ld, dt.data(), dnll.data(), a.data());
  rptq::cuda::nll_rows(dx.data(), s.rows, s.cols, s.ld, dt.data(), dnll.data(), b.data());
  EXPECT_EQ(a.to_host(), b.to_host());
}

TEST(CudaSoftmax, EmptyAndInvalidShapes) {
  float f = 0.0f;
  double d = 0.0;
  std::int32_t t = 0;
  EXPECT_NO_THROW(rptq::cuda::nll_rows(nullptr, 0, 10, 10, nullptr, nullptr));
  EXPECT_THROW(rptq::cuda::nll_rows(&f, 2, 0, 0, &t, &d), std::invalid_argument);  // nothing to sum
  EXPECT_THROW(rptq::cuda::nll_rows(&f, 2, 10, 9, &t, &d), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::nll_rows(&f, -2, 10, 10, &t, &d), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::nll_rows(nullptr, 2, 10, 10, &t, &d), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::nll_rows(&f, 2, 10, 10, nullptr, &d), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::nll_rows(&f, 2, 10, 10, &t, nullptr), std::invalid_argument);
}

#else

TEST(CudaSoftmax, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
