#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "run_record.h"
#include "device_args.h"
#include "quant_args.h"
#include "rptq/engine.h"
#include "rptq/eval/compare.h"
#include "rptq/base/error.h"
#include "rptq/model/model_info.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::cli {

namespace {
struct CompareArgs {
  std::string model;
  std::vector<std::string> data;  // empty: the bundled samples (default_compare_texts)
  WindowArgs windows;
  int threads = 0;
  bool json = false, csv = false;
  QuantArgs quant;
  DeviceArgs device;
};

// The shipped resources, found as the workbench finds them: $RPTQ_RESOURCES_DIR, else beside the executable
// (../share/rptq-workbench/resources, the installed package), else the source tree's resources/ of this build.
std::filesystem::path resources_dir() {
  std::error_code ec;
  if (const char* env = std::getenv("RPTQ_RESOURCES_DIR"); env && *env && std::filesystem::is_directory(env, ec))
    return env;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path installed = exe.parent_path() / ".." / "share" / "rptq-workbench" / "resources";
    if (std::filesystem::is_directory(installed / "models", ec)) return installed.lexically_normal();
  }
  return RPTQ_RESOURCES_DIR;
}

// The texts to compare on: each --data file, or without one the bundled samples; named by their file names' stems.
std::vector<std::string> text_paths(const CompareArgs& a) {
  if (!a.data.empty()) return a.data;
  std::vector<std::string> paths;
  for (const std::string& rel : default_compare_texts()) paths.push_back((resources_dir() / rel).string());
  return paths;
}

double delta_pct(const CompareResult& r) { return 100.0 * (r.q.ppl / r.fp.ppl - 1.0); }

// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break, quotes doubled.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// Round-trip precision: the CSV's numbers are the library's doubles exactly.
std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void print_csv(const std::vector<CompareText>& texts, const std::vector<CompareResult>& rs) {
  std::printf("name,path,ppl_fp,ppl_q,ppl_delta_pct,kl,kl_p50,kl_p90,kl_p99,kl_max,top1_agreement,top1_changed,"
              "windows,positions\n");
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const CompareResult& r = rs[i];
    std::string line = csv_field(texts[i].name);
    line.append(",").append(csv_field(texts[i].path));
    for (double v : {r.fp.ppl, r.q.ppl, delta_pct(r), r.kl, r.kl_p50, r.kl_p90, r.kl_p99, r.kl_max, r.top1_agreement,
                     r.top1_changed})
      line.append(",").append(num(v));
    line.append(",").append(std::to_string(r.fp.windows)).append(",").append(std::to_string(r.positions));
    std::printf("%s\n", line.c_str());
  }
}

// One row per text: perplexities, their change, the mean KL and its distribution, the top-1 changes.
void print_table(const std::vector<CompareText>& texts, const std::vector<CompareResult>& rs) {
  int w = 4;
  for (const CompareText& t : texts) w = std::max(w, static_cast<int>(t.name.size()));
  std::printf("%-*s  %10s  %10s  %8s  %9s  %9s  %9s  %9s  %9s  %9s  %8s\n", w, "text", "ppl FP", "ppl quant",
              "delta", "KL mean", "KL p50", "KL p90", "KL p99", "KL max", "top-1 chg", "windows");
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const CompareResult& r = rs[i];
    std::printf("%-*s  %10.4f  %10.4f  %+7.2f%%  %9.5f  %9.5f  %9.5f  %9.5f  %9.5f  %8.2f%%  %8lld\n", w,
                texts[i].name.c_str(), r.fp.ppl, r.q.ppl, delta_pct(r), r.kl, r.kl_p50, r.kl_p90, r.kl_p99, r.kl_max,
                100.0 * r.top1_changed, static_cast<long long>(r.fp.windows));
  }
  std::printf("KL(FP || quantized) in nats per predicted position, p50/p90/p99 nearest-rank percentiles; top-1 chg: "
              "positions whose top token changed\n");
}

nlohmann::json text_json(const CompareText& t, const CompareResult& r) {
  nlohmann::json j;
  j["name"] = t.name;
  j["path"] = t.path;
  j["ppl_fp"] = r.fp.ppl;
  j["ppl_q"] = r.q.ppl;
  j["kl"] = r.kl;
  j["kl_p50"] = r.kl_p50;
  j["kl_p90"] = r.kl_p90;
  j["kl_p99"] = r.kl_p99;
  j["kl_max"] = r.kl_max;
  j["top1_agreement"] = r.top1_agreement;
  j["top1_changed"] = r.top1_changed;
  j["windows"] = r.fp.windows;
  j["positions"] = r.positions;
  j["tokens_in_file"] = r.fp.tokens_in_text;
  j["seconds"] = r.seconds;
  return j;
}

void run_compare(const CompareArgs& a) {
  apply_threads(a.threads);
  const Device device = pick_device(a.device);
  // Every text read (a bad file named before any work), then tokenized and its windows checked before the long
  // quantization.
  std::vector<std::string> contents;
  std::vector<CompareText> texts;
  for (const std::string& path : text_paths(a)) {
    contents.push_back(read_text_file(path));
    texts.push_back({std::filesystem::path(path).stem().string(), path, {}});
  }
  auto tok = Tokenizer::load(a.model);
  for (std::size_t i = 0; i < texts.size(); ++i) texts[i].ids = tok->encode(contents[i], true);
  contents.clear();
  auto fp = load_model(a.model);
  PerplexityOptions po = window_options(a.windows, fp->config());
  const std::int64_t total = compare_texts_windows(texts, po);
  auto q = load_and_quantize(a.model, a.quant, nullptr, device);
  Progress p("comparing");
  po.progress = [&](std::int64_t done, std::int64_t all) {
    p.update(static_cast<double>(done), static_cast<double>(all), " windows");
    return true;
  };
  const std::vector<CompareResult> rs = compare_texts(*fp, nullptr, q->model(), q.get(), texts, po,
                                                      Execution::on(device));
  p.finish();
  const CompareResult& r = rs.front();  // the top-level keys and the one-text summary: the first text's
  // The run history: the comparison with its whole setting and every text's numbers.
  RunRecord rec = command_record("compare", a.model, q->config(), a.quant);
  rec.options["data"] = nlohmann::json::array();
  for (const CompareText& t : texts) rec.options["data"].push_back(std::filesystem::absolute(t.path).string());
  rec.options["seqlen"] = rs.front().fp.seqlen;
  rec.options["windows"] = rs.front().fp.windows;
  rec.options["device"] = device_name(device);
  rec.results = {{"ppl_fp", rs.front().fp.ppl},
                 {"ppl_q", rs.front().q.ppl},
                 {"kl", rs.front().kl},
                 {"top1_agreement", rs.front().top1_agreement},
                 {"positions", rs.front().positions},
                 {"quantize_seconds", q->seconds},
                 {"texts", nlohmann::json::array()}};
  for (std::size_t i = 0; i < rs.size(); ++i) rec.results["texts"].push_back(text_json(texts[i], rs[i]));
  const nlohmann::json run = record_run(rec);
  if (a.json) {
    nlohmann::json j = quant_settings_json(q->config(), a.quant);
    j["model"] = a.model;
    j["data"] = texts.front().path;
    j["ppl_fp"] = r.fp.ppl;
    j["ppl_q"] = r.q.ppl;
    j["kl"] = r.kl;
    j["kl_p50"] = r.kl_p50;
    j["kl_p90"] = r.kl_p90;
    j["kl_p99"] = r.kl_p99;
    j["kl_max"] = r.kl_max;
    j["top1_agreement"] = r.top1_agreement;
    j["top1_changed"] = r.top1_changed;
    j["windows"] = r.fp.windows;
    j["seqlen"] = r.fp.seqlen;
    j["positions"] = r.positions;
    j["tokens_per_s_fp"] = r.fp.tokens_per_s;
    j["tokens_per_s_q"] = r.q.tokens_per_s;
    add_quantize_time_json(j, *q);
    j["seconds"] = r.seconds;
    add_device_json(j, device);
    j["texts"] = nlohmann::json::array();
    for (std::size_t i = 0; i < rs.size(); ++i) j["texts"].push_back(text_json(texts[i], rs[i]));
    j["run"] = run;
    std::cout << json_text(j) << "\n";
    return;
  }
  if (a.csv) {
    print_csv(texts, rs);
    return;
  }
  std::printf("%s\n", q->config().describe().c_str());
  if (rs.size() > 1) {
    std::printf("%zu texts, %lld windows of %lld tokens in all\n", rs.size(), static_cast<long long>(total),
                static_cast<long long>(r.fp.seqlen));
    print_table(texts, rs);
    return;
  }
  std::printf("%lld windows of %lld tokens (%lld predicted positions)\n", (long long)r.fp.windows,
              (long long)r.fp.seqlen, (long long)r.positions);
  std::printf("  perplexity FP         %.4f\n", r.fp.ppl);
  std::printf("  perplexity quantized  %.4f  (%+.2f%%)\n", r.q.ppl, delta_pct(r));
  std::printf("  KL(FP || quantized)   %.5f nats per token\n", r.kl);
  std::printf("  KL p50 / p90 / p99    %.5f / %.5f / %.5f, max %.5f (nearest-rank, over the positions)\n", r.kl_p50,
              r.kl_p90, r.kl_p99, r.kl_max);
  std::printf("  top-1 agreement       %.2f%%  (changed at %.2f%% of the positions)\n", 100.0 * r.top1_agreement,
              100.0 * r.top1_changed);
}
}  // namespace

void add_compare(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  auto* cmd = app.add_subcommand("compare", "FP and quantized model side by side: perplexity, KL, top-1 agreement");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder")->required();
  cmd->add_option("--data", a->data,
                  "Evaluation text file, tokenized whole with one BOS; repeatable: one table row per file (WikiText-2, "
                  "PTB, C4, ...), quantized once. Without --data: the bundled samples, " +
                      std::string("resources/data/wikitext2-sample.txt and c4-sample.txt"))
      ->allow_extra_args(false);  // one file per --data, as before: `--data FILE MODEL` leaves MODEL positional
  add_window_options(cmd, a->windows);
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 4096));
  auto* json = cmd->add_flag("--json", a->json,
                             "Print JSON: ppl_fp, ppl_q, kl, kl_p50/p90/p99/max, top1_agreement and the settings for "
                             "the first text, and `texts`, the same for every text");
  cmd->add_flag("--csv", a->csv, "Print the table as CSV (one row per text, full precision)")->excludes(json);
  add_quant_options(cmd, a->quant, /*stats_required=*/true);
  add_device_option(cmd, a->device);
  cmd->callback([a] { run_compare(*a); });
}

}  // namespace rptq::cli
