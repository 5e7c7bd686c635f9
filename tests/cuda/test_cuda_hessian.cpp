// GPTQ's Hessian on the GPU (kernels/hessian.cu) against rptq::HessianAccumulator on the CPU: batches of 33, 1 and
// 512 rows added in sequence to H of widths 1, 7, 64, 300 and 1100 (two row blocks of kHessianBlockRows = 1024),
// one batch with a row stride larger than the row (its padding NaN, which must never be read), inputs with outlier
// columns (100x the others) and a dead (all-zero) column. The first batch is added onto an H filled with NaN: with
// no samples before it H is written, never read. Also: exact symmetry, the dead column exactly +0, bit-identical
// results of two runs, and the argument checks (which run without a GPU).
//
// Tolerance: |gpu - cpu| <= 1e-5 * (|cpu| + sqrt(cpu_ii cpu_jj)) per entry. Both sides form each entry of X^T X as
// a float32 sum of `rows` products (the CPU's sgemm and cuBLAS in different orders and blockings), then apply the
// same double update (keep * H and a * S rounded separately, summed; H is a weighted mean of the batches' X^T X, so
// the float errors do not compound across batches). The error of such a sum is bounded by the magnitude of its
// terms, sum_r |x_ri x_rj| <= sqrt(S_ii S_jj) (Cauchy-Schwarz), times ~sqrt(rows) (random rounding) to log2(rows)
// (pairwise / blocked sums) roundings at 2^-24: 1.4e-6 at 512 rows for a sequential sum, less for cuBLAS's tiles.
// Measured against that row-and-column scale (which the outlier columns make 100x larger in their row and column)
// 1e-5 leaves a margin of 5-10 and still catches a wrong transpose, offset or stride, TF32 (10-bit mantissas:
// ~5e-4) or a lost batch factor. A dead column has scale 0 and so must match exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/device.h"
#include "rptq/method/weight_quant.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#include "gemm.cuh"
#include "hessian.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::BlasHandle;
using rptq::cuda::DeviceBuffer;

using rptq::test::normal;

constexpr double kTol = 1e-5;

struct Batch {
  std::int64_t rows, ld;
  std::vector<float> x;  // [rows, ld], the padding NaN
};

// Activations with a mean offset, outlier columns 2 and in / 2 (x100), the last column dead (for in >= 7).
Batch make_batch(std::int64_t rows, std::int64_t in, std::int64_t ld, std::uint32_t seed) {
  Batch b{rows, ld, normal(static_cast<std::size_t>(rows * ld), 0.3f, 1.0f, seed)};
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = b.x.data() + r * ld;
    for (std::int64_t c = in; c < ld; ++c) row[c] = std::nanf("");
    if (in > 2) row[2] *= 100.0f;
    if (in > 8) row[in / 2] *= -100.0f;
    if (in >= 7) row[in - 1] = 0.0f;
  }
  return b;
}

std::vector<Batch> batches(std::int64_t in, std::uint32_t seed) {
  std::vector<Batch> v;
  v.push_back(make_batch(33, in, in, seed));
  v.push_back(make_batch(1, in, in, seed + 1));
  v.push_back(make_batch(512, in, in + 5, seed + 2));  // a row stride beyond the row
  v.push_back(make_batch(33, in, in, seed + 3));
  return v;
}

// The batches added in sequence on the GPU onto an H first filled with NaN; returns H.
std::vector<double> gpu_hessian(const std::vector<Batch>& bs, std::int64_t in) {
  BlasHandle blas;
  DeviceBuffer<double> h(std::vector<double>(static_cast<std::size_t>(in * in), std::nan("")));
  std::int64_t n = 0;
  for (const Batch& b : bs) {
    DeviceBuffer<float> x(b.x);
    rptq::cuda::hessian_add(blas, x.data(), b.rows, b.ld, in, n, h.data());
    n += b.rows;
  }
  return h.to_host();
}

}  // namespace

TEST(CudaHessian, MatchesHessianAccumulator) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 1;
  for (std::int64_t in : {1, 7, 64, 300, 1100}) {
    SCOPED_TRACE("in " + std::to_string(in));
    const std::vector<Batch> bs = batches(in, seed += 10);
    rptq::HessianAccumulator cpu(in);
    for (const Batch& b : bs) cpu.add(b.x.data(), b.rows, b.ld);
    const std::vector<double>& hc = cpu.hessian();
    const std::vector<double> hg = gpu_hessian(bs, in);
    ASSERT_EQ(hg.size(), hc.size());

    double worst = 0.0, worst_abs = 0.0;
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < in; ++i)
      for (std::int64_t j = 0; j < in; ++j) {
        const double c = hc[static_cast<std::size_t>(i * in + j)], g = hg[static_cast<std::size_t>(i * in + j)];
        const double scale = std::fabs(c) + std::sqrt(hc[static_cast<std::size_t>(i * in + i)] *
                                                       hc[static_cast<std::size_t>(j * in + j)]);
        const double d = std::fabs(g - c);
        if (!(d <= kTol * scale)) {
          if (++bad <= 5) ADD_FAILURE() << "H[" << i << "][" << j << "]: gpu " << g << " cpu " << c;
          continue;
        }
        if (scale > 0.0 && d / scale > worst) worst = d / scale;
        if (d > worst_abs) worst_abs = d;
      }
    EXPECT_EQ(bad, 0);
    std::printf("[ hessian ] in %5lld: worst |gpu - cpu| / (|cpu| + sqrt(Hii Hjj)) = %.3g (tolerance %.0e), worst "
                "|gpu - cpu| = %.3g\n",
                static_cast<long long>(in), worst, kTol, worst_abs);

    // Exactly symmetric (the upper triangle mirrored), and the dead column (in >= 7) +0 in its row and column.
    for (std::int64_t i = 0; i < in; ++i)
      for (std::int64_t j = i + 1; j < in; ++j)
        if (std::memcmp(&hg[static_cast<std::size_t>(i * in + j)], &hg[static_cast<std::size_t>(j * in + i)],
                        sizeof(double)) != 0) {
          ADD_FAILURE() << "not symmetric at [" << i << "][" << j << "]";
          i = in;
          break;
        }
    if (in >= 7)
      for (std::int64_t k = 0; k < in; ++k) {
        const double row = hg[static_cast<std::size_t>((in - 1) * in + k)];
        const double col = hg[static_cast<std::size_t>(k * in + in - 1)];
        ASSERT_TRUE(row == 0.0 && !std::signbit(row) && col == 0.0 && !std::signbit(col))
            << "dead column " << in - 1 << " at " << k << ": " << row << ", " << col;
      }
    // The outlier column dominates as on the CPU (a sanity check of the inputs).
    if (in > 2) {
      EXPECT_GT(hg[static_cast<std::size_t>(2 * in + 2)], 1000.0 * hg[0]);
    }
  }
}

// cuBLAS and the update are deterministic: the same batches give the same bits.
TEST(CudaHessian, RunsAreBitIdentical) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  for (std::int64_t in : {64, 1100}) {
    SCOPED_TRACE("in " + std::to_string(in));
    const std::vector<Batch> bs = batches(in, 100);
    const std::vector<double> a = gpu_hessian(bs, in), b = gpu_hessian(bs, in);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)), 0);
  }
}

// An empty batch leaves H alone; the first batch overwrites whatever H held (samples_before == 0).
TEST(CudaHessian, EmptyBatchAndFirstBatch) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const std::int64_t in = 40;
  const Batch b = make_batch(20, in, in, 7);
  rptq::HessianAccumulator cpu(in);
  cpu.add(b.x.data(), b.rows, b.ld);
  BlasHandle blas;
  DeviceBuffer<float> x(b.x);
  DeviceBuffer<double> h(std::vector<double>(static_cast<std::size_t>(in * in), 12345.0));
  rptq::cuda::hessian_add(blas, x.data(), b.rows, b.ld, in, 0, h.data());
  const std::vector<double> first = h.to_host();
  rptq::cuda::hessian_add(blas, nullptr, 0, in, in, b.rows, h.data());
  const std::vector<double> after = h.to_host();
  EXPECT_EQ(std::memcmp(first.data(), after.data(), first.size() * sizeof(double)), 0);
  for (std::size_t k = 0; k < first.size(); ++k) {
    const std::int64_t i = static_cast<std::int64_t>(k) / in, j = static_cast<std::int64_t>(k) % in;
    const double scale = std::fabs(cpu.hessian()[k]) + std::sqrt(cpu.hessian()[static_cast<std::size_t>(i * in + i)] *
                                                                 cpu.hessian()[static_cast<std::size_t>(j * in + j)]);
    ASSERT_LE(std::fabs(first[k] - cpu.hessian()[k]), kTol * scale) << "H[" << i << "][" << j << "]";
  }
}

// The checks run before any CUDA call, so they hold without a GPU.
TEST(CudaHessian, InvalidArguments) {
  BlasHandle blas;
  float f = 0.0f;
  double d = 0.0;
  const std::int64_t big = std::int64_t{1} << 31;
  EXPECT_NO_THROW(rptq::cuda::hessian_add(blas, nullptr, 0, 4, 4, 0, nullptr));  // no rows: nothing to do
  EXPECT_NO_THROW(rptq::cuda::hessian_add(blas, nullptr, 0, 4, 4, 10, &d));
  EXPECT_THROW(rptq::cuda::hessian_add(blas, &f, -1, 4, 4, 0, &d), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::hessian_add(blas, &f, 1, 4, -4, 0, &d), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::hessian_add(blas, &f, 1, 3, 4, 0, &d), std::invalid_argument);  // ld < in
  EXPECT_THROW(rptq::cuda::hessian_add(blas, &f, 0, 3, 4, 0, &d), std::invalid_argument);  // also with no rows
  EXPECT_THROW(rptq::cuda::hessian_add(blas, &f, 1, 4, 4, -1, &d), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::hessian_add(blas, nullptr, 1, 4, 4, 0, &d), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::hessian_add(blas, &f, 1, 4, 4, 0, nullptr), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::hessian_add(blas, &f, big, 4, 4, 0, &d), std::invalid_argument);  // beyond cuBLAS's int
  EXPECT_THROW(rptq::cuda::hessian_add(blas, &f, 1, big, 4, 0, &d), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::hessian_add(blas, &f, 1, 4, 4, std::numeric_limits<std::int64_t>::max(), &d),
               std::invalid_argument);
}

#else

TEST(CudaHessian, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
