// `rptq memory`: exit codes, one-line errors, JSON keys and values (equal to the API's), the table of presets.
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdlib>

#include "rptq/eval/memory_model.h"
#include "cli_support.h"
#include "test_support.h"

namespace {

using rptq::QuantConfig;

using rptq::test::CliRun;
using rptq::test::rptq_cli;

void expect_one_line_error(const CliRun& r, const std::string& mentions) {
  EXPECT_EQ(r.code, 2) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  EXPECT_EQ(r.err.rfind("rptq: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(mentions), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

void expect_equal_estimate(const nlohmann::json& j, const rptq::MemoryEstimate& e) {
  EXPECT_EQ(j.at("weights_bytes").get<std::uint64_t>(), e.weights_bytes);
  EXPECT_EQ(j.at("kv_cache_bytes").get<std::uint64_t>(), e.kv_cache_bytes);
  EXPECT_EQ(j.at("activation_bytes").get<std::uint64_t>(), e.activation_bytes);
  EXPECT_EQ(j.at("total_bytes").get<std::uint64_t>(), e.total_bytes);
}

TEST(CliMemory, Help) {
  const CliRun r = rptq_cli({"memory", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
  for (const char* opt : {"--arch", "--batch", "--seqlen", "--preset", "--json", "opt-66b"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt << " in " << r.out;
}

TEST(CliMemory, BadInputExitsTwo) {
  expect_one_line_error(rptq_cli({"memory", "--arch", "opt-7b", "--batch", "1", "--seqlen", "8"}), "opt-66b");
  expect_one_line_error(rptq_cli({"memory", "--arch", "opt-125m", "--batch", "0", "--seqlen", "8"}), "--batch");
  expect_one_line_error(rptq_cli({"memory", "--arch", "opt-125m", "--batch", "2", "--seqlen", "0"}), "--seqlen");
  expect_one_line_error(rptq_cli({"memory", "--batch", "1", "--seqlen", "8"}), "--arch");  // neither
  const auto dir = rptq::test::temp_dir("cli-memory-empty");
  expect_one_line_error(rptq_cli({"memory", dir.string(), "--arch", "opt-125m", "--batch", "1", "--seqlen", "8"}),
                        "not both");
  expect_one_line_error(rptq_cli({"memory", dir.string(), "--batch", "1", "--seqlen", "8"}), "config.json");
  expect_one_line_error(rptq_cli({"memory", "--arch", "opt-125m", "--batch", "1", "--seqlen", "8", "--preset", "W5A5"}),
                        "W5A5");
  // Usage errors (CLI11) also exit 2.
  EXPECT_EQ(rptq_cli({"memory", "--arch", "opt-125m", "--seqlen", "8"}).code, 2);  // --batch missing
  EXPECT_EQ(rptq_cli({"memory", "--arch", "opt-125m", "--batch", "x", "--seqlen", "8"}).code, 2);
}

TEST(CliMemory, JsonOnePresetMatchesApi) {
  const CliRun r = rptq_cli({"memory", "--arch", "opt-66b", "--batch", "64", "--seqlen", "8192", "--preset", "w4a4",
                             "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto e = rptq::estimate_memory(rptq::opt_arch("opt-66b"), QuantConfig::preset("W4A4"), 64, 8192);
  expect_equal_estimate(j, e);
  EXPECT_EQ(j["arch"], "opt-66b");
  EXPECT_EQ(j["batch"], 64);
  EXPECT_EQ(j["seqlen"], 8192);
  EXPECT_EQ(j["preset"], "W4A4");
  EXPECT_EQ(j["bits"]["weights"], 4);
  EXPECT_EQ(j["bits"]["kv"], 4);
  EXPECT_EQ(j["bits"]["attn_input"], 8);
  EXPECT_EQ(j["bits"]["softmax"], 8);
  EXPECT_EQ(j["breakdown"]["kv_param_bytes"].get<std::uint64_t>(), e.kv_param_bytes);
  EXPECT_NEAR(j["kv_cache_bytes"].get<double>() / 1e9, 309.2, 0.1);  // the paper's 4-bit KV cache
}

TEST(CliMemory, JsonAllPresets) {
  const CliRun r = rptq_cli({"memory", "--arch", "opt-66b", "--batch", "64", "--seqlen", "8192", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["arch"], "opt-66b");
  EXPECT_EQ(j["batch"], 64);
  EXPECT_EQ(j["seqlen"], 8192);
  EXPECT_FALSE(j.contains("total_bytes"));
  const auto& names = QuantConfig::preset_names();
  ASSERT_EQ(j["presets"].size(), names.size());
  const auto m = rptq::opt_arch("opt-66b");
  std::uint64_t w4a16 = 0, w4a4 = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& p = j["presets"][i];
    EXPECT_EQ(p["preset"], names[i]);
    const auto e = rptq::estimate_memory(m, QuantConfig::preset(names[i]), 64, 8192);
    expect_equal_estimate(p, e);
    if (names[i] == "W4A16") w4a16 = e.total_bytes;
    if (names[i] == "W4A4") w4a4 = e.total_bytes;
  }
  EXPECT_EQ(j["w4a4_saving_vs_w4a16_bytes"].get<std::uint64_t>(), w4a16 - w4a4);
  EXPECT_GT(w4a16 - w4a4, 900'000'000'000ull);  // the paper's headline
}

TEST(CliMemory, TableOfEveryPreset) {
  const CliRun r = rptq_cli({"memory", "--arch", "opt-66b", "--batch", "64", "--seqlen", "8192"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& name : QuantConfig::preset_names())
    EXPECT_NE(r.out.find("\n" + name + " "), std::string::npos) << name << " row in " << r.out;
  // FP16 KV cache: 2 x 64 x 9216 x 64 x 8192 x 2 = 1236950581248 bytes = 1152 GiB exactly.
  EXPECT_NE(r.out.find("1236.951 GB (1152.000 GiB)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("309.238 GB (288.000 GiB)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("W4A4 vs W4A16: saves"), std::string::npos) << r.out;
  // One preset: the breakdown.
  const CliRun one = rptq_cli({"memory", "--arch", "opt-125m", "--batch", "1", "--seqlen", "16", "--preset", "W4A16"});
  ASSERT_EQ(one.code, 0) << one.err;
  for (const char* line : {"weights", "KV cache", "activations", "total"})
    EXPECT_NE(one.out.find(line), std::string::npos) << line << " in " << one.out;
}

TEST(CliMemory, ModelFolderMatchesApi) {
  for (const char* name : {"tiny-opt-16m", "stories260k"}) {
    const auto dir = rptq::test::shared_model(name);
    const CliRun r = rptq_cli({"memory", dir.string(), "--batch", "3", "--seqlen", "40", "--preset", "W4A4", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    expect_equal_estimate(j, rptq::estimate_memory(rptq::ModelConfig::load(dir), QuantConfig::preset("W4A4"), 3, 40));
    EXPECT_EQ(j["model"], dir.string());
  }
}

}  // namespace
