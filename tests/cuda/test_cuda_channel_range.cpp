// GPU calibration taps (kernels/channel_range.cu) against rptq::channel_max_min and rptq::TapRanges::add_sample:
// few and many rows (one block per column slice, and many row slices merged by compare-and-swap), few and many
// channels, a row stride larger than the row, NaN activations (never chosen, as on the CPU), Write and Merge modes,
// and the EMA fold over several samples. The EMA step's host form (tap_ema) is checked without a GPU.
//
// Tolerance: none. Max and min select one of their inputs, so the order of evaluation cannot change the result, and
// the EMA's products and sum are rounded one by one as calibration.cpp's (no FMA): every result is bit-exact. (The
// sign of a zero that ties with the opposite zero could depend on the order on either side; the data hold no zeros.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/device.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "channel_range.cuh"
#include "device.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::DeviceBuffer;
using rptq::cuda::RangeUpdate;

using rptq::test::normal;

void expect_same_bits(const std::vector<float>& gpu, const std::vector<float>& cpu, const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  for (std::size_t i = 0; i < cpu.size(); ++i)
    if (std::memcmp(&gpu[i], &cpu[i], sizeof(float)) != 0) {
      ADD_FAILURE() << what << " channel " << i << ": gpu " << gpu[i] << " cpu " << cpu[i];
      return;
    }
}

struct Shape {
  std::int64_t rows, cols, ld;
};
const std::vector<Shape> kShapes = {{1, 1, 1},       {3, 7, 9},        {2048, 768, 768},  {100, 5000, 5000},
                                    {4096, 33, 40},  {300, 12288, 12288}, {20000, 64, 64}, {5, 3000, 3001}};

std::vector<float> activation(const Shape& s, std::uint32_t seed) {
  std::vector<float> x = normal(static_cast<std::size_t>(s.rows * s.ld), 0.5f, 2.0f, seed);
  // Outlier channels and NaNs: a NaN is never the max or min, unless a channel holds nothing else.
  for (std::int64_t r = 0; r < s.rows; r += 7) x[r * s.ld + (r * 13) % s.cols] = std::nanf("");
  if (s.cols > 3)
    for (std::int64_t r = 0; r < s.rows; ++r) x[r * s.ld + 3] *= 100.0f;
  return x;
}

}  // namespace

TEST(CudaChannelRange, WriteMatchesChannelMaxMin) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 1;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(std::to_string(s.rows) + " x " + std::to_string(s.cols) + " ld " + std::to_string(s.ld));
    std::vector<float> x = activation(s, seed += 2);
    std::vector<float> mx, mn;
    rptq::channel_max_min(rptq::ActivationView{x.data(), s.rows, s.cols, s.ld}, mx, mn);
    DeviceBuffer<float> dx(x), dmx(std::vector<float>(mx.size(), std::nanf(""))),
        dmn(std::vector<float>(mn.size(), std::nanf("")));
    rptq::cuda::channel_range(dx.data(), s.rows, s.cols, s.ld, dmx.data(), dmn.data());
    expect_same_bits(dmx.to_host(), mx, "max");
    expect_same_bits(dmn.to_host(), mn, "min");
  }
}

TEST(CudaChannelRange, MergeAndEmptyActivations) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Shape s{1500, 1000, 1000};
  std::vector<float> a = activation(s, 10), b = activation(s, 11);
  std::vector<float> mx, mn, mx2, mn2;
  rptq::channel_max_min(rptq::ActivationView{a.data(), s.rows, s.cols, s.ld}, mx, mn);
  rptq::channel_max_min(rptq::ActivationView{b.data(), s.rows, s.cols, s.ld}, mx2, mn2);
  for (std::size_t c = 0; c < mx.size(); ++c) {
    mx[c] = std::max(mx[c], mx2[c]);
    mn[c] = std::min(mn[c], mn2[c]);
  }
  DeviceBuffer<float> da(a), db(b), dmx(mx.size()), dmn(mn.size());
  rptq::cuda::channel_range(da.data(), s.rows, s.cols, s.ld, dmx.data(), dmn.data(), RangeUpdate::Write);
  rptq::cuda::channel_range(db.data(), s.rows, s.cols, s.ld, dmx.data(), dmn.data(), RangeUpdate::Merge);
  expect_same_bits(dmx.to_host(), mx, "merged max");
  expect_same_bits(dmn.to_host(), mn, "merged min");
  // Merging no rows changes nothing; writing no rows gives channel_max_min's -inf / +inf.
  rptq::cuda::channel_range(nullptr, 0, s.cols, s.ld, dmx.data(), dmn.data(), RangeUpdate::Merge);
  expect_same_bits(dmx.to_host(), mx, "max after an empty merge");
  rptq::cuda::channel_range(nullptr, 0, s.cols, s.ld, dmx.data(), dmn.data(), RangeUpdate::Write);
  expect_same_bits(dmx.to_host(), std::vector<float>(mx.size(), -INFINITY), "max of no rows");
  expect_same_bits(dmn.to_host(), std::vector<float>(mn.size(), INFINITY), "min of no rows");
}

// Several samples folded in on the GPU give TapRanges' EMA and running min / max to the bit.
TEST(CudaChannelRange, TapRangesFoldMatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Shape s{512, 777, 777};
  rptq::TapRanges cpu;
  const auto n = static_cast<std::size_t>(s.cols);
  DeviceBuffer<float> smax(n), smin(n), ema_max(n), ema_min(n), max(n), min(n);
  for (int sample = 0; sample < 5; ++sample) {
    std::vector<float> x = activation(s, 20 + sample);
    std::vector<float> mx, mn;
    rptq::channel_max_min(rptq::ActivationView{x.data(), s.rows, s.cols, s.ld}, mx, mn);
    cpu.add_sample(mx, mn);
    DeviceBuffer<float> dx(x);
    rptq::cuda::channel_range(dx.data(), s.rows, s.cols, s.ld, smax.data(), smin.data());
    rptq::cuda::tap_ranges_add_sample(smax.data(), smin.data(), ema_max.data(), ema_min.data(), max.data(),
                                      min.data(), s.cols, sample == 0);
  }
  expect_same_bits(ema_max.to_host(), cpu.ema_max, "ema max");
  expect_same_bits(ema_min.to_host(), cpu.ema_min, "ema min");
  expect_same_bits(max.to_host(), cpu.max, "max");
  expect_same_bits(min.to_host(), cpu.min, "min");
}

// The EMA step the kernel uses, on the host: TapRanges' bits.
TEST(CudaChannelRange, HostEmaStepMatchesTapRanges) {
  const std::vector<float> first = normal(1000, 0.0f, 10.0f, 30);
  rptq::TapRanges cpu;
  cpu.add_sample(first, first);
  std::vector<float> ema(first);
  for (int sample = 0; sample < 20; ++sample) {
    const std::vector<float> next = normal(1000, 0.0f, 10.0f, 31 + sample);
    cpu.add_sample(next, next);
    for (std::size_t c = 0; c < ema.size(); ++c) ema[c] = rptq::cuda::tap_ema(ema[c], next[c]);
  }
  ASSERT_EQ(std::memcmp(ema.data(), cpu.ema_max.data(), ema.size() * sizeof(float)), 0);
  ASSERT_EQ(std::memcmp(ema.data(), cpu.ema_min.data(), ema.size() * sizeof(float)), 0);
}

TEST(CudaChannelRange, EmptyAndInvalidShapes) {
  float f = 0.0f;
  EXPECT_NO_THROW(rptq::cuda::channel_range(nullptr, 5, 0, 0, nullptr, nullptr));
  EXPECT_NO_THROW(rptq::cuda::tap_ranges_add_sample(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, true));
  EXPECT_THROW(rptq::cuda::channel_range(&f, -1, 4, 4, &f, &f), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::channel_range(&f, 2, 4, 3, &f, &f), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::channel_range(nullptr, 2, 4, 4, &f, &f), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::channel_range(&f, 2, 4, 4, nullptr, &f), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::tap_ranges_add_sample(&f, &f, &f, nullptr, &f, &f, 3, false), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::tap_ranges_add_sample(&f, &f, &f, &f, &f, &f, -3, false), std::invalid_argument);
}

#else

TEST(CudaChannelRange, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
