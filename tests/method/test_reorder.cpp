// RPTQ's reorder: plans from calibration ranges, and the fusion into weights and norms, which must leave the model's
// logits unchanged.
#include <cmath>
#include <numeric>

#include "rptq/method/calibration.h"
#include "rptq/base/error.h"
#include "rptq/method/reorder.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::Tap;
using rptq::test::some_ids;

// Largest |a - b| relative to the largest |b|.
double rel_diff(const rptq::Tensor& a, const rptq::Tensor& b) {
  double d = 0, m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
    m = std::max(m, static_cast<double>(std::abs(b[i])));
  }
  return d / m;
}

class ReorderTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    dir = rptq::test::shared_model(GetParam());
    model = rptq::Model::load(dir);
    auto tok = rptq::Tokenizer::load(dir);
    const auto ids = tok->encode(rptq::test::read_file(rptq::test::shared_file("data/stories.txt")), true);
    rptq::CalibrationSettings cs;
    cs.samples = 2;
    cs.seqlen = 64;
    stats = rptq::calibrate(*model, dir.string(), ids, "stories.txt", "", cs);
  }
  std::filesystem::path dir;
  std::unique_ptr<rptq::Model> model;
  rptq::ChannelStats stats;
};

// Reorder-only (no quantization): the fused model gives the original logits (1e-5 relative), for every layer
// reordered with the reference's cluster counts, and again after a second reorder on top (reorders compose).
TEST_P(ReorderTest, ReorderOnlyKeepsLogits) {
  const auto& cfg = model->config();
  const auto ids = some_ids(90, static_cast<std::int32_t>(cfg.vocab), 3);
  const rptq::Tensor before = model->forward(ids, 1);
  rptq::QuantConfig qc = rptq::QuantConfig::preset("W4A4");
  int non_identity = 0;
  for (int l = 0; l < cfg.layers; ++l) {
    const rptq::LayerReorder r = rptq::plan_layer_reorder(cfg, stats.ranges[static_cast<std::size_t>(l)], qc, l, 7);
    for (int i = 1; i <= 5; ++i) non_identity += r.index(i).is_identity() ? 0 : 1;
    rptq::apply_reorder(*model, l, r);
  }
  EXPECT_GE(non_identity, 4 * cfg.layers);  // the test must actually permute something
  const rptq::Tensor after = model->forward(ids, 1);
  EXPECT_LT(rel_diff(after, before), 1e-5);

  // A second, different reorder (from the same ranges mapped onto the new layout it is not meaningful, but any
  // valid permutation must keep the logits): reverse every index within its constraints.
  for (int l = 0; l < cfg.layers; ++l) {
    rptq::LayerReorder r;
    auto reversed = [](std::int64_t n) {
      rptq::ReorderIndex x = rptq::ReorderIndex::identity(n);
      std::reverse(x.order.begin(), x.order.end());
      return x;
    };
    r.r1 = reversed(cfg.hidden);
    r.r4 = reversed(cfg.hidden);
    r.r5 = reversed(cfg.intermediate);
    // Within heads; for rotary models pairs (i, i + hd/2) together: reverse the first half, mirror in the second.
    const std::int64_t hd = cfg.head_dim, half = hd / 2;
    r.r2 = rptq::ReorderIndex::identity(cfg.kv_dim());
    r.r3 = rptq::ReorderIndex::identity(cfg.kv_dim());
    for (std::int64_t g = 0; g < cfg.kv_heads; ++g)
      for (std::int64_t i = 0; i < hd; ++i) {
        const std::int64_t j = cfg.arch == rptq::Architecture::OPT ? hd - 1 - i
                                                                   : (i < half ? half - 1 - i : hd - 1 - (i - half) );
        r.r2.order[static_cast<std::size_t>(g * hd + i)] = static_cast<std::int32_t>(g * hd + j);
        r.r3.order[static_cast<std::size_t>(g * hd + i)] = static_cast<std::int32_t>(g * hd + hd - 1 - i);
      }
    rptq::apply_reorder(*model, l, r);
  }
  EXPECT_LT(rel_diff(model->forward(ids, 1), before), 1e-5);
}

// The plan's indices are permutations with the requested cluster counts, head-local where they must be, and the
// clusters group channels of similar range: every channel is nearer its own cluster's mean range than another's.
TEST_P(ReorderTest, PlanHasTheRequestedClusters) {
  const auto& cfg = model->config();
  rptq::QuantConfig qc;
  rptq::parse_clusters("R1=8,R2=2,R3=3,R4=8,R5=16", qc);
  const auto& lr = stats.ranges[0];
  const rptq::LayerReorder r = rptq::plan_layer_reorder(cfg, lr, qc, 0, 1);
  EXPECT_EQ(r.r1.clusters(), std::min<std::int64_t>(8, cfg.hidden));
  EXPECT_EQ(r.r4.clusters(), std::min<std::int64_t>(8, cfg.hidden));
  EXPECT_EQ(r.r5.clusters(), 16);
  const std::int64_t hd = cfg.head_dim;
  EXPECT_EQ(r.r3.clusters(), 3 * cfg.kv_heads);
  // R2 for rotary models: each cluster of pairs is two runs (first and second half of the head).
  EXPECT_EQ(r.r2.clusters(), (cfg.arch == rptq::Architecture::OPT ? 2 : 4) * cfg.kv_heads);
  for (const auto* idx : {&r.r2, &r.r3})
    for (std::int64_t k = 0; k < idx->channels(); ++k)
      EXPECT_EQ(idx->order[static_cast<std::size_t>(k)] / hd, k / hd) << "channel left its head at " << k;
  // Boundaries never straddle a head.
  for (const auto* idx : {&r.r2, &r.r3}) {
    for (std::int64_t g = 0; g <= cfg.kv_heads; ++g)
      EXPECT_NE(std::find(idx->boundaries.begin(), idx->boundaries.end(), g * hd), idx->boundaries.end());
  }
  // R5 clusters (2-D (max, min), the plain statistic): each channel is nearest its own cluster's centroid (a k-means
  // fixed point).
  const auto& t = lr.tap(Tap::FfnHidden);
  std::vector<double> cx, cy;
  for (int c = 0; c < r.r5.clusters(); ++c) {
    double sx = 0, sy = 0;
    for (auto k = r.r5.boundaries[c]; k < r.r5.boundaries[c + 1]; ++k) {
      sx += t.max[r.r5.order[k]];
      sy += t.min[r.r5.order[k]];
    }
    const double n = static_cast<double>(r.r5.boundaries[c + 1] - r.r5.boundaries[c]);
    cx.push_back(sx / n);
    cy.push_back(sy / n);
  }
  for (int c = 0; c < r.r5.clusters(); ++c)
    for (auto k = r.r5.boundaries[c]; k < r.r5.boundaries[c + 1]; ++k) {
      const double x = t.max[r.r5.order[k]], y = t.min[r.r5.order[k]];
      const double own = (x - cx[c]) * (x - cx[c]) + (y - cy[c]) * (y - cy[c]);
      for (int o = 0; o < r.r5.clusters(); ++o)
        EXPECT_LE(own, (x - cx[o]) * (x - cx[o]) + (y - cy[o]) * (y - cy[o]) + 1e-6 * (1 + own));
    }
  // tap_boundaries: q follows R2 over the query heads, attn_output R3.
  const auto qb = rptq::tap_boundaries(cfg, r, Tap::Q);
  EXPECT_EQ(qb.back(), cfg.q_dim());
  EXPECT_EQ(static_cast<std::int64_t>(qb.size()) - 1, r.r2.clusters() / cfg.kv_heads * cfg.heads);
  const auto ao = rptq::tap_order(cfg, r, Tap::AttnOutput);
  std::vector<std::int32_t> sorted(ao);
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], static_cast<std::int32_t>(i));
}

INSTANTIATE_TEST_SUITE_P(SharedModels, ReorderTest, ::testing::Values("stories260k", "tiny-opt-16m"));

TEST(ReorderIndex, CheckRejectsNonPermutations) {
  rptq::ReorderIndex r = rptq::ReorderIndex::identity(4);
  EXPECT_NO_THROW(r.check("x"));
  EXPECT_TRUE(r.is_identity());
  r.order = {0, 1, 1, 3};
  EXPECT_THROW(r.check("x"), std::logic_error);
  r.order = {3, 2, 1, 0};
  r.boundaries = {0, 2, 2, 4};
  EXPECT_THROW(r.check("x"), std::logic_error);
  r.boundaries = {0, 3};
  EXPECT_THROW(r.check("x"), std::logic_error);
}

}  // namespace
