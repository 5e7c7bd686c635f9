// GPU rotary embedding (kernels/rotary.cu) against rptq::ops::rotary: plain, with RPTQ's R2 freq_index per head
// and per group of heads, odd head_dim, half > 512 (the CPU's heap path), large positions, several heads.
// A host emulation of the kernel's per-pair arithmetic (the RPTQ_HD helpers of rotary.cuh) runs without a GPU.
//
// Tolerance: |gpu - cpu| <= 1e-6 * max(1, |a| + |b|), (a, b) the input pair. Both sides use the same float32
// inverse frequencies (double pow rounded to float) and the same float32 angle; cos and sin of it are correctly
// rounded on the GPU (double sincos rounded) and within 0.56 ulp in glibc's cosf / sinf, so they differ by at most
// one ulp (6e-8). That moves a c - b s by at most 6e-8 (|a| + |b|), plus the output's own rounding (~1.2e-7 of
// it): under 2e-7 (|a| + |b|), so 1e-6 leaves a margin of five. The emulation, which uses glibc's cosf / sinf as
// the CPU does, must match bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/device.h"
#include "rptq/model/ops.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#include "rotary.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::DeviceBuffer;

using rptq::test::normal;

struct Case {
  std::int64_t rows, heads, head_dim;
  bool reorder;
  std::int64_t group;
  std::int64_t max_position;
};
const std::vector<Case> kCases = {
    {1, 1, 2, false, 1, 10},       {5, 3, 64, false, 1, 2048},     {7, 4, 128, true, 1, 4096},
    {9, 8, 128, true, 4, 4096},    {3, 2, 7, false, 1, 100},       {4, 6, 80, true, 2, 100000},
    {2, 1, 1030, true, 1, 5000},   {33, 32, 128, true, 8, 32768},  {300, 2, 64, false, 1, 2048}};

std::string describe(const Case& c) {
  return std::to_string(c.rows) + " rows, " + std::to_string(c.heads) + " heads of " + std::to_string(c.head_dim) +
         (c.reorder ? ", freq_index group " + std::to_string(c.group) : "");
}

struct Inputs {
  std::vector<float> x;
  std::vector<std::int64_t> positions;
  std::vector<std::int32_t> freq_index;  // [heads / group, half], a permutation per entry row
};

Inputs make_inputs(const Case& c, std::uint32_t seed) {
  Inputs in;
  in.x = normal(static_cast<std::size_t>(c.rows * c.heads * c.head_dim), 0.0f, 1.0f, seed);
  std::mt19937 gen(seed + 1);
  std::uniform_int_distribution<std::int64_t> pos(0, c.max_position);
  in.positions.resize(static_cast<std::size_t>(c.rows));
  for (auto& p : in.positions) p = pos(gen);
  in.positions[0] = c.max_position;
  const std::int64_t half = c.head_dim / 2;
  for (std::int64_t g = 0; g < c.heads / c.group; ++g) {
    std::vector<std::int32_t> perm(static_cast<std::size_t>(half));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), gen);
    in.freq_index.insert(in.freq_index.end(), perm.begin(), perm.end());
  }
  return in;
}

}  // namespace

TEST(CudaRotary, MatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 1;
  for (const Case& c : kCases) {
    SCOPED_TRACE(describe(c));
    const Inputs in = make_inputs(c, seed += 3);
    const float theta = 10000.0f;
    std::vector<float> expected(in.x);
    rptq::ops::rotary(expected.data(), c.rows, c.heads, c.head_dim, in.positions.data(), theta,
                      c.reorder ? in.freq_index.data() : nullptr, c.group);
    DeviceBuffer<float> dx(in.x);
    DeviceBuffer<std::int64_t> dpos(in.positions);
    DeviceBuffer<std::int32_t> dfi(in.freq_index);
    rptq::cuda::rotary(dx.data(), c.rows, c.heads, c.head_dim, dpos.data(), theta,
                       c.reorder ? dfi.data() : nullptr, c.group);
    const std::vector<float> gpu = dx.to_host();
    const std::int64_t half = c.head_dim / 2;
    std::size_t failures = 0;
    for (std::int64_t r = 0; r < c.rows; ++r)
      for (std::int64_t h = 0; h < c.heads; ++h)
        for (std::int64_t d = 0; d < c.head_dim; ++d) {
          const std::int64_t i = (r * c.heads + h) * c.head_dim + d;
          const std::int64_t pair = d < half ? d : d - half;
          float scale = 1.0f;
          if (pair < half)
            scale = std::max(1.0f, std::fabs(in.x[i - d + pair]) + std::fabs(in.x[i - d + pair + half]));
          const double err = std::fabs(static_cast<double>(gpu[i]) - expected[i]);
          if (!(err <= 1e-6 * scale) && failures++ < 5)
            ADD_FAILURE() << "row " << r << " head " << h << " channel " << d << ": gpu " << gpu[i] << " cpu "
                          << expected[i];
        }
    EXPECT_EQ(failures, 0u);
  }
}

TEST(CudaRotary, RunsOnAStreamWithOtherTheta) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Case c{64, 8, 128, true, 2, 8192};
  const Inputs in = make_inputs(c, 99);
  std::vector<float> expected(in.x);
  rptq::ops::rotary(expected.data(), c.rows, c.heads, c.head_dim, in.positions.data(), 500000.0f,
                    in.freq_index.data(), c.group);
  DeviceBuffer<float> dx(in.x);
  DeviceBuffer<std::int64_t> dpos(in.positions);
  DeviceBuffer<std::int32_t> dfi(in.freq_index);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  rptq::cuda::rotary(dx.data(), c.rows, c.heads, c.head_dim, dpos.data(), 500000.0f, dfi.data(), c.group, stream);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  const std::vector<float> gpu = dx.to_host();
  for (std::size_t i = 0; i < gpu.size(); ++i) ASSERT_NEAR(gpu[i], expected[i], 1e-5) << i;
}

// The kernel's per-pair arithmetic on the host, with glibc's cosf / sinf as the CPU uses: index math (freq_index,
// group), inverse frequencies, angles and rotation must give ops::rotary's bits.
TEST(CudaRotary, HostEmulationIsBitExact) {
  std::uint32_t seed = 500;
  for (const Case& c : kCases) {
    SCOPED_TRACE(describe(c));
    const Inputs in = make_inputs(c, seed += 3);
    const float theta = 10000.0f;
    const std::int32_t* fi = c.reorder ? in.freq_index.data() : nullptr;
    std::vector<float> expected(in.x), emulated(in.x);
    rptq::ops::rotary(expected.data(), c.rows, c.heads, c.head_dim, in.positions.data(), theta, fi, c.group);
    const std::int64_t half = c.head_dim / 2;
    for (std::int64_t r = 0; r < c.rows; ++r) {
      std::vector<float> cs(static_cast<std::size_t>(half)), sn(cs.size());
      for (std::int64_t i = 0; i < half; ++i) {
        const float angle =
            rptq::cuda::rotary_angle(in.positions[r], rptq::cuda::rotary_inv_freq(i, c.head_dim, theta));
        cs[i] = std::cos(angle);
        sn[i] = std::sin(angle);
      }
      for (std::int64_t h = 0; h < c.heads; ++h)
        for (std::int64_t i = 0; i < half; ++i) {
          const std::int64_t f = rptq::cuda::rotary_frequency_of(fi, h, i, half, c.group);
          float* xh = emulated.data() + (r * c.heads + h) * c.head_dim;
          rptq::cuda::rotary_rotate(xh[i], xh[i + half], cs[f], sn[f]);
        }
    }
    ASSERT_EQ(std::memcmp(emulated.data(), expected.data(), expected.size() * sizeof(float)), 0);
  }
}

TEST(CudaRotary, EmptyAndInvalidShapes) {
  float f = 0.0f;
  std::int64_t p = 0;
  EXPECT_NO_THROW(rptq::cuda::rotary(nullptr, 0, 4, 64, nullptr, 10000.0f));
  EXPECT_NO_THROW(rptq::cuda::rotary(nullptr, 3, 0, 64, nullptr, 10000.0f));
  EXPECT_NO_THROW(rptq::cuda::rotary(nullptr, 3, 4, 1, nullptr, 10000.0f));  // no pair to rotate
  EXPECT_THROW(rptq::cuda::rotary(&f, -1, 4, 64, &p, 10000.0f), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::rotary(&f, 1, 4, 64, nullptr, 10000.0f), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::rotary(&f, 1, 4, 64, &p, 10000.0f, nullptr, 0), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::rotary(&f, 1, 4, 64, &p, 0.0f), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::rotary(&f, 1, 1, 10000, &p, 10000.0f), std::invalid_argument);
}

#else

TEST(CudaRotary, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
