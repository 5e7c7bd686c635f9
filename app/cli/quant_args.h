#pragma once
// The quantization options shared by `rptq eval`, `rptq compare` (and later `rptq export`).
#include <CLI/CLI.hpp>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "rptq/quantize.h"

namespace rptq::cli {

struct QuantArgs {
  std::string stats, preset, clusters, weights = "gptq", grid = "exact", stat;
  int wbits = 0, abits = 0, kvbits = 0, weight_group = 0, softmax_bits = 0;
  bool reorder_only = false, dynamic = false, no_sequential = false;
  std::uint64_t seed = 0;
};

// stats_required: the command needs --stats (compare); otherwise the options apply only when --stats is given.
void add_quant_options(CLI::App* cmd, QuantArgs& a, bool stats_required);

// The QuantConfig the options describe (throws InputError for contradictions such as --preset with --wbits).
QuantConfig build_quant_config(const QuantArgs& a);
QuantizeOptions build_quantize_options(const QuantArgs& a, const ChannelStats& stats);

// Loads STATS, checks it against the model, quantizes a fresh copy of the model (progress on stderr).
std::unique_ptr<QuantizedModel> load_and_quantize(const std::string& model_dir, const QuantArgs& a,
                                                  ChannelStats* stats_out = nullptr);

// The settings as JSON: preset, description, bits per tap, clusters, weights method, grid, stat, stats file.
nlohmann::json quant_settings_json(const QuantConfig& c, const QuantArgs& a);

}  // namespace rptq::cli
