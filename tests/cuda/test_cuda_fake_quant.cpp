// GPU per-cluster fake quantization (kernels/fake_quant.cu) against rptq::fake_quant_clusters and
// rptq::fake_quant_clusters_dynamic, in both grids (Exact and Reference) and at 2..8 bits: uneven and empty
// clusters, one cluster, a row stride larger than the row, values beyond the range (saturation), exact ties
// (round half to even), NaN (stays NaN), and the dynamic variant over all rows and per row, with its
// non-finite-range report. The quantizer formulas of fake_quant.cuh are checked on the host without a GPU against
// rptq::quant_params / fake_quant over many random ranges, and the argument checks against the CPU's.
//
// Tolerance: none. The kernels round each division, addition, subtraction and product separately, exactly as
// quantizer.cpp does (no FMA), and rintf is the CPU's round-half-to-even: every output is bit-exact. (The one
// latitude: the sign of a zero range bound that ties with the other sign; the data hold none.)
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

#include "rptq/device.h"
#include "rptq/base/error.h"
#include "rptq/base/quantizer.h"
#include "test_support.h"

#ifdef RPTQ_WITH_CUDA
#include "device.cuh"
#include "fake_quant.cuh"
#endif

#ifdef RPTQ_WITH_CUDA

namespace {

using rptq::cuda::DeviceBuffer;
using rptq::cuda::DynamicRange;

using rptq::test::normal;

void expect_same_bits(const std::vector<float>& gpu, const std::vector<float>& cpu, const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  for (std::size_t i = 0; i < cpu.size(); ++i)
    if (std::memcmp(&gpu[i], &cpu[i], sizeof(float)) != 0) {
      ADD_FAILURE() << what << ": element " << i << ": gpu " << gpu[i] << " cpu " << cpu[i];
      return;
    }
}

rptq::cuda::Grid to_cuda(rptq::QuantGrid g) {
  return g == rptq::QuantGrid::Reference ? rptq::cuda::Grid::Reference : rptq::cuda::Grid::Exact;
}

struct Case {
  std::int64_t rows, cols, ld;
  std::vector<std::int64_t> boundaries;
};

// Uneven clusters (k-means leaves them so), an empty one, a single one, long rows.
std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({1, 1, 1, {0, 1}});
  c.push_back({3, 7, 9, {0, 2, 2, 7}});
  c.push_back({17, 100, 100, {0, 1, 50, 51, 99, 100}});
  c.push_back({64, 768, 770, {}});
  for (std::int64_t b = 0; b <= 768; b += 24) c.back().boundaries.push_back(b);  // 32 clusters
  c.push_back({200, 3072, 3072, {0, 3072}});
  c.push_back({5, 4099, 4099, {0, 7, 7, 7, 1000, 4000, 4099}});
  return c;
}

// Activations with channel-dependent ranges, values at exact ties of each cluster's grid and NaNs.
std::vector<float> activation(const Case& c, std::uint32_t seed) {
  std::vector<float> x = normal(static_cast<std::size_t>(c.rows * c.ld), 0.0f, 1.0f, seed);
  for (std::int64_t r = 0; r < c.rows; ++r)
    for (std::int64_t j = 0; j < c.cols; ++j) x[r * c.ld + j] = x[r * c.ld + j] * (1.0f + j % 5) + 0.1f * (j % 3);
  if (c.rows * c.cols > 10) x[3] = std::nanf("");
  return x;
}

// Static per-cluster quantizers from a calibration-like range (a little narrower than the data: saturation).
std::vector<rptq::QuantParams> static_params(const Case& c, const std::vector<float>& x, int bits,
                                             rptq::QuantGrid grid) {
  std::vector<float> mn(static_cast<std::size_t>(c.cols), 0.0f), mx(mn.size(), 0.0f);
  for (std::int64_t r = 0; r < c.rows; ++r)
    for (std::int64_t j = 0; j < c.cols; ++j) {
      const float v = x[r * c.ld + j];
      if (std::isnan(v)) continue;
      mn[j] = std::min(mn[j], 0.8f * v);
      mx[j] = std::max(mx[j], 0.8f * v);
    }
  return rptq::cluster_params(mn, mx, c.boundaries, bits, grid);
}

std::vector<std::int32_t> to_int32(const std::vector<std::int64_t>& b) { return {b.begin(), b.end()}; }

}  // namespace

TEST(CudaFakeQuant, StaticMatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 1;
  for (const Case& c : cases())
    for (rptq::QuantGrid grid : {rptq::QuantGrid::Exact, rptq::QuantGrid::Reference})
      for (int bits = 2; bits <= 8; ++bits) {
        const std::string what = std::to_string(c.rows) + " x " + std::to_string(c.cols) + " " +
                                 rptq::grid_name(grid) + " " + std::to_string(bits) + "-bit";
        std::vector<float> x = activation(c, seed += 2);
        const std::vector<rptq::QuantParams> params = static_params(c, x, bits, grid);
        // Exact ties of cluster 0's grid in row 0: (k + 1/2) * scale, which round half to even.
        for (std::int64_t j = 0; j < c.boundaries[1] && j < 4; ++j)
          x[j] = (static_cast<float>(j) - 1.5f) * params[0].scale;
        std::vector<float> expected(x);
        rptq::fake_quant_clusters(expected.data(), c.rows, c.cols, c.ld, c.boundaries, params);

        std::vector<float> scale, zero;
        for (const rptq::QuantParams& p : params) scale.push_back(p.scale), zero.push_back(p.zero_point);
        const rptq::cuda::ClusterQuantizer q = rptq::cuda::upload_cluster_quantizer(c.boundaries, scale, zero, bits, c.cols);
        DeviceBuffer<float> dx(x);
        rptq::cuda::fake_quant_clusters(dx.data(), c.rows, c.ld, q);
        expect_same_bits(dx.to_host(), expected, what);  // the row padding is untouched too
      }
}

TEST(CudaFakeQuant, DynamicAllRowsMatchesCpu) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 500;
  for (const Case& c : cases())
    for (rptq::QuantGrid grid : {rptq::QuantGrid::Exact, rptq::QuantGrid::Reference})
      for (int bits : {2, 3, 4, 8}) {
        const std::string what = std::to_string(c.rows) + " x " + std::to_string(c.cols) + " " +
                                 rptq::grid_name(grid) + " " + std::to_string(bits) + "-bit";
        const std::vector<float> x = activation(c, seed += 2);
        std::vector<float> expected(x);
        const std::vector<rptq::QuantParams> params =
            rptq::fake_quant_clusters_dynamic(expected.data(), c.rows, c.cols, c.ld, c.boundaries, bits, grid);
        const auto g = static_cast<std::int64_t>(params.size());
        DeviceBuffer<float> dx(x), dscale(static_cast<std::size_t>(g)), dzero(static_cast<std::size_t>(g));
        DeviceBuffer<std::int32_t> db(to_int32(c.boundaries));
        DeviceBuffer<unsigned char> ws(rptq::cuda::fake_quant_dynamic_workspace_bytes(c.cols, g));
        rptq::cuda::fake_quant_clusters_dynamic(dx.data(), c.rows, c.cols, c.ld, db.data(), g, bits, to_cuda(grid),
                                                DynamicRange::AllRows, ws.data(), dscale.data(), dzero.data());
        EXPECT_EQ(rptq::cuda::fake_quant_dynamic_bad_channel(ws.data(), c.cols, g), -1) << what;
        DeviceBuffer<std::uint32_t> record(std::vector<std::uint32_t>{0u});
        rptq::cuda::fake_quant_dynamic_copy_bad_channel(ws.data(), c.cols, g, record.data());
        EXPECT_EQ(record.to_host()[0], rptq::cuda::kDynamicAllFinite) << what;
        expect_same_bits(dx.to_host(), expected, what);
        std::vector<float> scale, zero;
        for (const rptq::QuantParams& p : params) scale.push_back(p.scale), zero.push_back(p.zero_point);
        expect_same_bits(dscale.to_host(), scale, what + " scales");
        expect_same_bits(dzero.to_host(), zero, what + " zero points");
      }
}

// Per row: the CPU's dynamic function applied to each row alone.
TEST(CudaFakeQuant, DynamicPerRowMatchesCpuRowByRow) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  std::uint32_t seed = 900;
  for (const Case& c : cases())
    for (rptq::QuantGrid grid : {rptq::QuantGrid::Exact, rptq::QuantGrid::Reference})
      for (int bits : {3, 4, 8}) {
        const std::string what = std::to_string(c.rows) + " x " + std::to_string(c.cols) + " per row " +
                                 rptq::grid_name(grid) + " " + std::to_string(bits) + "-bit";
        std::vector<float> x = activation(c, seed += 2);
        x[3] = 0.5f;  // a NaN would make its row's range non-finite (tested below)
        std::vector<float> expected(x), scale, zero;
        for (std::int64_t r = 0; r < c.rows; ++r) {
          const std::vector<rptq::QuantParams> p = rptq::fake_quant_clusters_dynamic(
              expected.data() + r * c.ld, 1, c.cols, c.ld, c.boundaries, bits, grid);
          for (const rptq::QuantParams& q : p) scale.push_back(q.scale), zero.push_back(q.zero_point);
        }
        const auto g = static_cast<std::int64_t>(c.boundaries.size()) - 1;
        DeviceBuffer<float> dx(x), dscale(scale.size()), dzero(zero.size());
        DeviceBuffer<std::int32_t> db(to_int32(c.boundaries));
        DeviceBuffer<unsigned char> ws(rptq::cuda::fake_quant_dynamic_workspace_bytes(c.cols, g));
        rptq::cuda::fake_quant_clusters_dynamic(dx.data(), c.rows, c.cols, c.ld, db.data(), g, bits, to_cuda(grid),
                                                DynamicRange::PerRow, ws.data(), dscale.data(), dzero.data());
        EXPECT_EQ(rptq::cuda::fake_quant_dynamic_bad_channel(ws.data(), c.cols, g), -1) << what;
        expect_same_bits(dx.to_host(), expected, what);
        expect_same_bits(dscale.to_host(), scale, what + " scales");
        expect_same_bits(dzero.to_host(), zero, what + " zero points");
      }
}

// Where the CPU throws (a channel range that is not finite), the GPU changes nothing and reports the channel.
TEST(CudaFakeQuant, DynamicNonFiniteRangeIsReported) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const Case c{10, 50, 50, {0, 20, 50}};
  std::vector<float> x = normal(500, 0.0f, 1.0f, 1234);
  x[3 * 50 + 31] = INFINITY;
  x[7 * 50 + 40] = -INFINITY;
  std::vector<float> cpu(x);
  EXPECT_THROW(rptq::fake_quant_clusters_dynamic(cpu.data(), c.rows, c.cols, c.ld, c.boundaries, 4,
                                                 rptq::QuantGrid::Exact),
               rptq::InputError);
  DeviceBuffer<std::int32_t> db(to_int32(c.boundaries));
  DeviceBuffer<unsigned char> ws(rptq::cuda::fake_quant_dynamic_workspace_bytes(c.cols, 2));
  for (DynamicRange range : {DynamicRange::AllRows, DynamicRange::PerRow}) {
    DeviceBuffer<float> dx(x);
    rptq::cuda::fake_quant_clusters_dynamic(dx.data(), c.rows, c.cols, c.ld, db.data(), 2, 4, rptq::cuda::Grid::Exact,
                                            range, ws.data());
    EXPECT_EQ(rptq::cuda::fake_quant_dynamic_bad_channel(ws.data(), c.cols, 2), 31);
    // The same record, copied to a device word without waiting (GpuRunner reads many at once).
    DeviceBuffer<std::uint32_t> record(std::vector<std::uint32_t>{0u});
    rptq::cuda::fake_quant_dynamic_copy_bad_channel(ws.data(), c.cols, 2, record.data());
    EXPECT_EQ(record.to_host()[0], 31u);
    const std::vector<float> gpu = dx.to_host();
    if (range == DynamicRange::AllRows) {
      expect_same_bits(gpu, x, "all rows untouched");
    } else {
      // The two rows with an infinity are untouched, the others quantized as the CPU quantizes each alone.
      for (std::int64_t r = 0; r < c.rows; ++r) {
        std::vector<float> row(x.begin() + r * 50, x.begin() + r * 50 + 50), want(row);
        if (r != 3 && r != 7)
          rptq::fake_quant_clusters_dynamic(want.data(), 1, 50, 50, c.boundaries, 4, rptq::QuantGrid::Exact);
        expect_same_bits(std::vector<float>(gpu.begin() + r * 50, gpu.begin() + r * 50 + 50), want,
                         "row " + std::to_string(r));
      }
    }
  }
}

// No rows: nothing to change, and the quantizers are those of [0, 0] per cluster, as the CPU returns them.
TEST(CudaFakeQuant, DynamicOfNoRows) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const std::vector<std::int64_t> boundaries = {0, 3, 3, 8};
  for (rptq::QuantGrid grid : {rptq::QuantGrid::Exact, rptq::QuantGrid::Reference}) {
    const std::vector<rptq::QuantParams> params =
        rptq::fake_quant_clusters_dynamic(nullptr, 0, 8, 8, boundaries, 4, grid);
    DeviceBuffer<std::int32_t> db(to_int32(boundaries));
    DeviceBuffer<float> dscale(3), dzero(3);
    DeviceBuffer<unsigned char> ws(rptq::cuda::fake_quant_dynamic_workspace_bytes(8, 3));
    rptq::cuda::fake_quant_clusters_dynamic(nullptr, 0, 8, 8, db.data(), 3, 4, to_cuda(grid), DynamicRange::AllRows,
                                            ws.data(), dscale.data(), dzero.data());
    EXPECT_EQ(rptq::cuda::fake_quant_dynamic_bad_channel(ws.data(), 8, 3), -1);
    std::vector<float> scale, zero;
    for (const rptq::QuantParams& p : params) scale.push_back(p.scale), zero.push_back(p.zero_point);
    expect_same_bits(dscale.to_host(), scale, "scales of no rows");
    expect_same_bits(dzero.to_host(), zero, "zero points of no rows");
  }
}

// fake_quant.cuh's formulas on the host: rptq::quant_params and rptq::fake_quant to the bit, over random and
// degenerate ranges (one-sided, min == max, tiny and huge, so the scale clamps bite), both grids, 2..8 bits.
TEST(CudaFakeQuant, HostFormulasMatchQuantizer) {
  std::mt19937 gen(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(-8.0f, 6.0f);
  for (int trial = 0; trial < 4000; ++trial) {
    const float scale = std::pow(10.0f, exponent(gen));
    float a = dist(gen) * scale, b = dist(gen) * scale;
    if (trial % 7 == 0) a = b;
    if (trial % 11 == 0) a = std::fabs(a), b = std::fabs(b) + a;  // all positive
    const float mn = std::min(a, b), mx = std::max(a, b);
    for (rptq::QuantGrid grid : {rptq::QuantGrid::Exact, rptq::QuantGrid::Reference})
      for (int bits = 2; bits <= 8; ++bits) {
        const rptq::QuantParams p = rptq::quant_params(mn, mx, bits, grid);
        const rptq::cuda::QuantLane l = rptq::cuda::quant_lane_of_range(mn, mx, bits, to_cuda(grid));
        ASSERT_EQ(std::memcmp(&l.scale, &p.scale, 4), 0) << mn << " " << mx << " " << bits;
        ASSERT_EQ(std::memcmp(&l.zero_point, &p.zero_point, 4), 0) << mn << " " << mx << " " << bits;
        for (int k = 0; k < 8; ++k) {
          float x = mn + (mx - mn) * (dist(gen) * 0.6f + 0.5f);
          if (k == 0) x = (std::nearbyint(x / p.scale) + 0.5f) * p.scale;  // a tie (when exact in float)
          if (k == 1) x = std::nanf("");
          const float want = rptq::fake_quant(x, p), got = rptq::cuda::fake_quant_value(x, l);
          ASSERT_EQ(std::memcmp(&want, &got, 4), 0) << x << " " << bits;
        }
      }
  }
  // The weight scale floor (weight_quant.h: [1e-8, inf)) through the same formula.
  const rptq::QuantParams w = rptq::quant_params_clamped(0.0f, 0.0f, 4, rptq::QuantGrid::Exact, 1e-8f, INFINITY);
  const rptq::cuda::QuantLane lw = rptq::cuda::quant_lane_of_range(0.0f, 0.0f, 4, rptq::cuda::Grid::Exact, 1e-8f, INFINITY);
  EXPECT_EQ(lw.scale, w.scale);
  EXPECT_EQ(lw.zero_point, w.zero_point);
}

TEST(CudaFakeQuant, HostClusterLookup) {
  for (const Case& c : cases()) {
    const std::vector<std::int32_t> b = to_int32(c.boundaries);
    const int g = static_cast<int>(b.size()) - 1;
    for (std::int64_t j = 0; j < c.cols; ++j) {
      const int k = rptq::cuda::cluster_of(b.data(), g, j);
      ASSERT_LE(b[k], j);
      ASSERT_LT(j, b[k + 1]) << "channel " << j << " in cluster " << k;
    }
  }
}

// Argument checks without a GPU: the same cases the CPU rejects, before any CUDA call.
TEST(CudaFakeQuant, InvalidArgumentsThrowBeforeAnyCudaCall) {
  using rptq::cuda::check_cluster_quantizer;
  EXPECT_NO_THROW(check_cluster_quantizer({0, 2, 2, 5}, {1.0f, 1.0f, 0.5f}, {0.0f, 1.0f, -3.0f}, 4, 5));
  EXPECT_THROW(check_cluster_quantizer({0, 2, 5}, {1.0f, 1.0f}, {0.0f, 0.0f}, 1, 5), std::invalid_argument);
  EXPECT_THROW(check_cluster_quantizer({0, 2, 5}, {1.0f, 1.0f}, {0.0f, 0.0f}, 9, 5), std::invalid_argument);
  EXPECT_THROW(check_cluster_quantizer({0, 2, 4}, {1.0f, 1.0f}, {0.0f, 0.0f}, 4, 5), std::invalid_argument);
  EXPECT_THROW(check_cluster_quantizer({0, 3, 2, 5}, {1, 1, 1}, {0, 0, 0}, 4, 5), std::invalid_argument);
  EXPECT_THROW(check_cluster_quantizer({0, 5}, {1.0f, 1.0f}, {0.0f}, 4, 5), std::invalid_argument);
  EXPECT_THROW(check_cluster_quantizer({0, 5}, {0.0f}, {0.0f}, 4, 5), std::invalid_argument);
  EXPECT_THROW(check_cluster_quantizer({0, 5}, {INFINITY}, {0.0f}, 4, 5), std::invalid_argument);
  EXPECT_THROW(check_cluster_quantizer({0, 5}, {1.0f}, {std::nanf("")}, 4, 5), std::invalid_argument);
  EXPECT_THROW(rptq::cuda::upload_cluster_quantizer({0, 5}, {-1.0f}, {0.0f}, 4, 5), std::invalid_argument);

  float f = 0.0f, s = 1.0f, z = 0.0f;
  std::int32_t b[2] = {0, 4};
  unsigned char ws[64];
  using rptq::cuda::fake_quant_clusters;
  EXPECT_NO_THROW(fake_quant_clusters(nullptr, 0, 4, 4, b, 1, &s, &z, 4));
  EXPECT_THROW(fake_quant_clusters(&f, 2, 4, 3, b, 1, &s, &z, 4), std::invalid_argument);
  EXPECT_THROW(fake_quant_clusters(&f, 2, 4, 4, b, 0, &s, &z, 4), std::invalid_argument);
  EXPECT_THROW(fake_quant_clusters(&f, 2, 4, 4, b, 1, &s, &z, 1), std::invalid_argument);
  EXPECT_THROW(fake_quant_clusters(&f, 2, 4, 4, nullptr, 1, &s, &z, 4), std::invalid_argument);
  EXPECT_THROW(fake_quant_clusters(&f, 2, 4, 4, b, 1, nullptr, &z, 4), std::invalid_argument);
  using rptq::cuda::fake_quant_clusters_dynamic;
  EXPECT_THROW(fake_quant_clusters_dynamic(&f, 2, 4, 4, b, 1, 4, rptq::cuda::Grid::Exact, DynamicRange::AllRows,
                                           nullptr),
               std::invalid_argument);
  EXPECT_THROW(fake_quant_clusters_dynamic(&f, 2, 8192, 8192, b, 5000, 4, rptq::cuda::Grid::Exact,
                                           DynamicRange::PerRow, ws),
               std::invalid_argument);
  EXPECT_THROW(fake_quant_clusters_dynamic(&f, -2, 4, 4, b, 1, 4, rptq::cuda::Grid::Exact, DynamicRange::AllRows, ws),
               std::invalid_argument);
}

#else

TEST(CudaFakeQuant, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
