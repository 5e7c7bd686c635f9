// rptq sweep: one quantization setting stepped over values (rptq/method/sweep.h), each point quantized afresh and
// compared with the FP model on the same windows.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli.h"
#include "device_args.h"
#include "quant_args.h"
#include "run_record.h"
#include "rptq/base/error.h"
#include "rptq/engine.h"
#include "rptq/export/stats_file.h"
#include "rptq/io/files.h"
#include "rptq/method/sweep.h"
#include "rptq/model/model_info.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::cli {

namespace {
struct SweepArgs {
  std::string model, data, axis, target, values, out;
  WindowArgs windows;
  int threads = 0;
  bool json = false, csv = false, force = false;
  QuantArgs quant;
  DeviceArgs device;
};

// "32/4/4/32/32": the clusters each index actually got.
std::string used_text(const SweepPoint& p) {
  std::string s;
  for (std::size_t i = 0; i < p.clusters_used.size(); ++i) s.append(i ? "/" : "").append(std::to_string(p.clusters_used[i]));
  return s;
}

void print_table(const SweepResult& r) {
  std::printf("base %s\n", r.base.describe().c_str());
  std::printf("sweep of %s over %zu values; %lld windows of %lld tokens (%lld predicted positions); FP perplexity "
              "%.4f\n",
              r.spec.axis_label().c_str(), r.spec.values.size(), (long long)r.windows, (long long)r.seqlen,
              (long long)r.positions, r.ppl_fp);
  std::printf("%-16s %12s %9s %11s %11s %8s %18s %9s\n", "setting", "ppl", "vs FP", "KL", "KL p99", "top-1",
              "clusters R1..R5", "seconds");
  for (const SweepPoint& p : r.points)
    std::printf("%-16s %12.4f %+8.2f%% %11.5f %11.5f %7.2f%% %18s %9.2f\n", r.spec.setting(p.value).c_str(), p.ppl_q,
                100.0 * (p.ppl_q / r.ppl_fp - 1.0), p.kl, p.kl_p99, 100.0 * p.top1_agreement, used_text(p).c_str(),
                p.quantize_seconds + p.compare_seconds);
}

void run_sweep_command(const SweepArgs& a) {
  // Before any work: the sweep itself, the output target, the base setting.
  const SweepSpec spec = make_sweep_spec(a.axis, a.target, a.values);
  if (!a.out.empty()) {
    check_output_target(a.out, a.force);
    const std::filesystem::path dir = std::filesystem::path(a.out).parent_path();
    if (!dir.empty() && !std::filesystem::is_directory(dir))
      throw InputError(a.out + ": cannot write: no such folder " + dir.string());
  }
  if (a.quant.reorder_only) throw InputError("--reorder-only quantizes nothing: there is nothing to sweep");
  const QuantConfig base = build_quant_config(a.quant);
  require_model_folder(a.model);
  apply_threads(a.threads);
  const Device device = pick_device(a.device);
  const ChannelStats stats = load_stats(a.quant.stats);
  const std::string text = read_text_file(a.data);
  const auto ids = Tokenizer::load(a.model)->encode(text, true);
  const std::unique_ptr<Model> fp = load_model(a.model);
  check_stats_match(stats, fp->config(), a.quant.stats);
  const PerplexityOptions po = window_options(a.windows, fp->config());
  const QuantizeOptions qo = build_quantize_options(a.quant, stats);

  Progress p("sweeping");
  const auto points = static_cast<double>(spec.values.size());
  SweepResult r = run_sweep(
      spec, base, qo, *fp, [&] { return Model::load(a.model); }, stats, ids, po, Execution::on(device),
      [&](const SweepProgress& sp) {
        p.update(sp.fraction() * points, points, " points");
        return true;
      });
  p.finish();
  r.model = a.model;
  r.stats = a.quant.stats;
  r.data = a.data;
  if (!a.out.empty()) {
    if (a.csv)
      save_sweep_csv(a.out, r, a.force);
    else
      save_sweep(a.out, r, a.force);
  }
  // The run history: the base setting, what was swept, and each point's numbers.
  RunRecord rec = command_record("sweep", a.model, r.base, a.quant);
  rec.options["axis"] = sweep_axis_name(r.spec.axis);
  rec.options["target"] = r.spec.target;
  rec.options["values"] = r.spec.values;
  rec.options["data"] = {std::filesystem::absolute(a.data).string()};
  rec.options["seqlen"] = r.seqlen;
  rec.options["windows"] = r.windows;
  rec.options["device"] = device_name(device);
  nlohmann::json pts = nlohmann::json::array();
  for (const SweepPoint& pt : r.points)
    pts.push_back({{"value", pt.value}, {"ppl_q", pt.ppl_q}, {"kl", pt.kl}, {"top1_agreement", pt.top1_agreement}});
  rec.results = {{"ppl_fp", r.ppl_fp}, {"points", pts}, {"seconds", r.seconds}};
  const nlohmann::json run = record_run(rec);
  if (a.json) {
    // The sweep file's JSON (sweep_from_json reads it) with the history record added as "run".
    nlohmann::json j = nlohmann::json::parse(sweep_to_json(r));
    j["run"] = run;
    std::cout << json_text(j) << "\n";
  } else if (a.csv) {
    std::cout << sweep_to_csv(r);
  } else {
    print_table(r);
  }
}
}  // namespace

void add_sweep(CLI::App& app) {
  auto a = std::make_shared<SweepArgs>();
  auto* cmd = app.add_subcommand(
      "sweep", "Quality against one setting (the paper's ablations): each value of the cluster count, activation, "
               "KV-cache or weight bits quantized afresh from a base setting, ppl / KL / top-1 against the FP model");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder")->required();
  cmd->add_option("--data", a->data, "Evaluation text file, tokenized whole with one BOS")->required();
  cmd->add_option("--axis", a->axis,
                  "What is swept: clusters (of --target R1..R5 or all; R2/R3 per head), abits (of one tap or all "
                  "but K/V), kvbits (K and V) or wbits")
      ->required();
  cmd->add_option("--target", a->target,
                  "clusters: R1..R5 or all; abits: attn_input, q, attn_output, ffn_input, ffn_hidden or all; "
                  "kvbits, wbits: all (default all)");
  cmd->add_option("--values", a->values,
                  "Comma list of N, A-B (every integer) or A..B (A, 2A, 4A, ... up to B), e.g. 1,2,4..64 (default: "
                  "clusters 1,2,4..64; bits 2-8,16)");
  add_window_options(cmd, a->windows);
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 4096));
  auto* json = cmd->add_flag("--json", a->json,
                             "Print the sweep as JSON (what --out saves: spec, base setting, ppl_fp, and per point "
                             "value, ppl_q, kl, kl_p50/p90/p99/max, top1_agreement, top1_changed, clusters_used)");
  auto* csv = cmd->add_flag("--csv", a->csv, "Print CSV, one row per point (and --out writes CSV)");
  json->excludes(csv);
  cmd->add_option("--out", a->out, "Also save the sweep to this file: JSON (the GUI loads it), or CSV with --csv; "
                                   "written atomically");
  cmd->add_flag("--force", a->force, "Overwrite an existing --out file");
  add_quant_options(cmd, a->quant, /*stats_required=*/true);
  add_device_option(cmd, a->device);
  cmd->callback([a] { run_sweep_command(*a); });
}

}  // namespace rptq::cli
