// `rptq compare` on several texts (repeatable --data, or the bundled samples without it): the table, --csv and
// --json against the library's compare_texts on the same quantized model (the same bits with --threads 1 here and
// one thread in this process); one --data keeps today's JSON keys; a bad --data file exits 2 naming it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli_support.h"
#include "rptq/engine.h"
#include "rptq/export/stats_file.h"
#include "rptq/model/model.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::test::CliRun;
using rptq::test::rptq_cli;

std::string model() { return (rptq::test::resources_dir() / "models" / "stories260k").string(); }
std::string data(const char* name) { return (rptq::test::resources_dir() / "data" / name).string(); }

const std::string& stats_file() {
  static const std::string path = [] {
    const std::string p = (rptq::test::temp_dir("cli-compare-texts") / "stats.h5").string();
    const CliRun r = rptq_cli({"calibrate", model(), "--data", data("stories.txt"), "--samples", "2", "--seqlen", "64",
                               "--out", p, "--force"});
    EXPECT_EQ(r.code, 0) << r.err;
    return p;
  }();
  return path;
}

// The command's options but the texts and the output format: W4A8 with RTN weights, 64-token windows, at most 2.
std::vector<std::string> args(const std::vector<std::string>& texts, const std::string& format = "") {
  std::vector<std::string> a = {"compare", model(), "--stats", stats_file(), "--preset", "W4A8", "--weights", "rtn",
                                "--seqlen", "64", "--max-windows", "2", "--threads", "1"};
  for (const std::string& t : texts) {
    a.push_back("--data");
    a.push_back(t);
  }
  if (!format.empty()) a.push_back(format);
  return a;
}

// What the library gives for the same texts and settings (the CLI's defaults: sequential, the statistics file's
// range statistic, k-means seed 0).
std::vector<rptq::CompareResult> library(const std::vector<std::string>& paths) {
  rptq::set_num_threads(1);
  auto tok = rptq::Tokenizer::load(model());
  std::vector<rptq::CompareText> texts;
  for (const std::string& p : paths) texts.push_back({p, p, tok->encode(rptq::test::read_file(p), true)});
  auto fp = rptq::Model::load(model());
  const rptq::ChannelStats stats = rptq::load_stats(stats_file());
  rptq::QuantConfig c = rptq::QuantConfig::preset("W4A8");
  c.weight_method = rptq::WeightMethod::RTN;
  rptq::QuantizeOptions o;
  o.stat = stats.settings.stat;
  o.sequential = true;
  o.seed = 0;
  auto q = rptq::quantize(rptq::Model::load(model()), stats, c, o);
  rptq::PerplexityOptions po;
  po.seqlen = 64;
  po.max_windows = 2;
  return rptq::compare_texts(*fp, nullptr, q->model(), q.get(), texts, po, rptq::Execution{});
}

void expect_text_json(const nlohmann::json& t, const rptq::CompareResult& r) {
  EXPECT_EQ(t["ppl_fp"].get<double>(), r.fp.ppl);
  EXPECT_EQ(t["ppl_q"].get<double>(), r.q.ppl);
  EXPECT_EQ(t["kl"].get<double>(), r.kl);
  EXPECT_EQ(t["kl_p50"].get<double>(), r.kl_p50);
  EXPECT_EQ(t["kl_p90"].get<double>(), r.kl_p90);
  EXPECT_EQ(t["kl_p99"].get<double>(), r.kl_p99);
  EXPECT_EQ(t["kl_max"].get<double>(), r.kl_max);
  EXPECT_EQ(t["top1_agreement"].get<double>(), r.top1_agreement);
  EXPECT_EQ(t["top1_changed"].get<double>(), r.top1_changed);
  EXPECT_EQ(t["windows"].get<std::int64_t>(), r.fp.windows);
  EXPECT_EQ(t["positions"].get<std::int64_t>(), r.positions);
}

TEST(CliCompareTexts, JsonCsvAndTableEqualTheLibrary) {
  const std::vector<std::string> paths = {data("wikitext2-sample.txt"), data("stories.txt")};
  const std::vector<rptq::CompareResult> lib = library(paths);
  ASSERT_EQ(lib.size(), 2u);

  const CliRun js = rptq_cli(args(paths, "--json"));
  ASSERT_EQ(js.code, 0) << js.err;
  const auto j = nlohmann::json::parse(js.out);
  ASSERT_EQ(j["texts"].size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(paths[i]);
    const auto& t = j["texts"][i];
    for (const char* key : {"name", "path", "ppl_fp", "ppl_q", "kl", "kl_p50", "kl_p90", "kl_p99", "kl_max",
                            "top1_agreement", "top1_changed", "windows", "positions"})
      EXPECT_TRUE(t.contains(key)) << key;
    EXPECT_EQ(t["path"], paths[i]);
    expect_text_json(t, lib[i]);
  }
  EXPECT_EQ(j["texts"][0]["name"], "wikitext2-sample");
  EXPECT_EQ(j["texts"][1]["name"], "stories");
  // The top level: the first text, as a one-text run gives it.
  EXPECT_EQ(j["data"], paths[0]);
  expect_text_json(j, lib[0]);
  EXPECT_EQ(j["seqlen"], 64);
  EXPECT_NE(lib[0].kl, lib[1].kl);

  // CSV: a header and one row per text, the numbers at full precision.
  const CliRun cs = rptq_cli(args(paths, "--csv"));
  ASSERT_EQ(cs.code, 0) << cs.err;
  std::istringstream in(cs.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line,
            "name,path,ppl_fp,ppl_q,ppl_delta_pct,kl,kl_p50,kl_p90,kl_p99,kl_max,top1_agreement,top1_changed,windows,"
            "positions");
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(std::getline(in, line));
    std::vector<std::string> f;
    std::istringstream row(line);
    for (std::string cell; std::getline(row, cell, ',');) f.push_back(cell);
    ASSERT_EQ(f.size(), 14u) << line;
    const rptq::CompareResult& r = lib[i];
    EXPECT_EQ(f[1], paths[i]);
    const std::vector<double> want = {r.fp.ppl, r.q.ppl, 100.0 * (r.q.ppl / r.fp.ppl - 1.0), r.kl, r.kl_p50,
                                      r.kl_p90, r.kl_p99, r.kl_max, r.top1_agreement, r.top1_changed};
    for (std::size_t k = 0; k < want.size(); ++k) EXPECT_EQ(std::strtod(f[2 + k].c_str(), nullptr), want[k]) << k;
    EXPECT_EQ(std::stoll(f[12]), r.fp.windows);
    EXPECT_EQ(std::stoll(f[13]), r.positions);
  }
  EXPECT_FALSE(std::getline(in, line)) << line;

  // The table: one row per text; each number equal to the library's to the digits printed.
  const CliRun tb = rptq_cli(args(paths));
  ASSERT_EQ(tb.code, 0) << tb.err;
  for (std::size_t i = 0; i < 2; ++i) {
    const std::string name = i == 0 ? "wikitext2-sample" : "stories";
    const auto at = tb.out.find("\n" + name + " ");
    ASSERT_NE(at, std::string::npos) << tb.out;
    std::istringstream row(tb.out.substr(at + 1 + name.size()));
    double ppl_fp, ppl_q, delta, kl, p50, p90, p99, mx, changed;
    char pct;
    long long windows;
    row >> ppl_fp >> ppl_q >> delta >> pct >> kl >> p50 >> p90 >> p99 >> mx >> changed >> pct >> windows;
    ASSERT_TRUE(row) << tb.out;
    const rptq::CompareResult& r = lib[i];
    EXPECT_NEAR(ppl_fp, r.fp.ppl, 0.5e-4 + 1e-12);
    EXPECT_NEAR(ppl_q, r.q.ppl, 0.5e-4 + 1e-12);
    EXPECT_NEAR(delta, 100.0 * (r.q.ppl / r.fp.ppl - 1.0), 0.5e-2 + 1e-12);
    for (auto [got, want] : {std::pair{kl, r.kl}, {p50, r.kl_p50}, {p90, r.kl_p90}, {p99, r.kl_p99}, {mx, r.kl_max}})
      EXPECT_NEAR(got, want, 0.5e-5 + 1e-12);
    EXPECT_NEAR(changed, 100.0 * r.top1_changed, 0.5e-2 + 1e-12);
    EXPECT_EQ(windows, r.fp.windows);
  }
}

// One --data: today's JSON keys and values, plus the KL distribution and a one-entry `texts`; the human output keeps
// its lines.
TEST(CliCompareTexts, OneTextAsBefore) {
  const std::vector<std::string> paths = {data("stories.txt")};
  const std::vector<rptq::CompareResult> lib = library(paths);
  const CliRun js = rptq_cli(args(paths, "--json"));
  ASSERT_EQ(js.code, 0) << js.err;
  const auto j = nlohmann::json::parse(js.out);
  for (const char* key : {"model", "data", "ppl_fp", "ppl_q", "kl", "top1_agreement", "windows", "seqlen", "positions",
                          "tokens_per_s_fp", "tokens_per_s_q", "quantize_seconds", "quantize_phases", "seconds",
                          "preset", "wbits", "abits", "clusters", "kl_p50", "kl_p90", "kl_p99", "kl_max", "texts"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["data"], paths[0]);
  expect_text_json(j, lib[0]);
  ASSERT_EQ(j["texts"].size(), 1u);
  expect_text_json(j["texts"][0], lib[0]);

  // --data before MODEL: one file per --data, MODEL stays positional (as when --data took one value).
  std::vector<std::string> before = args({}, "--json");
  before.insert(before.begin() + 1, {"--data", paths[0]});
  const CliRun bj = rptq_cli(before);
  ASSERT_EQ(bj.code, 0) << bj.err;
  expect_text_json(nlohmann::json::parse(bj.out), lib[0]);

  const CliRun tx = rptq_cli(args(paths));
  ASSERT_EQ(tx.code, 0) << tx.err;
  for (const char* line : {"perplexity FP", "perplexity quantized", "KL(FP || quantized)", "KL p50 / p90 / p99",
                           "top-1 agreement"})
    EXPECT_NE(tx.out.find(line), std::string::npos) << line << "\n" << tx.out;
}

// Without --data: the bundled WikiText-2 and C4 samples, in that order, named by their files.
TEST(CliCompareTexts, BundledSamplesByDefault) {
  const std::vector<std::string> paths = {data("wikitext2-sample.txt"), data("c4-sample.txt")};
  const std::vector<rptq::CompareResult> lib = library(paths);
  const CliRun js = rptq_cli(args({}, "--json"));
  ASSERT_EQ(js.code, 0) << js.err;
  const auto j = nlohmann::json::parse(js.out);
  ASSERT_EQ(j["texts"].size(), 2u);
  EXPECT_EQ(j["texts"][0]["name"], "wikitext2-sample");
  EXPECT_EQ(j["texts"][1]["name"], "c4-sample");
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(std::filesystem::weakly_canonical(j["texts"][i]["path"].get<std::string>()),
              std::filesystem::weakly_canonical(paths[i]));
    expect_text_json(j["texts"][i], lib[i]);
  }
  const CliRun help = rptq_cli({"compare", "--help"});
  EXPECT_NE(help.out.find("Without --data"), std::string::npos) << help.out;
}

// A --data file that cannot be read, or too short for one window: exit 2, one line naming it, nothing on stdout;
// --json with --csv is a usage error.
TEST(CliCompareTexts, BadDataFileNamed) {
  const auto dir = rptq::test::temp_dir("cli-compare-texts-bad");
  const std::string missing = (dir / "missing.txt").string(), shortf = (dir / "short.txt").string();
  rptq::test::write_file(shortf, "Once upon a time.");
  for (const std::string& bad : {missing, dir.string(), shortf}) {
    const CliRun r = rptq_cli(args({data("stories.txt"), bad}, "--json"));
    EXPECT_EQ(r.code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  const CliRun s = rptq_cli(args({shortf}));
  EXPECT_NE(s.err.find("fewer than one window of 64"), std::string::npos) << s.err;
  std::vector<std::string> a = args({data("stories.txt")}, "--json");
  a.push_back("--csv");
  const CliRun excl = rptq_cli(a);
  EXPECT_EQ(excl.code, 2) << excl.err;
  EXPECT_NE(excl.err.find("--csv"), std::string::npos) << excl.err;
}

}  // namespace
