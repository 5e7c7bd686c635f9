// The sensitivity probe (rptq::activation_sensitivity, `rptq sensitivity`): each (layer, tap) quantized alone. Its
// cells equal an independent full forward pass with only that tap's quantizer on, its sums are the sums of its
// cells, and the CLI prints the library's numbers. On the bundled stories260k model (no ../shared).
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "rptq/method/calibration.h"
#include "rptq/eval/compare.h"
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

}  // namespace
