#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
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
  std::string model, data;
  WindowArgs windows;
  int threads = 0;
  bool json = false;
  QuantArgs quant;
  DeviceArgs device;
};

void run_compare(const CompareArgs& a) {
  apply_threads(a.threads);
  const Device device = pick_device(a.device);
  const std::string text = read_text_file(a.data);
  auto tok = Tokenizer::load(a.model);
  const auto ids = tok->encode(text, true);
  auto fp = load_model(a.model);
  auto q = load_and_quantize(a.model, a.quant, nullptr, device);
  PerplexityOptions po = window_options(a.windows, fp->config());
  Progress p("comparing");
  po.progress = [&](std::int64_t done, std::int64_t total) {
    p.update(static_cast<double>(done), static_cast<double>(total), " windows");
    return true;
  };
  const CompareResult r = compare_models(*fp, nullptr, q->model(), q.get(), ids, po, Execution::on(device));
  p.finish();
  if (a.json) {
    nlohmann::json j = quant_settings_json(q->config(), a.quant);
    j["model"] = a.model;
    j["data"] = a.data;
    j["ppl_fp"] = r.fp.ppl;
    j["ppl_q"] = r.q.ppl;
    j["kl"] = r.kl;
    j["top1_agreement"] = r.top1_agreement;
    j["windows"] = r.fp.windows;
    j["seqlen"] = r.fp.seqlen;
    j["positions"] = r.positions;
    j["tokens_per_s_fp"] = r.fp.tokens_per_s;
    j["tokens_per_s_q"] = r.q.tokens_per_s;
    add_quantize_time_json(j, *q);
    j["seconds"] = r.seconds;
    add_device_json(j, device);
    std::cout << json_text(j) << "\n";
    return;
  }
  std::printf("%s\n", q->config().describe().c_str());
  std::printf("%lld windows of %lld tokens (%lld predicted positions)\n", (long long)r.fp.windows,
              (long long)r.fp.seqlen, (long long)r.positions);
  std::printf("  perplexity FP         %.4f\n", r.fp.ppl);
  std::printf("  perplexity quantized  %.4f  (%+.2f%%)\n", r.q.ppl, 100.0 * (r.q.ppl / r.fp.ppl - 1.0));
  std::printf("  KL(FP || quantized)   %.5f nats per token\n", r.kl);
  std::printf("  top-1 agreement       %.2f%%\n", 100.0 * r.top1_agreement);
}
}  // namespace

void add_compare(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  auto* cmd = app.add_subcommand("compare", "FP and quantized model side by side: perplexity, KL, top-1 agreement");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder")->required();
  cmd->add_option("--data", a->data, "Evaluation text file, tokenized whole with one BOS")->required();
  add_window_options(cmd, a->windows);
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 4096));
  cmd->add_flag("--json", a->json, "Print JSON (ppl_fp, ppl_q, kl, top1_agreement and the settings)");
  add_quant_options(cmd, a->quant, /*stats_required=*/true);
  add_device_option(cmd, a->device);
  cmd->callback([a] { run_compare(*a); });
}

}  // namespace rptq::cli
