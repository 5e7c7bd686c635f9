// GPU elementwise ops and embedding gathers (kernels/elementwise.cu) against the CPU operators (rptq::ops) and
// Model::embed's gather, over shapes with a partial block of columns, a single column, and more rows than a grid's
// y dimension holds (65535), with and without bias.
//
// Tolerances.
//   relu, add_bias, add, broadcast_rows, embedding (+ positions): bit-exact. Each output is one float addition (or a
//     comparison) of the same operands on both sides.
//   gelu (erf), gelu_tanh, silu_mul: the kernels round every product and sum as the CPU does, so the only
//     difference is erff / tanhf / expf: CUDA's are within 2 ulp, glibc's within 1. An error of 3 ulp in erf or tanh
//     (3 * 2^-24 absolute near +-1) moves 0.5 v (1 + erf) by at most 1.8e-7 |v|, plus the final roundings (2 ulp of
//     the output): |gpu - cpu| <= 1e-6 * max(1, |v|), v the pre-activation. For silu an error of 3 ulp in exp
//     moves g / (1 + e^-g) by 3 ulp relative at most: |gpu - cpu| <= 1e-6 * |cpu| + 1e-30.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/device.h"
#include "rptq/model/ops.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#include "elementwise.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::DeviceBuffer;

using rptq::test::normal;

struct Shape {
  std::int64_t rows, cols;
};
const std::vector<Shape> kShapes = {{1, 1}, {3, 7}, {5, 255}, {4, 257}, {16, 3072}, {70000, 3}, {2, 11008}};

std::string describe(const Shape& s) { return std::to_string(s.rows) + " x " + std::to_string(s.cols); }

// Bitwise equality (NaN equal to NaN of the same bits), reporting the first difference.
void expect_same_bits(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  ASSERT_EQ(gpu.size(), cpu.size());
  for (std::size_t i = 0; i < cpu.size(); ++i)
    if (std::memcmp(&gpu[i], &cpu[i], sizeof(float)) != 0) {
      ADD_FAILURE() << "element " << i << ": gpu " << gpu[i] << " cpu " << cpu[i];
      return;
    }
}

// |gpu - cpu| <= abs_tol[i] + rel * |cpu|.
void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, const std::vector<float>& abs_tol,
                  double rel) {
  ASSERT_EQ(gpu.size(), cpu.size());
  std::size_t failures = 0, first = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const double err = std::fabs(static_cast<double>(gpu[i]) - cpu[i]);
    if (!(err <= abs_tol[i] + rel * std::fabs(cpu[i])) && failures++ == 0) first = i;
  }
  EXPECT_EQ(failures, 0u) << "first at " << first << ": gpu " << gpu[first] << " cpu " << cpu[first];
}

enum class Act { Relu, Gelu, GeluTanh, AddBias };

void check_act(Act act, const Shape& s, bool with_bias, std::uint32_t seed) {
  SCOPED_TRACE(describe(s) + " act " + std::to_string(static_cast<int>(act)) + (with_bias ? " bias" : ""));
  const auto n = static_cast<std::size_t>(s.rows * s.cols);
  std::vector<float> x = normal(n, 0.0f, 3.0f, seed);
  if (n > 4) x[1] = -0.0f, x[2] = 0.0f, x[3] = -8.0f;
  const std::vector<float> bias = normal(static_cast<std::size_t>(s.cols), 0.0f, 1.0f, seed + 1);
  const float* b = with_bias ? bias.data() : nullptr;
  std::vector<float> expected(x);
  DeviceBuffer<float> dx(x), dbias(bias);
  const float* db = with_bias ? dbias.data() : nullptr;
  switch (act) {
    case Act::Relu:
      rptq::ops::bias_relu(expected.data(), s.rows, s.cols, b);
      rptq::cuda::bias_relu(dx.data(), s.rows, s.cols, db);
      break;
    case Act::Gelu:
      rptq::ops::bias_gelu(expected.data(), s.rows, s.cols, b);
      rptq::cuda::bias_gelu(dx.data(), s.rows, s.cols, db);
      break;
    case Act::GeluTanh:
      rptq::ops::bias_gelu_tanh(expected.data(), s.rows, s.cols, b);
      rptq::cuda::bias_gelu_tanh(dx.data(), s.rows, s.cols, db);
      break;
    case Act::AddBias:
      rptq::ops::add_bias(expected.data(), s.rows, s.cols, bias.data());
      rptq::cuda::add_bias(dx.data(), s.rows, s.cols, dbias.data());
      break;
  }
  const std::vector<float> gpu = dx.to_host();
  if (act == Act::Relu || act == Act::AddBias) return expect_same_bits(gpu, expected);
  std::vector<float> tol(n);
  for (std::int64_t r = 0; r < s.rows; ++r)
    for (std::int64_t c = 0; c < s.cols; ++c) {
      const float v = x[r * s.cols + c] + (with_bias ? bias[c] : 0.0f);
      tol[r * s.cols + c] = 1e-6f * std::max(1.0f, std::fabs(v));
    }
  expect_close(gpu, expected, tol, 0.0);
}

}  // namespace

TEST(CudaElementwise, BiasActivationsMatchCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 1;
  for (const Shape& s : kShapes)
    for (Act act : {Act::Relu, Act::Gelu, Act::GeluTanh}) {
      check_act(act, s, true, seed += 2);
      check_act(act, s, false, seed += 2);
    }
}

TEST(CudaElementwise, AddBiasIsExact) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 100;
  for (const Shape& s : kShapes) check_act(Act::AddBias, s, true, seed += 2);
}

TEST(CudaElementwise, SiluMulMatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 200;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(describe(s));
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    std::vector<float> gate = normal(n, 0.0f, 4.0f, seed += 2), up = normal(n, 0.0f, 1.0f, seed + 1);
    if (n > 3) gate[0] = -90.0f, gate[1] = 90.0f, gate[2] = 0.0f;
    std::vector<float> expected(gate);
    rptq::ops::silu_mul(expected.data(), up.data(), s.rows, s.cols);
    DeviceBuffer<float> dg(gate), du(up);
    rptq::cuda::silu_mul(dg.data(), du.data(), s.rows, s.cols);
    expect_close(dg.to_host(), expected, std::vector<float>(n, 1e-30f), 1e-6);
  }
}

TEST(CudaElementwise, AddAndBroadcastAreExact) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  for (std::int64_t n : {1, 7, 1000, 1 << 20}) {
    const std::vector<float> x = normal(static_cast<std::size_t>(n), 0.0f, 1.0f, 300), y = normal(x.size(), 0.0f, 1.0f, 301);
    std::vector<float> expected(x);
    rptq::ops::add(expected.data(), y.data(), n);
    DeviceBuffer<float> dx(x), dy(y);
    rptq::cuda::add(dx.data(), dy.data(), n);
    expect_same_bits(dx.to_host(), expected);
  }
  for (const Shape& s : kShapes) {
    const std::vector<float> row = normal(static_cast<std::size_t>(s.cols), 0.0f, 1.0f, 302);
    std::vector<float> expected(static_cast<std::size_t>(s.rows * s.cols)), zeros(expected.size(), 0.0f);
    for (std::int64_t r = 0; r < s.rows; ++r) std::copy(row.begin(), row.end(), expected.begin() + r * s.cols);
    DeviceBuffer<float> dy(std::vector<float>(expected.size(), std::nanf(""))), drow(row);
    rptq::cuda::broadcast_rows(dy.data(), s.rows, s.cols, drow.data());
    expect_same_bits(dy.to_host(), expected);
    rptq::cuda::broadcast_rows(dy.data(), s.rows, s.cols, nullptr);
    expect_same_bits(dy.to_host(), zeros);
  }
}

// Model::embed's gather: token rows, then OPT's learned positions at past + i % seq + 2.
TEST(CudaElementwise, EmbeddingMatchesModelGather) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const std::int64_t vocab = 1000, dim = 300, batch = 3, seq = 5, past = 7, offset = 2, pos_rows = 20;
  const std::int64_t n = batch * seq;
  const std::vector<float> table = normal(static_cast<std::size_t>(vocab * dim), 0.0f, 1.0f, 400);
  const std::vector<float> pos = normal(static_cast<std::size_t>(pos_rows * dim), 0.0f, 1.0f, 401);
  std::vector<std::int32_t> ids = rptq::test::some_ids(n, static_cast<std::int32_t>(vocab), 402);
  ids[0] = 0;
  ids[1] = static_cast<std::int32_t>(vocab - 1);

  std::vector<float> tokens(static_cast<std::size_t>(n * dim)), with_pos(tokens.size());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t c = 0; c < dim; ++c) {
      tokens[i * dim + c] = table[ids[i] * dim + c];
      with_pos[i * dim + c] = tokens[i * dim + c] + pos[(past + i % seq + offset) * dim + c];
    }

  DeviceBuffer<float> dtable(table), dpos(pos), dout(std::vector<float>(tokens.size(), std::nanf("")));
  DeviceBuffer<std::int32_t> dids(ids);
  rptq::cuda::embedding(dids.data(), n, dtable.data(), vocab, dim, dout.data());
  expect_same_bits(dout.to_host(), tokens);
  rptq::cuda::add_positions(dout.data(), n, seq, past, dpos.data(), pos_rows, dim, offset);
  expect_same_bits(dout.to_host(), with_pos);
  DeviceBuffer<float> dfused(std::vector<float>(tokens.size(), std::nanf("")));
  rptq::cuda::embedding_with_positions(dids.data(), n, dtable.data(), vocab, dim, seq, past, dpos.data(), pos_rows,
                                       offset, dfused.data());
  expect_same_bits(dfused.to_host(), with_pos);

  // An id outside the vocabulary cannot throw from the kernel: its row is NaN, the others are untouched.
  ids[4] = static_cast<std::int32_t>(vocab);
  ids[5] = -1;
  DeviceBuffer<std::int32_t> dbad(ids);
  rptq::cuda::embedding(dbad.data(), n, dtable.data(), vocab, dim, dout.data());
  const std::vector<float> out = dout.to_host();
  for (std::int64_t c = 0; c < dim; ++c) {
    EXPECT_TRUE(std::isnan(out[4 * dim + c]));
    EXPECT_TRUE(std::isnan(out[5 * dim + c]));
    EXPECT_EQ(out[6 * dim + c], table[ids[6] * dim + c]);
  }
}

// Shapes are checked, and empty ones return, before any CUDA call: no GPU needed.
TEST(CudaElementwise, EmptyAndInvalidShapes) {
  float f = 0.0f;
  std::int32_t id = 0;
  EXPECT_NO_THROW(rptq::cuda::bias_relu(nullptr, 0, 10, nullptr));
  EXPECT_NO_THROW(rptq::cuda::bias_gelu(nullptr, 10, 0, nullptr));
  EXPECT_NO_THROW(rptq::cuda::add(nullptr, nullptr, 0));
  EXPECT_NO_THROW(rptq::cuda::embedding(nullptr, 0, nullptr, 10, 4, nullptr));
  EXPECT_THROW(rptq::cuda::bias_gelu_tanh(&f, -1, 4, nullptr), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::bias_relu(nullptr, 2, 4, nullptr), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::add_bias(&f, 2, 4, nullptr), std::invalid_argument);  // add_bias needs its bias
  EXPECT_THROW(rptq::cuda::silu_mul(&f, nullptr, 2, 2), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::add(&f, &f, -3), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::broadcast_rows(&f, 2, -2, nullptr), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::embedding(&id, 2, nullptr, 10, 4, &f), std::invalid_argument);
  // Positions past the table, sequences that do not divide the rows.
  EXPECT_THROW(rptq::cuda::add_positions(&f, 6, 3, 16, &f, 20, 4, 2), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::add_positions(&f, 7, 3, 0, &f, 20, 4, 2), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::embedding_with_positions(&id, 6, &f, 10, 4, 3, 0, nullptr, 20, 2, &f),
               std::invalid_argument);
}

#else

TEST(CudaElementwise, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
