// The cluster view (what Explore and `rptq clusters` show of one reorder index): the plotted feature, the clusters
// and each cluster's quantizer, against a plain recomputation here from the calibration ranges. Runs on the bundled
// stories260k (LLaMA with grouped-query attention: 8 query heads over 4 KV heads), calibrated in the test.
#include <algorithm>
#include <cmath>
#include <memory>

#include "rptq/base/error.h"
#include "rptq/base/quantizer.h"
#include "rptq/method/calibration.h"
#include "rptq/method/cluster_view.h"
#include "rptq/method/reorder.h"
#include "rptq/model/model.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::ClusterView;
using rptq::QuantGrid;
using rptq::RangeStat;
using rptq::Tap;

const rptq::ChannelStats& stories_stats() {
  static const rptq::ChannelStats stats = [] {
    const auto dir = rptq::test::resources_dir() / "models" / "stories260k";
    auto model = rptq::Model::load(dir);
    auto tok = rptq::Tokenizer::load(dir);
    const auto ids = tok->encode(rptq::test::read_file(rptq::test::resources_dir() / "data" / "stories.txt"), true);
    rptq::CalibrationSettings cs;
    cs.samples = 3;
    cs.seqlen = 64;
    return rptq::calibrate(*model, dir.string(), ids, "stories.txt", "", cs);
  }();
  return stats;
}

// The activation quantizer's step, written out: (max - min) over 2^bits - 1 steps (exact grid) or 2^bits
// (reference), clamped to [1e-4, 1e4] as the reference clamps activation scales.
double plain_step(float lo, float hi, int bits, QuantGrid grid) {
  const double levels = std::ldexp(1.0, bits);
  const double step = (static_cast<double>(hi) - lo) / (grid == QuantGrid::Exact ? levels - 1 : levels);
  return std::clamp(step, 1e-4, 1e4);
}

// The EMA range of a cluster, written out: per sample the cluster's max (min) over its channels, folded into
// v = 0.99 v + 0.01 x in sample order, the first sample initialising.
void plain_ema_range(const rptq::TapRanges& t, const std::vector<std::int32_t>& chans, float& lo, float& hi) {
  const std::size_t n = t.max.size();
  for (std::int64_t s = 0; s < t.samples; ++s) {
    float x_hi = -INFINITY, x_lo = INFINITY;
    for (std::int32_t c : chans) {
      x_hi = std::max(x_hi, t.sample_max[static_cast<std::size_t>(s) * n + static_cast<std::size_t>(c)]);
      x_lo = std::min(x_lo, t.sample_min[static_cast<std::size_t>(s) * n + static_cast<std::size_t>(c)]);
    }
    hi = s == 0 ? x_hi : 0.99f * hi + 0.01f * x_hi;
    lo = s == 0 ? x_lo : 0.99f * lo + 0.01f * x_lo;
  }
}

std::vector<std::vector<std::int32_t>> members(const ClusterView& v) {
  std::vector<std::vector<std::int32_t>> m(static_cast<std::size_t>(v.clusters));
  for (std::size_t i = 0; i < v.labels.size(); ++i)
    m.at(static_cast<std::size_t>(v.labels[i])).push_back(static_cast<std::int32_t>(i));
  return m;
}

// The clusters are the engine's, the tensor quantizer spans the feature, and each cluster's step, errors and
// "finer" follow from its range (checked by the caller) as written out here.
void expect_clusters_and_errors(const ClusterView& v, const rptq::ChannelStats& st, int layer, int index, int k,
                                std::uint64_t seed, int bits, QuantGrid grid) {
  const rptq::TapClusters tc =
      rptq::cluster_reorder_index(index, st.model_shape(), st.ranges[static_cast<std::size_t>(layer)], k, layer, seed);
  EXPECT_EQ(v.labels, tc.labels);
  EXPECT_EQ(v.order, tc.index.order);
  EXPECT_EQ(v.boundaries, tc.index.boundaries);
  EXPECT_EQ(v.clusters, tc.clusters);
  EXPECT_EQ(v.inertia, tc.inertia);
  ASSERT_EQ(v.labels.size(), v.max.size());
  ASSERT_EQ(v.min.size(), v.max.size());

  const float t_lo = *std::min_element(v.min.begin(), v.min.end());
  const float t_hi = *std::max_element(v.max.begin(), v.max.end());
  EXPECT_EQ(v.tensor_min, t_lo);
  EXPECT_EQ(v.tensor_max, t_hi);
  EXPECT_NEAR(v.tensor_step, plain_step(t_lo, t_hi, bits, grid), 1e-6 * v.tensor_step);
  EXPECT_EQ(v.tensor_step, rptq::quant_params(t_lo, t_hi, bits, grid).scale);

  const auto m = members(v);
  ASSERT_EQ(v.quantizers.size(), m.size());
  const double max_error_steps = grid == QuantGrid::Exact ? 0.5 : 1.5;
  for (std::size_t c = 0; c < m.size(); ++c) {
    const ClusterView::Quantizer& q = v.quantizers[c];
    SCOPED_TRACE("cluster " + std::to_string(c));
    EXPECT_EQ(q.cluster, static_cast<int>(c));
    EXPECT_EQ(q.channels, static_cast<std::int64_t>(m[c].size()));
    EXPECT_LE(q.min, q.max);
    // The step is the engine's quantizer of the cluster's range, and that is the written-out formula.
    EXPECT_EQ(q.step, rptq::quant_params(q.min, q.max, bits, grid).scale);
    EXPECT_NEAR(q.step, plain_step(q.min, q.max, bits, grid), 1e-6 * q.step);
    EXPECT_DOUBLE_EQ(q.max_error, max_error_steps * q.step);
    EXPECT_DOUBLE_EQ(q.rms_error, q.step / std::sqrt(12.0));
    EXPECT_NEAR(q.finer, static_cast<double>(v.tensor_step) / q.step, 1e-6 * q.finer);
  }
}

TEST(ClusterView, ShownTaps) {
  EXPECT_EQ(rptq::shown_tap(1), Tap::AttnInput);
  EXPECT_EQ(rptq::shown_tap(2), Tap::K);
  EXPECT_EQ(rptq::shown_tap(3), Tap::AttnOutput);
  EXPECT_EQ(rptq::shown_tap(4), Tap::FfnInput);
  EXPECT_EQ(rptq::shown_tap(5), Tap::FfnHidden);
}

// R1: the feature is the attention input's plain max/min; each cluster's quantizer range is the EMA of the
// cluster's per-sample range (or its channels' min/max with the minmax statistic).
TEST(ClusterView, R1MatchesAPlainRecomputation) {
  const rptq::ChannelStats& st = stories_stats();
  const int layer = 1, k = 5, bits = 4;
  const std::uint64_t seed = 7;
  const rptq::TapRanges& t = st.tap(layer, Tap::AttnInput);
  ASSERT_TRUE(t.has_samples());
  for (RangeStat stat : {RangeStat::Ema, RangeStat::MinMax}) {
    SCOPED_TRACE(rptq::range_stat_name(stat));
    const ClusterView v = rptq::cluster_view(st, layer, 1, k, stat, bits, QuantGrid::Exact, seed);
    EXPECT_EQ(v.shown, Tap::AttnInput);
    EXPECT_EQ(v.description, "attn_input");
    EXPECT_FALSE(v.per_head);
    EXPECT_EQ(v.heads, 1);
    EXPECT_EQ(v.channels(), st.hidden);
    EXPECT_EQ(v.max, t.max);  // the plain ranges, whatever the statistic
    EXPECT_EQ(v.min, t.min);
    EXPECT_EQ(v.clusters, k);
    EXPECT_GE(v.seconds, 0.0);
    EXPECT_TRUE(v.stat_ranges);
    expect_clusters_and_errors(v, st, layer, 1, k, seed, bits, QuantGrid::Exact);
    const auto m = members(v);
    bool some_finer = false;
    for (std::size_t c = 0; c < m.size(); ++c) {
      float lo = INFINITY, hi = -INFINITY;
      if (stat == RangeStat::Ema) {
        plain_ema_range(t, m[c], lo, hi);
      } else {
        for (std::int32_t ch : m[c]) {
          lo = std::min(lo, t.min[static_cast<std::size_t>(ch)]);
          hi = std::max(hi, t.max[static_cast<std::size_t>(ch)]);
        }
      }
      EXPECT_FLOAT_EQ(v.quantizers[c].min, lo) << "cluster " << c;
      EXPECT_FLOAT_EQ(v.quantizers[c].max, hi) << "cluster " << c;
      some_finer = some_finer || v.quantizers[c].finer > 1.5;
    }
    EXPECT_TRUE(some_finer) << "no cluster is much finer than one quantizer for the tensor";
  }
}

// R3 with grouped-query attention: the feature is, per KV head and channel, the attention output's widest range
// over the group's query heads (the feature R3 is clustered on), and the quantizer ranges are the plain bounds of
// that feature over each cluster (the plotted tap is not the quantized one).
TEST(ClusterView, R3WithQueryHeadGroupsTakesTheWidestRangeOfEachGroup) {
  const rptq::ChannelStats& st = stories_stats();
  const std::int64_t group = st.heads / st.kv_heads, hd = st.head_dim;
  ASSERT_EQ(group, 2) << "stories260k has 8 query heads over 4 KV heads";
  const int layer = 3, k = 3, bits = 3;
  const rptq::TapRanges& ao = st.tap(layer, Tap::AttnOutput);
  ASSERT_EQ(ao.channels(), st.heads * hd);
  const ClusterView v = rptq::cluster_view(st, layer, 3, k, RangeStat::Ema, bits, QuantGrid::Reference, 0);
  EXPECT_EQ(v.shown, Tap::AttnOutput);
  EXPECT_EQ(v.description, "attn_output, widest over each KV group's 2 query heads");
  EXPECT_TRUE(v.per_head);
  EXPECT_EQ(v.heads, st.kv_heads);
  ASSERT_EQ(v.channels(), st.kv_heads * hd);
  bool widened = false;  // some channel's range comes from the group's second query head
  for (std::int64_t g = 0; g < st.kv_heads; ++g)
    for (std::int64_t c = 0; c < hd; ++c) {
      const auto a = static_cast<std::size_t>((g * group) * hd + c);      // the group's first query head
      const auto b = static_cast<std::size_t>((g * group + 1) * hd + c);  // and its second
      const auto i = static_cast<std::size_t>(g * hd + c);
      EXPECT_EQ(v.max[i], std::max(ao.max[a], ao.max[b])) << "channel " << i;
      EXPECT_EQ(v.min[i], std::min(ao.min[a], ao.min[b])) << "channel " << i;
      widened = widened || ao.max[b] > ao.max[a];
      // Clusters are formed within each KV head.
      EXPECT_GE(v.labels[i], g * k);
      EXPECT_LT(v.labels[i], (g + 1) * k);
    }
  EXPECT_TRUE(widened);
  EXPECT_FALSE(v.stat_ranges);
  EXPECT_EQ(v.clusters, st.kv_heads * k);
  expect_clusters_and_errors(v, st, layer, 3, k, 0, bits, QuantGrid::Reference);
  const auto m = members(v);
  for (std::size_t c = 0; c < m.size(); ++c) {
    float lo = INFINITY, hi = -INFINITY;
    for (std::int32_t ch : m[c]) {
      lo = std::min(lo, v.min[static_cast<std::size_t>(ch)]);
      hi = std::max(hi, v.max[static_cast<std::size_t>(ch)]);
    }
    EXPECT_EQ(v.quantizers[c].min, lo) << "cluster " << c;
    EXPECT_EQ(v.quantizers[c].max, hi) << "cluster " << c;
  }
}

// R2: k's plain ranges, clustered jointly with q per KV head; the quantizers are k's cluster ranges.
TEST(ClusterView, R2ShowsTheKeys) {
  const rptq::ChannelStats& st = stories_stats();
  const int layer = 0, k = 2, bits = 8;
  const ClusterView v = rptq::cluster_view(st, layer, 2, k, RangeStat::MinMax, bits, QuantGrid::Exact, 1);
  const rptq::TapRanges& kt = st.tap(layer, Tap::K);
  EXPECT_EQ(v.shown, Tap::K);
  EXPECT_EQ(v.description, "k (clustered jointly with q, per head)");
  EXPECT_EQ(v.heads, st.kv_heads);
  EXPECT_EQ(v.max, kt.max);
  EXPECT_EQ(v.min, kt.min);
  expect_clusters_and_errors(v, st, layer, 2, k, 1, bits, QuantGrid::Exact);
}

// Statistics without per-sample ranges (format version 1) have no cluster EMA: the quantizers fall back to the
// bounds of the plotted feature, as Explore always showed them.
TEST(ClusterView, EmaWithoutPerSampleRangesUsesTheFeatureBounds) {
  rptq::ChannelStats st = stories_stats();
  rptq::TapRanges& t = st.ranges[2].tap(Tap::FfnHidden);
  t.sample_max.clear();
  t.sample_min.clear();
  const ClusterView v = rptq::cluster_view(st, 2, 5, 4, RangeStat::Ema, 4, QuantGrid::Exact, 0);
  EXPECT_EQ(v.description, "ffn_hidden");
  EXPECT_FALSE(v.stat_ranges);
  expect_clusters_and_errors(v, st, 2, 5, 4, 0, 4, QuantGrid::Exact);
  const auto m = members(v);
  for (std::size_t c = 0; c < m.size(); ++c) {
    float hi = -INFINITY;
    for (std::int32_t ch : m[c]) hi = std::max(hi, t.max[static_cast<std::size_t>(ch)]);
    EXPECT_EQ(v.quantizers[c].max, hi);
  }
}

// A model without query-head groups (OPT: one query head per KV head): R3's feature is the attention output itself
// and its quantizers get the tap's EMA cluster ranges. Hand-made statistics.
TEST(ClusterView, R3WithoutGroupsUsesTheTapsClusterRange) {
  rptq::ChannelStats st;
  st.model_type = "opt";
  st.layers = 1;
  st.hidden = 8;
  st.heads = st.kv_heads = 2;
  st.head_dim = 4;
  st.intermediate = 16;
  st.ranges.resize(1);
  rptq::TapRanges& ao = st.ranges[0].tap(Tap::AttnOutput);
  const auto x = rptq::test::normal(3 * 8 * 2, 0.0f, 2.0f, 11);
  for (int s = 0; s < 3; ++s) {
    std::vector<float> hi(8), lo(8);
    for (int c = 0; c < 8; ++c) {
      const float a = x[static_cast<std::size_t>(s * 16 + c)] * static_cast<float>(c + 1);
      const float b = x[static_cast<std::size_t>(s * 16 + 8 + c)] * static_cast<float>(c + 1);
      hi[static_cast<std::size_t>(c)] = std::max(a, b);
      lo[static_cast<std::size_t>(c)] = std::min(a, b);
    }
    ao.add_sample(hi, lo);
  }
  const ClusterView v = rptq::cluster_view(st, 0, 3, 2, RangeStat::Ema, 4, QuantGrid::Exact, 0);
  EXPECT_EQ(v.description, "attn_output (v and attn_output share these clusters)");
  EXPECT_EQ(v.max, ao.max);
  EXPECT_EQ(v.min, ao.min);
  EXPECT_EQ(v.clusters, 4);
  EXPECT_TRUE(v.stat_ranges);
  expect_clusters_and_errors(v, st, 0, 3, 2, 0, 4, QuantGrid::Exact);
  const auto m = members(v);
  for (std::size_t c = 0; c < m.size(); ++c) {
    float lo = 0, hi = 0;
    plain_ema_range(ao, m[c], lo, hi);
    EXPECT_FLOAT_EQ(v.quantizers[c].min, lo) << "cluster " << c;
    EXPECT_FLOAT_EQ(v.quantizers[c].max, hi) << "cluster " << c;
  }
}

template <typename F>
void expect_input_error(F f, const std::string& words) {
  try {
    f();
    ADD_FAILURE() << "no InputError (expected one saying \"" << words << "\")";
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

TEST(ClusterView, BadInputsThrow) {
  const rptq::ChannelStats& st = stories_stats();
  auto view = [&](int layer, int index, int k, int bits) {
    return [&st, layer, index, k, bits] {
      rptq::cluster_view(st, layer, index, k, RangeStat::Ema, bits, QuantGrid::Exact, 0);
    };
  };
  expect_input_error(view(-1, 1, 4, 4), "layer -1 is out of range");
  expect_input_error(view(5, 1, 4, 4), "layer 5 is out of range");
  expect_input_error(view(0, 0, 4, 4), "R1..R5");
  expect_input_error(view(0, 6, 4, 4), "R1..R5");
  expect_input_error(view(0, 1, 0, 4), "k (clusters");
  expect_input_error(view(0, 2, -3, 4), "k (clusters");
  expect_input_error(view(0, 1, 4, 1), "bits");
  expect_input_error(view(0, 1, 4, 9), "bits");
  rptq::ChannelStats empty;
  expect_input_error([&] { rptq::cluster_view(empty, 0, 1, 4, RangeStat::Ema, 4, QuantGrid::Exact, 0); },
                     "out of range");
}

}  // namespace
