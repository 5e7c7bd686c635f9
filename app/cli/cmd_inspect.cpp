#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "rptq/model_info.h"

namespace rptq::cli {

namespace {
struct InspectArgs {
  std::string model;
  bool json = false;
};

void run_inspect(const InspectArgs& a) {
  const ModelInfo info = inspect_model(a.model);
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
    std::cout << j.dump(2) << "\n";
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
  cmd->add_option("MODEL", a->model, "Hugging Face model folder")->required();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a] { run_inspect(*a); });
}

}  // namespace rptq::cli
