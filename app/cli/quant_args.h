#pragma once
// The quantization options shared by `rptq eval`, `rptq compare` (and later `rptq export`).
#include <CLI/CLI.hpp>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rptq/device.h"
#include "rptq/method/quantize.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::cli {

struct QuantArgs {
  std::string stats, preset, clusters, weights = "gptq", grid = "exact", stat, weight_clip = "minmax";
  std::string target = "none", scale_dtype = "bf16", kv_fp8 = "off";
  int wbits = 0, abits = 0, kvbits = 0, weight_group = 0, softmax_bits = 0, fp_prefix = 0;
  bool reorder_only = false, dynamic = false, no_sequential = false, act_order = false;
  std::uint64_t seed = 0;
  std::vector<std::string> overrides;
  std::vector<const CLI::Option*> options;  // the quantization options but --stats (add_quant_options)
};

// The quantization options given on the command line (not --stats), e.g. {"--preset", "--weights"}.
std::vector<std::string> given_quant_options(const QuantArgs& a);

// stats_required: the command needs --stats (compare); otherwise the options apply only when --stats is given.
void add_quant_options(CLI::App* cmd, QuantArgs& a, bool stats_required);

// The QuantConfig the options describe (throws InputError for contradictions such as --preset with --wbits).
QuantConfig build_quant_config(const QuantArgs& a);
QuantizeOptions build_quantize_options(const QuantArgs& a, const ChannelStats& stats);

// Loads STATS, checks it against the model, quantizes a fresh copy of the model (progress on stderr), with the
// calibration passes on `device` (quantize_gpu for CUDA).
std::unique_ptr<QuantizedModel> load_and_quantize(const std::string& model_dir, const QuantArgs& a,
                                                  ChannelStats* stats_out = nullptr, Device device = Device::CPU);

// MODEL as `eval` and `generate` accept it: a Hugging Face folder (quantized on the fly with --stats) or an RPTQ
// checkpoint file (OUT.h5 from `rptq export`, which carries its own tokenizer and quantization).
struct ModelSource {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> fp;
  std::unique_ptr<QuantizedModel> quantized;
  bool checkpoint = false;
  const Model& model() const { return quantized ? quantized->model() : *fp; }
  ActivationHook* hook() const { return quantized ? quantized->hook() : nullptr; }
};
// Throws InputError when a quantization option would be silently ignored: given without --stats, or given for a
// checkpoint (which carries its own quantization).
ModelSource open_model(const std::string& path, const QuantArgs& a, Device device = Device::CPU);

// The settings as JSON: quant_config_json (every field of the setting) plus the stats file, sequential and
// reorder_only.
nlohmann::json quant_settings_json(const QuantConfig& c, const QuantArgs& a);

// Sets j["quantize_seconds"] (the pipeline's wall time) and j["quantize_phases"] (where it went).
void add_quantize_time_json(nlohmann::json& j, const QuantizedModel& q);

}  // namespace rptq::cli
