// `rptq sweep`: its --json, --csv and --out print and save the library's numbers (rptq::run_sweep on the same
// statistics, text and windows), --out is never overwritten without --force, and bad options end in exit 2 with
// one line. On the bundled stories260k model with 64-token windows (no ../shared).
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <sstream>

#include "cli_support.h"
#include "rptq/engine.h"
#include "rptq/export/stats_file.h"
#include "rptq/method/sweep.h"
#include "rptq/tokenizer/tokenizer.h"

namespace {

const std::filesystem::path& model_dir() {
  static const auto d = rptq::test::resources_dir() / "models" / "stories260k";
  return d;
}
std::string stories() { return (rptq::test::resources_dir() / "data" / "stories.txt").string(); }

class CliSweep : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto fp = rptq::Model::load(model_dir());
    const auto ids = rptq::Tokenizer::load(model_dir())->encode(rptq::test::read_file(stories()), true);
    rptq::CalibrationSettings cs;
    cs.samples = 3;
    cs.seqlen = 64;
    dir_ = new std::filesystem::path(rptq::test::temp_dir("cli-sweep"));
    rptq::save_stats(*dir_ / "s.h5", rptq::calibrate(*fp, model_dir().string(), ids, stories(), "", cs), true);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string stats() { return (*dir_ / "s.h5").string(); }
  // The command line of the tests' sweep: R1 at 1 and 4 clusters from W4A8 with RTN weights, 2 windows of 64.
  static std::vector<std::string> args(std::vector<std::string> more, const std::string& axis = "clusters",
                                       const std::string& target = "R1", const std::string& values = "1,4") {
    std::vector<std::string> a = {"sweep", model_dir().string(), "--stats", stats(), "--data", stories(),
                                  "--preset", "W4A8", "--weights", "rtn", "--axis", axis, "--target", target,
                                  "--values", values, "--seqlen", "64", "--max-windows", "2", "--kmeans-seed", "5"};
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  // The same sweep through the library, with the statistics as the CLI reads them from the file.
  static rptq::SweepResult library() {
    const rptq::ChannelStats st = rptq::load_stats(stats());
    const auto fp = rptq::Model::load(model_dir());
    const auto ids = rptq::Tokenizer::load(model_dir())->encode(rptq::test::read_file(stories()), true);
    rptq::QuantConfig base = rptq::QuantConfig::preset("W4A8");
    base.weight_method = rptq::WeightMethod::RTN;
    rptq::QuantizeOptions qo;
    qo.seed = 5;
    qo.stat = st.settings.stat;
    rptq::PerplexityOptions po;
    po.seqlen = 64;
    po.max_windows = 2;
    return rptq::run_sweep(rptq::make_sweep_spec("clusters", "R1", "1,4"), base, qo, *fp,
                           [] { return rptq::Model::load(model_dir()); }, st, ids, po,
                           rptq::Execution::on(rptq::Device::CPU));
  }
  static std::filesystem::path* dir_;
};
std::filesystem::path* CliSweep::dir_ = nullptr;

bool one_error_line(const rptq::test::CliRun& r) {
  return r.code == 2 && r.err.rfind("rptq: ", 0) == 0 && r.err.find('\n') == r.err.size() - 1 && r.out.empty();
}

TEST_F(CliSweep, JsonCsvAndOutHoldTheLibrarysNumbers) {
  const auto out = *dir_ / "sweep.json";
  std::filesystem::remove(out);
  const rptq::test::CliRun j = rptq::test::rptq_cli(args({"--json", "--out", out.string()}));
  ASSERT_EQ(j.code, 0) << j.err;
  const rptq::SweepResult lib = library();
  ASSERT_EQ(lib.points.size(), 2u);

  // --json: the file format, read back by the library's own reader; every number equal to the library's.
  const rptq::SweepResult cli = rptq::sweep_from_json(j.out, "stdout");
  ASSERT_EQ(cli.points.size(), 2u);
  EXPECT_TRUE(cli.complete());
  EXPECT_EQ(cli.spec.values, lib.spec.values);
  EXPECT_EQ(cli.spec.target, "R1");
  EXPECT_EQ(cli.ppl_fp, lib.ppl_fp);
  EXPECT_EQ(cli.windows, 2);
  EXPECT_EQ(cli.positions, lib.positions);
  EXPECT_EQ(cli.kmeans_seed, 5u);
  EXPECT_EQ(cli.model, model_dir().string());
  EXPECT_EQ(cli.stats, stats());
  EXPECT_EQ(cli.data, stories());
  for (std::size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(cli.points[i].value, lib.points[i].value);
    EXPECT_EQ(cli.points[i].ppl_q, lib.points[i].ppl_q);
    EXPECT_EQ(cli.points[i].kl, lib.points[i].kl);
    EXPECT_EQ(cli.points[i].top1_agreement, lib.points[i].top1_agreement);
    EXPECT_EQ(cli.points[i].top1_changed, lib.points[i].top1_changed);
    EXPECT_EQ(cli.points[i].kl_p50, lib.points[i].kl_p50);
    EXPECT_EQ(cli.points[i].kl_p90, lib.points[i].kl_p90);
    EXPECT_EQ(cli.points[i].kl_p99, lib.points[i].kl_p99);
    EXPECT_EQ(cli.points[i].kl_max, lib.points[i].kl_max);
    EXPECT_EQ(cli.points[i].clusters_used, lib.points[i].clusters_used);
    EXPECT_EQ(cli.points[i].description, lib.points[i].description);
  }
  // Plain JSON for other tools too.
  const auto parsed = nlohmann::json::parse(j.out);
  EXPECT_EQ(parsed["points"][1]["kl"].get<double>(), lib.points[1].kl);
  EXPECT_EQ(parsed["axis"], "clusters");

  // --out saved the same sweep (the file the GUI loads).
  const rptq::SweepResult saved = rptq::load_sweep(out);
  EXPECT_EQ(rptq::sweep_to_json(saved), rptq::sweep_to_json(cli));

  // ... and refuses to replace it without --force (before any work), replaces it with.
  const rptq::test::CliRun again = rptq::test::rptq_cli(args({"--out", out.string()}));
  EXPECT_TRUE(one_error_line(again)) << again.code << " " << again.err;
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;

  // --csv (with --out, also written as CSV): the same numbers, exactly.
  const auto csv_out = *dir_ / "sweep.csv";
  std::filesystem::remove(csv_out);
  const rptq::test::CliRun c = rptq::test::rptq_cli(args({"--csv", "--out", csv_out.string()}));
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_EQ(rptq::test::read_file(csv_out), c.out);
  std::istringstream in(c.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line.rfind("axis,target,value,setting,ppl_fp,ppl_q,kl,kl_p50,kl_p90,kl_p99,kl_max,top1_agreement", 0),
            0u);
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(std::getline(in, line));
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; f.size() < 12 && std::getline(ss, x, ',');) f.push_back(x);
    ASSERT_EQ(f.size(), 12u);
    EXPECT_EQ(std::stoi(f[2]), lib.points[i].value);
    EXPECT_EQ(std::strtod(f[4].c_str(), nullptr), lib.ppl_fp);
    EXPECT_EQ(std::strtod(f[5].c_str(), nullptr), lib.points[i].ppl_q);
    EXPECT_EQ(std::strtod(f[6].c_str(), nullptr), lib.points[i].kl);
    EXPECT_EQ(std::strtod(f[9].c_str(), nullptr), lib.points[i].kl_p99);
    EXPECT_EQ(std::strtod(f[11].c_str(), nullptr), lib.points[i].top1_agreement);
  }

  // The default table: a row per point.
  const rptq::test::CliRun t = rptq::test::rptq_cli(args({}));
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("clusters of R1"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\nR1=1 "), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\nR1=4 "), std::string::npos) << t.out;
}

TEST_F(CliSweep, BadOptionsExitTwoWithOneLine) {
  struct Case {
    std::vector<std::string> more;
    std::string axis, target, values, says;
  };
  const std::vector<Case> cases = {
      {{}, "bits", "all", "4", "unknown sweep axis"},
      {{}, "clusters", "R1", "1,x", "\"x\""},
      {{}, "clusters", "R9", "1", "R9"},
      {{}, "wbits", "all", "9", "not a bit width"},
      {{}, "abits", "k", "4", "kvbits"},
      {{"--json", "--csv"}, "clusters", "R1", "1", "excludes"},
      {{"--reorder-only"}, "clusters", "R1", "1", "nothing to sweep"},
      {{"--wbits", "4"}, "clusters", "R1", "1", "not both"},
      {{"--override", "bogus:abits=4"}, "clusters", "R1", "1", "\"bogus\""},
      {{"--out", (*dir_ / "no-such-folder" / "x.json").string()}, "clusters", "R1", "1", "no such folder"},
  };
  for (const Case& c : cases) {
    std::string joined = c.axis + " " + c.target + " " + c.values;
    for (const auto& m : c.more) joined += " " + m;
    SCOPED_TRACE(joined);
    const rptq::test::CliRun r = rptq::test::rptq_cli(args(c.more, c.axis, c.target, c.values));
    EXPECT_TRUE(one_error_line(r)) << r.code << " out: " << r.out << " err: " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
  }
  // No --axis at all; a checkpoint-like file as MODEL.
  const rptq::test::CliRun no_axis = rptq::test::rptq_cli(
      {"sweep", model_dir().string(), "--stats", stats(), "--data", stories(), "--preset", "W4A8"});
  EXPECT_TRUE(one_error_line(no_axis)) << no_axis.err;
  const rptq::test::CliRun file_model = rptq::test::rptq_cli(
      {"sweep", stats(), "--stats", stats(), "--data", stories(), "--preset", "W4A8", "--axis", "wbits"});
  EXPECT_TRUE(one_error_line(file_model)) << file_model.err;
  EXPECT_NE(file_model.err.find("not a model folder"), std::string::npos) << file_model.err;
}

// The run history: a sweep is recorded (kind "sweep": the base setting, the axis and values, each point's numbers);
// its --json carries the record as "run", equal to what `rptq history` lists.
TEST_F(CliSweep, RecordsTheRunInTheHistory) {
  const std::string hist = (*dir_ / "history.json").string();
  std::filesystem::remove(hist);
  const std::vector<std::string> env = {"RPTQ_HISTORY=" + hist};
  const rptq::test::CliRun j = rptq::test::rptq_cli(args({"--json"}), env);
  ASSERT_EQ(j.code, 0) << j.err;
  const auto sj = nlohmann::json::parse(j.out);
  ASSERT_TRUE(sj.contains("run"));
  const nlohmann::json& run = sj["run"];
  EXPECT_EQ(run["history"], hist);
  EXPECT_EQ(run["kind"], "sweep");
  EXPECT_EQ(run["setting"]["preset"], "W4A8");
  EXPECT_EQ(run["options"]["axis"], "clusters");
  EXPECT_EQ(run["options"]["target"], "R1");
  EXPECT_EQ(run["options"]["values"], (nlohmann::json{1, 4}));
  EXPECT_EQ(run["options"]["seqlen"], 64);
  EXPECT_EQ(run["options"]["windows"], 2);
  EXPECT_EQ(run["options"]["device"], "cpu");
  // The record's numbers are the sweep's own (the same doubles), point by point.
  const rptq::SweepResult r = rptq::sweep_from_json(j.out, "stdout");
  ASSERT_EQ(r.points.size(), 2u);
  EXPECT_EQ(run["results"]["ppl_fp"].get<double>(), r.ppl_fp);
  ASSERT_EQ(run["results"]["points"].size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const nlohmann::json& p = run["results"]["points"][i];
    EXPECT_EQ(p["value"].get<int>(), r.points[i].value);
    EXPECT_EQ(p["ppl_q"].get<double>(), r.points[i].ppl_q);
    EXPECT_EQ(p["kl"].get<double>(), r.points[i].kl);
    EXPECT_EQ(p["top1_agreement"].get<double>(), r.points[i].top1_agreement);
  }

  const rptq::test::CliRun h = rptq::test::rptq_cli({"history", "--json"}, env);
  ASSERT_EQ(h.code, 0) << h.err;
  const auto hj = nlohmann::json::parse(h.out);
  ASSERT_EQ(hj["runs"].size(), 1u);
  nlohmann::json want = run;
  want.erase("history");
  EXPECT_EQ(hj["runs"][0], want);
  // With the history off (the tests' default) nothing is recorded and "run" says so.
  const rptq::test::CliRun off = rptq::test::rptq_cli(args({"--json"}));
  ASSERT_EQ(off.code, 0) << off.err;
  EXPECT_EQ(nlohmann::json::parse(off.out)["run"]["history"], "");
}

}  // namespace
