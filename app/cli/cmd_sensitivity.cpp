#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "run_record.h"
#include "quant_args.h"
#include "rptq/base/error.h"
#include "rptq/method/calibration.h"
#include "rptq/model/model_info.h"
#include "rptq/method/sensitivity.h"
#include "rptq/export/stats_file.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::cli {

namespace {
struct SensitivityArgs {
  std::string model, data;
  WindowArgs windows;
  int threads = 0;
  bool json = false;
  bool save = false;  // write the result beside --stats
  std::string out;    // or into this sensitivity file
  int suggest = -1;   // keep the N most sensitive taps at suggest_bits (-1: no suggestion)
  int suggest_bits = 8;
  QuantArgs quant;
};

// The memory model's sizes for the suggestion: one sequence of the model's whole context.
constexpr std::int64_t kMemoryBatch = 1;
std::int64_t memory_seqlen(const ModelConfig& m) { return m.max_positions > 0 ? m.max_positions : 2048; }

std::string signed_bytes(std::int64_t d) {
  std::string s = d < 0 ? "-" : "+";
  s += human_bytes(static_cast<std::uint64_t>(d < 0 ? -d : d));
  return s;
}

nlohmann::json cell_json(const SensitivityCell& c) {
  return {{"kl", c.kl}, {"ppl", c.ppl}, {"top1_agreement", c.top1_agreement}};
}
nlohmann::json sum_json(const SensitivityCell& c) {
  return {{"kl", c.kl}, {"ppl_increase", c.ppl}, {"top1_changed", c.top1_agreement}};
}

void run_sensitivity(const SensitivityArgs& a) {
  apply_threads(a.threads);
  if (a.quant.reorder_only) throw InputError("--reorder-only quantizes nothing: there is nothing to probe");
  const QuantConfig cfg = build_quant_config(a.quant);
  const ChannelStats stats = load_stats(a.quant.stats);
  const std::string text = read_text_file(a.data);
  auto tok = Tokenizer::load(a.model);
  const auto ids = tok->encode(text, true);
  auto model = load_model(a.model);
  check_stats_match(stats, model->config(), a.quant.stats);
  const ModelConfig mc = model->config();
  const PerplexityOptions po = window_options(a.windows, mc);
  const QuantizeOptions qo = build_quantize_options(a.quant, stats);
  // The file to save into, checked before the probes run: a damaged one is reported now, not after minutes.
  const std::string save_to = !a.out.empty() ? a.out : a.save ? sensitivity_file_for(a.quant.stats).string() : "";
  if (!save_to.empty() && std::filesystem::exists(save_to)) (void)load_sensitivity_file(save_to);
  auto q = quantize_for_sensitivity(std::move(model), stats, cfg, qo.stat, qo.seed);
  Progress p("probing");
  const SensitivityResult r = activation_sensitivity(*q, ids, po, [&](std::int64_t done, std::int64_t total) {
    p.update(static_cast<double>(done), static_cast<double>(total), " probes");
    return true;
  });
  p.finish();
  if (!save_to.empty()) {
    SensitivityRecord rec;
    rec.setting = make_sensitivity_setting(cfg, qo.stat, qo.seed, stats, a.quant.stats, a.data, sha256_hex(text), po);
    rec.result = r;
    save_sensitivity(save_to, std::move(rec));
    std::fprintf(stderr, "saved the result in %s\n", save_to.c_str());
  }
  std::optional<SensitivitySuggestion> sug;
  std::optional<SuggestionMemory> mem;
  if (a.suggest >= 0) {
    sug = suggest_overrides(r, cfg, a.suggest, a.suggest_bits);
    mem = suggestion_memory(mc, cfg, *sug, kMemoryBatch, memory_seqlen(mc));
  }
  // The run history: the setting, and the probes' headline numbers (the whole map is in --save's file).
  RunRecord rec = command_record("sensitivity", a.model, q->config(), a.quant);
  rec.options = {{"data", {std::filesystem::absolute(a.data).string()}},
                 {"seqlen", r.seqlen},
                 {"windows", r.windows},
                 {"saved", save_to.empty() ? std::string() : std::filesystem::absolute(save_to).string()}};
  {
    std::vector<std::pair<int, std::size_t>> order;
    for (int l = 0; l < r.layers; ++l)
      for (std::size_t t = 0; t < r.taps.size(); ++t) order.emplace_back(l, t);
    std::sort(order.begin(), order.end(), [&](const auto& x, const auto& y) {
      return r.cell(x.first, x.second).kl > r.cell(y.first, y.second).kl;
    });
    nlohmann::json worst = nlohmann::json::array(), per_tap = nlohmann::json::object();
    for (std::size_t i = 0; i < std::min<std::size_t>(10, order.size()); ++i)
      worst.push_back({{"layer", order[i].first},
                       {"tap", r.taps[order[i].second]},
                       {"kl", r.cell(order[i].first, order[i].second).kl}});
    for (std::size_t t = 0; t < r.taps.size(); ++t) per_tap[r.taps[t]] = r.tap_sum(t).kl;
    rec.results = {{"ppl_fp", r.ppl_fp}, {"worst", worst}, {"per_tap_kl", per_tap}, {"seconds", r.seconds}};
  }
  const nlohmann::json run = record_run(rec);
  if (a.json) {
    nlohmann::json j = quant_settings_json(q->config(), a.quant);
    j["run"] = run;
    j["model"] = a.model;
    j["data"] = a.data;
    j["weights_quantized"] = false;
    j["ppl_fp"] = r.ppl_fp;
    j["windows"] = r.windows;
    j["seqlen"] = r.seqlen;
    j["positions"] = r.positions;
    j["seconds"] = r.seconds;
    j["taps"] = r.taps;
    nlohmann::json cells = nlohmann::json::array();
    for (int l = 0; l < r.layers; ++l)
      for (std::size_t t = 0; t < r.taps.size(); ++t) {
        nlohmann::json c = cell_json(r.cell(l, t));
        c["layer"] = l;
        c["tap"] = r.taps[t];
        cells.push_back(std::move(c));
      }
    j["cells"] = std::move(cells);
    nlohmann::json per_layer = nlohmann::json::array(), per_tap = nlohmann::json::object();
    for (int l = 0; l < r.layers; ++l) per_layer.push_back(sum_json(r.layer_sum(l)));
    for (std::size_t t = 0; t < r.taps.size(); ++t) per_tap[r.taps[t]] = sum_json(r.tap_sum(t));
    j["per_layer"] = std::move(per_layer);
    j["per_tap"] = std::move(per_tap);
    if (!save_to.empty()) j["saved"] = save_to;
    if (sug) {
      nlohmann::json kept = nlohmann::json::array();
      for (const auto& k : sug->kept)
        kept.push_back({{"layer", k.layer}, {"tap", tap_name(k.tap)}, {"kl", k.kl}, {"from_bits", k.from_bits}});
      auto sizes = [](const MemoryEstimate& e) {
        return nlohmann::json{{"total_bytes", e.total_bytes},
                              {"weights_bytes", e.weights_bytes},
                              {"kv_cache_bytes", e.kv_cache_bytes},
                              {"activation_bytes", e.activation_bytes}};
      };
      j["suggestion"] = {{"n", a.suggest},
                         {"bits", sug->bits},
                         {"overrides", sug->overrides},
                         {"kept", std::move(kept)},
                         {"memory", {{"batch", kMemoryBatch},
                                     {"seqlen", memory_seqlen(mc)},
                                     {"before", sizes(mem->before)},
                                     {"after", sizes(mem->after)},
                                     {"delta_bytes", mem->delta_bytes()}}}};
    }
    std::cout << json_text(j) << "\n";
    return;
  }
  std::printf("%s; each (layer, tap) alone, weights and every other activation in full precision\n",
              q->config().describe().c_str());
  std::printf("%lld windows of %lld tokens; FP perplexity %.4f\n", (long long)r.windows, (long long)r.seqlen,
              r.ppl_fp);
  std::printf("KL(FP || probe), nats per token:\n%6s", "layer");
  for (const std::string& t : r.taps) std::printf(" %11s", t.c_str());
  std::printf(" %11s\n", "sum");
  for (int l = 0; l < r.layers; ++l) {
    std::printf("%6d", l);
    for (std::size_t t = 0; t < r.taps.size(); ++t) std::printf(" %11.5f", r.cell(l, t).kl);
    std::printf(" %11.5f\n", r.layer_sum(l).kl);
  }
  std::printf("%6s", "sum");
  for (std::size_t t = 0; t < r.taps.size(); ++t) std::printf(" %11.5f", r.tap_sum(t).kl);
  std::printf("\n");
  // The worst probes by KL, with their perplexity and top-1 agreement.
  std::vector<std::pair<int, std::size_t>> order;
  for (int l = 0; l < r.layers; ++l)
    for (std::size_t t = 0; t < r.taps.size(); ++t) order.emplace_back(l, t);
  std::sort(order.begin(), order.end(), [&](const auto& x, const auto& y) {
    return r.cell(x.first, x.second).kl > r.cell(y.first, y.second).kl;
  });
  std::printf("worst:\n");
  for (std::size_t i = 0; i < std::min<std::size_t>(10, order.size()); ++i) {
    const SensitivityCell& c = r.cell(order[i].first, order[i].second);
    std::printf("  layer %2d %-11s KL %.5f  ppl %.4f (%+.2f%%)  top-1 %.2f%%\n", order[i].first,
                r.taps[order[i].second].c_str(), c.kl, c.ppl, 100.0 * (c.ppl / r.ppl_fp - 1.0),
                100.0 * c.top1_agreement);
  }
  if (sug) {
    std::printf("suggestion: keep the %zu most sensitive taps at %d bits (K, V and the softmax have one setting for "
                "every layer and are left out):\n",
                sug->kept.size(), sug->bits);
    for (const auto& k : sug->kept)
      std::printf("  layer %2d %-11s KL %.5f (now %d-bit)\n", k.layer, tap_name(k.tap), k.kl, k.from_bits);
    for (std::size_t i = 0; i < sug->overrides.size(); ++i)
      std::printf("%s--override \"%s\"", i ? " " : "  ", sug->overrides[i].c_str());
    std::printf("\n");
    std::printf("memory (batch %lld x %lld tokens): %s -> %s (%s; activations %s -> %s)\n", (long long)kMemoryBatch,
                (long long)memory_seqlen(mc), human_bytes(mem->before.total_bytes).c_str(),
                human_bytes(mem->after.total_bytes).c_str(), signed_bytes(mem->delta_bytes()).c_str(),
                human_bytes(mem->before.activation_bytes).c_str(), human_bytes(mem->after.activation_bytes).c_str());
  }
}
}  // namespace

void add_sensitivity(CLI::App& app) {
  auto a = std::make_shared<SensitivityArgs>();
  auto* cmd = app.add_subcommand(
      "sensitivity", "Which activation hurts: each (layer, tap) quantized alone (weights and the rest in FP), KL / "
                     "ppl / top-1 against the FP model, with per-layer and per-tap sums");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder")->required();
  cmd->add_option("--data", a->data, "Evaluation text file, tokenized whole with one BOS")->required();
  add_window_options(cmd, a->windows);
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 4096));
  cmd->add_flag("--json", a->json, "Print JSON: taps, cells (layer, tap, kl, ppl, top1_agreement), per_layer, "
                                   "per_tap and the settings");
  cmd->add_flag("--save", a->save, "Save the result beside --stats (STATS.sensitivity.json: one record per setting "
                                   "and text, replaced when re-run; the workbench reloads it)");
  cmd->add_option("--out", a->out, "Save the result into this sensitivity file instead (kept records: those of the "
                                   "same statistics file)");
  auto* suggest = cmd->add_option("--suggest", a->suggest,
                                  "Suggest --override arguments that keep the N most sensitive (layer, tap) probes at "
                                  "--suggest-bits, with the memory model's cost");
  suggest->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--suggest-bits", a->suggest_bits, "Bits of the kept taps: 2..8, or 16 for FP (default 8)")
      ->check(CLI::IsMember({2, 3, 4, 5, 6, 7, 8, 16}))
      ->needs(suggest);
  add_quant_options(cmd, a->quant, /*stats_required=*/true);
  cmd->callback([a] { run_sensitivity(*a); });
}

}  // namespace rptq::cli
