#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "device_args.h"
#include "quant_args.h"
#include "rptq/base/error.h"
#include "rptq/engine.h"
#include "rptq/eval/generate.h"
#include "rptq/model/model.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::cli {

namespace {
struct GenerateArgs {
  std::string model, prompt;
  std::int64_t max_new_tokens = 64, top_k = 0;
  float temperature = 0.0f;
  std::uint64_t seed = 0;
  int threads = 0;
  bool json = false, no_stop = false;
  QuantArgs quant;
  DeviceArgs device;
};

void run_generate(const GenerateArgs& a) {
  apply_threads(a.threads);
  const Device device = pick_device(a.device);
  const ModelSource src = open_model(a.model, a.quant, device);
  const Tokenizer* tok = src.tokenizer.get();
  const Model* model = &src.model();
  const QuantizedModel* quantized = src.quantized.get();
  const auto prompt = tok->encode(a.prompt, true);
  // The prompt and the tokens asked for must fit the model's context (the core would stop at its end).
  const std::int64_t positions = model->config().max_positions;
  const auto prompt_tokens = static_cast<std::int64_t>(prompt.size());
  if (prompt_tokens > positions)
    throw InputError("--prompt is " + std::to_string(prompt_tokens) + " tokens, longer than the model's " +
                     std::to_string(positions) + " positions (max_position_embeddings)");
  if (prompt_tokens + a.max_new_tokens > positions)
    throw InputError("--prompt (" + std::to_string(prompt_tokens) + " tokens) and --max-new-tokens " +
                     std::to_string(a.max_new_tokens) + " exceed the model's " + std::to_string(positions) +
                     " positions (max_position_embeddings); ask for at most " +
                     std::to_string(positions - prompt_tokens) + " new tokens");
  GenerateOptions go;
  go.max_new_tokens = a.max_new_tokens;
  go.temperature = a.temperature;
  go.top_k = a.top_k;
  go.seed = a.seed;
  go.stop_at_eos = !a.no_stop;
  if (quantized) go.kv_quant = quantized->kv_quantization();
  go.eos_id = tok->eos_id() >= 0 ? tok->eos_id() : model->config().eos_token;

  // Stream: the prompt as given, then each new token's text as soon as it forms whole UTF-8 characters.
  // The prompt's text is printed verbatim, so the stream continues it (no leading-space stripping).
  StreamDecoder stream(*tok, /*at_text_start=*/false);
  std::string text;
  if (!a.json) {
    std::fputs(a.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  const auto on_token = [&](std::int32_t id) {
    if (id == go.eos_id && go.stop_at_eos) return true;
    const std::string piece = stream.push(id);
    text += piece;
    if (!a.json) {
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
    }
    return true;
  };
  const GenerateResult r = generate(*model, quantized, prompt, go, on_token, Execution::on(device));
  const std::string rest = stream.finish();
  text += rest;
  const double decode_tps = r.decode_seconds > 0 ? (r.tokens.size() > 1 ? (r.tokens.size() - 1) / r.decode_seconds : 0) : 0;
  if (a.json) {
    nlohmann::json j;
    j["prompt"] = a.prompt;
    j["text"] = text;
    j["tokens"] = r.tokens;
    j["prompt_tokens"] = r.prompt_tokens;
    j["new_tokens"] = r.tokens.size();
    j["stopped_at_eos"] = r.stopped_at_eos;
    j["prefill_seconds"] = r.prefill_seconds;
    j["decode_seconds"] = r.decode_seconds;
    j["decode_tokens_per_s"] = decode_tps;
    j["kv_cache_bytes"] = r.kv_cache_bytes;
    j["kv_cache_fp16_bytes"] = r.kv_cache_fp16_bytes;
    j["kv_cache_bits"] = r.kv_bits;
    add_device_json(j, device);
    if (quantized) j["quantization"] = quant_settings_json(quantized->config(), a.quant);
    std::cout << json_text(j) << "\n";
    return;
  }
  std::fputs(rest.c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  const std::string kv = r.kv_bits < 32 ? std::to_string(r.kv_bits) + "-bit packed" : std::string("float32");
  std::fprintf(stderr, "[%zu new tokens after a %lld-token prompt; prefill %.3f s, %.1f tokens/s decoding on %s; "
               "KV cache %s (%s; FP16 would be %s)]\n",
               r.tokens.size(), (long long)r.prompt_tokens, r.prefill_seconds, decode_tps,
               device == Device::CUDA ? "the GPU" : "the CPU",
               human_bytes(r.kv_cache_bytes).c_str(), kv.c_str(), human_bytes(r.kv_cache_fp16_bytes).c_str());
}
}  // namespace

void add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Continue a prompt, streaming the text as it is generated");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder, or an RPTQ checkpoint (.h5 from rptq export)")->required();
  cmd->add_option("--prompt", a->prompt, "The prompt text")->required();
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "Tokens to generate (default 64)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temperature", a->temperature, "Sampling temperature; 0 = greedy (default)")
      ->check(finite_range(0.0, 100.0));
  cmd->add_option("--top-k", a->top_k, "Sample only from the k most likely tokens (0 = all)")
      ->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--seed", a->seed, "Random seed for sampling (default 0)")
      ->check(unsigned_number());
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 4096));
  cmd->add_flag("--no-stop", a->no_stop, "Do not stop at the end-of-sequence token");
  cmd->add_flag("--json", a->json, "Print JSON at the end instead of streaming");
  add_quant_options(cmd, a->quant, /*stats_required=*/false);
  add_device_option(cmd, a->device);
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace rptq::cli
