// The `rptq` command line: exit codes (0 ok, 2 bad input or usage, 1 internal), one-line errors, JSON keys.
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdlib>

#include "cli_support.h"
#include "test_support.h"

namespace {

using rptq::test::shared_file;

using rptq::test::CliRun;
using rptq::test::rptq_cli;

std::string model(const char* name) { return (rptq::test::resources_dir() / "models" / name).string(); }

TEST(Cli, HelpEverywhere) {
  for (std::vector<std::string> a : {std::vector<std::string>{"--help"}, {"inspect", "--help"}, {"tokenize", "--help"},
                                      {"eval", "--help"}, {"generate", "--help"}}) {
    const CliRun r = rptq_cli(a);
    EXPECT_EQ(r.code, 0) << a[0];
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
  }
}

TEST(Cli, VersionNamesRevisionAndCuda) {
  const CliRun r = rptq_cli({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("rptq "), std::string::npos);
  EXPECT_NE(r.out.find("git "), std::string::npos);
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(rptq_cli({}).code, 2);
  EXPECT_EQ(rptq_cli({"frobnicate"}).code, 2);
  EXPECT_EQ(rptq_cli({"eval", model("stories260k")}).code, 2);  // --data missing
  EXPECT_EQ(rptq_cli({"eval", model("stories260k"), "--data", "x", "--seqlen", "abc"}).code, 2);
  EXPECT_EQ(rptq_cli({"tokenize", model("stories260k")}).code, 2);  // no text
}

TEST(Cli, BadInputExitsTwoWithOneLine) {
  const auto dir = rptq::test::temp_dir("cli-bad-model");
  rptq::test::write_file(dir / "config.json", R"({"model_type": "gpt_neox", "hidden_size": 8})");
  for (const CliRun& r : {rptq_cli({"inspect", dir.string()}), rptq_cli({"eval", "/nonexistent", "--data", "/nonexistent"}),
                       rptq_cli({"eval", model("stories260k"), "--data", "/nonexistent/file.txt"})}) {
    EXPECT_EQ(r.code, 2) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_EQ(r.err.rfind("rptq: error: ", 0), 0u) << r.err;
  }
  EXPECT_NE(rptq_cli({"inspect", dir.string()}).err.find("gpt_neox"), std::string::npos);
}

TEST(Cli, InspectJson) {
  const CliRun r = rptq_cli({"inspect", model("tiny-opt-16m"), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model_type"], "opt");
  EXPECT_EQ(j["layers"], 4);
  EXPECT_EQ(j["hidden_size"], 256);
  EXPECT_EQ(j["format"], "safetensors");
  EXPECT_EQ(j["dtypes"].begin().key(), "F16");
  EXPECT_GT(j["parameters"].get<std::int64_t>(), 16000000);
  EXPECT_TRUE(j["tokenizer_ok"].get<bool>());
  const CliRun text = rptq_cli({"inspect", model("stories260k")});
  EXPECT_EQ(text.code, 0);
  EXPECT_NE(text.out.find("LLaMA"), std::string::npos) << text.out;
}

TEST(Cli, TokenizeMatchesReferenceAndDecodes) {
  auto cases = nlohmann::json::parse(rptq::test::read_file(shared_file("reference/tokenizer-opt.json")));
  const std::string text = cases[1]["text"];
  const CliRun r = rptq_cli({"tokenize", model("tiny-opt-16m"), "--text", text, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], cases[1]["ids"]);
  const CliRun d = rptq_cli({"tokenize", model("tiny-opt-16m"), "--decode", "--text", r.out, "--json"});
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(nlohmann::json::parse(d.out)["text"], text);
}

TEST(Cli, EvalJsonMatchesReference) {
  const CliRun r = rptq_cli({"eval", model("stories260k"), "--data", shared_file("data/stories.txt").string(),
                          "--seqlen", "128", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"ppl", "windows", "seqlen", "tokens", "seconds", "tokens_per_s"}) EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_NEAR(j["ppl"].get<double>(), 4.196996, 4.196996 * 1e-4);
  EXPECT_EQ(j["windows"], 6);
  EXPECT_EQ(j["tokens"], 6 * 128);
}

TEST(Cli, GenerateStreamsAStory) {
  const CliRun r = rptq_cli({"generate", model("stories260k"), "--prompt", "Once upon a time", "--max-new-tokens", "30"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u) << r.out;
  EXPECT_GT(r.out.size(), 60u) << r.out;
  EXPECT_NE(r.err.find("KV cache"), std::string::npos) << r.err;
  // Sampling with the same seed reproduces the text; greedy is the default.
  const CliRun a = rptq_cli({"generate", model("stories260k"), "--prompt", "Lily", "--temperature", "0.9", "--seed", "3",
                          "--max-new-tokens", "20"});
  const CliRun b = rptq_cli({"generate", model("stories260k"), "--prompt", "Lily", "--temperature", "0.9", "--seed", "3",
                          "--max-new-tokens", "20"});
  EXPECT_EQ(a.out, b.out);
}

}  // namespace
