// The sensitivity probe (rptq::activation_sensitivity, `rptq sensitivity`): each (layer, tap) quantized alone. Its
// cells equal an independent full forward pass with only that tap's quantizer on, its sums are the sums of its
// cells, and the CLI prints the library's numbers. Saved results read back bit for bit, damaged sensitivity files
// are refused naming the file, and the "keep the N most sensitive" suggestion is checked against hand-made results
// and the memory model's formulas. On the bundled stories260k model (no ../shared).
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "rptq/method/calibration.h"
#include "rptq/eval/compare.h"
#include "rptq/eval/memory_model.h"
#include "rptq/base/error.h"
#include "rptq/method/sensitivity.h"
#include "rptq/export/stats_file.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::Tap;

const std::filesystem::path& model_dir() {
  static const auto d = rptq::test::resources_dir() / "models" / "stories260k";
  return d;
}
std::string stories() { return (rptq::test::resources_dir() / "data" / "stories.txt").string(); }

class Sensitivity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto fp = rptq::Model::load(model_dir());
    ids_ = new std::vector<std::int32_t>(
        rptq::Tokenizer::load(model_dir())->encode(rptq::test::read_file(stories()), true));
    rptq::CalibrationSettings cs;
    cs.samples = 3;
    cs.seqlen = 64;
    stats_ = new rptq::ChannelStats(rptq::calibrate(*fp, model_dir().string(), *ids_, stories(), "", cs));
  }
  static void TearDownTestSuite() {
    delete ids_;
    delete stats_;
  }
  static std::vector<std::int32_t>* ids_;
  static rptq::ChannelStats* stats_;
};
std::vector<std::int32_t>* Sensitivity::ids_ = nullptr;
rptq::ChannelStats* Sensitivity::stats_ = nullptr;

// A hook that applies one (layer, tap) of the quantized model's quantizers, for the independent check.
class Only : public rptq::ActivationHook {
 public:
  Only(rptq::ActivationHook& q, int layer, Tap tap) : q_(q), layer_(layer), tap_(tap) {}
  void on_activation(int layer, Tap tap, const rptq::ActivationView& a) override {
    if (layer == layer_ && tap == tap_) q_.on_activation(layer, tap, a);
  }

 private:
  rptq::ActivationHook& q_;
  int layer_;
  Tap tap_;
};

TEST_F(Sensitivity, CellsEqualIndependentPassesAndSumsAddUp) {
  rptq::QuantConfig cfg = rptq::QuantConfig::preset("W4A4");  // weights come out FP: the probe is of activations
  auto q = rptq::quantize_for_sensitivity(rptq::Model::load(model_dir()), *stats_, cfg, rptq::RangeStat::Ema, 0);
  EXPECT_FALSE(q->config().quantizes_weights());
  rptq::PerplexityOptions po;
  po.seqlen = 64;
  po.max_windows = 3;
  std::int64_t calls = 0, last_total = 0;
  const rptq::SensitivityResult r =
      rptq::activation_sensitivity(*q, *ids_, po, [&](std::int64_t done, std::int64_t total) {
        EXPECT_EQ(done, ++calls);
        last_total = total;
        return true;
      });
  const int L = static_cast<int>(q->model().config().layers);
  // W4A4 quantizes every tap but the two norm outputs' 8 bits count too: all seven taps, then the softmax.
  ASSERT_EQ(r.taps.size(), 8u);
  EXPECT_EQ(r.taps.back(), "softmax");
  EXPECT_EQ(r.layers, L);
  EXPECT_EQ(r.cells.size(), static_cast<std::size_t>(L) * 8);
  EXPECT_EQ(calls, last_total);
  EXPECT_EQ(last_total, 3 * L * 8);
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.positions, 3 * 63);

  // Independent: a whole forward pass with only that quantizer on, through compare_models.
  for (int l : {0, L - 1})
    for (std::size_t t : {std::size_t{0}, std::size_t{6}}) {
      SCOPED_TRACE("layer " + std::to_string(l) + " " + r.taps[t]);
      Only only(*q->hook(), l, rptq::kAllTaps[t]);
      std::vector<bool> softmax;
      for (int k = 0; k < L; ++k) softmax.push_back(q->model().layer(k).quantize_softmax);
      for (int k = 0; k < L; ++k) q->model().layer(k).quantize_softmax = false;
      const rptq::CompareResult c = rptq::compare_models(q->model(), nullptr, q->model(), &only, *ids_, po);
      for (int k = 0; k < L; ++k) q->model().layer(k).quantize_softmax = softmax[static_cast<std::size_t>(k)];
      EXPECT_NEAR(r.cell(l, t).kl, c.kl, 1e-9 + 1e-6 * c.kl);
      EXPECT_NEAR(r.cell(l, t).ppl, c.q.ppl, 1e-7 * c.q.ppl);  // the head runs in other row blocks
      EXPECT_EQ(r.cell(l, t).top1_agreement, c.top1_agreement);
      EXPECT_NEAR(r.ppl_fp, c.fp.ppl, 1e-7 * c.fp.ppl);
      EXPECT_GT(r.cell(l, t).kl, 0.0);
    }
  // The softmax flags are restored after the probe.
  for (int k = 0; k < L; ++k) EXPECT_TRUE(q->model().layer(k).quantize_softmax);

  for (int l = 0; l < L; ++l) {
    double kl = 0, dppl = 0, changed = 0;
    for (std::size_t t = 0; t < r.taps.size(); ++t) {
      kl += r.cell(l, t).kl;
      dppl += r.cell(l, t).ppl - r.ppl_fp;
      changed += 1 - r.cell(l, t).top1_agreement;
    }
    EXPECT_NEAR(r.layer_sum(l).kl, kl, 1e-12);
    EXPECT_NEAR(r.layer_sum(l).ppl, dppl, 1e-9);
    EXPECT_NEAR(r.layer_sum(l).top1_agreement, changed, 1e-12);
  }
  for (std::size_t t = 0; t < r.taps.size(); ++t) {
    double kl = 0;
    for (int l = 0; l < L; ++l) kl += r.cell(l, t).kl;
    EXPECT_NEAR(r.tap_sum(t).kl, kl, 1e-12);
  }
}

TEST_F(Sensitivity, NothingToProbeAndCancel) {
  auto q = rptq::quantize_for_sensitivity(rptq::Model::load(model_dir()), *stats_, rptq::QuantConfig::preset("W4A16"),
                                          rptq::RangeStat::Ema, 0);
  rptq::PerplexityOptions po;
  po.seqlen = 64;
  EXPECT_THROW(rptq::activation_sensitivity(*q, *ids_, po), rptq::InputError);
  auto q8 = rptq::quantize_for_sensitivity(rptq::Model::load(model_dir()), *stats_, rptq::QuantConfig::preset("W4A8"),
                                           rptq::RangeStat::Ema, 0);
  EXPECT_THROW(rptq::activation_sensitivity(*q8, *ids_, po, [](std::int64_t d, std::int64_t) { return d < 3; }),
               rptq::Cancelled);
}

// A result for the file tests, measured once: W4A8 on one 64-token window.
rptq::SensitivityResult measure_w4a8(const rptq::ChannelStats& stats, const std::vector<std::int32_t>& ids) {
  auto q = rptq::quantize_for_sensitivity(rptq::Model::load(model_dir()), stats, rptq::QuantConfig::preset("W4A8"),
                                          rptq::RangeStat::Ema, 0);
  rptq::PerplexityOptions po;
  po.seqlen = 64;
  po.max_windows = 1;
  return rptq::activation_sensitivity(*q, ids, po);
}

rptq::PerplexityOptions windows(std::int64_t seqlen, std::int64_t max_windows) {
  rptq::PerplexityOptions po;
  po.seqlen = seqlen;
  po.max_windows = max_windows;
  return po;
}

void expect_same_result(const rptq::SensitivityResult& a, const rptq::SensitivityResult& b) {
  EXPECT_EQ(a.taps, b.taps);
  EXPECT_EQ(a.layers, b.layers);
  ASSERT_EQ(a.cells.size(), b.cells.size());
  for (std::size_t i = 0; i < a.cells.size(); ++i) {  // JSON numbers round-trip doubles exactly
    EXPECT_EQ(a.cells[i].kl, b.cells[i].kl);
    EXPECT_EQ(a.cells[i].ppl, b.cells[i].ppl);
    EXPECT_EQ(a.cells[i].top1_agreement, b.cells[i].top1_agreement);
  }
  EXPECT_EQ(a.ppl_fp, b.ppl_fp);
  EXPECT_EQ(a.windows, b.windows);
  EXPECT_EQ(a.seqlen, b.seqlen);
  EXPECT_EQ(a.positions, b.positions);
}

TEST_F(Sensitivity, SavedResultsReloadExactlyAndReplaceTheirOwnSetting) {
  EXPECT_EQ(rptq::sensitivity_file_for("/a/b/s.h5"), std::filesystem::path("/a/b/s.sensitivity.json"));
  EXPECT_EQ(rptq::sensitivity_file_for("/a/b/stats"), std::filesystem::path("/a/b/stats.sensitivity.json"));
  EXPECT_EQ(rptq::sensitivity_file_for("s.hdf5"), std::filesystem::path("s.hdf5.sensitivity.json"));

  const auto dir = rptq::test::temp_dir("sensitivity-save");
  const std::string sf = (dir / "s.h5").string();
  const auto file = rptq::sensitivity_file_for(sf);
  const rptq::SensitivityResult r = measure_w4a8(*stats_, *ids_);
  const std::string sha = rptq::sha256_file(stories());
  const rptq::QuantConfig w4a8 = rptq::QuantConfig::preset("W4A8");
  rptq::SensitivityRecord a;
  a.setting =
      rptq::make_sensitivity_setting(w4a8, rptq::RangeStat::Ema, 0, *stats_, sf, stories(), sha, windows(64, 1));
  a.result = r;
  rptq::save_sensitivity(file, a);
  ASSERT_TRUE(std::filesystem::is_regular_file(file));
  auto recs = rptq::load_sensitivity_file(file);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_FALSE(recs[0].created.empty());
  EXPECT_EQ(recs[0].setting.preset, "W4A8");
  EXPECT_EQ(recs[0].setting.description, w4a8.describe());
  EXPECT_EQ(recs[0].setting.stats_path, sf);
  EXPECT_EQ(recs[0].setting.data_sha256, sha);
  EXPECT_TRUE(recs[0].setting.same_measurement(a.setting));
  expect_same_result(recs[0].result, r);

  // What makes another measurement, and what does not.
  auto with = [&](const std::function<void(rptq::SensitivitySetting&)>& change) {
    rptq::SensitivitySetting s = a.setting;
    change(s);
    return rptq::find_sensitivity(recs, s) != nullptr;
  };
  EXPECT_TRUE(with([](auto& s) { s.data_path = "/elsewhere/stories.txt"; }));  // same bytes, moved
  EXPECT_TRUE(with([](auto& s) { s.preset = "custom"; }));                     // a name, the same bits
  EXPECT_TRUE(with([](auto& s) { s.stats_path = "/elsewhere/s.h5"; }));
  EXPECT_FALSE(with([](auto& s) { s.data_sha256[0] = s.data_sha256[0] == '0' ? '1' : '0'; }));
  EXPECT_FALSE(with([](auto& s) { s.max_windows = 2; }));
  EXPECT_FALSE(with([](auto& s) { s.seqlen = 128; }));
  EXPECT_FALSE(with([](auto& s) { s.abits[static_cast<int>(Tap::Q)] = 4; }));
  EXPECT_FALSE(with([](auto& s) { s.softmax_bits = 16; }));
  EXPECT_FALSE(with([](auto& s) { s.clusters[0] = 8; }));
  EXPECT_FALSE(with([](auto& s) { s.grid = rptq::QuantGrid::Reference; }));
  EXPECT_FALSE(with([](auto& s) { s.stat = rptq::RangeStat::MinMax; }));
  EXPECT_FALSE(with([](auto& s) { s.seed = 1; }));
  EXPECT_FALSE(with([](auto& s) { s.overrides = {"layers=0,q:abits=4"}; }));
  EXPECT_FALSE(with([](auto& s) { s.stats_created = "2001-01-01T00:00:00Z"; }));  // calibrated again
  // Weights are FP in every probe: a setting differing only in its weights is the same measurement.
  rptq::QuantConfig w8 = w4a8;
  w8.wbits = 8;
  w8.weight_method = rptq::WeightMethod::RTN;
  EXPECT_NE(rptq::find_sensitivity(recs, rptq::make_sensitivity_setting(w8, rptq::RangeStat::Ema, 0, *stats_, sf,
                                                                        stories(), sha, windows(64, 1))),
            nullptr);

  // A second setting adds a record; re-running the first replaces its record.
  rptq::SensitivityRecord b = a;
  b.setting = rptq::make_sensitivity_setting(rptq::QuantConfig::preset("W4A4"), rptq::RangeStat::Ema, 0, *stats_, sf,
                                             stories(), sha, windows(64, 1));
  b.result.cells[0].kl = 0.5;
  rptq::save_sensitivity(file, b);
  rptq::SensitivityRecord a2 = a;
  a2.result.cells[3].kl = 0.25;
  rptq::save_sensitivity(file, a2);
  recs = rptq::load_sensitivity_file(file);
  ASSERT_EQ(recs.size(), 2u);
  ASSERT_NE(rptq::find_sensitivity(recs, a.setting), nullptr);
  EXPECT_EQ(rptq::find_sensitivity(recs, a.setting)->result.cells[3].kl, 0.25);
  EXPECT_EQ(rptq::find_sensitivity(recs, b.setting)->result.cells[0].kl, 0.5);
  // Statistics calibrated again at the same path: the earlier file's records are dropped on the next save.
  rptq::SensitivityRecord c = a;
  c.setting.stats_created = "2030-01-01T00:00:00Z";
  rptq::save_sensitivity(file, c);
  recs = rptq::load_sensitivity_file(file);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].setting.stats_created, "2030-01-01T00:00:00Z");
  // Non-finite values survive as NaN (JSON has no infinity).
  rptq::SensitivityRecord d = a;
  d.result.cells[1].ppl = std::numeric_limits<double>::infinity();
  rptq::save_sensitivity(file, d);
  recs = rptq::load_sensitivity_file(file);
  EXPECT_TRUE(std::isnan(rptq::find_sensitivity(recs, d.setting)->result.cells[1].ppl));
  // No temporary file is left beside it.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1);
}

TEST_F(Sensitivity, DamagedSensitivityFilesAreRefusedNamingTheFile) {
  const auto dir = rptq::test::temp_dir("sensitivity-damaged");
  const auto file = dir / "s.sensitivity.json";
  // A valid file to damage.
  rptq::SensitivityRecord rec;
  rec.setting = rptq::make_sensitivity_setting(rptq::QuantConfig::preset("W4A8"), rptq::RangeStat::Ema, 0, *stats_,
                                               (dir / "s.h5").string(), stories(), "abc", windows(64, 1));
  rec.result.taps = {"attn_input", "q"};
  rec.result.layers = 2;
  rec.result.cells = {{0.1, 2.0, 0.9}, {0.2, 2.1, 0.8}, {0.3, 2.2, 0.7}, {0.4, 2.3, 0.6}};
  rec.result.ppl_fp = 1.9;
  rec.result.windows = 1;
  rec.result.seqlen = 64;
  rec.result.positions = 63;
  rptq::save_sensitivity(file, rec);
  const std::string good = rptq::test::read_file(file);
  ASSERT_EQ(rptq::load_sensitivity_file(file).size(), 1u);

  auto refused = [&](const std::string& bytes, const std::string& why) {
    SCOPED_TRACE(why);
    rptq::test::write_file(file, bytes);
    try {
      (void)rptq::load_sensitivity_file(file);
      ADD_FAILURE() << "accepted";
    } catch (const rptq::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
    // Saving into it leaves it as it is.
    EXPECT_THROW(rptq::save_sensitivity(file, rec), rptq::InputError);
    EXPECT_EQ(rptq::test::read_file(file), bytes);
  };
  auto edit = [&](const std::function<void(nlohmann::json&)>& f) {
    nlohmann::json j = nlohmann::json::parse(good);
    f(j);
    return j.dump();
  };
  refused(good.substr(0, good.size() / 2), "not JSON");
  refused("", "not JSON");
  refused("{\"taps\": []}", "not a sensitivity file");
  refused("[1, 2]", "not a sensitivity file");
  refused(edit([](auto& j) { j["version"] = 2; }), "version 2");
  refused(edit([](auto& j) { j["records"] = 3; }), "\"records\" is not a list");
  refused(edit([](auto& j) { j["records"][0]["result"]["cells"][1].erase(0); }), "one cell per tap");
  refused(edit([](auto& j) { j["records"][0]["result"]["layers"] = 3; }), "one row per layer");
  refused(edit([](auto& j) { j["records"][0]["result"]["cells"][0][0] = {0.1, 2.0}; }), "[kl, ppl, top1_agreement]");
  refused(edit([](auto& j) { j["records"][0]["result"]["cells"][0][0][0] = "x"; }), "kl is not a number");
  refused(edit([](auto& j) { j["records"][0]["result"]["taps"][1] = "qq"; }), "\"qq\" is not a tap name");
  refused(edit([](auto& j) { j["records"][0]["result"]["taps"][1] = "attn_input"; }), "repeats");
  refused(edit([](auto& j) { j["records"][0]["setting"].erase("data_sha256"); }), "\"data_sha256\" is missing");
  refused(edit([](auto& j) { j["records"][0]["setting"]["abits"]["q"] = 9; }), "not 2..8 or 16");
  refused(edit([](auto& j) { j["records"][0]["setting"]["seqlen"] = -5; }), "out of range");
  refused(edit([](auto& j) { j["records"][0]["setting"]["grid"] = "odd"; }), "odd");
  // A missing file, and a folder.
  std::filesystem::remove(file);
  EXPECT_THROW((void)rptq::load_sensitivity_file(file), rptq::InputError);
  EXPECT_THROW((void)rptq::load_sensitivity_file(dir), rptq::InputError);
}

// A hand-made result: every tap and the softmax over 12 layers (OPT-125m's count, for the memory model), KL chosen
// so the ranking is known.
rptq::SensitivityResult hand_made() {
  rptq::SensitivityResult r;
  for (Tap t : rptq::kAllTaps) r.taps.emplace_back(rptq::tap_name(t));
  r.taps.emplace_back("softmax");
  r.layers = 12;
  r.ppl_fp = 10;
  r.cells.assign(12 * 8, {1e-4, 10.01, 0.99});
  auto set = [&](int l, std::size_t t, double kl) { r.cells[static_cast<std::size_t>(l) * 8 + t].kl = kl; };
  set(5, 7, 9.0);   // softmax: the largest, not overridable
  set(3, 2, 8.0);   // k: the KV cache, not overridable
  set(1, 3, 7.0);   // v: neither
  set(5, 6, 5.0);   // layer 5 ffn_hidden
  set(0, 0, 4.0);   // layer 0 attn_input (8-bit in W4A4: kept at 8 it is not eligible)
  set(2, 1, 3.0);   // layer 2 q
  set(7, 6, 2.0);   // layer 7 ffn_hidden
  set(9, 4, 2.0);   // layer 9 attn_output: ties with layer 7's, ranked after it (layer order)
  set(4, 4, 1.0);
  return r;
}

TEST(SensitivitySuggestion, KeepsTheMostSensitiveEligibleProbes) {
  const rptq::SensitivityResult r = hand_made();
  const rptq::QuantConfig w4a4 = rptq::QuantConfig::preset("W4A4");
  const rptq::SensitivitySuggestion s = rptq::suggest_overrides(r, w4a4, 4, 8);
  EXPECT_EQ(s.bits, 8);
  ASSERT_EQ(s.kept.size(), 4u);
  EXPECT_EQ(s.kept[0].layer, 5);
  EXPECT_EQ(s.kept[0].tap, Tap::FfnHidden);
  EXPECT_EQ(s.kept[0].kl, 5.0);
  EXPECT_EQ(s.kept[0].from_bits, 4);
  EXPECT_EQ(s.kept[1].layer, 2);
  EXPECT_EQ(s.kept[1].tap, Tap::Q);
  EXPECT_EQ(s.kept[2].layer, 7);
  EXPECT_EQ(s.kept[2].tap, Tap::FfnHidden);
  EXPECT_EQ(s.kept[3].layer, 9);
  EXPECT_EQ(s.kept[3].tap, Tap::AttnOutput);
  // One spec per tap, in tap order, its layers ascending.
  EXPECT_EQ(s.overrides, (std::vector<std::string>{"layers=2,q:abits=8", "layers=9,attn_output:abits=8",
                                                    "layers=5+7,ffn_hidden:abits=8"}));
  // Applied, exactly those probes get 8 bits (through QuantConfig's own override logic).
  const rptq::QuantConfig q = rptq::apply_suggestion(w4a4, s);
  for (int l = 0; l < 12; ++l)
    for (Tap t : rptq::kAllTaps) {
      bool kept = false;
      for (const auto& k : s.kept) kept = kept || (k.layer == l && k.tap == t);
      EXPECT_EQ(q.bits(l, t), kept ? 8 : w4a4.bits(l, t)) << l << " " << rptq::tap_name(t);
    }
  EXPECT_EQ(q.softmax_bits, w4a4.softmax_bits);

  // At 16 bits the 8-bit norm outputs are eligible too: layer 0's attn_input ranks after layer 5's FFN hidden.
  const auto s16 = rptq::suggest_overrides(r, w4a4, 2, 16);
  ASSERT_EQ(s16.kept.size(), 2u);
  EXPECT_EQ(s16.kept[1].tap, Tap::AttnInput);
  EXPECT_EQ(s16.kept[1].from_bits, 8);
  EXPECT_EQ(s16.overrides, (std::vector<std::string>{"layers=0,attn_input:abits=16", "layers=5,ffn_hidden:abits=16"}));
  // N = 0 keeps nothing; a large N keeps every eligible probe (12 layers x 5 taps at 16 bits).
  EXPECT_TRUE(rptq::suggest_overrides(r, w4a4, 0).overrides.empty());
  EXPECT_EQ(rptq::suggest_overrides(r, w4a4, 1000, 16).kept.size(), 12u * 5);
  EXPECT_EQ(rptq::suggest_overrides(r, w4a4, 1000, 8).kept.size(), 12u * 3);
  // Probes the setting's own overrides already keep at the bits are not suggested again.
  rptq::QuantConfig o = w4a4;
  o.overrides.push_back(rptq::parse_override("layers=5,ffn_hidden:abits=8"));
  EXPECT_EQ(rptq::suggest_overrides(r, o, 1).kept[0].layer, 2);
  // A NaN KL (a probe that broke) ranks first.
  rptq::SensitivityResult nan = r;
  nan.cells[11 * 8 + 4].kl = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(rptq::suggest_overrides(nan, w4a4, 1).overrides, std::vector<std::string>{"layers=11,attn_output:abits=8"});
  // Bad input.
  EXPECT_THROW(rptq::suggest_overrides(r, w4a4, -1), rptq::InputError);
  EXPECT_THROW(rptq::suggest_overrides(r, w4a4, 1, 9), rptq::InputError);
  EXPECT_THROW(rptq::suggest_overrides(r, w4a4, 1, 1), rptq::InputError);
  rptq::SensitivityResult bad = r;
  bad.taps[0] = "nonsense";
  EXPECT_THROW(rptq::suggest_overrides(bad, w4a4, 1), rptq::InputError);
}

TEST(SensitivitySuggestion, MemoryCostIsTheMemoryModelsWithAndWithout) {
  // OPT-125m (d 768, ffn 3072), one sequence of 100 tokens, W4A4: the FFN hidden at 4 bits (T f / 2 bytes) is the
  // activation peak. Keeping layer 5's and 7's at 8 bits doubles it in those layers: + T f / 2 bytes, nothing else.
  const auto model = rptq::opt_arch("opt-125m");
  const rptq::QuantConfig w4a4 = rptq::QuantConfig::preset("W4A4");
  const rptq::SensitivityResult r = hand_made();
  const auto s = rptq::suggest_overrides(r, w4a4, 4, 8);
  const rptq::SuggestionMemory m = rptq::suggestion_memory(model, w4a4, s, 1, 100);
  const std::uint64_t T = 100, f = 3072;
  EXPECT_EQ(m.before.total_bytes, rptq::estimate_memory(model, w4a4, 1, 100).total_bytes);
  EXPECT_EQ(m.after.ffn_bytes, T * f);
  EXPECT_EQ(m.before.ffn_bytes, T * f / 2);
  EXPECT_EQ(m.delta_bytes(), static_cast<std::int64_t>(T * f / 2));
  EXPECT_EQ(m.after.weights_bytes, m.before.weights_bytes);
  EXPECT_EQ(m.after.kv_cache_bytes, m.before.kv_cache_bytes);
  // An empty suggestion costs nothing.
  EXPECT_EQ(rptq::suggestion_memory(model, w4a4, rptq::suggest_overrides(r, w4a4, 0), 1, 100).delta_bytes(), 0);
}

TEST_F(Sensitivity, WeightBitOverridesDoNotStopTheProbe) {
  // The probe keeps weights in FP: a setting with weight-bit overrides probes as the setting without them.
  rptq::QuantConfig cfg = rptq::QuantConfig::preset("W4A8");
  cfg.overrides.push_back(rptq::parse_override("layers=0,ffn_hidden:wbits=8"));
  cfg.overrides.push_back(rptq::parse_override("layers=1,q:abits=4"));
  auto q = rptq::quantize_for_sensitivity(rptq::Model::load(model_dir()), *stats_, cfg, rptq::RangeStat::Ema, 0);
  EXPECT_FALSE(q->config().quantizes_weights());
  EXPECT_EQ(q->config().bits(1, Tap::Q), 4);
  EXPECT_EQ(q->config().weight_bits(0, Tap::FfnHidden), rptq::kFullPrecisionBits);
}

TEST_F(Sensitivity, CliPrintsTheLibrarysNumbers) {
  const auto dir = rptq::test::temp_dir("sensitivity-cli");
  const std::string sf = (dir / "s.h5").string();
  rptq::save_stats(sf, *stats_, true);
  const rptq::test::CliRun r =
      rptq::test::rptq_cli({"sensitivity", model_dir().string(), "--stats", sf, "--preset", "W4A8", "--data",
                            stories(), "--seqlen", "64", "--max-windows", "2", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  auto q = rptq::quantize_for_sensitivity(rptq::Model::load(model_dir()), *stats_, rptq::QuantConfig::preset("W4A8"),
                                          rptq::RangeStat::Ema, 0);
  rptq::PerplexityOptions po;
  po.seqlen = 64;
  po.max_windows = 2;
  const rptq::SensitivityResult lib = rptq::activation_sensitivity(*q, *ids_, po);
  ASSERT_EQ(j["taps"].size(), lib.taps.size());
  ASSERT_EQ(j["cells"].size(), lib.cells.size());
  EXPECT_FALSE(j["weights_quantized"].get<bool>());
  for (std::size_t i = 0; i < lib.cells.size(); ++i) {
    EXPECT_DOUBLE_EQ(j["cells"][i]["kl"].get<double>(), lib.cells[i].kl);
    EXPECT_DOUBLE_EQ(j["cells"][i]["ppl"].get<double>(), lib.cells[i].ppl);
  }
  EXPECT_DOUBLE_EQ(j["per_tap"]["ffn_hidden"]["kl"].get<double>(), lib.tap_sum(6).kl);
  EXPECT_DOUBLE_EQ(j["per_layer"][0]["kl"].get<double>(), lib.layer_sum(0).kl);
  // Text output names the worst probes; bad input is exit 2.
  const rptq::test::CliRun t = rptq::test::rptq_cli({"sensitivity", model_dir().string(), "--stats", sf, "--preset",
                                                     "W4A8", "--data", stories(), "--seqlen", "64", "--max-windows",
                                                     "1"});
  EXPECT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("worst:"), std::string::npos);
  EXPECT_EQ(rptq::test::rptq_cli({"sensitivity", model_dir().string(), "--stats", sf, "--preset", "W4A16", "--data",
                                  stories(), "--seqlen", "64"})
                .code,
            2);
}

TEST_F(Sensitivity, CliSavesBesideTheStatisticsAndSuggests) {
  const auto dir = rptq::test::temp_dir("sensitivity-cli-save");
  const std::string sf = (dir / "s.h5").string();
  rptq::save_stats(sf, *stats_, true);
  const std::vector<std::string> base = {"sensitivity", model_dir().string(), "--stats", sf, "--preset", "W4A4",
                                         "--data", stories(), "--seqlen", "64", "--max-windows", "1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return rptq::test::rptq_cli(a);
  };
  const rptq::test::CliRun r = with({"--save", "--suggest", "3", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto file = rptq::sensitivity_file_for(sf);
  EXPECT_EQ(j["saved"].get<std::string>(), file.string());
  // The saved record holds the printed numbers, under the setting the workbench will look for.
  const auto recs = rptq::load_sensitivity_file(file);
  ASSERT_EQ(recs.size(), 1u);
  const rptq::ChannelStats reread = rptq::load_stats(sf);
  const rptq::SensitivitySetting want =
      rptq::make_sensitivity_setting(rptq::QuantConfig::preset("W4A4"), reread.settings.stat, 0, reread, sf, stories(),
                                     rptq::sha256_file(stories()), windows(64, 1));
  ASSERT_NE(rptq::find_sensitivity(recs, want), nullptr);
  const rptq::SensitivityResult& saved = recs[0].result;
  ASSERT_EQ(j["cells"].size(), saved.cells.size());
  for (std::size_t i = 0; i < saved.cells.size(); ++i) EXPECT_EQ(j["cells"][i]["kl"].get<double>(), saved.cells[i].kl);
  // The suggestion is the library's for that result, and its memory the memory model's.
  const rptq::QuantConfig w4a4 = rptq::QuantConfig::preset("W4A4");
  const auto s = rptq::suggest_overrides(saved, w4a4, 3, 8);
  EXPECT_EQ(j["suggestion"]["overrides"].get<std::vector<std::string>>(), s.overrides);
  ASSERT_EQ(j["suggestion"]["kept"].size(), 3u);
  EXPECT_EQ(j["suggestion"]["kept"][0]["kl"].get<double>(), s.kept[0].kl);
  const auto cfg = rptq::Model::load(model_dir())->config();
  const auto m = rptq::suggestion_memory(cfg, w4a4, s, 1, cfg.max_positions);
  EXPECT_EQ(j["suggestion"]["memory"]["seqlen"].get<std::int64_t>(), cfg.max_positions);
  EXPECT_EQ(j["suggestion"]["memory"]["before"]["total_bytes"].get<std::uint64_t>(), m.before.total_bytes);
  EXPECT_EQ(j["suggestion"]["memory"]["after"]["total_bytes"].get<std::uint64_t>(), m.after.total_bytes);
  EXPECT_EQ(j["suggestion"]["memory"]["delta_bytes"].get<std::int64_t>(), m.delta_bytes());
  // The suggested overrides are accepted by the commands that quantize (eval here, quickly: RTN, one window).
  std::vector<std::string> eval = {"eval", model_dir().string(), "--stats", sf, "--preset", "W4A4", "--weights", "rtn",
                                   "--data", stories(), "--seqlen", "64", "--max-windows", "1", "--no-sequential"};
  for (const auto& o : s.overrides) {
    eval.push_back("--override");
    eval.push_back(o);
  }
  EXPECT_EQ(rptq::test::rptq_cli(eval).code, 0);

  // Text output prints the --override arguments and the memory line.
  const rptq::test::CliRun t = with({"--suggest", "2", "--suggest-bits", "16"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("--override \"layers="), std::string::npos) << t.out;
  EXPECT_NE(t.out.find(":abits=16\""), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("memory (batch 1 x"), std::string::npos) << t.out;

  // --out writes elsewhere; a damaged target is refused before the probes run, naming it, and left as it is.
  const std::string other = (dir / "other.json").string();
  EXPECT_EQ(with({"--out", other}).code, 0);
  EXPECT_EQ(rptq::load_sensitivity_file(other).size(), 1u);
  rptq::test::write_file(other, "{not json");
  const rptq::test::CliRun bad = with({"--out", other});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find(other), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  EXPECT_EQ(rptq::test::read_file(other), "{not json");
  // --suggest-bits needs --suggest; bits outside 2..8 and 16 are refused.
  EXPECT_EQ(with({"--suggest-bits", "8"}).code, 2);
  EXPECT_EQ(with({"--suggest", "1", "--suggest-bits", "12"}).code, 2);
}

}  // namespace
