// rptq memory: weights, KV cache and activation bytes of a model at batch x seqlen, per quantization setting.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "rptq/base/error.h"
#include "rptq/eval/memory_model.h"

namespace rptq::cli {

namespace {
struct MemoryArgs {
  std::string model, arch, preset;
  std::int64_t batch = 0, seqlen = 0;
  bool json = false;
};

double gb(std::uint64_t b) { return static_cast<double>(b) / 1e9; }
double gib(std::uint64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); }
// Three decimals, or three significant digits below 1, so small models do not print as zero.
std::string decimal(double v) {
  int digits = 3;
  if (v > 0 && v < 1) digits = std::min(9, 2 - static_cast<int>(std::floor(std::log10(v))));
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}
std::string both(std::uint64_t b) { return decimal(gb(b)) + " GB (" + decimal(gib(b)) + " GiB)"; }
std::string bytes(std::uint64_t b) { return std::to_string(b) + " B"; }
std::string bits_name(int b) { return b < kFullPrecisionBits ? std::to_string(b) + "-bit" : std::string("FP16"); }

nlohmann::json bits_json(const QuantConfig& q) {
  nlohmann::json j;
  j["weights"] = q.wbits;
  j["kv"] = q.kv_bits();
  for (int t = 0; t < kTapCount; ++t) j[tap_name(static_cast<Tap>(t))] = q.abits[static_cast<std::size_t>(t)];
  j["softmax"] = q.softmax_bits;
  return j;
}

nlohmann::json estimate_json(const MemoryEstimate& e, const QuantConfig& q) {
  nlohmann::json j;
  j["preset"] = q.name;
  j["weights_bytes"] = e.weights_bytes;
  j["kv_cache_bytes"] = e.kv_cache_bytes;
  j["activation_bytes"] = e.activation_bytes;
  j["total_bytes"] = e.total_bytes;
  j["bits"] = bits_json(q);
  j["breakdown"] = {{"linear_weight_bytes", e.linear_weight_bytes}, {"linear_param_bytes", e.linear_param_bytes},
                    {"fp_weight_bytes", e.fp_weight_bytes},         {"kv_bytes_per_token", e.kv_bytes_per_token},
                    {"kv_data_bytes", e.kv_data_bytes},             {"kv_param_bytes", e.kv_param_bytes},
                    {"residual_bytes", e.residual_bytes},           {"attention_bytes", e.attention_bytes},
                    {"ffn_bytes", e.ffn_bytes}};
  return j;
}

void run_memory(const MemoryArgs& a) {
  if (a.model.empty() == a.arch.empty())
    throw InputError(a.model.empty() ? "give a MODEL folder or --arch NAME"
                                     : "give a MODEL folder or --arch, not both");
  if (a.batch < 1) throw InputError("--batch must be at least 1; got " + std::to_string(a.batch));
  if (a.seqlen < 1) throw InputError("--seqlen must be at least 1; got " + std::to_string(a.seqlen));
  ModelConfig cfg;
  std::string arch;
  if (!a.arch.empty()) {
    cfg = opt_arch(a.arch);
    for (char c : a.arch) arch += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  } else {
    cfg = ModelConfig::load(a.model);
    arch = cfg.arch_name();
  }
  std::vector<QuantConfig> presets;
  if (!a.preset.empty()) {
    presets.push_back(QuantConfig::preset(a.preset));
  } else {
    for (const auto& n : QuantConfig::preset_names()) presets.push_back(QuantConfig::preset(n));
  }
  std::vector<MemoryEstimate> est;
  for (const auto& q : presets) est.push_back(estimate_memory(cfg, q, a.batch, a.seqlen));
  // The paper's headline: what W4A4 saves over weight-only W4A16.
  const MemoryEstimate* w4a4 = nullptr;
  const MemoryEstimate* w4a16 = nullptr;
  for (const auto& e : est) {
    if (e.preset == "W4A4") w4a4 = &e;
    if (e.preset == "W4A16") w4a16 = &e;
  }
  const bool saving = w4a4 && w4a16 && w4a16->total_bytes >= w4a4->total_bytes;

  if (a.json) {
    nlohmann::json j;
    j["arch"] = arch;
    if (!a.model.empty()) j["model"] = a.model;
    j["batch"] = a.batch;
    j["seqlen"] = a.seqlen;
    if (!a.preset.empty()) {
      j.update(estimate_json(est[0], presets[0]));
    } else {
      j["presets"] = nlohmann::json::array();
      for (std::size_t i = 0; i < est.size(); ++i) j["presets"].push_back(estimate_json(est[i], presets[i]));
      if (saving) j["w4a4_saving_vs_w4a16_bytes"] = w4a16->total_bytes - w4a4->total_bytes;
    }
    std::cout << json_text(j) << "\n";
    return;
  }

  std::printf("%s: %lld layers, hidden %lld, FFN %lld, KV width %lld; batch %lld x seqlen %lld = %lld tokens\n",
              arch.c_str(), (long long)cfg.layers, (long long)cfg.hidden, (long long)cfg.intermediate,
              (long long)cfg.kv_dim(), (long long)a.batch, (long long)a.seqlen, (long long)(a.batch * a.seqlen));
  if (a.seqlen > cfg.max_positions)
    std::printf("note: seqlen %lld is longer than the model's %lld positions\n", (long long)a.seqlen,
                (long long)cfg.max_positions);
  if (!a.preset.empty()) {
    const MemoryEstimate& e = est[0];
    const QuantConfig& q = presets[0];
    std::printf("setting      %s\n", q.describe().c_str());
    std::printf("weights      %-28s linears %s %s + scale/zero %s + FP16 rest %s\n", both(e.weights_bytes).c_str(),
                bits_name(q.wbits).c_str(), bytes(e.linear_weight_bytes).c_str(), bytes(e.linear_param_bytes).c_str(),
                bytes(e.fp_weight_bytes).c_str());
    std::printf("KV cache     %-28s %s, %s per token + per-cluster params %s\n", both(e.kv_cache_bytes).c_str(),
                bits_name(e.kv_bits).c_str(), bytes(e.kv_bytes_per_token).c_str(), bytes(e.kv_param_bytes).c_str());
    std::printf("activations  %-28s residual %s + max(q/k/v %s, FFN hidden %s)\n", both(e.activation_bytes).c_str(),
                bytes(e.residual_bytes).c_str(), bytes(e.attention_bytes).c_str(), bytes(e.ffn_bytes).c_str());
    std::printf("total        %s\n", both(e.total_bytes).c_str());
    return;
  }
  std::printf("%-8s  %-28s  %-28s  %-28s  %s\n", "preset", "weights", "KV cache", "activations", "total");
  for (const auto& e : est)
    std::printf("%-8s  %-28s  %-28s  %-28s  %s\n", e.preset.c_str(), both(e.weights_bytes).c_str(),
                both(e.kv_cache_bytes).c_str(), both(e.activation_bytes).c_str(), both(e.total_bytes).c_str());
  if (saving)
    std::printf("W4A4 vs W4A16: saves %s (%.1f%% of the W4A16 total); KV cache %s GB -> %s GB\n",
                both(w4a16->total_bytes - w4a4->total_bytes).c_str(),
                100.0 * static_cast<double>(w4a16->total_bytes - w4a4->total_bytes) /
                    static_cast<double>(w4a16->total_bytes),
                decimal(gb(w4a16->kv_cache_bytes)).c_str(), decimal(gb(w4a4->kv_cache_bytes)).c_str());
}
}  // namespace

void add_memory(CLI::App& app) {
  auto a = std::make_shared<MemoryArgs>();
  auto* cmd = app.add_subcommand(
      "memory", "Estimate weights, KV cache and activation memory at batch x seqlen, per quantization setting");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder (its config.json), or use --arch");
  std::string names;
  for (const auto& n : opt_arch_names()) names += (names.empty() ? "" : ", ") + n;
  cmd->add_option("--arch", a->arch, "Built-in architecture: " + names);
  cmd->add_option("--batch", a->batch, "Sequences served at once")->required();
  cmd->add_option("--seqlen", a->seqlen, "Tokens per sequence (prompt + generated)")->required();
  std::string presets;
  for (const auto& n : QuantConfig::preset_names()) presets += (presets.empty() ? "" : ", ") + n;
  cmd->add_option("--preset", a->preset, "One setting with its breakdown (default: a table of all: " + presets + ")");
  cmd->add_flag("--json", a->json, "Print JSON (weights_bytes, kv_cache_bytes, activation_bytes, total_bytes, ...)");
  cmd->callback([a] { run_memory(*a); });
}

}  // namespace rptq::cli
