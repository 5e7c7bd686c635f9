// Sweeps (rptq::run_sweep, rptq/method/sweep.h): every point's numbers equal an independent quantize() +
// compare_models() run with that setting built by hand, on the same windows; the clusters each index actually got
// equal an independent k-means of the applied ranges; the values parser; progress and cancel; and the saved file
// (JSON, CSV) read back exactly. On the bundled stories260k model with 64-token windows (no ../shared).
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include "rptq/base/error.h"
#include "rptq/engine.h"
#include "rptq/method/calibration.h"
#include "rptq/method/reorder.h"
#include "rptq/method/sweep.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::SweepAxis;
using rptq::Tap;

const std::filesystem::path& model_dir() {
  static const auto d = rptq::test::resources_dir() / "models" / "stories260k";
  return d;
}
std::string stories() { return (rptq::test::resources_dir() / "data" / "stories.txt").string(); }

class Sweep : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fp_ = rptq::Model::load(model_dir()).release();
    ids_ = new std::vector<std::int32_t>(
        rptq::Tokenizer::load(model_dir())->encode(rptq::test::read_file(stories()), true));
    rptq::CalibrationSettings cs;
    cs.samples = 3;
    cs.seqlen = 64;
    stats_ = new rptq::ChannelStats(rptq::calibrate(*fp_, model_dir().string(), *ids_, stories(), "", cs));
  }
  static void TearDownTestSuite() {
    delete fp_;
    delete ids_;
    delete stats_;
  }
  static rptq::PerplexityOptions windows() {
    rptq::PerplexityOptions po;
    po.seqlen = 64;
    po.max_windows = 2;
    return po;
  }
  // The base of the tests: W4A8 with round-to-nearest weights (GPTQ would only make each point slower).
  static rptq::QuantConfig base() {
    rptq::QuantConfig c = rptq::QuantConfig::preset("W4A8");
    c.weight_method = rptq::WeightMethod::RTN;
    return c;
  }
  static rptq::SweepResult sweep(const rptq::SweepSpec& spec, const rptq::QuantConfig& b,
                                 const rptq::SweepCallback& progress = {}) {
    rptq::QuantizeOptions qo;
    qo.seed = 3;
    return rptq::run_sweep(spec, b, qo, *fp_, [] { return rptq::Model::load(model_dir()); }, *stats_, *ids_,
                           windows(), rptq::Execution::on(rptq::Device::CPU), progress);
  }
  // The independent run: the setting built by hand, quantized and compared through engine.h.
  static void expect_point_equals_hand_run(const rptq::SweepResult& r, std::size_t i, rptq::QuantConfig hand) {
    SCOPED_TRACE("point " + std::to_string(i) + " (" + r.points.at(i).name + ")");
    rptq::QuantizeOptions qo;
    qo.seed = 3;
    const rptq::Execution cpu = rptq::Execution::on(rptq::Device::CPU);
    auto q = rptq::quantize(rptq::Model::load(model_dir()), *stats_, hand, qo, cpu);
    const rptq::CompareResult c = rptq::compare_models(*fp_, nullptr, q->model(), q.get(), *ids_, windows(), cpu);
    const rptq::SweepPoint& p = r.points[i];
    EXPECT_EQ(p.value, r.spec.values[i]);
    // Same model, windows, setting and threads: the same arithmetic, so the same numbers to the bit.
    EXPECT_EQ(p.ppl_q, c.q.ppl);
    EXPECT_EQ(p.kl, c.kl);
    EXPECT_EQ(p.top1_agreement, c.top1_agreement);
    EXPECT_EQ(p.top1_changed, c.top1_changed);
    EXPECT_EQ(p.kl_p50, c.kl_p50);
    EXPECT_EQ(p.kl_p90, c.kl_p90);
    EXPECT_EQ(p.kl_p99, c.kl_p99);
    EXPECT_EQ(p.kl_max, c.kl_max);
    EXPECT_LE(p.kl_p50, p.kl_p99);
    EXPECT_GT(p.kl_max, 0.0);
    EXPECT_EQ(r.ppl_fp, c.fp.ppl);
    EXPECT_EQ(r.windows, 2);
    EXPECT_EQ(r.seqlen, 64);
    EXPECT_EQ(r.positions, c.positions);
    EXPECT_EQ(p.name, hand.name);
    EXPECT_EQ(p.description, hand.describe());
    EXPECT_GT(p.quantize_seconds, 0.0);
    EXPECT_GT(p.compare_seconds, 0.0);

    // The clusters each index got: independent k-means of the ranges the quantization used, its labels counted per
    // KV head for R2/R3, the largest over the layers.
    const rptq::ModelConfig& m = q->model().config();
    const rptq::ChannelStats applied = rptq::applied_stats(*q, *stats_);
    for (int idx = 1; idx <= rptq::kReorderIndices; ++idx) {
      int most = 0;
      for (int l = 0; l < static_cast<int>(m.layers); ++l) {
        const rptq::TapClusters tc = rptq::cluster_reorder_index(
            idx, m, applied.ranges[static_cast<std::size_t>(l)], hand.clusters_of(idx), l, qo.seed);
        if (idx == 2 || idx == 3) {
          for (std::int64_t g = 0; g < m.kv_heads; ++g) {
            std::set<std::int32_t> labels(tc.labels.begin() + g * m.head_dim, tc.labels.begin() + (g + 1) * m.head_dim);
            most = std::max(most, static_cast<int>(labels.size()));
          }
        } else {
          most = std::max(most, tc.clusters);
        }
      }
      EXPECT_EQ(p.clusters_used[static_cast<std::size_t>(idx - 1)], most) << "R" << idx;
    }
  }
  static rptq::Model* fp_;
  static std::vector<std::int32_t>* ids_;
  static rptq::ChannelStats* stats_;
};
rptq::Model* Sweep::fp_ = nullptr;
std::vector<std::int32_t>* Sweep::ids_ = nullptr;
rptq::ChannelStats* Sweep::stats_ = nullptr;

TEST_F(Sweep, ClusterPointsEqualHandBuiltRuns) {
  // All five indices at 1, 8 and 64 clusters. stories260k has 64 hidden channels and head_dim 8 (4 rotary pairs per
  // KV head for R2, 8 channels for R3): 64 clusters saturate R2 at 4 and R3 at 8 per head, which the point records.
  const rptq::SweepSpec spec = rptq::make_sweep_spec("clusters", "all", "1,8,64");
  const rptq::SweepResult r = sweep(spec, base());
  ASSERT_EQ(r.points.size(), 3u);
  EXPECT_TRUE(r.complete());
  for (std::size_t i = 0; i < 3; ++i) {
    rptq::QuantConfig hand = base();
    hand.clusters.fill(spec.values[i]);
    hand.name = "W4A8 clusters=" + std::to_string(spec.values[i]);
    expect_point_equals_hand_run(r, i, hand);
  }
  EXPECT_EQ(r.points[0].clusters_used, (std::array<int, 5>{1, 1, 1, 1, 1}));
  EXPECT_EQ(r.points[2].clusters_used[1], 4);  // R2: 4 channel pairs per KV head
  EXPECT_EQ(r.points[2].clusters_used[2], 8);  // R3: 8 channels per KV head
  EXPECT_EQ(r.stat, rptq::RangeStat::Ema);
  EXPECT_EQ(r.kmeans_seed, 3u);
  EXPECT_TRUE(r.sequential);
  EXPECT_EQ(r.device.rfind("CPU", 0), 0u);
  // One index alone: only R4 changes.
  const rptq::SweepResult r4 = sweep(rptq::make_sweep_spec("clusters", "r4", "2"), base());
  rptq::QuantConfig hand = base();
  hand.clusters[3] = 2;
  hand.name = "W4A8 R4=2";
  expect_point_equals_hand_run(r4, 0, hand);
  EXPECT_EQ(r4.points[0].clusters_used[3], 2);
}

TEST_F(Sweep, BitsPointsEqualHandBuiltRuns) {
  {
    const rptq::SweepResult r = sweep(rptq::make_sweep_spec("abits", "ffn_hidden", "4"), base());
    rptq::QuantConfig hand = base();
    hand.abits[static_cast<std::size_t>(Tap::FfnHidden)] = 4;
    hand.name = "W4A8 ffn_hidden=4";
    expect_point_equals_hand_run(r, 0, hand);
  }
  {
    const rptq::SweepResult r = sweep(rptq::make_sweep_spec("kvbits", "", "3"), base());
    rptq::QuantConfig hand = base();
    hand.abits[static_cast<std::size_t>(Tap::K)] = 3;
    hand.abits[static_cast<std::size_t>(Tap::V)] = 3;
    hand.name = "W4A8 kvbits=3";
    expect_point_equals_hand_run(r, 0, hand);
  }
  {
    const rptq::SweepResult r = sweep(rptq::make_sweep_spec("wbits", "all", "3,16"), base());
    for (std::size_t i = 0; i < 2; ++i) {
      rptq::QuantConfig hand = base();
      hand.wbits = r.spec.values[i];
      hand.name = "W4A8 wbits=" + std::to_string(hand.wbits);
      expect_point_equals_hand_run(r, i, hand);
    }
    // Fewer weight bits cost more: a check that the axis reaches the quantizer.
    EXPECT_GT(r.points[0].kl, r.points[1].kl);
  }
}

TEST(SweepSpec, ApplyChangesOnlyTheSweptSetting) {
  rptq::QuantConfig b = rptq::QuantConfig::preset("W4A4");
  b.overrides.push_back(rptq::parse_override("layers=0,attn_output:abits=16"));
  auto same_but = [&](const rptq::QuantConfig& c, auto&& fix) {
    rptq::QuantConfig want = b;
    fix(want);
    EXPECT_EQ(c.wbits, want.wbits);
    EXPECT_EQ(c.abits, want.abits);
    EXPECT_EQ(c.softmax_bits, want.softmax_bits);
    EXPECT_EQ(c.clusters, want.clusters);
    EXPECT_EQ(c.grid, want.grid);
    EXPECT_EQ(c.weight_method, want.weight_method);
    EXPECT_EQ(c.overrides_spec(), want.overrides_spec());  // the base's overrides stay
  };
  same_but(rptq::make_sweep_spec("clusters", "R3", "8").apply(b, 8), [](rptq::QuantConfig& c) { c.clusters[2] = 8; });
  same_but(rptq::make_sweep_spec("clusters", "all", "8").apply(b, 8), [](rptq::QuantConfig& c) { c.clusters.fill(8); });
  same_but(rptq::make_sweep_spec("abits", "q", "6").apply(b, 6),
           [](rptq::QuantConfig& c) { c.abits[static_cast<std::size_t>(Tap::Q)] = 6; });
  // All activation taps but K and V; the softmax keeps the base's 8 bits.
  same_but(rptq::make_sweep_spec("abits", "all", "6").apply(b, 6), [](rptq::QuantConfig& c) {
    for (Tap t : {Tap::AttnInput, Tap::Q, Tap::AttnOutput, Tap::FfnInput, Tap::FfnHidden})
      c.abits[static_cast<std::size_t>(t)] = 6;
  });
  same_but(rptq::make_sweep_spec("kvbits", "all", "3").apply(b, 3), [](rptq::QuantConfig& c) {
    c.abits[static_cast<std::size_t>(Tap::K)] = 3;
    c.abits[static_cast<std::size_t>(Tap::V)] = 3;
  });
  same_but(rptq::make_sweep_spec("wbits", "all", "16").apply(b, 16), [](rptq::QuantConfig& c) { c.wbits = 16; });
  EXPECT_EQ(rptq::make_sweep_spec("clusters", "R3", "8").apply(b, 8).name, "W4A4 R3=8");
  EXPECT_EQ(rptq::make_sweep_spec("abits", "", "8").apply(b, 4).name, "W4A4 abits=4");
  EXPECT_EQ(rptq::make_sweep_spec("clusters", "r2", "").axis_label(), "clusters of R2");
  EXPECT_EQ(rptq::make_sweep_spec("abits", "FFN_INPUT", "").axis_label(), "bits of ffn_input");
}

TEST(SweepSpec, ValuesParser) {
  using V = std::vector<int>;
  EXPECT_EQ(rptq::parse_sweep_values("1,2,4..64", SweepAxis::Clusters), (V{1, 2, 4, 8, 16, 32, 64}));
  EXPECT_EQ(rptq::parse_sweep_values("2-8,16", SweepAxis::WeightBits), (V{2, 3, 4, 5, 6, 7, 8, 16}));
  EXPECT_EQ(rptq::parse_sweep_values(" 8 , 4,4 ", SweepAxis::KvBits), (V{4, 8}));  // sorted, each once
  EXPECT_EQ(rptq::parse_sweep_values("3..20", SweepAxis::Clusters), (V{3, 6, 12}));
  EXPECT_EQ(rptq::parse_sweep_values("5-5", SweepAxis::Clusters), (V{5}));
  EXPECT_EQ(rptq::parse_sweep_values("1-256", SweepAxis::Clusters).size(), 256u);
  EXPECT_EQ(rptq::default_sweep_values(SweepAxis::Clusters), (V{1, 2, 4, 8, 16, 32, 64}));
  EXPECT_EQ(rptq::default_sweep_values(SweepAxis::ActivationBits), (V{2, 3, 4, 5, 6, 7, 8, 16}));
  EXPECT_EQ(rptq::make_sweep_spec("wbits", "", "").values, rptq::default_sweep_values(SweepAxis::WeightBits));

  // Each bad spec: InputError naming the bad part.
  const std::vector<std::tuple<std::string, SweepAxis, std::string>> bad = {
      {"", SweepAxis::Clusters, "empty item"},
      {"1,,2", SweepAxis::Clusters, "empty item"},
      {"x", SweepAxis::Clusters, "\"x\""},
      {"1.5", SweepAxis::Clusters, "\"1.5\""},
      {"1e3", SweepAxis::Clusters, "\"1e3\""},
      {"4-", SweepAxis::Clusters, "\"4-\""},
      {"-3", SweepAxis::Clusters, "\"-3\""},
      {"8-2", SweepAxis::Clusters, "runs backwards"},
      {"64..2", SweepAxis::Clusters, "runs backwards"},
      {"0..4", SweepAxis::Clusters, "\"0..4\""},
      {"0", SweepAxis::Clusters, "not a cluster count"},
      {"70000", SweepAxis::Clusters, "not a cluster count"},
      {"1-257", SweepAxis::Clusters, "more than the 256"},
      {"1-100000000", SweepAxis::Clusters, "more than the 256"},
      {"1-1000000000", SweepAxis::Clusters, "\"1-1000000000\""},
      {"99999999999", SweepAxis::Clusters, "\"99999999999\""},
      {"9", SweepAxis::WeightBits, "not a bit width"},
      {"1,4", SweepAxis::ActivationBits, "\"1\""},
      {"2-16", SweepAxis::KvBits, "not a bit width"},
  };
  for (const auto& [spec, axis, says] : bad) {
    SCOPED_TRACE("\"" + spec + "\"");
    try {
      rptq::parse_sweep_values(spec, axis);
      ADD_FAILURE() << "accepted";
    } catch (const rptq::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  }
  // Axes and targets.
  auto error_of = [](const std::string& axis, const std::string& target) {
    try {
      rptq::make_sweep_spec(axis, target, "");
    } catch (const rptq::InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(error_of("bits", "").find("unknown sweep axis \"bits\""), std::string::npos);
  EXPECT_NE(error_of("clusters", "R6").find("\"R6\" is not R1..R5"), std::string::npos);
  EXPECT_NE(error_of("abits", "k").find("kvbits axis"), std::string::npos);
  EXPECT_NE(error_of("abits", "softmax").find("not a tap name"), std::string::npos);
  EXPECT_NE(error_of("wbits", "R1").find("one target, all"), std::string::npos);
  EXPECT_NE(error_of("kvbits", "k").find("one target, all"), std::string::npos);
  EXPECT_EQ(rptq::make_sweep_spec("CLUSTERS", "r3", "2").target, "R3");
}

TEST_F(Sweep, ProgressReportsEachPointAndCancels) {
  const rptq::SweepSpec spec = rptq::make_sweep_spec("clusters", "R1", "1,2");
  using Phase = rptq::SweepProgress::Phase;
  std::vector<int> finished;
  double last = 0;
  bool monotonic = true, saw_quantize_steps = false, saw_compare_windows = false;
  const rptq::SweepResult r = sweep(spec, base(), [&](const rptq::SweepProgress& p) {
    EXPECT_EQ(p.points, 2);
    EXPECT_EQ(p.value, spec.values[static_cast<std::size_t>(p.point)]);
    monotonic = monotonic && p.fraction() >= last;
    last = p.fraction();
    saw_quantize_steps = saw_quantize_steps || (p.phase == Phase::Quantize && p.total > 0);
    saw_compare_windows = saw_compare_windows || (p.phase == Phase::Compare && p.total == 2);
    if (p.phase == Phase::PointDone) {
      EXPECT_NE(p.finished, nullptr);
      if (p.finished) finished.push_back(p.finished->value);
    } else {
      EXPECT_EQ(p.finished, nullptr);
    }
    return true;
  });
  EXPECT_TRUE(monotonic);
  EXPECT_EQ(last, 1.0);
  EXPECT_TRUE(saw_quantize_steps);
  EXPECT_TRUE(saw_compare_windows);
  EXPECT_EQ(finished, (std::vector<int>{1, 2}));

  // Cancel in the second point's quantization, in its comparison, and right after the first point.
  for (Phase at : {Phase::Quantize, Phase::Compare, Phase::PointDone}) {
    int calls_after = 0;
    bool cancelled = false;
    EXPECT_THROW(sweep(spec, base(),
                       [&](const rptq::SweepProgress& p) {
                         if (cancelled) ++calls_after;
                         if (p.phase == at && (at == Phase::PointDone || (p.point == 1 && p.done > 0)))
                           cancelled = true;
                         return !cancelled;
                       }),
                 rptq::Cancelled);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(calls_after, 0);
  }
}

TEST_F(Sweep, RefusesBadSettingsBeforeRunning) {
  int calls = 0;
  auto count = [&](const rptq::SweepProgress&) { return ++calls > 0; };
  // wbits 16 with a weight-bit override: the point's setting is invalid, named before anything runs.
  rptq::QuantConfig b = base();
  b.overrides.push_back(rptq::parse_override("attn_input:wbits=8"));
  try {
    sweep(rptq::make_sweep_spec("wbits", "all", "4,16"), b, count);
    ADD_FAILURE() << "accepted";
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("sweep point wbits=16"), std::string::npos) << e.what();
  }
  rptq::QuantizeOptions qo;
  qo.reorder_only = true;
  EXPECT_THROW(rptq::run_sweep(rptq::make_sweep_spec("clusters", "all", "1"), base(), qo, *fp_,
                               [] { return rptq::Model::load(model_dir()); }, *stats_, *ids_, windows(),
                               rptq::Execution::on(rptq::Device::CPU), count),
               rptq::InputError);
  rptq::PerplexityOptions too_long = windows();
  too_long.seqlen = 1 << 20;  // more tokens than the text has
  EXPECT_THROW(rptq::run_sweep(rptq::make_sweep_spec("clusters", "all", "1"), base(), {}, *fp_,
                               [] { return rptq::Model::load(model_dir()); }, *stats_, *ids_, too_long,
                               rptq::Execution::on(rptq::Device::CPU), count),
               rptq::InputError);
  EXPECT_EQ(calls, 0);
}

// A result with every field set, without running anything: the file tests need no model.
rptq::SweepResult made_up_result() {
  rptq::SweepResult r;
  r.spec = rptq::make_sweep_spec("clusters", "R1", "1,4,16");
  r.base = rptq::QuantConfig::preset("W4A4");
  r.base.overrides.push_back(rptq::parse_override("layers=0-1,ffn_hidden:dynamic"));
  r.base.weight_group = 64;
  r.base.grid = rptq::QuantGrid::Reference;
  r.stat = rptq::RangeStat::MinMax;
  r.sequential = false;
  r.kmeans_seed = 0xFFFFFFFFFFFFFFFFull;  // the largest seed survives JSON
  r.device = "CPU (2 threads)";
  r.model = "models/m, \"quoted\"";
  r.stats = "s.h5";
  r.data = "d.txt";
  r.windows = 3;
  r.seqlen = 64;
  r.positions = 189;
  r.ppl_fp = 4.441370292044706;
  r.seconds = 1.0 / 3.0;
  for (int i = 0; i < 2; ++i) {  // two of three points: a cancelled sweep's partial result
    rptq::SweepPoint p;
    p.value = r.spec.values[static_cast<std::size_t>(i)];
    p.name = r.spec.apply(r.base, p.value).name;
    p.description = r.spec.apply(r.base, p.value).describe();
    p.clusters_used = {p.value, 4, 4, 32, 32};
    p.ppl_q = 5.0 + std::sqrt(2.0) * (i + 1);
    p.kl = i == 0 ? std::nan("") : 0.1 / 7.0;  // a non-finite number comes back as NaN
    p.top1_agreement = 0.1 + 0.2;
    p.top1_changed = 1.0 - p.top1_agreement;
    p.kl_p50 = 0.01 / 3.0;
    p.kl_p90 = 0.1 / 3.0;
    p.kl_p99 = 1.0 / 3.0;
    p.kl_max = 2.0 / 3.0 + i;
    p.quantize_seconds = 1e-300;
    p.compare_seconds = 123456.789;
    r.points.push_back(p);
  }
  return r;
}

void expect_same(const rptq::SweepResult& a, const rptq::SweepResult& b) {
  EXPECT_EQ(a.spec.axis, b.spec.axis);
  EXPECT_EQ(a.spec.target, b.spec.target);
  EXPECT_EQ(a.spec.values, b.spec.values);
  EXPECT_EQ(a.base.describe(), b.base.describe());
  EXPECT_EQ(a.base.name, b.base.name);
  EXPECT_EQ(a.base.abits, b.base.abits);
  EXPECT_EQ(a.base.clusters, b.base.clusters);
  EXPECT_EQ(a.base.gptq_damp, b.base.gptq_damp);
  EXPECT_EQ(a.base.overrides_spec(), b.base.overrides_spec());
  EXPECT_EQ(a.stat, b.stat);
  EXPECT_EQ(a.sequential, b.sequential);
  EXPECT_EQ(a.kmeans_seed, b.kmeans_seed);
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.stats, b.stats);
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(a.windows, b.windows);
  EXPECT_EQ(a.seqlen, b.seqlen);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.ppl_fp, b.ppl_fp);
  EXPECT_EQ(a.seconds, b.seconds);
  ASSERT_EQ(a.points.size(), b.points.size());
  EXPECT_EQ(a.complete(), b.complete());
  for (std::size_t i = 0; i < a.points.size(); ++i) {
    const rptq::SweepPoint &p = a.points[i], &q = b.points[i];
    EXPECT_EQ(p.value, q.value);
    EXPECT_EQ(p.name, q.name);
    EXPECT_EQ(p.description, q.description);
    EXPECT_EQ(p.clusters_used, q.clusters_used);
    EXPECT_EQ(p.ppl_q, q.ppl_q);
    if (std::isnan(p.kl))
      EXPECT_TRUE(std::isnan(q.kl));
    else
      EXPECT_EQ(p.kl, q.kl);  // bit for bit
    EXPECT_EQ(p.top1_agreement, q.top1_agreement);
    EXPECT_EQ(p.top1_changed, q.top1_changed);
    EXPECT_EQ(p.kl_p50, q.kl_p50);
    EXPECT_EQ(p.kl_p90, q.kl_p90);
    EXPECT_EQ(p.kl_p99, q.kl_p99);
    EXPECT_EQ(p.kl_max, q.kl_max);
    EXPECT_EQ(p.quantize_seconds, q.quantize_seconds);
    EXPECT_EQ(p.compare_seconds, q.compare_seconds);
  }
}

TEST(SweepFile, SaveLoadRoundTrip) {
  const auto dir = rptq::test::temp_dir("sweep-file");
  const rptq::SweepResult r = made_up_result();
  EXPECT_FALSE(r.complete());
  const auto path = dir / "sweep.json";
  rptq::save_sweep(path, r, false);
  const rptq::SweepResult back = rptq::load_sweep(path);
  expect_same(r, back);
  EXPECT_EQ(rptq::sweep_to_json(back), rptq::sweep_to_json(r));
  // Never overwritten without asking; with overwrite, replaced whole; no temporary file left behind.
  EXPECT_THROW(rptq::save_sweep(path, r, false), rptq::OutputExists);
  rptq::SweepResult more = r;
  more.points.pop_back();
  rptq::save_sweep(path, more, true);
  EXPECT_EQ(rptq::load_sweep(path).points.size(), 1u);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()), 1);
  EXPECT_THROW(rptq::save_sweep(dir / "no-such-folder" / "s.json", r, false), rptq::InputError);
}

TEST(SweepFile, FilesWithoutKlPercentilesReadAsNaN) {
  // Sweep files written before the comparison had KL percentiles and top1_changed lack those keys.
  auto j = nlohmann::json::parse(rptq::sweep_to_json(made_up_result()));
  for (auto& p : j["points"])
    for (const char* k : {"kl_p50", "kl_p90", "kl_p99", "kl_max", "top1_changed"}) p.erase(k);
  const rptq::SweepResult r = rptq::sweep_from_json(j.dump(), "old.json");
  ASSERT_EQ(r.points.size(), 2u);
  EXPECT_TRUE(std::isnan(r.points[1].kl_p99));
  EXPECT_TRUE(std::isnan(r.points[1].top1_changed));
  EXPECT_EQ(r.points[1].kl, made_up_result().points[1].kl);
}

TEST(SweepFile, CsvHoldsTheExactNumbers) {
  const rptq::SweepResult r = made_up_result();
  std::istringstream in(rptq::sweep_to_csv(r));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line.rfind("axis,target,value,setting,ppl_fp,ppl_q,kl,kl_p50,kl_p90,kl_p99,kl_max,top1_agreement,"
                       "top1_changed,quantize_seconds,compare_seconds,clusters_used_R1,",
                       0),
            0u);
  for (const rptq::SweepPoint& p : r.points) {
    ASSERT_TRUE(std::getline(in, line));
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; f.size() < 20 && std::getline(ss, x, ',');) f.push_back(x);
    std::string rest;
    std::getline(ss, rest);
    ASSERT_EQ(f.size(), 20u);
    EXPECT_EQ(f[0], "clusters");
    EXPECT_EQ(f[1], "R1");
    EXPECT_EQ(std::stoi(f[2]), p.value);
    EXPECT_EQ(f[3], p.name);
    auto num = [&](std::size_t i) { return std::strtod(f[i].c_str(), nullptr); };
    EXPECT_EQ(num(4), r.ppl_fp);
    EXPECT_EQ(num(5), p.ppl_q);
    if (std::isnan(p.kl))
      EXPECT_TRUE(std::isnan(num(6)));
    else
      EXPECT_EQ(num(6), p.kl);
    EXPECT_EQ(num(7), p.kl_p50);
    EXPECT_EQ(num(8), p.kl_p90);
    EXPECT_EQ(num(9), p.kl_p99);
    EXPECT_EQ(num(10), p.kl_max);
    EXPECT_EQ(num(11), p.top1_agreement);
    EXPECT_EQ(num(12), p.top1_changed);
    EXPECT_EQ(num(13), p.quantize_seconds);
    EXPECT_EQ(num(14), p.compare_seconds);
    EXPECT_EQ(std::stoi(f[15]), p.value);
    EXPECT_EQ(std::stoi(f[16]), 4);
    EXPECT_EQ(rest, "\"" + p.description + "\"");  // it holds commas: quoted
  }
  EXPECT_FALSE(std::getline(in, line));
}

TEST(SweepFile, DamagedOrForeignFilesNameTheFile) {
  const auto dir = rptq::test::temp_dir("sweep-bad");
  const std::string good = rptq::sweep_to_json(made_up_result());
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? s : s.replace(at, from.size(), to);
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {good.substr(0, good.size() / 2), "not JSON"},
      {"", "not JSON"},
      {"{\"a\": 1}", "format"},
      {"[1, 2]", "format"},
      {replaced("\"version\": 1", "\"version\": 2"), "newer"},
      {replaced("\"version\": 1", "\"version\": \"1\""), "\"version\" is not an integer"},
      {replaced("\"axis\": \"clusters\"", "\"axis\": \"bits\""), "unknown sweep axis"},
      {replaced("\"target\": \"R1\"", "\"target\": \"R9\""), "R9"},
      {replaced("\"values\": [", "\"values\": [0,"), "cluster count"},
      {replaced("\"value\": 4", "\"value\": 16"), "point 1 has value 16, not 4"},
      {replaced("\"wbits\": 4", "\"wbits\": 5.5"), "\"wbits\" is not an integer"},
      {replaced("\"ppl_q\"", "\"ppl_x\""), "\"ppl_q\" is missing"},
      {replaced("\"layers=0-1,ffn_hidden:dynamic\"", "\"layers=0-1,ffn_hidden:loud\""), "loud"},
      {replaced("\"kmeans_seed\": 18446744073709551615", "\"kmeans_seed\": -1"), "kmeans_seed"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].second);
    const auto path = dir / ("bad" + std::to_string(i) + ".json");
    rptq::test::write_file(path, cases[i].first);
    try {
      rptq::load_sweep(path);
      ADD_FAILURE() << "accepted";
    } catch (const rptq::InputError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind(path.string(), 0), 0u) << what;  // names the file first
      EXPECT_NE(what.find(cases[i].second), std::string::npos) << what;
    }
  }
  EXPECT_THROW(rptq::load_sweep(dir / "missing.json"), rptq::InputError);
  EXPECT_THROW(rptq::load_sweep(dir), rptq::InputError);  // a folder
}

}  // namespace
