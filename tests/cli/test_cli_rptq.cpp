// The RPTQ commands of `rptq`: calibrate, clusters, eval --stats, compare. Exit codes, JSON keys, values that
// agree with the library.
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "rptq/device.h"
#include "rptq/method/cluster_view.h"
#include "rptq/export/stats_file.h"
#include "test_support.h"

namespace {

using rptq::test::CliRun;
using rptq::test::rptq_cli;
using rptq::test::shared_dir;

std::string model(const char* name) { return (rptq::test::resources_dir() / "models" / name).string(); }
std::string stories() { return (rptq::test::resources_dir() / "data" / "stories.txt").string(); }

// One statistics file for the tests below, made by the CLI itself.
const std::string& stats_file() {
  static const std::string path = [] {
    const auto dir = rptq::test::temp_dir("cli-rptq-stats");
    const std::string p = (dir / "stories.h5").string();
    const CliRun r = rptq_cli({"calibrate", model("stories260k"), "--data", stories(), "--samples", "3", "--seqlen",
                               "64", "--out", p, "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return p;
  }();
  return path;
}

TEST(CliRptq, CalibrateWritesAReadableStatsFile) {
  const rptq::ChannelStats s = rptq::load_stats(stats_file());
  EXPECT_EQ(s.settings.samples, 3);
  EXPECT_EQ(s.settings.seqlen, 64);
  EXPECT_EQ(s.settings.seed, 2u);  // the reference's default
  EXPECT_EQ(s.layers, 5);
  EXPECT_EQ(s.data_sha256.size(), 64u);
  // Refuses to overwrite without --force, with exit code 2 and one line.
  const CliRun again = rptq_cli({"calibrate", model("stories260k"), "--data", stories(), "--out", stats_file()});
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;
  EXPECT_EQ(std::count(again.err.begin(), again.err.end(), '\n'), 1);
}

TEST(CliRptq, ClustersJson) {
  const CliRun r = rptq_cli({"clusters", stats_file(), "--layer", "1", "--tap", "R5", "--k", "4", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"max", "min", "labels", "order", "inertia", "k"}) EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["k"], 4);
  const auto labels = j["labels"].get<std::vector<int>>();
  const auto order = j["order"].get<std::vector<int>>();
  ASSERT_EQ(labels.size(), order.size());
  EXPECT_EQ(j["max"].size(), labels.size());
  // The order lists channels cluster by cluster.
  for (std::size_t i = 1; i < order.size(); ++i) EXPECT_LE(labels[order[i - 1]], labels[order[i]]);
  EXPECT_EQ(*std::max_element(labels.begin(), labels.end()), 3);
  EXPECT_GT(j["inertia"].get<double>(), 0.0);
  // Bad layer / tap: exit 2.
  EXPECT_EQ(rptq_cli({"clusters", stats_file(), "--layer", "9", "--tap", "R5", "--k", "4"}).code, 2);
  EXPECT_EQ(rptq_cli({"clusters", stats_file(), "--layer", "0", "--tap", "R7", "--k", "4"}).code, 2);
  EXPECT_EQ(rptq_cli({"clusters", stories(), "--layer", "0", "--tap", "R1", "--k", "4"}).code, 2);
}

// `rptq clusters` prints the core's cluster view (rptq::cluster_view), the computation Explore shows: the clustered
// feature, the clusters and every cluster's quantizer, value for value. R3 on stories260k's KV groups of 2 query
// heads (the feature widest over each group), and R1 with the file's EMA statistic and the default 4 bits.
TEST(CliRptq, ClustersJsonIsTheCoreClusterView) {
  const rptq::ChannelStats st = rptq::load_stats(stats_file());
  struct Case {
    std::vector<std::string> args;
    int layer, index, k, bits;
    rptq::RangeStat stat;
    rptq::QuantGrid grid;
    std::uint64_t seed;
  };
  const Case cases[] = {
      {{"--layer", "2", "--tap", "R3", "--k", "3", "--stat", "minmax", "--bits", "3", "--grid", "reference", "--seed",
        "5"},
       2, 3, 3, 3, rptq::RangeStat::MinMax, rptq::QuantGrid::Reference, 5},
      {{"--layer", "1", "--tap", "R1", "--k", "6"}, 1, 1, 6, 4, st.settings.stat, rptq::QuantGrid::Exact, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "R" << c.index);
    std::vector<std::string> args = {"clusters", stats_file()};
    args.insert(args.end(), c.args.begin(), c.args.end());
    args.push_back("--json");
    const CliRun r = rptq_cli(args);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    const rptq::ClusterView v = rptq::cluster_view(st, c.layer, c.index, c.k, c.stat, c.bits, c.grid, c.seed);
    EXPECT_EQ(j["activation"], rptq::tap_name(v.shown));
    EXPECT_EQ(j["description"], v.description);
    EXPECT_EQ(j["stat"], rptq::range_stat_name(c.stat));
    EXPECT_EQ(j["bits"], c.bits);
    EXPECT_EQ(j["grid"], rptq::grid_name(c.grid));
    EXPECT_EQ(j["quantizer_ranges"], v.stat_ranges ? rptq::range_stat_name(c.stat) : "feature");
    EXPECT_EQ(j["per_head"], v.per_head);
    EXPECT_EQ(j["heads"], v.heads);
    EXPECT_EQ(j["clusters"], v.clusters);
    EXPECT_EQ(j["max"].get<std::vector<float>>(), v.max);
    EXPECT_EQ(j["min"].get<std::vector<float>>(), v.min);
    EXPECT_EQ(j["labels"].get<std::vector<std::int32_t>>(), v.labels);
    EXPECT_EQ(j["order"].get<std::vector<std::int32_t>>(), v.order);
    EXPECT_EQ(j["boundaries"].get<std::vector<std::int64_t>>(), v.boundaries);
    EXPECT_EQ(j["inertia"].get<double>(), v.inertia);
    EXPECT_EQ(j["tensor"]["min"].get<float>(), v.tensor_min);
    EXPECT_EQ(j["tensor"]["max"].get<float>(), v.tensor_max);
    EXPECT_EQ(j["tensor"]["step"].get<float>(), v.tensor_step);
    ASSERT_EQ(j["quantizers"].size(), v.quantizers.size());
    for (std::size_t i = 0; i < v.quantizers.size(); ++i) {
      const auto& jq = j["quantizers"][i];
      const rptq::ClusterView::Quantizer& q = v.quantizers[i];
      EXPECT_EQ(jq["cluster"], q.cluster);
      EXPECT_EQ(jq["channels"], q.channels);
      EXPECT_EQ(jq["min"].get<float>(), q.min);
      EXPECT_EQ(jq["max"].get<float>(), q.max);
      EXPECT_EQ(jq["step"].get<float>(), q.step);
      EXPECT_EQ(jq["max_error"].get<double>(), q.max_error);
      EXPECT_EQ(jq["rms_error"].get<double>(), q.rms_error);
      EXPECT_EQ(jq["finer"].get<double>(), q.finer);
    }
  }
  // R3 over query-head groups: the feature is the attention output's widest range over each group's query heads.
  {
    const CliRun r = rptq_cli({"clusters", stats_file(), "--layer", "2", "--tap", "R3", "--k", "3", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["activation"], "attn_output");
    EXPECT_EQ(j["quantizer_ranges"], "feature");
    const auto& ao = st.tap(2, rptq::Tap::AttnOutput);
    EXPECT_EQ(j["max"][0].get<float>(), std::max(ao.max[0], ao.max[static_cast<std::size_t>(st.head_dim)]));
    EXPECT_EQ(j["attn_output_max"].size(), ao.max.size());
  }
  // The text shows the same quantizers, and bad quantizer settings are usage errors.
  const CliRun text = rptq_cli({"clusters", stats_file(), "--layer", "1", "--tap", "R1", "--k", "6"});
  ASSERT_EQ(text.code, 0) << text.err;
  const rptq::ClusterView v = rptq::cluster_view(st, 1, 1, 6, st.settings.stat, 4, rptq::QuantGrid::Exact, 0);
  EXPECT_NE(text.out.find("4-bit quantizers (exact grid, ema ranges)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("max error"), std::string::npos) << text.out;
  char row[128];
  const rptq::ClusterView::Quantizer& q = v.quantizers.back();
  std::snprintf(row, sizeof row, "%8d %8lld %14.6g %14.6g %12.4g %12.4g %12.4g %8.3g\n", q.cluster,
                (long long)q.channels, q.min, q.max, q.step, q.max_error, q.rms_error, q.finer);
  EXPECT_NE(text.out.find(row), std::string::npos) << row << " not in\n" << text.out;
  EXPECT_EQ(rptq_cli({"clusters", stats_file(), "--layer", "1", "--tap", "R1", "--k", "6", "--bits", "9"}).code, 2);
  EXPECT_EQ(rptq_cli({"clusters", stats_file(), "--layer", "1", "--tap", "R1", "--k", "6", "--grid", "x"}).code, 2);
}

TEST(CliRptq, EvalWithStatsAndCompare) {
  const CliRun fp = rptq_cli({"eval", model("stories260k"), "--data", stories(), "--seqlen", "128", "--json"});
  ASSERT_EQ(fp.code, 0) << fp.err;
  const double ppl_fp = nlohmann::json::parse(fp.out)["ppl"];
  // Reorder only: the FP perplexity.
  const CliRun ro = rptq_cli({"eval", model("stories260k"), "--data", stories(), "--seqlen", "128", "--stats",
                              stats_file(), "--reorder-only", "--json"});
  ASSERT_EQ(ro.code, 0) << ro.err;
  EXPECT_NEAR(nlohmann::json::parse(ro.out)["ppl"].get<double>(), ppl_fp, 1e-4 * ppl_fp);
  // W4A8 through eval and through compare agree.
  const CliRun q = rptq_cli({"eval", model("stories260k"), "--data", stories(), "--seqlen", "128", "--stats",
                             stats_file(), "--preset", "W4A8", "--weights", "rtn", "--json"});
  ASSERT_EQ(q.code, 0) << q.err;
  const auto jq = nlohmann::json::parse(q.out);
  EXPECT_EQ(jq["quantization"]["preset"], "W4A8");
  const CliRun c = rptq_cli({"compare", model("stories260k"), "--data", stories(), "--seqlen", "128", "--stats",
                             stats_file(), "--preset", "W4A8", "--weights", "rtn", "--json"});
  ASSERT_EQ(c.code, 0) << c.err;
  const auto jc = nlohmann::json::parse(c.out);
  for (const char* key : {"ppl_fp", "ppl_q", "kl", "top1_agreement", "preset", "wbits", "abits", "clusters"})
    EXPECT_TRUE(jc.contains(key)) << key;
  EXPECT_NEAR(jc["ppl_fp"].get<double>(), ppl_fp, 1e-4 * ppl_fp);
  EXPECT_NEAR(jc["ppl_q"].get<double>(), jq["ppl"].get<double>(), 1e-4 * jq["ppl"].get<double>());
  EXPECT_GT(jc["kl"].get<double>(), 0.0);
  EXPECT_LE(jc["top1_agreement"].get<double>(), 1.0);
  // Usage errors: exit 2, one line.
  for (std::vector<std::string> bad :
       {std::vector<std::string>{"compare", model("stories260k"), "--data", stories(), "--preset", "W4A8"},
        {"eval", model("stories260k"), "--data", stories(), "--stats", stats_file()},
        {"eval", model("stories260k"), "--data", stories(), "--stats", stats_file(), "--preset", "W9A9"},
        {"eval", model("stories260k"), "--data", stories(), "--stats", stats_file(), "--preset", "W4A8", "--wbits",
         "4"},
        {"eval", model("tiny-opt-16m"), "--data", stories(), "--stats", stats_file(), "--preset", "W4A8"}}) {
    const CliRun r = rptq_cli(bad);
    EXPECT_EQ(r.code, 2) << bad[0] << " " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// Weight remedies from the command line: --weight-clip mse, --act-order and a wbits override are in the JSON and
// change the result; act-order with RTN exits 2 with one line.
TEST(CliRptq, WeightRemedies) {
  const std::vector<std::string> base = {"compare", model("stories260k"), "--data", stories(), "--seqlen", "128",
                                         "--stats", stats_file(), "--preset", "W4A16", "--json"};
  const CliRun plain = rptq_cli(base);
  ASSERT_EQ(plain.code, 0) << plain.err;
  std::vector<std::string> args = base;
  for (const char* o : {"--weight-clip", "mse", "--act-order", "--override", "layers=0:wbits=8"}) args.push_back(o);
  const CliRun r = rptq_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto jp = nlohmann::json::parse(plain.out), jr = nlohmann::json::parse(r.out);
  EXPECT_EQ(jp["weight_clip"], "minmax");
  EXPECT_EQ(jp["act_order"], false);
  EXPECT_EQ(jr["weight_clip"], "mse");
  EXPECT_EQ(jr["act_order"], true);
  EXPECT_NE(jr["description"].get<std::string>().find("mse ranges, act-order"), std::string::npos) << jr["description"];
  EXPECT_NE(jr["kl"].get<double>(), jp["kl"].get<double>());
  std::vector<std::string> bad = base;
  for (const char* o : {"--weights", "rtn", "--act-order"}) bad.push_back(o);
  const CliRun b = rptq_cli(bad);
  EXPECT_EQ(b.code, 2) << b.err;
  EXPECT_NE(b.err.find("act-order"), std::string::npos) << b.err;
  EXPECT_EQ(std::count(b.err.begin(), b.err.end(), '\n'), 1) << b.err;
}

// --override (repeatable): the JSON lists the overrides in order, the description names them, and the quantization
// differs from the plain preset; a bad override or one for a layer the model lacks exits 2 with one line; the
// export's timing JSON has the pipeline's phases.
TEST(CliRptq, OverridesAndQuantizeTiming) {
  const std::vector<std::string> base = {"compare", model("stories260k"), "--data", stories(), "--seqlen", "128",
                                         "--stats", stats_file(), "--preset", "W4A8", "--weights", "rtn", "--json"};
  const CliRun plain = rptq_cli(base);
  ASSERT_EQ(plain.code, 0) << plain.err;
  std::vector<std::string> args = base;
  for (const char* o : {"--override", "layers=0-4,ffn_hidden,attn_output:abits=16", "--override", "layers=1,q:dynamic"})
    args.push_back(o);
  const CliRun over = rptq_cli(args);
  ASSERT_EQ(over.code, 0) << over.err;
  const auto jp = nlohmann::json::parse(plain.out), jo = nlohmann::json::parse(over.out);
  EXPECT_EQ(jp["overrides"].size(), 0u);
  ASSERT_EQ(jo["overrides"].size(), 2u);
  EXPECT_EQ(jo["overrides"][0], "layers=0-4,ffn_hidden,attn_output:abits=16");
  EXPECT_EQ(jo["overrides"][1], "layers=1,q:dynamic");
  EXPECT_NE(jo["description"].get<std::string>().find("overrides layers=0-4"), std::string::npos) << jo["description"];
  EXPECT_NE(jo["kl"].get<double>(), jp["kl"].get<double>());
  for (const char* phase : {"measure", "cluster", "hessians", "weights", "advance"})
    EXPECT_GE(jo["quantize_phases"][phase].get<double>(), 0.0) << phase;
  for (const char* bad : {"k:abits=16", "layers=5,q:abits=16", "ffn_hidden:abits=3x", "q:wbits=8"}) {
    std::vector<std::string> b = base;
    b.push_back("--override");
    b.push_back(bad);
    const CliRun r = rptq_cli(b);
    EXPECT_EQ(r.code, 2) << bad << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// --device on eval, calibrate, compare, generate and export: cuda without a usable GPU exits 2 with the reason; auto falls back to
// the CPU (and says so); --json names the device used.
TEST(CliRptq, DeviceOption) {
  const bool gpu = rptq::device_info().cuda_devices > 0;
  const std::string out = (rptq::test::temp_dir("cli-rptq-device") / "s.h5").string();
  const std::vector<std::vector<std::string>> commands = {
      {"eval", model("stories260k"), "--data", stories(), "--seqlen", "32", "--max-windows", "2"},
      {"calibrate", model("stories260k"), "--data", stories(), "--samples", "2", "--seqlen", "32", "--out", out,
       "--force"},
      {"compare", model("stories260k"), "--data", stories(), "--stats", stats_file(), "--preset", "W4A16",
       "--weights", "rtn", "--seqlen", "32", "--max-windows", "2"},
      {"generate", model("stories260k"), "--prompt", "Once upon a time", "--max-new-tokens", "4"},
      {"generate", model("stories260k"), "--prompt", "Once upon a time", "--max-new-tokens", "4", "--stats",
       stats_file(), "--preset", "W4A4KV", "--weights", "rtn"},
      {"export", model("stories260k"), "--stats", stats_file(), "--preset", "W4A4", "--weights", "rtn", "--out",
       (rptq::test::temp_dir("cli-rptq-device-export") / "q.h5").string(), "--force"}};
  for (const auto& base : commands) {
    if (!gpu) {
      auto args = base;
      args.insert(args.end(), {"--device", "cuda"});
      const CliRun r = rptq_cli(args);
      EXPECT_EQ(r.code, 2) << base[0] << ": " << r.err;
      EXPECT_NE(r.err.find("CUDA is unavailable"), std::string::npos) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
    auto args = base;
    args.insert(args.end(), {"--device", "auto", "--json"});
    const CliRun r = rptq_cli(args);
    ASSERT_EQ(r.code, 0) << base[0] << ": " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["device"], gpu ? "cuda" : "cpu") << base[0];
    EXPECT_NE(r.err.find(gpu ? "device: cuda" : "device: cpu (auto"), std::string::npos) << r.err;
  }
  EXPECT_EQ(rptq_cli({"eval", model("stories260k"), "--data", stories(), "--device", "tpu"}).code, 2);
}

TEST(CliRptq, HelpForEveryRptqCommand) {
  for (const char* c : {"calibrate", "clusters", "compare", "export", "memory"}) {
    const CliRun r = rptq_cli({c, "--help"});
    EXPECT_EQ(r.code, 0) << c;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
  }
}

}  // namespace

// Mixed precision through the command line: `export --override` writes the overrides into the checkpoint and
// `inspect` shows them, with each layer's tap bits, weight bits and cluster counts as the file stores them.
TEST(CliRptq, InspectShowsOverridesPerLayer) {
  const auto out = (rptq::test::temp_dir("cli-rptq-overrides") / "q.h5").string();
  const CliRun e = rptq_cli({"export", model("stories260k"), "--stats", stats_file(), "--preset", "W4A8", "--weights",
                             "rtn", "--override", "layers=1,ffn_hidden:abits=16,wbits=8", "--override",
                             "layers=2,R1:clusters=3", "--out", out, "--force"});
  ASSERT_EQ(e.code, 0) << e.err;
  const CliRun r = rptq_cli({"inspect", out, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["overrides"], (nlohmann::json{"layers=1,ffn_hidden:abits=16,wbits=8", "layers=2,R1:clusters=3"}));
  ASSERT_EQ(j["per_layer"].size(), 5u);
  for (int l = 0; l < 5; ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const auto& row = j["per_layer"][static_cast<std::size_t>(l)];
    EXPECT_EQ(row["layer"], l);
    EXPECT_EQ(row["abits"]["ffn_hidden"], l == 1 ? 16 : 8);
    EXPECT_EQ(row["ranges"]["ffn_hidden"], l == 1 ? "float" : "static");
    EXPECT_EQ(row["abits"]["attn_input"], 8);
    EXPECT_EQ(row["wbits"]["down"], l == 1 ? 8 : 4);
    EXPECT_EQ(row["wbits"]["q"], 4);
    EXPECT_EQ(row["clusters"]["R1"], l == 2 ? 3 : 32);
    EXPECT_EQ(row["clusters"]["R5"], 32);
  }
  // The text form names the overrides and prints one row per layer.
  const CliRun t = rptq_cli({"inspect", out});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("overrides     layers=1,ffn_hidden:abits=16,wbits=8;layers=2,R1:clusters=3"), std::string::npos)
      << t.out;
  EXPECT_NE(t.out.find("per layer"), std::string::npos) << t.out;
  // A bad cluster override is refused with one line naming it.
  const CliRun bad = rptq_cli({"export", model("stories260k"), "--stats", stats_file(), "--preset", "W4A8",
                               "--override", "layers=0,q:clusters=2", "--out", out, "--force"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("layers=0,q:clusters=2"), std::string::npos) << bad.err;
}

// The run history: a quantizing command records its run, its --json carries the same record, `rptq history` lists
// it (per model, by kind, one by id); a damaged history never fails the run, only `rptq history` refuses it.
TEST(CliRptq, RunsAreRecordedInTheHistory) {
  const auto dir = rptq::test::temp_dir("cli-rptq-history");
  const std::string hist = (dir / "history.json").string();
  const std::vector<std::string> env = {"RPTQ_HISTORY=" + hist};
  const CliRun e = rptq_cli({"export", model("stories260k"), "--stats", stats_file(), "--preset", "W4A8", "--weights",
                             "rtn", "--override", "layers=1,ffn_hidden:abits=16", "--out", (dir / "q.h5").string(),
                             "--json"},
                            env);
  ASSERT_EQ(e.code, 0) << e.err;
  const auto ej = nlohmann::json::parse(e.out);
  ASSERT_TRUE(ej.contains("run"));
  EXPECT_EQ(ej["run"]["history"], hist);
  EXPECT_EQ(ej["run"]["kind"], "export");
  EXPECT_EQ(ej["run"]["setting"]["overrides"], nlohmann::json{"layers=1,ffn_hidden:abits=16"});
  EXPECT_EQ(ej["run"]["results"]["bytes"], ej["bytes"]);
  const CliRun v = rptq_cli({"eval", model("stories260k"), "--stats", stats_file(), "--preset", "W4A4", "--weights",
                             "rtn", "--data", stories(), "--seqlen", "64", "--max-windows", "2", "--json"},
                            env);
  ASSERT_EQ(v.code, 0) << v.err;
  const auto vj = nlohmann::json::parse(v.out);
  EXPECT_EQ(vj["run"]["results"]["ppl"], vj["ppl"]);
  const CliRun c = rptq_cli({"compare", model("stories260k"), "--stats", stats_file(), "--preset", "W4A8", "--weights",
                             "rtn", "--data", stories(), "--data", stories(), "--seqlen", "64", "--max-windows", "1",
                             "--json"},
                            env);
  ASSERT_EQ(c.code, 0) << c.err;
  const auto cj = nlohmann::json::parse(c.out);
  EXPECT_EQ(cj["run"]["kind"], "compare");
  EXPECT_EQ(cj["run"]["results"]["ppl_q"], cj["ppl_q"]);
  EXPECT_EQ(cj["run"]["results"]["kl"], cj["kl"]);
  EXPECT_EQ(cj["run"]["results"]["texts"], cj["texts"]);
  EXPECT_EQ(cj["run"]["options"]["data"].size(), 2u);
  const CliRun sens = rptq_cli({"sensitivity", model("stories260k"), "--stats", stats_file(), "--preset", "W4A4",
                                "--data", stories(), "--seqlen", "64", "--max-windows", "1", "--json"},
                               env);
  ASSERT_EQ(sens.code, 0) << sens.err;
  const auto sj = nlohmann::json::parse(sens.out);
  EXPECT_EQ(sj["run"]["kind"], "sensitivity");
  EXPECT_EQ(sj["run"]["results"]["ppl_fp"], sj["ppl_fp"]);
  double worst = 0;
  for (const auto& cell : sj["cells"]) worst = std::max(worst, cell["kl"].get<double>());
  EXPECT_EQ(sj["run"]["results"]["worst"][0]["kl"].get<double>(), worst);
  for (const auto& [tap, sum] : sj["per_tap"].items()) EXPECT_EQ(sj["run"]["results"]["per_tap_kl"][tap], sum["kl"]);
  // An FP evaluation quantizes nothing: no record.
  ASSERT_EQ(rptq_cli({"eval", model("stories260k"), "--data", stories(), "--seqlen", "64", "--max-windows", "1"}, env)
                .code,
            0);

  const CliRun h = rptq_cli({"history", "--json"}, env);
  ASSERT_EQ(h.code, 0) << h.err;
  const auto hj = nlohmann::json::parse(h.out);
  ASSERT_EQ(hj["runs"].size(), 4u);
  nlohmann::json want = ej["run"];
  want.erase("history");
  EXPECT_EQ(hj["runs"][0], want);
  EXPECT_EQ(hj["runs"][1]["kind"], "eval");
  EXPECT_EQ(hj["runs"][1]["setting"]["preset"], "W4A4");
  // Filters: by model (another model has none), by kind, one run by id.
  EXPECT_EQ(nlohmann::json::parse(rptq_cli({"history", model("stories260k"), "--json"}, env).out)["runs"].size(), 4u);
  EXPECT_EQ(nlohmann::json::parse(rptq_cli({"history", "--kind", "compare", "--json"}, env).out)["runs"].size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(rptq_cli({"history", model("tiny-opt-16m"), "--json"}, env).out)["runs"].size(), 0u);
  EXPECT_EQ(nlohmann::json::parse(rptq_cli({"history", "--kind", "eval", "--json"}, env).out)["runs"].size(), 1u);
  const CliRun one = rptq_cli({"history", "--show", ej["run"]["id"].get<std::string>()}, env);
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_EQ(nlohmann::json::parse(one.out), want);
  const CliRun text = rptq_cli({"history"}, env);
  EXPECT_NE(text.out.find("4 runs in " + hist), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("ppl "), std::string::npos) << text.out;
  EXPECT_EQ(rptq_cli({"history", "--show", "nope"}, env).code, 2);

  // Damaged: the export still succeeds (with a note), the history command refuses naming the file.
  {
    std::ofstream f(hist, std::ios::trunc);
    f << "{\"format\": \"rptq-run-history\", \"runs\": [";
  }
  const CliRun again = rptq_cli({"export", model("stories260k"), "--stats", stats_file(), "--preset", "W4A8",
                                 "--weights", "rtn", "--out", (dir / "q.h5").string(), "--force"},
                                env);
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.err.find("not recorded"), std::string::npos) << again.err;
  const CliRun bad = rptq_cli({"history"}, env);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find(hist), std::string::npos) << bad.err;
}

// The serving target from the command line: `export --format compressed-tensors` quantizes for it (W4A16 by
// default) and writes the folder with its quantization_config; `compare --serving` evaluates the same setting;
// settings the format cannot hold are refused with one line and exit code 2.
TEST(CliRptq, ExportsACompressedTensorsFolder) {
  const auto dir = rptq::test::temp_dir("cli-rptq-ct");
  const std::string out = (dir / "served").string();
  const CliRun e = rptq_cli({"export", model("stories260k"), "--stats", stats_file(), "--format", "compressed-tensors",
                             "--weight-group", "-1", "--scale-dtype", "f16", "--kv-fp8", "tensor", "--weights", "rtn",
                             "--out", out, "--json"});
  ASSERT_EQ(e.code, 0) << e.err;
  const auto j = nlohmann::json::parse(e.out);
  EXPECT_EQ(j["format"], "compressed-tensors");
  EXPECT_EQ(j["target"], "compressed-tensors");
  EXPECT_EQ(j["scale_dtype"], "F16");
  EXPECT_EQ(j["kv_fp8"], "tensor");
  EXPECT_EQ(j["wbits"], 4);
  EXPECT_EQ(j["weight_group"], -1);
  const auto cfg = nlohmann::json::parse(rptq::test::read_file(dir / "served" / "config.json"));
  EXPECT_EQ(cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"], "channel");
  EXPECT_EQ(cfg["quantization_config"]["kv_cache_scheme"]["strategy"], "tensor");
  EXPECT_TRUE(std::filesystem::exists(dir / "served" / "model.safetensors"));
  const CliRun ev = rptq_cli({"eval", out, "--data", stories(), "--seqlen", "32", "--max-windows", "1"});
  EXPECT_EQ(ev.code, 2);
  EXPECT_NE(ev.err.find("serve this folder with vLLM or SGLang"), std::string::npos) << ev.err;
  // Text output names the format.
  const CliRun t = rptq_cli({"export", model("stories260k"), "--stats", stats_file(), "--format", "compressed-tensors",
                             "--weight-group", "-1", "--weights", "rtn", "--out", out, "--force"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("compressed-tensors folder for vLLM / SGLang"), std::string::npos) << t.out;
  const CliRun c = rptq_cli({"compare", model("stories260k"), "--data", stories(), "--stats", stats_file(), "--serving",
                             "compressed-tensors", "--weight-group", "-1", "--weights", "rtn", "--seqlen", "32",
                             "--max-windows", "2", "--json"});
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_EQ(nlohmann::json::parse(c.out)["target"], "compressed-tensors");
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--format", "compressed-tensors", "--preset", "W4A8"},          // activations
           {"--format", "compressed-tensors", "--weight-group", "128"},      // 172 / 128
           {"--format", "compressed-tensors", "--weight-group", "-1", "--wbits", "3", "--abits", "16"},
           {"--format", "hdf5", "--serving", "compressed-tensors"},
           {"--format", "hdf5", "--preset", "W4A16", "--kv-fp8", "head"}}) {
    std::vector<std::string> args = {"export", model("stories260k"), "--stats", stats_file(), "--weights", "rtn",
                                     "--out", (dir / "bad").string()};
    args.insert(args.end(), bad.begin(), bad.end());
    const CliRun r = rptq_cli(args);
    EXPECT_EQ(r.code, 2) << bad[1] << " " << bad[2] << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "bad"));
  }
}
