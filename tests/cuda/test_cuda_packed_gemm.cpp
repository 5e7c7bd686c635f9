// GPU packed-weight layers (kernels/packed_gemm.cu) against the CPU: weights quantized by rptq::quantize_rtn (both
// grids, 2..8 bits, uneven and empty column groups, fixed-size groups), packed with rptq::pack_signed over the
// whole [out, in] matrix as RPTQ stores them, then
//   dequantize            against QuantizedWeight::dequantize (float: bit-exact; half / bfloat16: the host's
//                         rounding of those floats, bit-exact), for whole matrices and row ranges;
//   packed_linear         against ops::linear on the dequantized weight, FP32 / FP16 / BF16 inputs, several tile
//                         sizes (one row, a tile that does not divide out, all rows), bias and accumulate;
//   packed_gemv           (1..8 rows) against the same.
// The dequantization arithmetic of packed_gemm.cuh runs on the host, without a GPU, against
// QuantizedWeight::dequantize, through the same bit-stream and group-lookup helpers the kernels use; so do a
// serving format's F16 / BF16 value dtypes (values rounded after the product), on the host and the device.
//
// Tolerances. Dequantization is bit-exact: one subtraction and one product, rounded as the CPU's. The products
// sum `in` float terms in different orders, so they are checked relative to M = |bias| + |y0| + sum_k |x_k w_k|:
// FP32 (cuBLAS and the fused GEMV, which sums in 32 lanes of in / 32 terms then a shuffle tree)
// |gpu - cpu| <= 1e-5 M, as test_cuda_gemm.cpp argues; FP16 / BF16 against ops::linear on x and W rounded to the
// 16-bit type, |gpu - cpu| <= 5e-5 M (tensor-core accumulation).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/base/bitpack.h"
#include "rptq/device.h"
#include "rptq/model/ops.h"
#include "rptq/method/weight_quant.h"
#include "rptq/model/packed_weight.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#include "fake_quant.cuh"
#include "kv_pack.cuh"
#include "packed_gemm.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::BlasHandle;
using rptq::cuda::DeviceBuffer;
using rptq::cuda::GemmInputs;

using rptq::test::normal;

struct Layer {
  rptq::QuantizedWeight q;
  std::vector<std::uint8_t> packed;
  std::vector<float> dequantized;  // QuantizedWeight::dequantize
};

// Groups: uneven input clusters with an empty one, or a fixed size that does not divide in.
std::vector<std::int64_t> groups_for(std::int64_t in, int kind) {
  if (kind == 0) return {0, in};
  if (kind == 1) return rptq::fixed_group_boundaries(in, 32);
  std::vector<std::int64_t> b = {0, in / 7, in / 7, in / 3, in / 3 + 1, in};
  for (std::size_t i = 1; i < b.size(); ++i) b[i] = std::max(b[i], b[i - 1]);
  return b;
}

Layer make_layer(std::int64_t out, std::int64_t in, int bits, rptq::QuantGrid grid, int group_kind,
                 std::uint32_t seed) {
  std::vector<float> w = normal(static_cast<std::size_t>(out * in), 0.0f, 1.0f / std::sqrt(static_cast<float>(in)), seed);
  for (std::int64_t r = 0; r < out; r += 5) w[r * in + (r % in)] *= 20.0f;  // outliers widen some groups
  Layer l;
  l.q = rptq::quantize_rtn(w.data(), out, in, bits, grid, groups_for(in, group_kind));
  l.packed.resize(rptq::packed_bytes(out * in, bits));
  rptq::pack_signed(l.q.codes.data(), out * in, bits, l.packed.data());
  l.dequantized.resize(w.size());
  l.q.dequantize(l.dequantized.data());
  return l;
}

rptq::cuda::PackedWeight upload(const Layer& l) {
  return rptq::cuda::upload_packed_weight(l.packed, l.q.out, l.q.in, l.q.bits, l.q.group_boundaries, l.q.scales,
                                          l.q.zero_points);
}

std::string describe(const Layer& l) {
  return std::to_string(l.q.out) + " x " + std::to_string(l.q.in) + ", " + std::to_string(l.q.bits) + "-bit, " +
         std::to_string(l.q.groups()) + " groups";
}

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, const std::vector<double>& magnitude,
                  double tolerance) {
  ASSERT_EQ(gpu.size(), cpu.size());
  std::size_t failures = 0, first = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const double err = std::fabs(static_cast<double>(gpu[i]) - cpu[i]);
    if (!(err <= tolerance * magnitude[i]) && failures++ == 0) first = i;
  }
  EXPECT_EQ(failures, 0u) << "first at " << first << ": gpu " << gpu[first] << " cpu " << cpu[first];
}

float round_to(GemmInputs mode, float v) {
  if (mode == GemmInputs::FP16) return __half2float(__float2half_rn(v));
  if (mode == GemmInputs::BF16) return __bfloat162float(__float2bfloat16_rn(v));
  return v;
}

// ops::linear on the dequantized weight (inputs rounded as the mode sees them) and the magnitudes of its sums.
void reference(const Layer& l, GemmInputs mode, const std::vector<float>& x, std::int64_t ldx, std::int64_t rows,
               const float* bias, const std::vector<float>& y0, bool accumulate, std::vector<float>& expected,
               std::vector<double>& magnitude) {
  const std::int64_t in = l.q.in, out = l.q.out;
  std::vector<float> xr(x), wr(l.dequantized);
  for (float& v : xr) v = round_to(mode, v);
  for (float& v : wr) v = round_to(mode, v);
  expected = accumulate ? y0 : std::vector<float>(static_cast<std::size_t>(rows * out), 0.0f);
  rptq::ops::linear(xr.data(), ldx, rows, in, wr.data(), bias, out, expected.data(), accumulate);
  magnitude.assign(expected.size(), 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < out; ++c) {
      double m = (bias ? std::fabs(bias[c]) : 0.0) + (accumulate ? std::fabs(y0[r * out + c]) : 0.0);
      for (std::int64_t k = 0; k < in; ++k) m += std::fabs(static_cast<double>(xr[r * ldx + k]) * wr[c * in + k]);
      magnitude[r * out + c] = m > 0 ? m : std::numeric_limits<double>::min();
    }
}

}  // namespace

TEST(CudaPackedGemm, DequantizeIsExact) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 1;
  for (int bits = 2; bits <= 8; ++bits)
    for (rptq::QuantGrid grid : {rptq::QuantGrid::Exact, rptq::QuantGrid::Reference})
      for (int kind : {0, 1, 2}) {
        const Layer l = make_layer(37, 203, bits, grid, kind, seed += 2);
        SCOPED_TRACE(describe(l));
        const rptq::cuda::PackedWeight w = upload(l);
        DeviceBuffer<float> df(std::vector<float>(l.dequantized.size(), std::nanf("")));
        rptq::cuda::dequantize(w.view(), 0, l.q.out, df.data());
        const std::vector<float> f = df.to_host();
        ASSERT_EQ(std::memcmp(f.data(), l.dequantized.data(), f.size() * sizeof(float)), 0);
        // A row range, in half and bfloat16.
        const std::int64_t row0 = 5, rows = 11, in = l.q.in;
        DeviceBuffer<__half> dh(static_cast<std::size_t>(rows * in));
        DeviceBuffer<__nv_bfloat16> db(static_cast<std::size_t>(rows * in));
        rptq::cuda::dequantize(w.view(), row0, rows, dh.data());
        rptq::cuda::dequantize(w.view(), row0, rows, db.data());
        const std::vector<__half> h = dh.to_host();
        const std::vector<__nv_bfloat16> b = db.to_host();
        for (std::int64_t i = 0; i < rows * in; ++i) {
          const float v = l.dequantized[row0 * in + i];
          ASSERT_EQ(__half2float(h[i]), __half2float(__float2half_rn(v))) << i;
          ASSERT_EQ(__bfloat162float(b[i]), __bfloat162float(__float2bfloat16_rn(v))) << i;
        }
      }
}

TEST(CudaPackedGemm, PackedLinearMatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  BlasHandle blas;
  std::uint32_t seed = 100;
  struct Case {
    std::int64_t rows, out, in, ldx;
    int bits, group_kind;
    std::int64_t tile_rows;
  };
  for (const Case& c : {Case{1, 1, 1, 1, 4, 0, 0}, Case{7, 65, 129, 131, 3, 2, 0}, Case{33, 300, 512, 512, 4, 1, 7},
                        Case{64, 768, 768, 768, 4, 2, 1}, Case{5, 1000, 1000, 1000, 2, 2, 999},
                        Case{16, 257, 3000, 3000, 8, 1, 0}})
    for (GemmInputs mode : {GemmInputs::FP32, GemmInputs::FP16, GemmInputs::BF16})
      for (int variant = 0; variant < 3; ++variant) {
        const bool use_bias = variant != 0, accumulate = variant == 2;
        const Layer l = make_layer(c.out, c.in, c.bits, rptq::QuantGrid::Exact, c.group_kind, seed += 3);
        SCOPED_TRACE(describe(l) + ", rows " + std::to_string(c.rows) + ", tile " + std::to_string(c.tile_rows) +
                     ", mode " + std::to_string(static_cast<int>(mode)) + (use_bias ? " bias" : "") +
                     (accumulate ? " accumulate" : ""));
        const std::vector<float> x = normal(static_cast<std::size_t>(c.rows * c.ldx), 0.0f, 1.0f, seed + 1);
        const std::vector<float> bias = normal(static_cast<std::size_t>(c.out), 0.0f, 0.5f, seed + 2);
        const std::vector<float> y0 = normal(static_cast<std::size_t>(c.rows * c.out), 0.0f, 1.0f, seed + 3);
        std::vector<float> expected;
        std::vector<double> magnitude;
        reference(l, mode, x, c.ldx, c.rows, use_bias ? bias.data() : nullptr, y0, accumulate, expected, magnitude);

        const rptq::cuda::PackedWeight w = upload(l);
        DeviceBuffer<float> dx(x), dbias(bias),
            dy(accumulate ? y0 : std::vector<float>(expected.size(), std::nanf("")));
        rptq::cuda::packed_linear(blas, dx.data(), c.ldx, c.rows, w.view(), use_bias ? dbias.data() : nullptr,
                                  dy.data(), accumulate, mode, c.tile_rows);
        expect_close(dy.to_host(), expected, magnitude, mode == GemmInputs::FP32 ? 1e-5 : 5e-5);
      }
}

TEST(CudaPackedGemm, FusedGemvMatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 300;
  for (int bits : {2, 3, 4, 5, 8})
    for (std::int64_t rows = 1; rows <= rptq::cuda::kPackedGemvMaxRows; ++rows)
      for (int variant = 0; variant < 3; ++variant) {
        const bool use_bias = variant != 0, accumulate = variant == 2;
        const std::int64_t out = 96 + rows, in = 1000 + 37 * rows, ldx = in + 3;
        const Layer l = make_layer(out, in, bits, rptq::QuantGrid::Reference, static_cast<int>(rows % 3), seed += 3);
        SCOPED_TRACE(describe(l) + ", rows " + std::to_string(rows) + (use_bias ? " bias" : "") +
                     (accumulate ? " accumulate" : ""));
        const std::vector<float> x = normal(static_cast<std::size_t>(rows * ldx), 0.0f, 1.0f, seed + 1);
        const std::vector<float> bias = normal(static_cast<std::size_t>(out), 0.0f, 0.5f, seed + 2);
        const std::vector<float> y0 = normal(static_cast<std::size_t>(rows * out), 0.0f, 1.0f, seed + 3);
        std::vector<float> expected;
        std::vector<double> magnitude;
        reference(l, GemmInputs::FP32, x, ldx, rows, use_bias ? bias.data() : nullptr, y0, accumulate, expected,
                  magnitude);
        const rptq::cuda::PackedWeight w = upload(l);
        DeviceBuffer<float> dx(x), dbias(bias),
            dy(accumulate ? y0 : std::vector<float>(expected.size(), std::nanf("")));
        rptq::cuda::packed_gemv(dx.data(), ldx, rows, w.view(), use_bias ? dbias.data() : nullptr, dy.data(),
                                accumulate);
        expect_close(dy.to_host(), expected, magnitude, 1e-5);
      }
}

// The kernels' dequantization on the host: bitpack_get over the whole-matrix stream, cluster_of for the column
// group and packed_weight_value give QuantizedWeight::dequantize's bits.
TEST(CudaPackedGemm, HostDequantizationIsExact) {
  std::uint32_t seed = 500;
  for (int bits = 2; bits <= 8; ++bits)
    for (rptq::QuantGrid grid : {rptq::QuantGrid::Exact, rptq::QuantGrid::Reference})
      for (int kind : {0, 1, 2}) {
        const Layer l = make_layer(23, 77, bits, grid, kind, seed += 2);
        const std::vector<std::int32_t> b(l.q.group_boundaries.begin(), l.q.group_boundaries.end());
        const std::int64_t g = l.q.groups(), in = l.q.in;
        std::vector<float> w(l.dequantized.size());
        for (std::int64_t r = 0; r < l.q.out; ++r)
          for (std::int64_t c = 0; c < in; ++c) {
            const int k = rptq::cuda::cluster_of(b.data(), static_cast<int>(g), c);
            const std::uint32_t stored = rptq::cuda::bitpack_get(l.packed.data(), r * in + c, bits);
            ASSERT_EQ(static_cast<std::int32_t>(stored) - (1 << (bits - 1)), l.q.codes[r * in + c]);
            w[r * in + c] = rptq::cuda::packed_weight_value(stored, l.q.scales[r * g + k], l.q.zero_points[r * g + k], bits);
          }
        ASSERT_EQ(std::memcmp(w.data(), l.dequantized.data(), w.size() * sizeof(float)), 0) << describe(l);
      }
}

// A serving format's weights (WeightFormat F16 / BF16: scales of that dtype, values rounded to it): the host form
// of the kernels' dequantization and the dequantize kernel and fused GEMV give QuantizedWeight::dequantize's bits,
// and hd::round_to_half / round_to_bf16 are rptq::round_to_dtype.
TEST(CudaPackedGemm, ServingValueDtypesAreExact) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> e(-30.0f, 17.0f);
  for (int i = 0; i < 50000; ++i) {
    const float v = std::ldexp(1.0f + std::generate_canonical<float, 24>(rng), static_cast<int>(e(rng))) *
                    (i % 2 ? 1.0f : -1.0f);
    ASSERT_EQ(rptq::cuda::hd::round_to_half(v), rptq::round_to_dtype(v, rptq::DType::F16)) << v;
    ASSERT_EQ(rptq::cuda::hd::round_to_bf16(v), rptq::round_to_dtype(v, rptq::DType::BF16)) << v;
  }
  std::uint32_t seed = 900;
  for (rptq::DType dt : {rptq::DType::F16, rptq::DType::BF16})
    for (int bits : {4, 8}) {
      const std::int64_t out = 19, in = 96;
      std::vector<float> wf = normal(static_cast<std::size_t>(out * in), 0.0f, 0.05f, seed += 3);
      const rptq::QuantizedWeight q = rptq::quantize_rtn(wf.data(), out, in, bits, rptq::QuantGrid::Exact,
                                                         rptq::fixed_group_boundaries(in, 32), rptq::WeightClip::MinMax,
                                                         {}, {dt, true});
      std::vector<float> want(wf.size());
      q.dequantize(want.data());
      std::vector<std::uint8_t> packed(rptq::packed_bytes(out * in, bits));
      rptq::pack_signed(q.codes.data(), out * in, bits, packed.data());
      const int vd = dt == rptq::DType::F16 ? rptq::cuda::kValueF16 : rptq::cuda::kValueBF16;
      std::vector<float> host(want.size());
      for (std::int64_t r = 0; r < out; ++r)
        for (std::int64_t c = 0; c < in; ++c) {
          const std::size_t g = static_cast<std::size_t>(r * 3 + c / 32);
          host[static_cast<std::size_t>(r * in + c)] = rptq::cuda::packed_weight_value(
              rptq::cuda::bitpack_get(packed.data(), r * in + c, bits), q.scales[g], q.zero_points[g], bits, vd);
        }
      ASSERT_EQ(std::memcmp(host.data(), want.data(), want.size() * sizeof(float)), 0) << bits;
      if (rptq::device_info().cuda_devices == 0) continue;  // the device half below needs a GPU (or the emulator)
      const rptq::cuda::PackedWeight w =
          rptq::cuda::upload_packed_weight(packed, out, in, bits, q.group_boundaries, q.scales, q.zero_points, vd);
      DeviceBuffer<float> df(std::vector<float>(want.size(), std::nanf("")));
      rptq::cuda::dequantize(w.view(), 0, out, df.data());
      const std::vector<float> f = df.to_host();
      ASSERT_EQ(std::memcmp(f.data(), want.data(), f.size() * sizeof(float)), 0) << bits;
      // The fused GEMV reads the same values: against ops::linear on them.
      const std::vector<float> x = normal(static_cast<std::size_t>(2 * in), 0.0f, 1.0f, seed += 3);
      std::vector<float> y(static_cast<std::size_t>(2 * out), 0.0f);
      rptq::ops::linear(x.data(), in, 2, in, want.data(), nullptr, out, y.data(), false);
      DeviceBuffer<float> dx(x), dy(std::vector<float>(y.size(), 0.0f));
      rptq::cuda::packed_gemv(dx.data(), in, 2, w.view(), nullptr, dy.data());
      const std::vector<float> gy = dy.to_host();
      for (std::size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(gy[i], y[i], 1e-4f * (1.0f + std::fabs(y[i]))) << i;
    }
  EXPECT_THROW(rptq::cuda::upload_packed_weight({0, 0}, 1, 4, 4, {0, 4}, {1.0f}, {0.0f}, 7), std::invalid_argument);
}

TEST(CudaPackedGemm, InvalidArgumentsThrowBeforeAnyCudaCall) {
  using rptq::cuda::check_packed_weight;
  EXPECT_NO_THROW(check_packed_weight(rptq::packed_bytes(3 * 10, 4), 3, 10, 4, {0, 4, 10}, 6, 6));
  EXPECT_THROW(check_packed_weight(rptq::packed_bytes(3 * 10, 4) + 1, 3, 10, 4, {0, 4, 10}, 6, 6),
               std::invalid_argument);
  EXPECT_THROW(check_packed_weight(rptq::packed_bytes(3 * 10, 4), 3, 10, 4, {0, 4, 10}, 5, 6), std::invalid_argument);
  EXPECT_THROW(check_packed_weight(rptq::packed_bytes(3 * 10, 4), 3, 10, 4, {0, 4, 9}, 6, 6), std::invalid_argument);
  EXPECT_THROW(check_packed_weight(rptq::packed_bytes(3 * 10, 4), 3, 10, 4, {0, 5, 4, 10}, 9, 9),
               std::invalid_argument);
  EXPECT_THROW(check_packed_weight(15, 3, 10, 9, {0, 10}, 3, 3), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::upload_packed_weight({1, 2, 3}, 1, 4, 4, {0, 4}, {1.0f}, {0.0f}), std::invalid_argument);

  BlasHandle blas;
  float f = 0.0f;
  std::uint8_t c = 0;
  std::int32_t b[2] = {0, 4};
  rptq::cuda::PackedWeightView w;
  w.codes = &c;
  w.out = 3;
  w.in = 4;
  w.bits = 4;
  w.scales = &f;
  w.zero_points = &f;
  w.group_boundaries = b;
  w.groups = 1;
  EXPECT_THROW(rptq::cuda::dequantize(w, 2, 2, &f), std::invalid_argument);  // rows past the weight
  EXPECT_THROW(rptq::cuda::dequantize(w, 0, 3, static_cast<float*>(nullptr)), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::packed_linear(blas, &f, 3, 2, w, nullptr, &f), std::invalid_argument);  // ldx < in
  EXPECT_THROW(rptq::cuda::packed_gemv(&f, 4, 9, w, nullptr, &f), std::invalid_argument);  // too many rows
  rptq::cuda::PackedWeightView bad = w;
  bad.bits = 1;
  EXPECT_THROW(rptq::cuda::packed_gemv(&f, 4, 1, bad, nullptr, &f), std::invalid_argument);
  bad = w;
  bad.groups = 0;
  EXPECT_THROW(rptq::cuda::packed_linear(blas, &f, 4, 1, bad, nullptr, &f), std::invalid_argument);
  bad = w;
  bad.codes = nullptr;
  EXPECT_THROW(rptq::cuda::packed_linear(blas, &f, 4, 1, bad, nullptr, &f), std::invalid_argument);
  EXPECT_NO_THROW(rptq::cuda::packed_linear(blas, nullptr, 4, 0, w, nullptr, nullptr));
}

#else

TEST(CudaPackedGemm, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
