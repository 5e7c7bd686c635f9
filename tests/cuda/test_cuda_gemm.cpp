// cuBLAS linear layers (kernels/gemm.cu) against rptq::ops::linear, in the three input precisions, with and
// without bias and accumulate, over odd shapes (1 x 1 x 1, sizes that are no multiple of anything, a row stride
// larger than the row, an empty inner dimension), plus the float -> half / bfloat16 conversion kernels.
//
// Tolerances. Both sides compute each output as a float32 sum of `in` products, in different orders (oneDNN's or
// OpenBLAS's blocking against cuBLAS's tiles and split-k). The rounding error of such a sum is bounded by
// ~log2(in) .. sqrt(in) roundings of the running sum's magnitude, so the check is relative to the element's
// magnitude M = |bias| + |y0| + sum_k |x_k w_k| (computed in double on the host):
//   FP32: |gpu - cpu| <= 1e-5 * M. At in = 4096 a sum rounds ~12 (pairwise) to 64 (sqrt) times at 6e-8: 4e-6 M at
//         worst, so 1e-5 leaves a margin of 2-3 and still fails on any wrong index, transpose or TF32 (whose 10-bit
//         mantissa products err by ~5e-4 M).
//   FP16 / BF16: the reference is ops::linear on x and w rounded to the 16-bit type (exact in float), so only the
//         accumulation differs; tensor cores may align the partial sums with truncation instead of rounding,
//         worth up to a few float ulps per step: |gpu - cpu| <= 5e-5 * M.
// Conversions are bit-exact against the host's __float2half_rn / __float2bfloat16_rn (round to nearest even).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "rptq/device.h"
#include "rptq/model/ops.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#include "gemm.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::BlasHandle;
using rptq::cuda::DeviceBuffer;
using rptq::cuda::GemmInputs;

using rptq::test::normal;

struct Shape {
  std::int64_t rows, in, out, ldx;
};
const std::vector<Shape> kShapes = {{1, 1, 1, 1},      {3, 7, 5, 7},       {17, 33, 65, 40},  {2, 100, 1, 100},
                                    {64, 768, 768, 768}, {5, 1000, 3, 1003}, {33, 4096, 257, 4096}, {1, 4096, 4096, 4096}};

// The input as the 16-bit mode sees it: rounded to half / bfloat16 and back (exact in float).
float round_to(GemmInputs mode, float v) {
  if (mode == GemmInputs::FP16) return __half2float(__float2half_rn(v));
  if (mode == GemmInputs::BF16) return __bfloat162float(__float2bfloat16_rn(v));
  return v;
}

template <typename T>
std::vector<T> to_16bit(const std::vector<float>& v) {
  std::vector<T> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same_v<T, __half>)
      out[i] = __float2half_rn(v[i]);
    else
      out[i] = __float2bfloat16_rn(v[i]);
  }
  return out;
}

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, const std::vector<double>& magnitude,
                  double tolerance, std::int64_t cols) {
  ASSERT_EQ(gpu.size(), cpu.size());
  std::size_t failures = 0, worst_at = 0;
  double worst = 0.0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const double err = std::fabs(static_cast<double>(gpu[i]) - cpu[i]);
    const double allowed = tolerance * magnitude[i];
    if (!(err <= allowed)) ++failures;  // NaN fails
    const double rel = err / (magnitude[i] > 0 ? magnitude[i] : 1.0);
    if (!(rel <= worst)) {
      worst = rel;
      worst_at = i;
    }
  }
  EXPECT_EQ(failures, 0u) << "worst at row " << worst_at / cols << " col " << worst_at % cols << ": gpu "
                          << gpu[worst_at] << " cpu " << cpu[worst_at] << " (|diff| / magnitude " << worst << ")";
}

struct Options {
  GemmInputs mode;
  bool bias, accumulate;
  bool float_x;  // 16-bit modes: pass float x (converted in the handle's scratch) instead of 16-bit x
};

void check_linear(BlasHandle& blas, const Shape& s, const Options& o, std::uint32_t seed) {
  SCOPED_TRACE(std::to_string(s.rows) + " x " + std::to_string(s.in) + " -> " + std::to_string(s.out) + " ldx " +
               std::to_string(s.ldx) + " mode " + std::to_string(static_cast<int>(o.mode)) + (o.bias ? " bias" : "") +
               (o.accumulate ? " accumulate" : "") + (o.float_x ? " float-x" : ""));
  const auto nx = static_cast<std::size_t>(s.rows * s.ldx), nw = static_cast<std::size_t>(s.out * s.in),
             ny = static_cast<std::size_t>(s.rows * s.out);
  const std::vector<float> x = normal(nx, 0.0f, 1.0f, seed);
  const std::vector<float> w = normal(nw, 0.0f, 1.0f / std::sqrt(static_cast<float>(s.in)), seed + 1);
  const std::vector<float> bias = normal(static_cast<std::size_t>(s.out), 0.0f, 0.5f, seed + 2);
  const std::vector<float> y0 = normal(ny, 0.0f, 1.0f, seed + 3);

  std::vector<float> xr(x), wr(w);
  for (float& v : xr) v = round_to(o.mode, v);
  for (float& v : wr) v = round_to(o.mode, v);
  std::vector<float> expected = o.accumulate ? y0 : std::vector<float>(ny, 0.0f);
  rptq::ops::linear(xr.data(), s.ldx, s.rows, s.in, wr.data(), o.bias ? bias.data() : nullptr, s.out,
                    expected.data(), o.accumulate);
  std::vector<double> magnitude(ny);
  for (std::int64_t r = 0; r < s.rows; ++r)
    for (std::int64_t c = 0; c < s.out; ++c) {
      double m = (o.bias ? std::fabs(bias[c]) : 0.0) + (o.accumulate ? std::fabs(y0[r * s.out + c]) : 0.0);
      for (std::int64_t k = 0; k < s.in; ++k) m += std::fabs(static_cast<double>(xr[r * s.ldx + k]) * wr[c * s.in + k]);
      magnitude[r * s.out + c] = m > 0 ? m : std::numeric_limits<double>::min();
    }

  // Poisoned output unless it is accumulated onto.
  DeviceBuffer<float> dy(o.accumulate ? y0 : std::vector<float>(ny, std::nanf("")));
  DeviceBuffer<float> dbias(bias);
  const float* b = o.bias ? dbias.data() : nullptr;
  if (o.mode == GemmInputs::FP32) {
    DeviceBuffer<float> dx(x), dw(w);
    rptq::cuda::linear(blas, dx.data(), s.ldx, s.rows, s.in, dw.data(), b, s.out, dy.data(), o.accumulate);
  } else if (o.mode == GemmInputs::FP16) {
    DeviceBuffer<__half> dw(to_16bit<__half>(w)), dx16(to_16bit<__half>(x));
    DeviceBuffer<float> dx(x);
    if (o.float_x)
      rptq::cuda::linear(blas, dx.data(), s.ldx, s.rows, s.in, dw.data(), b, s.out, dy.data(), o.accumulate);
    else
      rptq::cuda::linear(blas, dx16.data(), s.ldx, s.rows, s.in, dw.data(), b, s.out, dy.data(), o.accumulate);
  } else {
    DeviceBuffer<__nv_bfloat16> dw(to_16bit<__nv_bfloat16>(w)), dx16(to_16bit<__nv_bfloat16>(x));
    DeviceBuffer<float> dx(x);
    if (o.float_x)
      rptq::cuda::linear(blas, dx.data(), s.ldx, s.rows, s.in, dw.data(), b, s.out, dy.data(), o.accumulate);
    else
      rptq::cuda::linear(blas, dx16.data(), s.ldx, s.rows, s.in, dw.data(), b, s.out, dy.data(), o.accumulate);
  }
  ASSERT_EQ(cudaStreamSynchronize(blas.stream()), cudaSuccess);
  expect_close(dy.to_host(), expected, magnitude, o.mode == GemmInputs::FP32 ? 1e-5 : 5e-5, s.out);
}

}  // namespace

TEST(CudaGemm, Fp32MatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  BlasHandle blas;
  std::uint32_t seed = 1;
  for (const Shape& s : kShapes)
    for (bool bias : {false, true})
      for (bool acc : {false, true}) check_linear(blas, s, {GemmInputs::FP32, bias, acc, false}, seed += 10);
}

TEST(CudaGemm, Fp16AndBf16MatchCpuOnRoundedInputs) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  BlasHandle blas;
  std::uint32_t seed = 1000;
  for (GemmInputs mode : {GemmInputs::FP16, GemmInputs::BF16})
    for (const Shape& s : kShapes)
      for (bool float_x : {false, true}) {
        check_linear(blas, s, {mode, true, false, float_x}, seed += 10);
        check_linear(blas, s, {mode, false, true, float_x}, seed += 10);
      }
}

// bf16 inputs against the float64 product of the unrounded inputs: the rounding of the inputs dominates
// (2^-9 relative per input), and a wrong layout would give an error near 1.
TEST(CudaGemm, Bf16IsCloseToExactProduct) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const std::int64_t rows = 16, in = 512, out = 96;
  const std::vector<float> x = normal(static_cast<std::size_t>(rows * in), 0.0f, 1.0f, 5);
  const std::vector<float> w = normal(static_cast<std::size_t>(out * in), 0.0f, 1.0f, 6);
  BlasHandle blas;
  DeviceBuffer<float> dx(x), dw32(w), dy(static_cast<std::size_t>(rows * out));
  DeviceBuffer<__nv_bfloat16> dw(w.size());
  rptq::cuda::convert(dw32.data(), dw.data(), static_cast<std::int64_t>(w.size()), blas.stream());
  rptq::cuda::linear(blas, dx.data(), in, rows, in, dw.data(), nullptr, out, dy.data());
  const std::vector<float> y = dy.to_host();
  double num = 0.0, den = 0.0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < out; ++c) {
      double ref = 0.0;
      for (std::int64_t k = 0; k < in; ++k) ref += static_cast<double>(x[r * in + k]) * w[c * in + k];
      num += (y[r * out + c] - ref) * (y[r * out + c] - ref);
      den += ref * ref;
    }
  const double rel = std::sqrt(num / den);
  EXPECT_LT(rel, 1e-2);
  EXPECT_GT(rel, 1e-5);  // bf16 rounding really happened
}

// An empty inner dimension: y = bias (or 0), or y (+ bias) with accumulate, as ops::linear.
TEST(CudaGemm, EmptyInnerDimension) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const std::int64_t rows = 3, out = 5;
  const std::vector<float> bias = normal(out, 0.0f, 1.0f, 7), y0 = normal(rows * out, 0.0f, 1.0f, 8);
  BlasHandle blas;
  DeviceBuffer<float> dbias(bias), dx(1), dw(1);
  for (bool use_bias : {false, true})
    for (bool acc : {false, true}) {
      // ops::linear's meaning with in = 0 (an empty sum), written out: its BLAS call is not asked about k = 0.
      std::vector<float> expected = acc ? y0 : std::vector<float>(rows * out, 0.0f);
      if (use_bias)
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t c = 0; c < out; ++c) expected[r * out + c] += bias[c];
      DeviceBuffer<float> dy(acc ? y0 : std::vector<float>(rows * out, std::nanf("")));
      rptq::cuda::linear(blas, dx.data(), 0, rows, 0, dw.data(), use_bias ? dbias.data() : nullptr, out, dy.data(), acc);
      EXPECT_EQ(dy.to_host(), expected) << "bias " << use_bias << " accumulate " << acc;
    }
}

TEST(CudaGemm, RunsOnAStreamAndReusesScratch) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    BlasHandle blas(stream);
    EXPECT_EQ(blas.stream(), stream);
    // Growing scratch between calls, then a smaller call on the same (larger) buffer.
    for (const Shape& s : {Shape{4, 64, 32, 64}, Shape{64, 1024, 48, 1024}, Shape{2, 16, 8, 16}})
      check_linear(blas, s, {GemmInputs::FP16, true, false, true}, 77);
    void* a = blas.scratch(16);
    EXPECT_EQ(blas.scratch(8), a);
    blas.close();
    check_linear(blas, Shape{3, 5, 7, 5}, {GemmInputs::FP32, true, true, false}, 78);  // re-created after close
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(CudaGemm, ConversionsRoundToNearestEven) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::vector<float> v = normal(10000, 0.0f, 100.0f, 9);
  // Specials: ties, subnormal results, overflow, infinities, NaN, signed zero.
  const float specials[] = {0.0f, -0.0f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 65504.0f, 65520.0f, 1e6f,
                            -1e6f, 1e-7f, 6e-8f, 1e-40f, INFINITY, -INFINITY, 3.0e38f, 1.0f + 1.0f / 256};
  v.insert(v.end(), std::begin(specials), std::end(specials));
  const auto n = static_cast<std::int64_t>(v.size());
  DeviceBuffer<float> dv(v);
  DeviceBuffer<__half> dh(v.size());
  DeviceBuffer<__nv_bfloat16> db(v.size());
  rptq::cuda::convert(dv.data(), dh.data(), n);
  rptq::cuda::convert(dv.data(), db.data(), n);
  const std::vector<__half> h = dh.to_host();
  const std::vector<__nv_bfloat16> b = db.to_host();
  for (std::size_t i = 0; i < v.size(); ++i) {
    const __half eh = __float2half_rn(v[i]);
    const __nv_bfloat16 eb = __float2bfloat16_rn(v[i]);
    ASSERT_EQ(std::memcmp(&h[i], &eh, sizeof(eh)), 0) << "half of " << v[i];
    ASSERT_EQ(std::memcmp(&b[i], &eb, sizeof(eb)), 0) << "bfloat16 of " << v[i];
  }
  // The strided form: a [7, 5] block out of rows of 9.
  const std::vector<float> m = normal(7 * 9, 0.0f, 1.0f, 10);
  DeviceBuffer<float> dm(m);
  DeviceBuffer<__half> dmh(7 * 5);
  rptq::cuda::convert_rows(dm.data(), 9, 7, 5, dmh.data());
  const std::vector<__half> mh = dmh.to_host();
  for (int r = 0; r < 7; ++r)
    for (int c = 0; c < 5; ++c) ASSERT_EQ(__half2float(mh[r * 5 + c]), __half2float(__float2half_rn(m[r * 9 + c])));
}

// Argument checks run before any CUDA call: a handle that was never used holds no cuBLAS handle, so none of these
// needs a GPU.
TEST(CudaGemm, InvalidArgumentsThrowBeforeAnyCudaCall) {
  BlasHandle blas;
  float f = 0.0f;
  __half h{};
  const float* none = nullptr;  // a typed null: the overloads differ in the pointer types
  using rptq::cuda::linear;
  EXPECT_THROW(linear(blas, &f, 4, -1, 4, &f, nullptr, 4, &f), std::invalid_argument);
  EXPECT_THROW(linear(blas, &f, 3, 2, 4, &f, nullptr, 4, &f), std::invalid_argument);  // ldx < in
  EXPECT_THROW(linear(blas, none, 4, 2, 4, &f, nullptr, 4, &f), std::invalid_argument);
  EXPECT_THROW(linear(blas, &f, 4, 2, 4, none, nullptr, 4, &f), std::invalid_argument);
  EXPECT_THROW(linear(blas, &f, 4, 2, 4, &f, nullptr, 4, nullptr), std::invalid_argument);
  EXPECT_THROW(linear(blas, &h, 4, std::int64_t{1} << 31, 4, &h, nullptr, 4, &f), std::invalid_argument);
  EXPECT_THROW(linear(blas, &f, 4, 2, 4, &h, nullptr, -4, &f), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::gemm_xwt(blas, GemmInputs::FP32, &f, 4, 2, 4, &f, 3, 4, &f, 4, false),
               std::invalid_argument);  // ldw < in
  EXPECT_THROW(rptq::cuda::gemm_xwt(blas, GemmInputs::FP32, &f, 4, 2, 4, &f, 4, 4, &f, 3, false),
               std::invalid_argument);  // ldy < out
  EXPECT_THROW(rptq::cuda::convert(&f, &h, -1), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::convert_rows(&f, 2, 2, 3, &h), std::invalid_argument);
  // Empty products return at once.
  EXPECT_NO_THROW(linear(blas, none, 4, 0, 4, none, nullptr, 4, nullptr));
  EXPECT_NO_THROW(linear(blas, none, 4, 3, 4, none, nullptr, 0, nullptr));
  EXPECT_NO_THROW(rptq::cuda::convert(nullptr, &h, 0));
  BlasHandle moved(std::move(blas));
  EXPECT_EQ(moved.stream(), cudaStream_t{0});
}

#else

TEST(CudaGemm, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
