// CPU operators against naive double-precision references.
#include <cmath>
#include <random>

#include "rptq/model/blas.h"
#include "rptq/model/ops.h"
#include "test_support.h"

namespace {

std::vector<float> randn(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Naive causal attention: for each sequence, head and query, softmax over visible keys in double.
std::vector<float> naive_attention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const rptq::ops::AttentionShape& s) {
  const std::int64_t hd = s.head_dim, qld = s.heads * hd;
  std::vector<float> out(static_cast<std::size_t>(s.batch * s.tq * qld));
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h)
      for (std::int64_t i = 0; i < s.tq; ++i) {
        const std::int64_t pos = s.past + i, kvh = h / (s.heads / s.kv_heads);
        const float* qi = &q[(b * s.tq + i) * qld + h * hd];
        std::vector<double> w;
        std::vector<std::int64_t> js;
        double mx = -1e300;
        for (std::int64_t j = 0; j <= pos; ++j) {
          if (s.window > 0 && pos - j >= s.window) continue;
          const float* kj = &k[b * s.kv_batch_stride + j * s.kv_ld + kvh * hd];
          double dot = 0;
          for (std::int64_t c = 0; c < hd; ++c) dot += static_cast<double>(qi[c]) * kj[c];
          w.push_back(dot * s.scale);
          js.push_back(j);
          mx = std::max(mx, w.back());
        }
        double sum = 0;
        for (auto& x : w) sum += (x = std::exp(x - mx));
        for (std::int64_t c = 0; c < hd; ++c) {
          double acc = 0;
          for (std::size_t t = 0; t < js.size(); ++t)
            acc += w[t] / sum * v[b * s.kv_batch_stride + js[t] * s.kv_ld + kvh * hd + c];
          out[(b * s.tq + i) * qld + h * hd + c] = static_cast<float>(acc);
        }
      }
  return out;
}

struct AttnCase {
  std::int64_t batch, tq, past, heads, kv_heads, hd, window;
};

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, MatchesNaive) {
  const AttnCase c = GetParam();
  rptq::ops::AttentionShape s;
  s.batch = c.batch;
  s.tq = c.tq;
  s.past = c.past;
  s.heads = c.heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.hd;
  s.window = c.window;
  s.scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
  const std::int64_t cap = c.past + c.tq + 3;  // a cache with spare room, as during generation
  s.kv_ld = c.kv_heads * c.hd;
  s.kv_batch_stride = cap * s.kv_ld;
  auto q = randn(static_cast<std::size_t>(c.batch * c.tq * c.heads * c.hd), 1);
  auto k = randn(static_cast<std::size_t>(c.batch * s.kv_batch_stride), 2);
  auto v = randn(static_cast<std::size_t>(c.batch * s.kv_batch_stride), 3);
  std::vector<float> out(q.size());
  rptq::ops::attention(q.data(), k.data(), v.data(), out.data(), s);
  const auto ref = naive_attention(q, k, v, s);
  for (std::size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 2e-5f) << "element " << i;
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(AttnCase{1, 1, 0, 1, 1, 8, 0},       // one token
                                           AttnCase{2, 130, 0, 4, 4, 16, 0},    // blocks of 64 plus a tail
                                           AttnCase{1, 70, 0, 8, 2, 8, 0},      // grouped-query heads
                                           AttnCase{2, 1, 45, 4, 2, 16, 0},     // one step after a cached prefix
                                           AttnCase{1, 20, 30, 2, 1, 32, 0},    // a chunk after a prefix
                                           AttnCase{1, 150, 0, 2, 2, 8, 33},    // sliding window
                                           AttnCase{1, 5, 60, 2, 2, 8, 16}));   // window with a prefix

TEST(LayerNorm, MatchesNaiveAndGatherReorders) {
  const std::int64_t rows = 5, cols = 37;
  auto x = randn(rows * cols, 4, 3.0f);
  auto gamma = randn(cols, 5), beta = randn(cols, 6);
  std::vector<float> y(x.size()), yg(x.size());
  rptq::ops::layer_norm(x.data(), y.data(), rows, cols, gamma.data(), beta.data(), 1e-5f);
  std::vector<std::int32_t> gather(cols);
  for (std::int64_t k = 0; k < cols; ++k) gather[k] = static_cast<std::int32_t>((k * 11) % cols);
  rptq::ops::layer_norm(x.data(), yg.data(), rows, cols, gamma.data(), beta.data(), 1e-5f, gather.data());
  for (std::int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (std::int64_t c = 0; c < cols; ++c) mean += x[r * cols + c];
    mean /= cols;
    for (std::int64_t c = 0; c < cols; ++c) var += (x[r * cols + c] - mean) * (x[r * cols + c] - mean);
    var /= cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      const double want = (x[r * cols + c] - mean) / std::sqrt(var + 1e-5) * gamma[c] + beta[c];
      EXPECT_NEAR(y[r * cols + c], want, 1e-5);
    }
    // The gathered output is exactly the plain output permuted.
    for (std::int64_t k = 0; k < cols; ++k) EXPECT_EQ(yg[r * cols + k], y[r * cols + gather[k]]);
  }
}

TEST(RmsNorm, MatchesNaiveAndGatherReorders) {
  const std::int64_t rows = 3, cols = 64;
  auto x = randn(rows * cols, 7, 2.0f);
  auto gamma = randn(cols, 8);
  std::vector<float> y(x.size()), yg(x.size());
  std::vector<std::int32_t> gather(cols);
  for (std::int64_t k = 0; k < cols; ++k) gather[k] = static_cast<std::int32_t>(cols - 1 - k);
  rptq::ops::rms_norm(x.data(), y.data(), rows, cols, gamma.data(), 1e-6f);
  rptq::ops::rms_norm(x.data(), yg.data(), rows, cols, gamma.data(), 1e-6f, gather.data());
  for (std::int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (std::int64_t c = 0; c < cols; ++c) ms += static_cast<double>(x[r * cols + c]) * x[r * cols + c];
    ms /= cols;
    for (std::int64_t c = 0; c < cols; ++c)
      EXPECT_NEAR(y[r * cols + c], x[r * cols + c] / std::sqrt(ms + 1e-6) * gamma[c], 1e-5);
    for (std::int64_t k = 0; k < cols; ++k) EXPECT_EQ(yg[r * cols + k], y[r * cols + gather[k]]);
  }
}

// Rotate-half layout: channel i pairs with i + d/2; the rotation preserves each pair's norm.
TEST(Rotary, MatchesRotateHalfFormula) {
  const std::int64_t rows = 4, heads = 3, hd = 8;
  auto x = randn(rows * heads * hd, 9);
  auto y = x;
  std::vector<std::int64_t> pos{0, 1, 7, 100};
  rptq::ops::rotary(y.data(), rows, heads, hd, pos.data(), 10000.0f);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < hd / 2; ++i) {
        const double f = std::pow(10000.0, -2.0 * i / hd) * pos[r];
        const float* a = &x[(r * heads + h) * hd];
        const float* b = &y[(r * heads + h) * hd];
        EXPECT_NEAR(b[i], a[i] * std::cos(f) - a[i + hd / 2] * std::sin(f), 1e-4);
        EXPECT_NEAR(b[i + hd / 2], a[i + hd / 2] * std::cos(f) + a[i] * std::sin(f), 1e-4);
      }
}

TEST(Linear, MatchesNaiveWithBiasAndAccumulate) {
  const std::int64_t rows = 7, in = 19, out = 11;
  auto x = randn(rows * in, 10), w = randn(out * in, 11), b = randn(out, 12);
  std::vector<float> y(rows * out), acc = randn(rows * out, 13), acc0 = acc;
  rptq::ops::linear(x.data(), in, rows, in, w.data(), b.data(), out, y.data());
  rptq::ops::linear(x.data(), in, rows, in, w.data(), b.data(), out, acc.data(), true);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t o = 0; o < out; ++o) {
      double s = b[o];
      for (std::int64_t i = 0; i < in; ++i) s += static_cast<double>(x[r * in + i]) * w[o * in + i];
      EXPECT_NEAR(y[r * out + o], s, 1e-4);
      EXPECT_NEAR(acc[r * out + o], s + acc0[r * out + o], 1e-4);
    }
}

TEST(LogSumExp, StableForLargeValues) {
  std::vector<float> x{1000.0f, 1000.0f, -1000.0f};
  EXPECT_NEAR(rptq::ops::log_sum_exp(x.data(), 3), 1000.0 + std::log(2.0), 1e-3);
}

}  // namespace

// Both GEMM backends compute the same product as a plain double loop, for the transposes and leading dimensions
// the engine uses (x * W^T with strided x; attention's NN/NT tiles).
TEST(Blas, BackendsAgreeWithReference) {
  std::vector<rptq::blas::GemmBackend> backends = {rptq::blas::GemmBackend::OpenBLAS};
  if (rptq::blas::have_onednn()) backends.push_back(rptq::blas::GemmBackend::OneDNN);
  const rptq::blas::GemmBackend saved = rptq::blas::gemm_backend();
  const std::int64_t m = 37, n = 29, k = 53, lda = 60, ldb = 61, ldc = 33;
  std::vector<float> a(static_cast<std::size_t>(m * lda)), b(static_cast<std::size_t>(61 * 61));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>((i * 7919) % 101) / 50.0f - 1.0f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>((i * 104729) % 97) / 48.0f - 1.0f;
  for (auto be : backends) {
    rptq::blas::set_gemm_backend(be);
    EXPECT_EQ(rptq::blas::gemm_backend(), be);
    for (bool tb : {false, true}) {
      std::vector<float> c(static_cast<std::size_t>(m * ldc), 1.0f);
      rptq::blas::sgemm(false, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 2.0f, c.data(), ldc);
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          double ref = 2.0;
          for (std::int64_t p = 0; p < k; ++p)
            ref += 0.5 * a[i * lda + p] * (tb ? b[j * ldb + p] : b[p * ldb + j]);
          ASSERT_NEAR(c[i * ldc + j], ref, 1e-4) << rptq::blas::gemm_backend_name(be) << " tb=" << tb;
        }
    }
  }
  rptq::blas::set_gemm_backend(saved);
}
