// The run history: records round-trip with their whole setting, appends from several processes at once lose
// nothing, the file stays bounded, and a damaged or foreign file is refused by name.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "rptq/base/error.h"
#include "rptq/io/run_history.h"
#include "rptq/method/quant_config_json.h"
#include "test_support.h"

namespace {

rptq::QuantConfig mixed_setting() {
  rptq::QuantConfig c = rptq::QuantConfig::preset("W4A4");
  c.clusters = {8, 2, 3, 16, 12};
  c.weight_method = rptq::WeightMethod::RTN;
  c.weight_clip = rptq::WeightClip::Mse;
  c.grid = rptq::QuantGrid::Reference;
  c.fp_prefix = 1;
  c.gptq_damp = 0.05;
  c.gptq_block = 64;
  c.overrides.push_back(rptq::parse_override("layers=0-2,ffn_hidden:abits=8,clusters=4"));
  c.overrides.push_back(rptq::parse_override("layers=3,attn_input:wbits=8"));
  return c;
}

void expect_same_setting(const rptq::QuantConfig& a, const rptq::QuantConfig& b) {
  EXPECT_EQ(a.describe(), b.describe());
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.wbits, b.wbits);
  EXPECT_EQ(a.abits, b.abits);
  EXPECT_EQ(a.softmax_bits, b.softmax_bits);
  EXPECT_EQ(a.clusters, b.clusters);
  EXPECT_EQ(a.weight_method, b.weight_method);
  EXPECT_EQ(a.weight_group, b.weight_group);
  EXPECT_EQ(a.weight_clip, b.weight_clip);
  EXPECT_EQ(a.act_order, b.act_order);
  EXPECT_EQ(a.grid, b.grid);
  EXPECT_EQ(a.range_mode, b.range_mode);
  EXPECT_EQ(a.fp_prefix, b.fp_prefix);
  EXPECT_EQ(a.gptq_damp, b.gptq_damp);
  EXPECT_EQ(a.gptq_block, b.gptq_block);
  EXPECT_EQ(a.overrides_spec(), b.overrides_spec());
}

TEST(RunHistory, SettingRoundTripsThroughJson) {
  for (const std::string& p : rptq::QuantConfig::preset_names()) {
    SCOPED_TRACE(p);
    const rptq::QuantConfig c = rptq::QuantConfig::preset(p);
    expect_same_setting(rptq::quant_config_from_json(rptq::quant_config_json(c), "test"), c);
  }
  const rptq::QuantConfig m = mixed_setting();
  const rptq::QuantConfig back = rptq::quant_config_from_json(nlohmann::json::parse(rptq::quant_config_json(m).dump()), "t");
  expect_same_setting(back, m);
  EXPECT_EQ(back.bits(1, rptq::Tap::FfnHidden), 8);
  EXPECT_EQ(back.clusters_of(2, 5), 4);
  EXPECT_EQ(back.weight_bits(3, rptq::Tap::AttnInput), 8);
  // Bad settings are refused naming the key.
  auto broken = [&](const std::function<void(nlohmann::json&)>& f, const std::string& key) {
    nlohmann::json j = rptq::quant_config_json(m);
    f(j);
    try {
      (void)rptq::quant_config_from_json(j, "FILE");
      ADD_FAILURE() << "accepted a setting with bad " << key;
    } catch (const rptq::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("FILE"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  broken([](nlohmann::json& j) { j.erase("wbits"); }, "wbits");
  broken([](nlohmann::json& j) { j["wbits"] = "four"; }, "wbits");
  broken([](nlohmann::json& j) { j["abits"]["q"] = 99; }, "bits");
  broken([](nlohmann::json& j) { j["clusters"]["R3"] = 0; }, "cluster");
  broken([](nlohmann::json& j) { j["grid"] = "weird"; }, "weird");
  broken([](nlohmann::json& j) { j["overrides"] = {"k:abits=8"}; }, "k:abits=8");
  broken([](nlohmann::json& j) { j["ranges"] = 3; }, "ranges");
}

TEST(RunHistory, AppendLoadRemoveAndPerModel) {
  const auto dir = rptq::test::temp_dir("run-history");
  const rptq::RunHistory h(dir / "sub" / "history.json");
  EXPECT_TRUE(h.load().empty());  // no file yet
  rptq::RunRecord a = rptq::new_run_record("compare", "models/a", "a.h5", mixed_setting());
  a.options = {{"data", {"x.txt", "y.txt"}}, {"seqlen", 64}};
  a.results = {{"ppl_fp", 12.5}, {"ppl_q", 13.25}, {"kl", 0.125}};
  rptq::RunRecord b = rptq::new_run_record("quantize", "models/b", "", rptq::QuantConfig::preset("W4A8"));
  h.append(a);
  h.append(b);
  EXPECT_NE(a.id, b.id);
  EXPECT_TRUE(std::filesystem::path(a.model).is_absolute());
  EXPECT_EQ(a.model_name, "a");
  EXPECT_EQ(a.created.size(), 20u);  // 2026-12-07T14:30:00Z
  const auto runs = h.load();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].id, a.id);
  EXPECT_EQ(runs[0].kind, "compare");
  EXPECT_EQ(runs[0].results, a.results);
  EXPECT_EQ(runs[0].options, a.options);
  expect_same_setting(runs[0].setting, a.setting);
  EXPECT_EQ(runs[1].stats, "");
  const auto of_a = rptq::RunHistory::of_model(runs, (std::filesystem::current_path() / "models" / "." / "a").string());
  ASSERT_EQ(of_a.size(), 1u);
  EXPECT_EQ(of_a[0].id, a.id);
  EXPECT_TRUE(h.remove(a.id));
  EXPECT_FALSE(h.remove(a.id));
  ASSERT_EQ(h.load().size(), 1u);
  EXPECT_EQ(h.load()[0].id, b.id);
  // No temporary file is left beside it.
  for (const auto& e : std::filesystem::directory_iterator(dir / "sub"))
    EXPECT_TRUE(e.path().filename() == "history.json" || e.path().filename() == "history.json.lock") << e.path();
}

// Two processes appending at once: every record is there afterwards (the lock serialises the read-modify-write).
TEST(RunHistory, ConcurrentAppendsLoseNothing) {
  const auto dir = rptq::test::temp_dir("run-history-concurrent");
  const rptq::RunHistory h(dir / "history.json");
  constexpr int kEach = 25;
  std::vector<pid_t> kids;
  for (int p = 0; p < 2; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        for (int i = 0; i < kEach; ++i) {
          rptq::RunRecord r = rptq::new_run_record("eval", "m", "", rptq::QuantConfig::preset("W4A8"));
          r.results = {{"process", p}, {"i", i}};
          h.append(r);
        }
      } catch (...) {
        ::_exit(1);
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(k, &status, 0), k);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  const auto runs = h.load();
  ASSERT_EQ(runs.size(), 2u * kEach);
  for (int p = 0; p < 2; ++p) {
    int next = 0;  // each process's records in its order
    for (const rptq::RunRecord& r : runs)
      if (r.results["process"] == p) {
        EXPECT_EQ(r.results["i"], next);
        ++next;
      }
    EXPECT_EQ(next, kEach);
  }
}

TEST(RunHistory, BoundedAtMaxRuns) {
  const auto dir = rptq::test::temp_dir("run-history-bounded");
  const auto file = dir / "history.json";
  // A full history written directly, then one more appended: the oldest goes.
  nlohmann::json j = {{"format", "rptq-run-history"}, {"version", 1}, {"runs", nlohmann::json::array()}};
  rptq::RunRecord r = rptq::new_run_record("eval", "m", "", rptq::QuantConfig::preset("W16A16"));
  for (std::size_t i = 0; i < rptq::RunHistory::kMaxRuns; ++i) {
    r.id = std::string("old-").append(std::to_string(i));
    j["runs"].push_back(rptq::run_record_json(r));
  }
  std::ofstream(file) << j.dump();
  rptq::RunRecord last = rptq::new_run_record("eval", "m", "", rptq::QuantConfig::preset("W16A16"));
  rptq::RunHistory(file).append(last);
  const auto runs = rptq::RunHistory(file).load();
  ASSERT_EQ(runs.size(), rptq::RunHistory::kMaxRuns);
  EXPECT_EQ(runs.front().id, "old-1");
  EXPECT_EQ(runs.back().id, last.id);
}

TEST(RunHistory, DamagedOrForeignFilesAreRefusedByName) {
  const auto dir = rptq::test::temp_dir("run-history-bad");
  const rptq::RunRecord ok = rptq::new_run_record("eval", "m", "", rptq::QuantConfig::preset("W4A8"));
  nlohmann::json broken = rptq::run_record_json(ok);
  broken["setting"] = nlohmann::json::object();
  const std::string no_setting = broken.dump();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"format\": \"rptq-run-history\", \"version\": 1, \"runs\": [", "not valid JSON"},
      {"[1, 2, 3]", "not an RPTQ run history"},
      {"{\"format\": \"something-else\", \"version\": 1, \"runs\": []}", "not an RPTQ run history"},
      {"{\"format\": \"rptq-run-history\", \"version\": 7, \"runs\": []}", "newer"},
      {"{\"format\": \"rptq-run-history\", \"version\": 1, \"runs\": {}}", "runs"},
      {"{\"format\": \"rptq-run-history\", \"version\": 1, \"runs\": [{\"id\": 3}]}", "\"id\""},
      {"{\"format\": \"rptq-run-history\", \"version\": 1, \"runs\": [" + no_setting + "]}", "setting"},
  };
  int n = 0;
  for (const auto& [text, why] : cases) {
    const auto file = dir / ("h" + std::to_string(n++) + ".json");
    std::ofstream(file) << text;
    try {
      (void)rptq::RunHistory(file).load();
      ADD_FAILURE() << "accepted: " << text;
    } catch (const rptq::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
    // Appending to a damaged history refuses too, and leaves the file as it was.
    EXPECT_THROW(rptq::RunHistory(file).append(ok), rptq::InputError);
    EXPECT_EQ(rptq::test::read_file(file), text);
  }
  // A folder where the file should be.
  std::filesystem::create_directories(dir / "folder.json");
  EXPECT_THROW((void)rptq::RunHistory(dir / "folder.json").load(), rptq::InputError);
}

TEST(RunHistory, DefaultFileFollowsTheEnvironment) {
  const char* saved_h = std::getenv("RPTQ_HISTORY");
  const char* saved_x = std::getenv("XDG_DATA_HOME");
  const std::string keep_h = saved_h ? saved_h : "", keep_x = saved_x ? saved_x : "";
  ::unsetenv("RPTQ_HISTORY");
  ::setenv("XDG_DATA_HOME", "/data/home", 1);
  EXPECT_EQ(rptq::RunHistory::default_file(), std::filesystem::path("/data/home/RPTQ/rptq-workbench/history.json"));
  ::setenv("RPTQ_HISTORY", "/x/h.json", 1);
  EXPECT_EQ(rptq::RunHistory::default_file(), std::filesystem::path("/x/h.json"));
  ::setenv("RPTQ_HISTORY", "off", 1);
  EXPECT_TRUE(rptq::RunHistory::default_file().empty());
  if (saved_h) {
    ::setenv("RPTQ_HISTORY", keep_h.c_str(), 1);
  } else {
    ::unsetenv("RPTQ_HISTORY");
  }
  if (saved_x) {
    ::setenv("XDG_DATA_HOME", keep_x.c_str(), 1);
  } else {
    ::unsetenv("XDG_DATA_HOME");
  }
}

}  // namespace
