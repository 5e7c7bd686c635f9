// QuantConfig: the presets mean exactly what the reference's settings mean (rptq-method.md), and bad settings are
// refused with a message naming them.
#include "rptq/base/error.h"
#include "rptq/method/quant_config.h"
#include "test_support.h"

namespace {

using rptq::QuantConfig;
using rptq::Tap;

std::vector<int> bits(const QuantConfig& c) { return {c.abits.begin(), c.abits.end()}; }
// Order of Tap: attn_input, q, k, v, attn_output, ffn_input, ffn_hidden.

TEST(QuantConfig, PresetsHaveTheReferenceMeaning) {
  const int F = rptq::kFullPrecisionBits;
  struct Row {
    const char* name;
    int w;
    std::vector<int> a;
    int softmax;
  };
  const Row rows[] = {
      {"W16A16", F, {F, F, F, F, F, F, F}, F},
      {"W4A16", 4, {F, F, F, F, F, F, F}, F},
      {"W4A8", 4, {8, 8, 8, 8, 8, 8, 8}, 8},
      // out_proj input, fc2 input, Q, K, V at 4; the two LayerNorm outputs stay 8-bit.
      {"W4A4", 4, {8, 4, 4, 4, 4, 8, 4}, 8},
      {"W4A4KV", 4, {F, F, 4, 4, F, F, F}, F},
      {"W4A3KV", 4, {F, F, 3, 3, F, F, F}, F},
      {"W3A3KV", 3, {F, F, 3, 3, F, F, F}, F},
  };
  ASSERT_EQ(QuantConfig::preset_names().size(), std::size(rows));
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    const QuantConfig c = QuantConfig::preset(r.name);
    EXPECT_EQ(c.name, r.name);
    EXPECT_EQ(c.wbits, r.w);
    EXPECT_EQ(bits(c), r.a);
    EXPECT_EQ(c.softmax_bits, r.softmax);
    EXPECT_EQ(c.clusters, (std::array<int, 5>{32, 4, 4, 32, 32}));  // the reference's defaults
    EXPECT_EQ(c.weight_method, rptq::WeightMethod::GPTQ);
    EXPECT_NO_THROW(c.validate());
  }
  EXPECT_EQ(QuantConfig::preset("w4a4kv").kv_bits(), 4);  // case-insensitive
  EXPECT_EQ(QuantConfig::preset("W4A16").kv_bits(), F);
  EXPECT_FALSE(QuantConfig::preset("W4A16").quantizes_activations());
  EXPECT_TRUE(QuantConfig::preset("W4A4KV").quantizes_activations());
}

TEST(QuantConfig, CustomBits) {
  const QuantConfig c = QuantConfig::custom(3, 6, 4);
  EXPECT_EQ(c.wbits, 3);
  EXPECT_EQ(bits(c), (std::vector<int>{6, 6, 4, 4, 6, 6, 6}));
  EXPECT_EQ(c.softmax_bits, 8);
  EXPECT_EQ(c.name, "W3A6KV4");
  const QuantConfig w = QuantConfig::custom(4, 16, 16);
  EXPECT_EQ(w.softmax_bits, rptq::kFullPrecisionBits);
  EXPECT_THROW(QuantConfig::custom(1, 8, 8), rptq::InputError);
  EXPECT_THROW(QuantConfig::custom(4, 9, 8), rptq::InputError);
  EXPECT_THROW(QuantConfig::custom(4, 8, 12), rptq::InputError);
}

TEST(QuantConfig, ParseClusters) {
  QuantConfig c;
  rptq::parse_clusters("R1=16,r3=2", c);
  EXPECT_EQ(c.clusters, (std::array<int, 5>{16, 4, 2, 32, 32}));
  rptq::parse_clusters("1", c);
  EXPECT_EQ(c.clusters, (std::array<int, 5>{1, 1, 1, 1, 1}));
  EXPECT_EQ(c.clusters_of(5), 1);
  for (const char* bad : {"R6=3", "R1=0", "R1=x", "R1", "0", "-2", "R1=4,,R2=3", "R12=4"}) {
    try {
      rptq::parse_clusters(bad, c);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const rptq::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("clusters: "), std::string::npos) << e.what();
    }
  }
}

TEST(QuantConfig, NamesAndErrors) {
  try {
    QuantConfig::preset("W2A2");
    FAIL();
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("W4A4KV"), std::string::npos) << e.what();  // lists the known names
  }
  EXPECT_EQ(rptq::parse_grid("Reference"), rptq::QuantGrid::Reference);
  EXPECT_EQ(rptq::parse_range_stat("minmax"), rptq::RangeStat::MinMax);
  EXPECT_EQ(rptq::parse_weight_method("RTN"), rptq::WeightMethod::RTN);
  EXPECT_THROW(rptq::parse_grid("fine"), rptq::InputError);
  EXPECT_THROW(rptq::parse_range_stat("mean"), rptq::InputError);
  EXPECT_THROW(rptq::parse_weight_method("awq"), rptq::InputError);
  QuantConfig c = QuantConfig::preset("W4A4");
  c.softmax_bits = 4;
  EXPECT_THROW(c.validate(), rptq::InputError);
  const std::string d = QuantConfig::preset("W4A4").describe();
  EXPECT_NE(d.find("q k v attn_output ffn_hidden 4-bit"), std::string::npos) << d;
  EXPECT_NE(d.find("attn_input ffn_input 8-bit"), std::string::npos) << d;
}

}  // namespace
