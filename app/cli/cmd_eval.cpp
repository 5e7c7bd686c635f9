#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "run_record.h"
#include "device_args.h"
#include "quant_args.h"
#include "rptq/engine.h"
#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/model/model_info.h"
#include "rptq/eval/perplexity.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::cli {

namespace {
struct EvalArgs {
  std::string model, data;
  WindowArgs windows;
  std::int64_t batch = 1;
  int threads = 0;
  bool json = false;
  QuantArgs quant;
  DeviceArgs device;
};

void run_eval(const EvalArgs& a) {
  apply_threads(a.threads);
  const Device device = pick_device(a.device);
  const std::string text = read_text_file(a.data);
  const ModelSource src = open_model(a.model, a.quant, device);
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = src.tokenizer->encode(text, true);
  const double tokenize_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const Model& m = src.model();
  const QuantizedModel* quantized = src.quantized.get();
  PerplexityOptions po = window_options(a.windows, m.config());
  po.batch = a.batch;
  Progress p("evaluating");
  po.progress = [&](std::int64_t done, std::int64_t total) {
    p.update(static_cast<double>(done), static_cast<double>(total), " windows");
    return true;
  };
  const PerplexityResult r = perplexity(m, quantized, ids, po, Execution::on(device));
  p.finish();
  // A model quantized here (not a checkpoint, not the FP model) is a run of the history.
  nlohmann::json run;
  if (quantized && !src.checkpoint) {
    RunRecord rec = command_record("eval", a.model, quantized->config(), a.quant);
    rec.options["data"] = {std::filesystem::absolute(a.data).string()};
    rec.options["seqlen"] = r.seqlen;
    rec.options["windows"] = r.windows;
    rec.options["device"] = device_name(device);
    rec.results = {{"ppl", r.ppl}, {"seconds", r.seconds}, {"quantize_seconds", quantized->seconds}};
    run = record_run(rec);
  }
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model;
    j["data"] = a.data;
    j["ppl"] = r.ppl;
    j["windows"] = r.windows;
    j["seqlen"] = r.seqlen;
    j["max_windows"] = a.windows.max_windows > 0 ? nlohmann::json(a.windows.max_windows) : nlohmann::json(nullptr);
    j["tokens"] = r.tokens;
    j["tokens_in_file"] = r.tokens_in_text;
    j["seconds"] = r.seconds;
    j["tokens_per_s"] = r.tokens_per_s;
    j["tokenize_seconds"] = tokenize_s;
    j["threads"] = num_threads();
    j["batch"] = a.batch;
    add_device_json(j, device);
    j["weight_bytes"] = m.weight_bytes();  // as held in memory (quantized linears packed)
    if (quantized) {
      j["quantization"] = quant_settings_json(quantized->config(), a.quant);
      j["checkpoint"] = src.checkpoint;
      add_quantize_time_json(j, *quantized);
    }
    if (!run.is_null()) j["run"] = run;
    std::cout << json_text(j) << "\n";
    return;
  }
  if (quantized) std::printf("%s\n", quantized->config().describe().c_str());
  std::printf("perplexity %.6f over %lld windows of %lld tokens (%lld of the file's %lld tokens)\n", r.ppl,
              (long long)r.windows, (long long)r.seqlen, (long long)r.tokens, (long long)r.tokens_in_text);
  std::printf("%.2f s, %.1f tokens/s on %s; weights in memory %s%s\n", r.seconds, r.tokens_per_s,
              device == Device::CUDA ? "the GPU" : (std::to_string(num_threads()) + " threads").c_str(), human_bytes(m.weight_bytes()).c_str(), quantized ? " (linears packed)" : "");
}
}  // namespace

void add_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Measure perplexity on a text file (GPTQ/RPTQ convention)");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder, or an RPTQ checkpoint (.h5 from rptq export)")->required();
  cmd->add_option("--data", a->data, "Text file, tokenized whole with one BOS")->required();
  add_window_options(cmd, a->windows);
  cmd->add_option("--batch", a->batch, "Windows per forward pass (default 1)")->check(CLI::Range(1, 1024));
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 4096));
  cmd->add_flag("--json", a->json, "Print JSON (ppl, windows, seqlen, tokens, seconds, tokens_per_s, ...)");
  add_quant_options(cmd, a->quant, /*stats_required=*/false);
  add_device_option(cmd, a->device);
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace rptq::cli
