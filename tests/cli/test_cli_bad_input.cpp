// The `rptq` command line against bad values, damaged or hostile files and unusable paths (issue 16): each is
// refused with exit status 2 and one short line on stderr that names the option or file and the problem.
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli_support.h"
#include "test_support.h"

namespace {

using rptq::test::CliRun;
using rptq::test::rptq_cli;

std::string model(const char* name) { return rptq::test::shared_model(name).string(); }
std::string stories() { return rptq::test::shared_file("data/stories.txt").string(); }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Exit status 2 and one "rptq: error: ..." (or usage) line holding every one of `parts`.
void expect_refused(const CliRun& r, const std::vector<std::string>& parts, const std::string& what) {
  EXPECT_EQ(r.code, 2) << what << "\nstderr: " << r.err << "\nstdout: " << r.out.substr(0, 300);
  ASSERT_FALSE(r.err.empty()) << what;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << what << ": one line: " << r.err;
  EXPECT_EQ(r.err.rfind("rptq: ", 0), 0u) << what << ": " << r.err;
  for (const std::string& p : parts) EXPECT_TRUE(contains(r.err, p)) << what << ": \"" << p << "\" in " << r.err;
}

// A copy of a model folder (its small files linked, not copied) with config.json replaced.
std::filesystem::path model_with_config(const std::string& name, const std::string& base, const std::string& edit_key,
                                        const nlohmann::json& value) {
  const auto dir = rptq::test::temp_dir(name);
  for (const auto& e : std::filesystem::directory_iterator(model(base.c_str())))
    if (e.path().filename() != "config.json") std::filesystem::create_symlink(e.path(), dir / e.path().filename());
  auto cfg = nlohmann::json::parse(rptq::test::read_file(std::filesystem::path(model(base.c_str())) / "config.json"));
  cfg[edit_key] = value;
  rptq::test::write_file(dir / "config.json", cfg.dump());
  return dir;
}

// ---- Item 8: error messages are one short line ----

TEST(CliBadInput, HugeMessageIsCutToOneLine) {
  const auto dir = rptq::test::temp_dir("cli-huge-message");
  // A model_type of 300 KB with newlines in it: the message quotes it.
  std::string type(300 * 1024, 'x');
  for (std::size_t i = 100; i < type.size(); i += 1000) type[i] = '\n';
  rptq::test::write_file(dir / "config.json", nlohmann::json{{"model_type", type}}.dump());
  const CliRun r = rptq_cli({"inspect", dir.string()});
  expect_refused(r, {"config.json", "model_type", "bytes in all)"}, "huge model_type");
  EXPECT_LT(r.err.size(), 700u) << r.err.substr(0, 800);
  // The cut keeps the start of the message, which names the file.
  EXPECT_EQ(r.err.rfind("rptq: error: " + (dir / "config.json").string(), 0), 0u) << r.err.substr(0, 200);
}

TEST(CliBadInput, NewlinesInMessageBecomeSpaces) {
  const auto dir = rptq::test::temp_dir("cli-newline-message");
  rptq::test::write_file(dir / "config.json", nlohmann::json{{"model_type", "gpt\nneox\r\tx"}}.dump());
  const CliRun r = rptq_cli({"inspect", dir.string()});
  expect_refused(r, {"config.json", "gpt neox"}, "newline in model_type");
}

// ---- Item 1: bad values are refused, not run with NaN or empty output ----

TEST(CliBadInput, NonFiniteOrOutOfRangeOptionsAreRefused) {
  const std::string m = model("stories260k");
  struct Case {
    std::vector<std::string> args;
    std::string option;
  };
  const std::vector<Case> cases = {
      {{"generate", m, "--prompt", "Once", "--temperature", "nan"}, "--temperature"},
      {{"generate", m, "--prompt", "Once", "--temperature", "-nan"}, "--temperature"},
      {{"generate", m, "--prompt", "Once", "--temperature", "inf"}, "--temperature"},
      {{"generate", m, "--prompt", "Once", "--temperature", "-1"}, "--temperature"},
      {{"generate", m, "--prompt", "Once", "--temperature", "1e9"}, "--temperature"},
      {{"generate", m, "--prompt", "Once", "--temperature", "warm"}, "--temperature"},
      {{"generate", m, "--prompt", "Once", "--top-k", "-1"}, "--top-k"},
      {{"generate", m, "--prompt", "Once", "--max-new-tokens", "-5"}, "--max-new-tokens"},
      {{"generate", m, "--prompt", "Once", "--max-new-tokens", "nan"}, "--max-new-tokens"},
      {{"generate", m, "--prompt", "Once", "--threads", "-1"}, "--threads"},
      {{"eval", m, "--data", stories(), "--seqlen", "0"}, "--seqlen"},
      {{"eval", m, "--data", stories(), "--seqlen", "1e30"}, "--seqlen"},
      {{"eval", m, "--data", stories(), "--max-windows", "-1"}, "--max-windows"},
      {{"eval", m, "--data", stories(), "--batch", "0"}, "--batch"},
      {{"calibrate", m, "--data", stories(), "--out", "x.h5", "--samples", "0"}, "--samples"},
      {{"calibrate", m, "--data", stories(), "--out", "x.h5", "--samples", "inf"}, "--samples"},
      {{"memory", "--arch", "opt-125m", "--batch", "0", "--seqlen", "8"}, "--batch"},
      {{"memory", "--arch", "opt-125m", "--batch", "1", "--seqlen", "nan"}, "--seqlen"},
      // Seeds are uint64: CLI11 alone would turn -1 into 2^64 - 1.
      {{"generate", m, "--prompt", "Once", "--seed", "-1"}, "--seed"},
      {{"calibrate", m, "--data", stories(), "--out", "x.h5", "--seed", "-1"}, "--seed"},
      {{"eval", m, "--data", stories(), "--stats", "x.h5", "--preset", "W4A4", "--kmeans-seed", "-1"}, "--kmeans-seed"},
      {{"eval", m, "--data", stories(), "--stats", "x.h5", "--preset", "W4A4", "--kmeans-seed", "nan"}, "--kmeans-seed"},
  };
  for (const Case& c : cases) {
    const CliRun r = rptq_cli(c.args);
    std::string what;
    for (const auto& a : c.args) what += a + " ";
    expect_refused(r, {c.option}, what);
    EXPECT_TRUE(r.out.empty()) << what << ": " << r.out;
  }
}

TEST(CliBadInput, BadTokenIdsAreRefused) {
  const std::string m = model("stories260k");
  for (const std::string ids : {"[-5]", "[1e20]", "[1.5]", "[18446744073709551615]", "{\"ids\": [1, \"a\"]}",
                                "{\"ids\": 5}", "{\"tokens\": [1]}", "-5", "1 2 x", "99999999999999999999", "512"}) {
    const CliRun r = rptq_cli({"tokenize", m, "--decode", "--text", ids});
    expect_refused(r, {"--text", "token id"}, ids);
  }
  // From a file: the message names the file.
  const auto dir = rptq::test::temp_dir("cli-bad-ids");
  rptq::test::write_file(dir / "ids.json", "[1, -5]");
  expect_refused(rptq_cli({"tokenize", m, "--decode", "--file", (dir / "ids.json").string()}),
                 {(dir / "ids.json").string(), "-5", "outside the vocabulary"}, "ids file");
  const CliRun ok = rptq_cli({"tokenize", m, "--decode", "--text", "[1, 300, 301]", "--json"});
  EXPECT_EQ(ok.code, 0) << ok.err;
}

TEST(CliBadInput, BadConfigNumbersAreRefusedByKey) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"rope_theta", -10000.0}, {"rope_theta", 0}, {"rope_theta", "10000"}, {"rms_norm_eps", -1e-5},
           {"rms_norm_eps", 0}, {"rms_norm_eps", "1e-5"}, {"rms_norm_eps", 5.0}}) {
    const auto dir = model_with_config("cli-bad-config", "stories260k", key, value);
    const CliRun r = rptq_cli({"generate", dir.string(), "--prompt", "Once", "--max-new-tokens", "2"});
    expect_refused(r, {(dir / "config.json").string(), key}, key + " = " + value.dump());
  }
  const auto dir = model_with_config("cli-bad-opt-config", "tiny-opt-16m", "layer_norm_eps", -1);
  expect_refused(rptq_cli({"generate", dir.string(), "--prompt", "Once", "--max-new-tokens", "2"}),
                 {(dir / "config.json").string(), "layer_norm_eps"}, "OPT layer_norm_eps");
}

// ---- Item 2: quantization options that would be silently ignored ----

TEST(CliBadInput, QuantizationOptionsWithoutStatsAreRefused) {
  const std::string m = model("stories260k");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"eval", m, "--data", stories(), "--preset", "W4A8"},
           {"eval", m, "--data", stories(), "--wbits", "4", "--abits", "8"},
           {"generate", m, "--prompt", "Once", "--preset", "W4A4"},
           {"generate", m, "--prompt", "Once", "--dynamic"}}) {
    const CliRun r = rptq_cli(args);
    expect_refused(r, {args[4], "--stats STATS.h5", "full precision"}, args[0] + " " + args[4]);
    EXPECT_TRUE(r.out.empty()) << r.out;  // no FP perplexity or text printed as if quantized
  }
  const CliRun two = rptq_cli({"eval", m, "--data", stories(), "--preset", "W4A4", "--weights", "rtn"});
  expect_refused(two, {"--preset and --weights need --stats"}, "two options");
  // compare, sensitivity and export require --stats outright.
  for (const std::string cmd : {"compare", "sensitivity", "export"}) {
    std::vector<std::string> args = {cmd, m, "--preset", "W4A4"};
    if (cmd == "export") args.insert(args.end(), {"--out", "x.h5"});
    else args.insert(args.end(), {"--data", stories()});
    expect_refused(rptq_cli(args), {"--stats"}, cmd);
  }
}

TEST(CliBadInput, QuantizationOptionsForACheckpointAreRefused) {
  const std::string m = model("stories260k");
  const auto dir = rptq::test::temp_dir("cli-checkpoint-options");
  const std::string stats = (dir / "stats.h5").string(), ckpt = (dir / "w4a4.h5").string();
  const CliRun cal = rptq_cli({"calibrate", m, "--data", stories(), "--out", stats, "--samples", "2", "--seqlen", "64"});
  ASSERT_EQ(cal.code, 0) << cal.err;
  const CliRun ex = rptq_cli({"export", m, "--stats", stats, "--preset", "W4A4", "--weights", "rtn", "--out", ckpt});
  ASSERT_EQ(ex.code, 0) << ex.err;
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"eval", ckpt, "--data", stories(), "--preset", "W4A4"},
           {"eval", ckpt, "--data", stories(), "--wbits", "3", "--abits", "3"},
           {"generate", ckpt, "--prompt", "Once", "--dynamic"}}) {
    const CliRun r = rptq_cli(args);
    expect_refused(r, {ckpt, "carries its own quantization", args[4], "not apply"}, args[0] + " " + args[4]);
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  const CliRun ok = rptq_cli({"generate", ckpt, "--prompt", "Once", "--max-new-tokens", "2"});
  EXPECT_EQ(ok.code, 0) << ok.err;
}

// ---- Item 3: text that is not UTF-8 with --json ----

// The tokenizers take any bytes (byte fallback, byte-level BPE), so such text is evaluated; what --json prints is
// valid JSON, with U+FFFD in place of the bytes that are not UTF-8 (in the data file's name, the prompt, the text).
TEST(CliBadInput, NonUtf8TextGivesValidJson) {
  const auto dir = rptq::test::temp_dir("cli-non-utf8");
  const std::string data = (dir / "bad\xff name.txt").string();
  rptq::test::write_file(data, rptq::test::read_file(stories()).substr(0, 2000) + "\xff\xfe bad \xc3");
  for (const char* m : {"stories260k", "tiny-opt-16m"}) {
    const CliRun r = rptq_cli({"eval", model(m), "--data", data, "--json", "--seqlen", "64", "--max-windows", "2"});
    ASSERT_EQ(r.code, 0) << m << ": " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_GT(j["ppl"].get<double>(), 1.0) << m;
    EXPECT_EQ(j["data"], (dir / "bad\xef\xbf\xbd name.txt").string());
    const CliRun t = rptq_cli({"tokenize", model(m), "--file", data, "--json"});
    ASSERT_EQ(t.code, 0) << m << ": " << t.err;
    EXPECT_GT(nlohmann::json::parse(t.out)["ids"].size(), 100u);
    const CliRun g = rptq_cli({"generate", model(m), "--prompt", "Once \xff\xfe", "--max-new-tokens", "4", "--json"});
    ASSERT_EQ(g.code, 0) << m << ": " << g.err;
    EXPECT_EQ(nlohmann::json::parse(g.out)["prompt"], "Once \xef\xbf\xbd\xef\xbf\xbd");
  }
}

// ---- Item 5: a tokenizer.json whose normalizer blows the text up ----

TEST(CliBadInput, HostileNormalizerIsRefused) {
  const auto dir = rptq::test::temp_dir("cli-hostile-normalizer");
  for (const auto& e : std::filesystem::directory_iterator(model("stories260k")))
    if (e.path().filename() != "tokenizer.json") std::filesystem::create_symlink(e.path(), dir / e.path().filename());
  auto tok = nlohmann::json::parse(rptq::test::read_file(std::filesystem::path(model("stories260k")) / "tokenizer.json"));
  nlohmann::json seq = nlohmann::json::array();
  for (int i = 0; i < 20; ++i) seq.push_back({{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aa"}});
  tok["normalizer"] = {{"type", "Sequence"}, {"normalizers", seq}};
  rptq::test::write_file(dir / "tokenizer.json", tok.dump());
  const std::string file = (dir / "tokenizer.json").string();
  const auto start = std::chrono::steady_clock::now();
  expect_refused(rptq_cli({"tokenize", dir.string(), "--text", std::string(64, 'a')}), {file, "normalizer"}, "tokenize");
  expect_refused(rptq_cli({"generate", dir.string(), "--prompt", std::string(64, 'a'), "--max-new-tokens", "1"}),
                 {file, "normalizer"}, "generate");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

// ---- Item 6: prompts and windows longer than the model's context ----

TEST(CliBadInput, PromptsAndWindowsBeyondTheContextAreRefused) {
  std::string story;
  for (int i = 0; i < 200; ++i) story += "Once upon a time ";  // ~800 tokens; both models have 512 positions
  for (const char* name : {"stories260k", "tiny-opt-16m"}) {
    const std::string m = model(name);
    const auto start = std::chrono::steady_clock::now();
    expect_refused(rptq_cli({"generate", m, "--prompt", story}), {"--prompt", "longer than the model's 512 positions"},
                   std::string(name) + " long prompt");
    expect_refused(rptq_cli({"generate", m, "--prompt", "Once", "--max-new-tokens", "600"}),
                   {"--max-new-tokens 600", "512 positions", "ask for at most"}, std::string(name) + " prompt + new");
    expect_refused(rptq_cli({"eval", m, "--data", stories(), "--seqlen", "1024"}),
                   {"--seqlen 1024", "512 positions"}, std::string(name) + " eval --seqlen");
    expect_refused(rptq_cli({"calibrate", m, "--data", stories(), "--seqlen", "1024", "--out",
                             (rptq::test::temp_dir("cli-ctx") / "s.h5").string()}),
                   {"--seqlen 1024", "512 positions"}, std::string(name) + " calibrate --seqlen");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20)) << name;
  }
  // Exactly the context is fine.
  const CliRun ok = rptq_cli({"generate", model("stories260k"), "--prompt", "Once", "--max-new-tokens", "510"});
  EXPECT_EQ(ok.code, 0) << ok.err;
}

// ---- Item 7: --threads ----

// More threads than CPUs only oversubscribe them (and OpenBLAS, short of memory for its per-thread buffers under a
// ulimit, spun forever): the count is clamped to the available CPUs with a note; nonsense is refused.
TEST(CliBadInput, ThreadsAreClampedOrRefused) {
  const std::string m = model("stories260k");
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  const std::string many = std::to_string(cpus + 30);
  const CliRun r = rptq_cli({"eval", m, "--data", stories(), "--seqlen", "64", "--max-windows", "1", "--json",
                             "--threads", many});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "note: --threads " + many + " is more than the")) << r.err;
  EXPECT_LE(nlohmann::json::parse(r.out)["threads"].get<unsigned>(), cpus);
  for (const std::string bad : {"-1", "100000", "two", "nan", "1e3"})
    expect_refused(rptq_cli({"eval", m, "--data", stories(), "--threads", bad}), {"--threads"}, "--threads " + bad);
  const CliRun all = rptq_cli({"eval", m, "--data", stories(), "--seqlen", "64", "--max-windows", "1", "--threads", "0"});
  EXPECT_EQ(all.code, 0) << all.err;
  EXPECT_FALSE(contains(all.err, "note:")) << all.err;
}

// ---- Item 4: FIFOs and devices as inputs and outputs ----

// A model folder whose `fifo_name` is a FIFO (named pipe) and whose other files link to stories260k's.
std::filesystem::path model_with_fifo(const std::string& name, const std::string& fifo_name) {
  const auto dir = rptq::test::temp_dir(name);
  for (const auto& e : std::filesystem::directory_iterator(model("stories260k")))
    if (e.path().filename() != fifo_name) std::filesystem::create_symlink(e.path(), dir / e.path().filename());
  EXPECT_EQ(::mkfifo((dir / fifo_name).c_str(), 0600), 0);
  return dir;
}

// Every case runs with a short timeout: a read that blocks on the FIFO would hang the test otherwise.
CliRun rptq_quick(std::vector<std::string> args) {
  args.insert(args.begin(), {"--kill-after=5", "20", RPTQ_CLI_PATH});
  // rptq_cli runs RPTQ_CLI_PATH ARGS; here that is `timeout ... rptq ARGS` through a tiny shell wrapper.
  const auto dir = rptq::test::temp_dir("cli-quick");
  const auto wrapper = dir / "rptq-timeout.sh";
  rptq::test::write_file(wrapper, "#!/bin/sh\nexec timeout \"$@\"\n");
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
  std::string cmd = rptq::test::shell_quote(wrapper.string());
  for (const auto& a : args) cmd.append(" ").append(rptq::test::shell_quote(a));
  cmd.append(" >").append(rptq::test::shell_quote((dir / "out").string()));
  cmd.append(" 2>").append(rptq::test::shell_quote((dir / "err").string())).append(" </dev/null");
  const int status = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = rptq::test::read_file(dir / "out");
  r.err = rptq::test::read_file(dir / "err");
  return r;
}

TEST(CliBadInput, FifoInputsAreRefusedWithoutBlocking) {
  const auto start = std::chrono::steady_clock::now();
  for (const std::string file : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
    const auto dir = model_with_fifo("cli-fifo-" + file, file);
    const CliRun r = rptq_quick({"generate", dir.string(), "--prompt", "Once", "--max-new-tokens", "2"});
    expect_refused(r, {(dir / file).string(), "FIFO"}, file);
    if (file == "config.json") continue;  // the tokenizer does not read it
    const CliRun t = rptq_quick({"tokenize", dir.string(), "--text", "Once"});
    expect_refused(t, {(dir / file).string(), "FIFO"}, "tokenize, " + file);
  }
  const auto dir = rptq::test::temp_dir("cli-fifo-data");
  ASSERT_EQ(::mkfifo((dir / "data.txt").c_str(), 0600), 0);
  const std::string data = (dir / "data.txt").string();
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"eval", model("stories260k"), "--data", data},
           {"calibrate", model("stories260k"), "--data", data, "--out", (dir / "stats.h5").string()},
           {"tokenize", model("stories260k"), "--file", data}}) {
    expect_refused(rptq_quick(args), {data, "FIFO"}, args[0] + " --data FIFO");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
}

TEST(CliBadInput, FifoOrDeviceOutputsAreRefusedBeforeAnyWork) {
  const auto dir = rptq::test::temp_dir("cli-fifo-out");
  ASSERT_EQ(::mkfifo((dir / "out.h5").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo((dir / "hf").c_str(), 0600), 0);
  // The statistics file and data do not exist: were the output not checked first, the run would stop on them
  // (and never write anything; /dev/null must not be replaced even when the tests run as root).
  const std::string stats = (dir / "missing-stats.h5").string(), data = (dir / "missing.txt").string();
  const std::string m = model("stories260k");
  struct Case {
    std::vector<std::string> args;
    std::string target, kind;
  };
  const std::vector<Case> cases = {
      {{"calibrate", m, "--data", data, "--out", (dir / "out.h5").string(), "--force"}, (dir / "out.h5").string(), "FIFO"},
      {{"calibrate", m, "--data", data, "--out", "/dev/null", "--force"}, "/dev/null", "device"},
      {{"export", m, "--stats", stats, "--preset", "W4A4", "--out", (dir / "out.h5").string(), "--force"},
       (dir / "out.h5").string(), "FIFO"},
      {{"export", m, "--stats", stats, "--preset", "W4A4", "--out", "/dev/null", "--force"}, "/dev/null", "device"},
      {{"export", m, "--stats", stats, "--preset", "W4A4", "--format", "safetensors", "--out", (dir / "hf").string(),
        "--force"},
       (dir / "hf").string(), "FIFO"},
      {{"export", m, "--stats", stats, "--preset", "W4A4", "--format", "safetensors", "--out", "/dev/null", "--force"},
       "/dev/null", "device"},
  };
  for (const Case& c : cases) {
    const CliRun r = rptq_quick(c.args);
    expect_refused(r, {c.target, c.kind}, c.args[0] + " --out " + c.target);
  }
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  // Without --force an existing regular file is kept, with the hint.
  rptq::test::write_file(dir / "old.h5", "old");
  const CliRun r = rptq_quick({"calibrate", m, "--data", data, "--out", (dir / "old.h5").string()});
  expect_refused(r, {(dir / "old.h5").string(), "exists", "--force"}, "existing output");
  EXPECT_EQ(rptq::test::read_file(dir / "old.h5"), "old");
}

}  // namespace
