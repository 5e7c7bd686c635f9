// Calibration (layer-by-layer channel ranges) and the channel statistics file.
#include <hdf5.h>

#include <cmath>
#include <cstring>

#include "rptq/method/calibration.h"
#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/export/stats_file.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::Tap;
using rptq::test::shared_file;
using rptq::test::shared_model;

TEST(TapRanges, EmaAndMinMaxByHand) {
  rptq::TapRanges r;
  r.add_sample(std::vector<float>{1.0f, 10.0f}, std::vector<float>{-1.0f, 0.0f});
  r.add_sample(std::vector<float>{3.0f, 0.0f}, std::vector<float>{-5.0f, 2.0f});
  EXPECT_EQ(r.samples, 2);
  // v = 0.99 v + 0.01 new, initialised by the first sample.
  EXPECT_FLOAT_EQ(r.ema_max[0], 0.99f * 1.0f + 0.01f * 3.0f);
  EXPECT_FLOAT_EQ(r.ema_max[1], 0.99f * 10.0f);
  EXPECT_FLOAT_EQ(r.ema_min[0], 0.99f * -1.0f + 0.01f * -5.0f);
  EXPECT_FLOAT_EQ(r.ema_min[1], 0.99f * 0.0f + 0.01f * 2.0f);
  EXPECT_EQ(r.max, (std::vector<float>{3.0f, 10.0f}));
  EXPECT_EQ(r.min, (std::vector<float>{-5.0f, 0.0f}));
  EXPECT_EQ(&r.hi(rptq::RangeStat::Ema), &r.ema_max);
  EXPECT_EQ(&r.lo(rptq::RangeStat::MinMax), &r.min);
}

// A cluster's EMA range is the reference's (RPTQ4LLM quantize/quantizer.py, ema_minmax with clusters): per sample
// the cluster's max (min) over its channels, then v = 0.99 v + 0.01 x. It is wider than the max of the channels'
// own EMAs whenever the channel holding the cluster's max changes between samples, as here.
TEST(TapRanges, ClusterEmaIsTheEmaOfTheClustersPerSampleRange) {
  rptq::TapRanges r;
  r.add_sample(std::vector<float>{4.0f, 1.0f, 7.0f}, std::vector<float>{-1.0f, -2.0f, 0.0f});
  r.add_sample(std::vector<float>{1.0f, 5.0f, 7.0f}, std::vector<float>{-3.0f, 0.0f, 0.0f});
  r.add_sample(std::vector<float>{2.0f, 2.0f, 7.0f}, std::vector<float>{-1.0f, -1.0f, 0.0f});
  ASSERT_TRUE(r.has_samples());
  EXPECT_EQ(r.sample_max.size(), 9u);
  const std::vector<std::int32_t> cluster = {0, 1};
  float lo = 0, hi = 0;
  r.cluster_range(rptq::RangeStat::Ema, cluster, lo, hi);
  float e_hi = 4.0f, e_lo = -2.0f;            // sample 0: max(4, 1), min(-1, -2)
  e_hi = 0.99f * e_hi + 0.01f * 5.0f;         // sample 1: max(1, 5)
  e_lo = 0.99f * e_lo + 0.01f * -3.0f;        //           min(-3, 0)
  e_hi = 0.99f * e_hi + 0.01f * 2.0f;
  e_lo = 0.99f * e_lo + 0.01f * -1.0f;
  EXPECT_EQ(hi, e_hi);
  EXPECT_EQ(lo, e_lo);
  // The max of the per-channel EMAs is narrower: what this tool used before (a measured fidelity bug).
  EXPECT_LT(std::max(r.ema_max[0], r.ema_max[1]), hi - 0.01f);
  EXPECT_GT(std::min(r.ema_min[0], r.ema_min[1]), lo + 0.005f);
  r.cluster_range(rptq::RangeStat::MinMax, cluster, lo, hi);
  EXPECT_EQ(hi, 5.0f);
  EXPECT_EQ(lo, -3.0f);
  r.cluster_range(rptq::RangeStat::Ema, std::span<const std::int32_t>(), lo, hi);  // an empty cluster
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 0.0f);
  // Without the per-sample ranges (a format 1 statistics file) the EMA of a cluster cannot be formed.
  r.sample_max.clear();
  r.sample_min.clear();
  EXPECT_THROW(r.cluster_range(rptq::RangeStat::Ema, cluster, lo, hi), rptq::InputError);
  EXPECT_NO_THROW(r.cluster_range(rptq::RangeStat::MinMax, cluster, lo, hi));
  // The attention scores keep no per-sample ranges.
  rptq::TapRanges sc;
  sc.add_sample(std::vector<float>{1.0f}, std::vector<float>{0.0f}, /*keep_sample=*/false);
  EXPECT_FALSE(sc.has_samples());
}

TEST(ChannelMaxMin, MatchesScalarLoopWithStride) {
  const std::int64_t rows = 37, cols = 301, ld = 320;
  std::vector<float> x(static_cast<std::size_t>(rows * ld), 1e9f);  // padding must be ignored
  std::uint32_t s = 7;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      s = s * 1664525u + 1013904223u;
      x[static_cast<std::size_t>(r * ld + c)] = static_cast<float>(static_cast<std::int32_t>(s >> 8) % 20001) / 7.0f;
    }
  std::vector<float> mx, mn;
  rptq::channel_max_min({x.data(), rows, cols, ld}, mx, mn);
  ASSERT_EQ(mx.size(), static_cast<std::size_t>(cols));
  for (std::int64_t c = 0; c < cols; ++c) {
    float hi = -INFINITY, lo = INFINITY;
    for (std::int64_t r = 0; r < rows; ++r) {
      hi = std::max(hi, x[static_cast<std::size_t>(r * ld + c)]);
      lo = std::min(lo, x[static_cast<std::size_t>(r * ld + c)]);
    }
    EXPECT_EQ(mx[static_cast<std::size_t>(c)], hi);
    EXPECT_EQ(mn[static_cast<std::size_t>(c)], lo);
  }
}

TEST(CalibrationWindows, SeededSlicesOfTheText) {
  std::vector<std::int32_t> ids(1000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(i);
  const auto a = rptq::calibration_windows(ids, 20, 64, 2), b = rptq::calibration_windows(ids, 20, 64, 2);
  const auto c = rptq::calibration_windows(ids, 20, 64, 3);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  ASSERT_EQ(a.size(), 20u * 64u);
  for (int w = 0; w < 20; ++w) {
    const std::int32_t start = a[static_cast<std::size_t>(w * 64)];
    EXPECT_GE(start, 0);
    EXPECT_LE(start + 64, 1000 - 1);  // a next token exists after every window, as in the reference loaders
    for (int t = 0; t < 64; ++t) EXPECT_EQ(a[static_cast<std::size_t>(w * 64 + t)], start + t);
  }
  EXPECT_THROW(rptq::calibration_windows(std::span(ids).first(64), 1, 64, 0), rptq::InputError);
  EXPECT_THROW(rptq::calibration_windows(ids, 0, 64, 0), rptq::InputError);
}

// The score ranges over many 64-query tiles (causal, GQA, with and without a sliding window, padded rows) equal a
// brute-force double-precision pass over every visible (query, key) pair.
TEST(AttentionScoreRange, TiledEqualsBruteForce) {
  for (const std::int64_t window : {std::int64_t{0}, std::int64_t{37}}) {
    for (const auto arch : {rptq::Architecture::Llama, rptq::Architecture::OPT}) {
      rptq::ModelConfig cfg;
      cfg.arch = arch;
      cfg.heads = 6;
      cfg.kv_heads = 2;
      cfg.head_dim = 16;
      cfg.sliding_window = window;
      const std::int64_t T = 203, q_ld = cfg.heads * cfg.head_dim + 3, k_ld = cfg.kv_heads * cfg.head_dim + 5;
      std::vector<float> q(static_cast<std::size_t>(T * q_ld)), k(static_cast<std::size_t>(T * k_ld));
      std::uint32_t st = 12345u + static_cast<std::uint32_t>(window);
      auto next = [&] {
        st = st * 1664525u + 1013904223u;
        return static_cast<float>(static_cast<double>(st >> 8) / 16777216.0 * 4.0 - 2.0);
      };
      for (float& v : q) v = next();
      for (float& v : k) v = next();
      std::vector<float> hmax, hmin;
      rptq::attention_score_range(cfg, {q.data(), T, cfg.heads * cfg.head_dim, q_ld},
                                  {k.data(), T, cfg.kv_heads * cfg.head_dim, k_ld}, hmax, hmin);
      ASSERT_EQ(hmax.size(), static_cast<std::size_t>(cfg.heads));
      const double scale = arch == rptq::Architecture::OPT ? 1.0 : 0.25;
      for (std::int64_t h = 0; h < cfg.heads; ++h) {
        double hi = -INFINITY, lo = INFINITY;
        for (std::int64_t i = 0; i < T; ++i)
          for (std::int64_t j = window > 0 ? std::max<std::int64_t>(0, i - window + 1) : 0; j <= i; ++j) {
            double dot = 0;
            for (std::int64_t c = 0; c < cfg.head_dim; ++c)
              dot += static_cast<double>(q[static_cast<std::size_t>(i * q_ld + h * cfg.head_dim + c)]) *
                     k[static_cast<std::size_t>(j * k_ld + (h / 3) * cfg.head_dim + c)];
            hi = std::max(hi, dot * scale);
            lo = std::min(lo, dot * scale);
          }
        SCOPED_TRACE("window " + std::to_string(window) + " head " + std::to_string(h));
        EXPECT_NEAR(hmax[static_cast<std::size_t>(h)], hi, 1e-4 * (1 + std::abs(hi)));
        EXPECT_NEAR(hmin[static_cast<std::size_t>(h)], lo, 1e-4 * (1 + std::abs(lo)));
      }
    }
  }
}

// Records every tap of every layer while running whole forward passes, one window at a time.
class PlainRecorder : public rptq::ActivationHook {
 public:
  explicit PlainRecorder(std::int64_t layers) : ranges(static_cast<std::size_t>(layers)) {}
  void on_activation(int layer, Tap tap, const rptq::ActivationView& act) override {
    std::vector<float> mx, mn;
    rptq::channel_max_min(act, mx, mn);
    ranges[static_cast<std::size_t>(layer)].tap(tap).add_sample(mx, mn);
    if (tap == Tap::Q) q.assign(act.data, act.data + act.rows * act.ld), q_ld = act.ld;
    if (tap == Tap::K) {
      // Brute force: every causal score q_i . k_j (j <= i) of every head, scaled as the model's attention does.
      std::vector<float> hi(static_cast<std::size_t>(cfg->heads), -INFINITY), lo(hi.size(), INFINITY);
      const std::int64_t hd = cfg->head_dim, group = cfg->heads / cfg->kv_heads;
      const double scale = cfg->arch == rptq::Architecture::OPT ? 1.0 : 1.0 / std::sqrt(static_cast<double>(hd));
      for (std::int64_t h = 0; h < cfg->heads; ++h)
        for (std::int64_t i = 0; i < act.rows; ++i)
          for (std::int64_t j = 0; j <= i; ++j) {
            double dot = 0;
            for (std::int64_t c = 0; c < hd; ++c)
              dot += static_cast<double>(q[static_cast<std::size_t>(i * q_ld + h * hd + c)]) *
                     act.row(j)[(h / group) * hd + c];
            const float v = static_cast<float>(dot * scale);
            hi[static_cast<std::size_t>(h)] = std::max(hi[static_cast<std::size_t>(h)], v);
            lo[static_cast<std::size_t>(h)] = std::min(lo[static_cast<std::size_t>(h)], v);
          }
      ranges[static_cast<std::size_t>(layer)].scores.add_sample(hi, lo);
    }
  }
  std::vector<rptq::LayerRanges> ranges;
  const rptq::ModelConfig* cfg = nullptr;
  std::vector<float> q;
  std::int64_t q_ld = 0;
};

class CalibrateTest : public ::testing::TestWithParam<const char*> {};

// Layer-by-layer calibration over stored windows equals ranges recorded during ordinary whole-model forward passes
// of the same windows (the FP model: nothing changes between layers), bit for bit for the taps; the attention score
// ranges match a brute-force double-precision computation.
TEST_P(CalibrateTest, LayerwiseEqualsWholeForwardPasses) {
  const auto dir = shared_model(GetParam());
  auto m = rptq::Model::load(dir);
  auto tok = rptq::Tokenizer::load(dir);
  const std::string text = rptq::test::read_file(shared_file("data/stories.txt"));
  const auto ids = tok->encode(text, true);
  rptq::CalibrationSettings cs;
  cs.samples = 3;
  cs.seqlen = 48;
  cs.seed = 5;
  int calls = 0;
  const rptq::ChannelStats st = rptq::calibrate(*m, dir.string(), ids, "stories.txt", "abc", cs,
                                                [&](const rptq::LayerwiseProgress& p) {
                                                  ++calls;
                                                  EXPECT_EQ(p.total, m->config().layers * cs.samples);
                                                  return true;
                                                });
  EXPECT_EQ(calls, m->config().layers * cs.samples);
  ASSERT_EQ(st.ranges.size(), static_cast<std::size_t>(m->config().layers));
  EXPECT_EQ(st.tokens, rptq::calibration_windows(ids, 3, 48, 5));
  EXPECT_EQ(st.config_sha256.size(), 64u);

  PlainRecorder plain(m->config().layers);
  plain.cfg = &m->config();
  for (int w = 0; w < 3; ++w) m->forward(std::span(st.tokens).subspan(static_cast<std::size_t>(w * 48), 48), 1, nullptr, &plain);
  for (int l = 0; l < m->config().layers; ++l)
    for (int t = 0; t < rptq::kTapCount; ++t) {
      const auto& a = st.ranges[static_cast<std::size_t>(l)].taps[static_cast<std::size_t>(t)];
      const auto& b = plain.ranges[static_cast<std::size_t>(l)].taps[static_cast<std::size_t>(t)];
      SCOPED_TRACE(std::string("layer ") + std::to_string(l) + " " + rptq::tap_name(static_cast<Tap>(t)));
      EXPECT_EQ(a.samples, 3);
      EXPECT_EQ(a.max, b.max);
      EXPECT_EQ(a.min, b.min);
      EXPECT_EQ(a.ema_max, b.ema_max);
      EXPECT_EQ(a.ema_min, b.ema_min);
      EXPECT_EQ(a.sample_max, b.sample_max);  // each window's own ranges, kept for the clusters' EMA
      EXPECT_EQ(a.sample_min, b.sample_min);
      EXPECT_TRUE(a.has_samples());
      for (std::int64_t c = 0; c < a.channels(); ++c) EXPECT_LE(a.min[c], a.max[c]);
    }
  for (int l = 0; l < m->config().layers; ++l) {
    const auto& a = st.ranges[static_cast<std::size_t>(l)].scores;
    const auto& b = plain.ranges[static_cast<std::size_t>(l)].scores;
    ASSERT_EQ(a.channels(), m->config().heads);
    for (std::int64_t h = 0; h < a.channels(); ++h) {
      EXPECT_NEAR(a.max[h], b.max[h], 1e-4 * (1 + std::abs(b.max[h])));
      EXPECT_NEAR(a.min[h], b.min[h], 1e-4 * (1 + std::abs(b.min[h])));
    }
  }
}

TEST_P(CalibrateTest, CancelStopsThePass) {
  const auto dir = shared_model(GetParam());
  auto m = rptq::Model::load(dir);
  std::vector<std::int32_t> ids(400, 5);
  rptq::CalibrationSettings cs;
  cs.samples = 4;
  cs.seqlen = 32;
  int calls = 0;
  EXPECT_THROW(rptq::calibrate(*m, "", ids, "", "", cs, [&](const rptq::LayerwiseProgress&) { return ++calls < 3; }),
               rptq::Cancelled);
  EXPECT_EQ(calls, 3);
}

INSTANTIATE_TEST_SUITE_P(SharedModels, CalibrateTest, ::testing::Values("stories260k", "tiny-opt-16m"));

// ---------------------------------------------------------------------------------------------------------------
// The statistics file

rptq::ChannelStats small_stats() {
  rptq::ChannelStats s;
  s.model_path = "/models/x";
  s.model_type = "opt";
  s.architecture = "OPT (pre-LayerNorm)";
  s.config_sha256 = std::string(64, 'a');
  s.layers = 2;
  s.hidden = 8;
  s.heads = 2;
  s.kv_heads = 2;
  s.head_dim = 4;
  s.intermediate = 12;
  s.data_path = "calib.txt";
  s.data_sha256 = std::string(64, 'b');
  s.settings.samples = 3;
  s.settings.seqlen = 5;
  s.settings.seed = 99;
  s.settings.stat = rptq::RangeStat::MinMax;
  s.tool_version = "0.0-test";
  s.created = "2026-12-01T00:00:00Z";
  s.seconds = 1.5;
  for (int i = 0; i < 15; ++i) s.tokens.push_back(i * 3);
  s.ranges.resize(2);
  float v = 0.25f;
  for (auto& lr : s.ranges) {
    for (int t = 0; t < rptq::kTapCount; ++t) {
      const std::int64_t n = static_cast<Tap>(t) == Tap::FfnHidden ? 12 : 8;
      auto& r = lr.taps[static_cast<std::size_t>(t)];
      for (std::int64_t c = 0; c < n; ++c) {
        r.max.push_back(v += 1.0f);
        r.min.push_back(-v);
        r.ema_max.push_back(v * 0.5f);
        r.ema_min.push_back(-v * 0.5f);
      }
      r.samples = 3;
      for (std::int64_t i = 0; i < 3 * n; ++i) {
        r.sample_max.push_back(static_cast<float>(i) * 0.125f + v);
        r.sample_min.push_back(-static_cast<float>(i) * 0.25f - v);
      }
    }
    lr.scores.max = {1.0f, 2.0f};
    lr.scores.min = {-1.0f, -3.0f};
    lr.scores.ema_max = {0.5f, 1.5f};
    lr.scores.ema_min = {-0.5f, -2.5f};
    lr.scores.samples = 3;
  }
  return s;
}

TEST(StatsFile, RoundTripsExactly) {
  const auto dir = rptq::test::temp_dir("stats-roundtrip");
  const auto path = dir / "s.h5";
  const rptq::ChannelStats s = small_stats();
  rptq::save_stats(path, s);
  const rptq::ChannelStats r = rptq::load_stats(path);
  EXPECT_EQ(r.model_path, s.model_path);
  EXPECT_EQ(r.architecture, s.architecture);
  EXPECT_EQ(r.config_sha256, s.config_sha256);
  EXPECT_EQ(r.layers, 2);
  EXPECT_EQ(r.intermediate, 12);
  EXPECT_EQ(r.data_sha256, s.data_sha256);
  EXPECT_EQ(r.settings.samples, 3);
  EXPECT_EQ(r.settings.seqlen, 5);
  EXPECT_EQ(r.settings.seed, 99u);
  EXPECT_EQ(r.settings.stat, rptq::RangeStat::MinMax);
  EXPECT_EQ(r.tool_version, s.tool_version);
  EXPECT_EQ(r.created, s.created);
  EXPECT_DOUBLE_EQ(r.seconds, 1.5);
  EXPECT_EQ(r.tokens, s.tokens);
  for (std::size_t l = 0; l < 2; ++l) {
    for (int t = 0; t < rptq::kTapCount; ++t) {
      EXPECT_EQ(r.ranges[l].taps[static_cast<std::size_t>(t)].max, s.ranges[l].taps[static_cast<std::size_t>(t)].max);
      EXPECT_EQ(r.ranges[l].taps[static_cast<std::size_t>(t)].ema_min,
                s.ranges[l].taps[static_cast<std::size_t>(t)].ema_min);
      EXPECT_EQ(r.ranges[l].taps[static_cast<std::size_t>(t)].samples, 3);
      EXPECT_EQ(r.ranges[l].taps[static_cast<std::size_t>(t)].sample_max,
                s.ranges[l].taps[static_cast<std::size_t>(t)].sample_max);
      EXPECT_EQ(r.ranges[l].taps[static_cast<std::size_t>(t)].sample_min,
                s.ranges[l].taps[static_cast<std::size_t>(t)].sample_min);
      EXPECT_TRUE(r.ranges[l].taps[static_cast<std::size_t>(t)].has_samples());
    }
    EXPECT_EQ(r.ranges[l].scores.min, s.ranges[l].scores.min);
  }
  EXPECT_THROW(r.tap(2, Tap::Q), rptq::InputError);
}

TEST(StatsFile, RefusesToOverwriteWithoutForceAndLeavesNoTemporaryFiles) {
  const auto dir = rptq::test::temp_dir("stats-overwrite");
  const auto path = dir / "s.h5";
  rptq::save_stats(path, small_stats());
  const auto size = std::filesystem::file_size(path);
  EXPECT_THROW(rptq::save_stats(path, small_stats()), rptq::InputError);
  EXPECT_EQ(std::filesystem::file_size(path), size);
  rptq::save_stats(path, small_stats(), /*overwrite=*/true);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);  // no .tmp left behind
}

TEST(StatsFile, InconsistentStatsAreRefusedBeforeAnythingIsWritten) {
  const auto dir = rptq::test::temp_dir("stats-inconsistent");
  rptq::ChannelStats s = small_stats();
  s.tokens.resize(4);  // not samples x seqlen
  EXPECT_THROW(rptq::save_stats(dir / "a.h5", s), rptq::InputError);
  s = small_stats();
  s.ranges[1].taps[static_cast<int>(Tap::FfnHidden)].ema_min.pop_back();
  try {
    rptq::save_stats(dir / "b.h5", s);
    FAIL() << "expected InputError";
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("layer 1 ffn_hidden ema_min has 11 values, expected 12"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));  // no target, no temporary file
}

void expect_load_error(const std::filesystem::path& p, const std::string& needle) {
  try {
    rptq::load_stats(p);
    FAIL() << "expected InputError for " << p;
  } catch (const rptq::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(StatsFile, BadFilesGiveClearErrors) {
  const auto dir = rptq::test::temp_dir("stats-bad");
  expect_load_error(dir / "missing.h5", "no such file");
  rptq::test::write_file(dir / "text.h5", "this is not HDF5 at all\n");
  expect_load_error(dir / "text.h5", "not an HDF5 file");
  rptq::save_stats(dir / "good.h5", small_stats());
  const std::string bytes = rptq::test::read_file(dir / "good.h5");
  for (std::size_t cut : {std::size_t{100}, bytes.size() / 2, bytes.size() - 10}) {
    const auto p = dir / ("cut" + std::to_string(cut) + ".h5");
    rptq::test::write_file(p, bytes.substr(0, cut));
    try {
      rptq::load_stats(p);
      ADD_FAILURE() << "a file cut at " << cut << " of " << bytes.size() << " bytes loaded";
    } catch (const rptq::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    }
  }
  // Corrupt bytes in the middle: an error (or, where only padding was hit, a clean load), never a crash.
  std::string bad = bytes;
  for (std::size_t i = bad.size() / 3; i < bad.size() / 3 + 64; ++i) bad[i] = static_cast<char>(0xA5);
  rptq::test::write_file(dir / "corrupt.h5", bad);
  try {
    rptq::load_stats(dir / "corrupt.h5");
  } catch (const rptq::InputError&) {
  }

  // A foreign HDF5 file, and one from a newer tool.
  {
    hid_t f = H5Fcreate((dir / "foreign.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
  }
  expect_load_error(dir / "foreign.h5", "not an RPTQ channel statistics file");
  {
    hid_t f = H5Fopen((dir / "good.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    const std::int64_t v = rptq::kStatsFormatVersion + 1;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Fclose(f);
  }
  expect_load_error(dir / "good.h5", "newer than this tool");
}

}  // namespace
