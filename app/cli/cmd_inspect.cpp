#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "rptq/model/model_info.h"
#include "rptq/base/error.h"
#include "rptq/export/qcheckpoint.h"
#include "rptq/method/quantize.h"

namespace rptq::cli {

namespace {
struct InspectArgs {
  std::string model;
  bool json = false;
};

// What each layer of a loaded quantized model holds: the bits of every tap (16: float; "d" dynamic, "t" per
// token), the weight bits of its linears and the cluster counts of its reorder indices. Read from the model's
// quantizers and packed weights, not recomputed from the setting, so a mixed-precision checkpoint shows what it
// really stores.
nlohmann::json layer_table(const QuantizedModel& q) {
  nlohmann::json rows = nlohmann::json::array();
  const ModelConfig& m = q.model().config();
  for (int l = 0; l < static_cast<int>(m.layers); ++l) {
    const LayerQuantization& lq = q.layer(l);
    nlohmann::json abits = nlohmann::json::object(), mode = nlohmann::json::object();
    for (Tap t : kAllTaps) {
      const TapQuantizer& tq = lq.taps[static_cast<std::size_t>(t)];
      abits[tap_name(t)] = tq.bits;
      mode[tap_name(t)] = !tq.active() ? "float" : tq.per_token ? "per-token" : tq.dynamic ? "dynamic" : "static";
    }
    nlohmann::json wbits = nlohmann::json::object();
    for (const NamedLinear& n : layer_linears(m, q.model().layer(l)))
      wbits[n.name] = n.weights->packed ? n.weights->packed->bits : kFullPrecisionBits;
    const LayerReorder& r = lq.reorder;
    rows.push_back({{"layer", l},
                    {"abits", abits},
                    {"ranges", mode},
                    {"wbits", wbits},
                    {"clusters", {{"R1", r.r1.clusters()}, {"R2", r.r2.clusters()}, {"R3", r.r3.clusters()},
                                  {"R4", r.r4.clusters()}, {"R5", r.r5.clusters()}}}});
  }
  return rows;
}

void print_layer_table(const QuantizedModel& q, const nlohmann::json& rows) {
  const ModelConfig& m = q.model().config();
  std::string names;  // the linears in the model's order
  for (const NamedLinear& n : layer_linears(m, q.model().layer(0))) {
    if (!names.empty()) names += '/';
    names += n.name;
  }
  std::printf("per layer     tap bits (d dynamic, t per token), weight bits, clusters (R2, R3: all heads together):\n");
  std::printf("  %5s", "layer");
  for (Tap t : kAllTaps) std::printf(" %11s", tap_name(t));
  std::printf("  %-20s %s\n", names.c_str(), "R1/R2/R3/R4/R5");
  for (const nlohmann::json& row : rows) {
    const int l = row["layer"].get<int>();
    std::printf("  %5d", l);
    for (Tap t : kAllTaps) {
      const std::string mode = row["ranges"][tap_name(t)].get<std::string>();
      std::printf(" %10d%s", row["abits"][tap_name(t)].get<int>(),
                  mode == "dynamic" ? "d" : mode == "per-token" ? "t" : " ");
    }
    std::string w;
    for (const NamedLinear& n : layer_linears(m, q.model().layer(l))) {
      if (!w.empty()) w += '/';
      w += std::to_string(row["wbits"][n.name].get<int>());
    }
    const nlohmann::json& c = row["clusters"];
    std::printf("  %-20s %d/%d/%d/%d/%d\n", w.c_str(), c["R1"].get<int>(), c["R2"].get<int>(), c["R3"].get<int>(),
                c["R4"].get<int>(), c["R5"].get<int>());
  }
}

// An RPTQ checkpoint: what was quantized how, and the packed bytes of the linear layers beside their FP16 size.
void inspect_quantized(const InspectArgs& a) {
  const CheckpointInfo c = inspect_checkpoint(a.model);
  // Everything eval checks, so that inspect never passes a file eval refuses: the whole model and its tokenizer.
  const auto q = load_checkpoint(a.model);
  (void)load_checkpoint_tokenizer(a.model);
  const std::string overrides = q->config().overrides_spec();
  const nlohmann::json layers = layer_table(*q);
  const double ratio = c.linear_fp16_bytes
                           ? static_cast<double>(c.linear_packed_bytes + c.linear_param_bytes) / c.linear_fp16_bytes
                           : 0.0;
  if (a.json) {
    nlohmann::json j;
    j["checkpoint"] = a.model;
    j["format_version"] = c.format_version;
    j["tool_version"] = c.tool_version;
    j["created"] = c.created;
    j["model_type"] = c.model_type;
    j["architecture"] = c.architecture;
    j["source"] = c.source_path;
    j["preset"] = c.preset;
    j["description"] = c.description;
    j["wbits"] = c.wbits;
    j["kv_bits"] = c.kv_bits;
    j["clusters"] = c.clusters;
    j["overrides"] = nlohmann::json::array();
    for (const TapOverride& o : q->config().overrides) j["overrides"].push_back(o.spec);
    j["layers"] = c.layers;
    j["per_layer"] = layers;
    j["linear_packed_bytes"] = c.linear_packed_bytes;
    j["linear_param_bytes"] = c.linear_param_bytes;
    j["linear_fp16_bytes"] = c.linear_fp16_bytes;
    j["linear_ratio_to_fp16"] = ratio;
    j["other_bytes"] = c.other_bytes;
    j["file_bytes"] = c.file_bytes;
    nlohmann::json lin = nlohmann::json::array();
    for (const auto& l : c.linears)
      lin.push_back({{"name", l.name}, {"bits", l.bits}, {"out", l.out}, {"in", l.in}, {"groups", l.groups},
                     {"packed_bytes", l.packed_bytes}, {"param_bytes", l.param_bytes}, {"fp16_bytes", l.fp16_bytes()}});
    j["linears"] = lin;
    std::cout << json_text(j) << "\n";
    return;
  }
  std::printf("checkpoint    %s (RPTQ format %d, written by rptq %s on %s)\n", a.model.c_str(), c.format_version,
              c.tool_version.c_str(), c.created.c_str());
  std::printf("model         %s, %lld layers, from %s\n", c.architecture.c_str(), (long long)c.layers,
              c.source_path.c_str());
  std::printf("quantization  %s\n", c.description.c_str());
  std::printf("clusters      R1=%d R2=%d R3=%d R4=%d R5=%d (R2/R3 per head)\n", c.clusters[0], c.clusters[1],
              c.clusters[2], c.clusters[3], c.clusters[4]);
  std::printf("overrides     %s\n", overrides.empty() ? "none (every layer alike)" : overrides.c_str());
  if (!overrides.empty()) print_layer_table(*q, layers);
  std::printf("linear layers %s packed + %s scales/zero points = %.1f%% of their FP16 size %s\n",
              human_bytes(c.linear_packed_bytes).c_str(), human_bytes(c.linear_param_bytes).c_str(), 100.0 * ratio,
              human_bytes(c.linear_fp16_bytes).c_str());
  std::printf("other tensors %s (embeddings, norms, biases, unquantized linears)\n", human_bytes(c.other_bytes).c_str());
  std::printf("file          %s\n", human_bytes(c.file_bytes).c_str());
}

void run_inspect(const InspectArgs& a) {
  if (std::filesystem::is_regular_file(a.model) && is_hdf5_file(a.model)) return inspect_quantized(a);
  const ModelInfo info = inspect_model(a.model);
  // Everything eval checks: every weight loads with its shape and dtype, and the tokenizer loads.
  (void)load_model(a.model);
  if (!info.tokenizer_ok)
    throw InputError(info.tokenizer.find(a.model) != std::string::npos ? info.tokenizer
                                                                        : a.model + ": tokenizer not usable: " + info.tokenizer);
  const ModelConfig& c = info.config;
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model;
    j["model_type"] = c.model_type;
    j["architecture"] = c.arch_name();
    j["hidden_size"] = c.hidden;
    j["intermediate_size"] = c.intermediate;
    j["layers"] = c.layers;
    j["heads"] = c.heads;
    j["kv_heads"] = c.kv_heads;
    j["head_dim"] = c.head_dim;
    j["vocab_size"] = c.vocab;
    j["max_positions"] = c.max_positions;
    j["tie_word_embeddings"] = c.tie_embeddings;
    if (c.arch == Architecture::Llama) j["rope_theta"] = c.rope_theta;
    j["parameters"] = info.parameters;
    j["tensors"] = info.tensors;
    j["dtypes"] = info.dtype_parameters;
    j["format"] = info.format;
    j["weight_files"] = info.weight_files;
    j["weight_bytes"] = info.weight_bytes;
    j["folder_bytes"] = info.folder_bytes;
    j["tokenizer"] = info.tokenizer;
    j["tokenizer_ok"] = info.tokenizer_ok;
    j["tokenizer_vocab"] = info.tokenizer_vocab;
    std::cout << json_text(j) << "\n";
    return;
  }
  std::string dtypes;
  for (const auto& [name, n] : info.dtype_parameters) dtypes += (dtypes.empty() ? "" : ", ") + name;
  std::printf("model         %s\n", a.model.c_str());
  std::printf("architecture  %s (model_type %s)\n", c.arch_name().c_str(), c.model_type.c_str());
  std::printf("dimensions    %lld layers, hidden %lld, FFN %lld, %lld heads (%lld KV heads) of %lld\n",
              (long long)c.layers, (long long)c.hidden, (long long)c.intermediate, (long long)c.heads,
              (long long)c.kv_heads, (long long)c.head_dim);
  std::printf("vocabulary    %lld tokens, %lld positions, output head %s\n", (long long)c.vocab,
              (long long)c.max_positions, c.tie_embeddings ? "tied to the embedding" : "separate");
  std::printf("parameters    %lld (%.2f M) in %lld tensors, stored as %s\n", (long long)info.parameters,
              info.parameters / 1e6, (long long)info.tensors, dtypes.c_str());
  std::printf("format        %s: %zu file(s), %s of weights, %s folder\n", info.format.c_str(),
              info.weight_files.size(), human_bytes(info.weight_bytes).c_str(),
              human_bytes(info.folder_bytes).c_str());
  std::printf("tokenizer     %s%s\n", info.tokenizer_ok ? "" : "NOT USABLE: ", info.tokenizer.c_str());
}
}  // namespace

void add_inspect(CLI::App& app) {
  auto a = std::make_shared<InspectArgs>();
  auto* cmd = app.add_subcommand("inspect", "Show a model's architecture, dimensions, parameters, dtypes and files");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder, or an RPTQ checkpoint (.h5 from rptq export)")->required();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->footer("Checks everything eval checks: the whole model (or checkpoint) and its tokenizer load; exit 2 when not.");
  cmd->callback([a] { run_inspect(*a); });
}

}  // namespace rptq::cli
