#include "quant_args.h"

#include <stdlib.h>

#include "cli.h"
#include "rptq/engine.h"
#include "rptq/base/error.h"
#include "rptq/export/qcheckpoint.h"
#include "rptq/export/stats_file.h"
#include "rptq/method/quant_config_json.h"

namespace rptq::cli {

void add_quant_options(CLI::App* cmd, QuantArgs& a, bool stats_required) {
  auto* s = cmd->add_option("--stats", a.stats, "Channel statistics file from `rptq calibrate` (enables quantization)");
  if (stats_required) s->required();
  cmd->add_option("--preset", a.preset, "W16A16, W4A16, W4A8, W4A4, W4A4KV, W4A3KV or W3A3KV (the paper's settings)");
  cmd->add_option("--wbits", a.wbits, "Custom: weight bits (2-8, 16 = FP)");
  cmd->add_option("--abits", a.abits, "Custom: activation bits of every tap but K/V (2-8, 16 = FP)");
  cmd->add_option("--kvbits", a.kvbits, "Custom: K and V (KV cache) bits (2-8, 16 = FP; default: --abits)");
  cmd->add_option("--softmax-bits", a.softmax_bits, "Attention probabilities: 8 (fixed grid) or 16 (FP); default: the "
                                                     "preset's")
      ->check(CLI::IsMember({8, 16}));
  cmd->add_option("--clusters", a.clusters, "Clusters per reorder index: R1=32,R2=4,R3=4,R4=32,R5=32 or one number");
  cmd->add_option("--weights", a.weights, "Weight quantization: gptq (default) or rtn")
      ->check(CLI::IsMember({"gptq", "rtn"}));
  cmd->add_option("--weight-group", a.weight_group,
                  "Fixed weight group size (default: the input clusters; with --serving: 128, or -1 for one group per "
                  "output channel)")
      ->check(CLI::Range(-1, 1 << 20));
  cmd->add_option("--weight-clip", a.weight_clip,
                  "Remedy, not a paper setting: weight group ranges by min/max (default) or mse (the range shrunk "
                  "to the least error, weighted by the Hessian diagonal with GPTQ)")
      ->check(CLI::IsMember({"minmax", "mse"}));
  cmd->add_flag("--act-order", a.act_order,
                "Remedy, not a paper setting: GPTQ quantizes columns by decreasing Hessian diagonal (desc_act)");
  cmd->add_option("--grid", a.grid, "Integer grid: exact (2^n - 1 steps, default) or reference (2^n, as RPTQ's code)")
      ->check(CLI::IsMember({"exact", "reference"}));
  cmd->add_option("--stat", a.stat, "Range statistic: ema or minmax (default: the statistics file's)")
      ->check(CLI::IsMember({"ema", "minmax"}));
  cmd->add_flag("--dynamic", a.dynamic, "Activation ranges per forward pass instead of static calibration ranges");
  cmd->add_flag("--no-sequential", a.no_sequential,
                "Use the statistics file's FP ranges for every layer instead of re-measuring each layer on the "
                "outputs of the already-quantized layers (faster)");
  cmd->add_flag("--reorder-only", a.reorder_only, "Fold the reorder into the weights and quantize nothing");
  cmd->add_option("--kmeans-seed", a.seed, "k-means seed (default 0)")
      ->check(unsigned_number());
  cmd->add_option("--fp-prefix", a.fp_prefix,
                  "Remedy, not a paper setting: keep the first N tokens of every sequence (activations and K/V) in "
                  "full precision and out of the quantizers' ranges, for models with massive first-token "
                  "activations (LLaMA family); CPU only; default 0")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--override", a.overrides,
                  "Remedy / mixed precision, not a paper setting (repeatable, later ones win): \"[SELECT:]SET\" "
                  "changes some layers' activation quantizers, e.g. \"layers=0,attn_output:abits=16\" or "
                  "\"layers=25-29+0,ffn_hidden:dynamic\". SELECT: layers=A[-B][+...], tap names, R1..R5 "
                  "(default: all layers, all taps but K/V); SET: abits=N (2-8, 16 = FP), wbits=N (the weights of "
                  "the linears reading those taps), clusters=N (R1, R4, R5 in those layers), dynamic, per-token, static")
      ->allow_extra_args(false);
  cmd->add_option("--serving", a.target,
                  "Serving format the quantization is made for, exactly: none (RPTQ's own, default) or "
                  "compressed-tensors (vLLM / SGLang: W4A16 or W8A16, uniform weight groups of 32, 64 or 128 "
                  "(default 128), only the R3 and R5 reorders; implies --preset W4A16 when no bits are given; "
                  "docs/serving.md)")
      ->check(CLI::IsMember({"none", "compressed-tensors"}));
  cmd->add_option("--scale-dtype", a.scale_dtype,
                  "The serving format's weight scale dtype: bf16 (default), f16 or f32; dequantized weights are "
                  "rounded to it as the format's decompression does")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}));
  cmd->add_option("--kv-fp8", a.kv_fp8,
                  "With --serving: FP8 (E4M3) KV cache scales from calibration for the engine's FP8 cache (its "
                  "kv_cache_scheme), one per layer (tensor) or per KV head (head); evaluation then rounds K and V to "
                  "FP8 with them (CPU only); default off")
      ->check(CLI::IsMember({"off", "tensor", "head"}));
  for (const char* name : {"--preset", "--wbits", "--abits", "--kvbits", "--softmax-bits", "--clusters", "--weights",
                           "--weight-group", "--weight-clip", "--act-order", "--grid", "--stat", "--dynamic",
                           "--no-sequential", "--reorder-only", "--kmeans-seed", "--fp-prefix", "--override",
                           "--serving", "--scale-dtype", "--kv-fp8"})
    a.options.push_back(cmd->get_option(name));
}

std::vector<std::string> given_quant_options(const QuantArgs& a) {
  std::vector<std::string> given;
  for (const CLI::Option* o : a.options)
    if (o->count() > 0) given.push_back(o->get_name());
  return given;
}

namespace {
std::string listed(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) s += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  return s;
}
}  // namespace

QuantConfig build_quant_config(const QuantArgs& a) {
  const bool custom = a.wbits || a.abits || a.kvbits;
  const ServeTarget target = parse_target(a.target);
  if (!a.preset.empty() && custom) throw InputError("give --preset or --wbits/--abits/--kvbits, not both");
  if (a.preset.empty() && !custom && !a.reorder_only && target == ServeTarget::None)
    throw InputError("--stats needs --preset NAME or --wbits W --abits A [--kvbits B] (or --reorder-only)");
  QuantConfig c;
  if (!a.preset.empty() || (target != ServeTarget::None && !custom && !a.reorder_only)) {
    c = QuantConfig::preset(a.preset.empty() ? "W4A16" : a.preset);
  } else if (custom) {
    if (!a.wbits || !a.abits) throw InputError("custom bits need both --wbits and --abits");
    c = QuantConfig::custom(a.wbits, a.abits, a.kvbits ? a.kvbits : a.abits);
  } else {
    c.name = "reorder-only";
  }
  if (!a.clusters.empty()) parse_clusters(a.clusters, c);
  if (a.softmax_bits) c.softmax_bits = a.softmax_bits;
  c.weight_method = parse_weight_method(a.weights);
  c.weight_group = a.weight_group;
  c.weight_clip = parse_weight_clip(a.weight_clip);
  c.act_order = a.act_order;
  c.grid = parse_grid(a.grid);
  c.range_mode = a.dynamic ? RangeMode::Dynamic : RangeMode::Static;
  c.fp_prefix = a.fp_prefix;
  c.target = target;
  c.scale_dtype = parse_scale_dtype(a.scale_dtype);
  c.kv_fp8 = parse_kv_fp8(a.kv_fp8);
  if (target != ServeTarget::None && c.weight_group == 0) c.weight_group = 128;
  for (const std::string& o : a.overrides) c.overrides.push_back(parse_override(o));
  c.validate();
  return c;
}

QuantizeOptions build_quantize_options(const QuantArgs& a, const ChannelStats& stats) {
  QuantizeOptions o;
  o.stat = a.stat.empty() ? stats.settings.stat : parse_range_stat(a.stat);
  o.sequential = !a.no_sequential;
  o.reorder_only = a.reorder_only;
  o.seed = a.seed;
  return o;
}

std::unique_ptr<QuantizedModel> load_and_quantize(const std::string& model_dir, const QuantArgs& a,
                                                  ChannelStats* stats_out, Device device) {
  const QuantConfig cfg = build_quant_config(a);
  ChannelStats stats = load_stats(a.stats);
  auto model = load_model(model_dir);
  check_stats_match(stats, model->config(), a.stats);
  QuantizeOptions o = build_quantize_options(a, stats);
  Progress p("quantizing");
  o.progress = [&](const LayerwiseProgress& lp) {
    p.update(static_cast<double>(lp.done), static_cast<double>(lp.total), " steps");
    return true;
  };
  auto q = quantize(std::move(model), stats, cfg, o, Execution::on(device));
  p.finish();
  if (stats_out) *stats_out = std::move(stats);
  return q;
}

ModelSource open_model(const std::string& path, const QuantArgs& a, Device device) {
  ModelSource src;
  const std::vector<std::string> given = given_quant_options(a);
  if (std::filesystem::is_regular_file(path) && is_hdf5_file(path)) {
    if (!a.stats.empty()) throw InputError(path + " is a quantized checkpoint: it takes no --stats");
    if (!given.empty())
      throw InputError(path + " is a quantized checkpoint: it carries its own quantization, and " + listed(given) +
                       (given.size() == 1 ? " does" : " do") + " not apply to it");
    src.checkpoint = true;
    src.tokenizer = load_checkpoint_tokenizer(path);  // the tokenizer files travel inside the checkpoint
    Progress p("loading");
    src.quantized = load_checkpoint(path);
    return src;
  }
  if (a.stats.empty() && !given.empty())
    throw InputError(listed(given) + (given.size() == 1 ? " needs" : " need") +
                     " --stats STATS.h5 (the channel statistics from `rptq calibrate`); without --stats " + path +
                     " runs in full precision");
  src.tokenizer = Tokenizer::load(path);
  if (a.stats.empty())
    src.fp = load_model(path);
  else
    src.quantized = load_and_quantize(path, a, nullptr, device);
  return src;
}

void add_quantize_time_json(nlohmann::json& j, const QuantizedModel& q) {
  j["quantize_seconds"] = q.seconds;
  j["quantize_phases"] = {{"measure", q.phases.measure},   {"cluster", q.phases.cluster},
                          {"hessians", q.phases.hessians}, {"weights", q.phases.weights},
                          {"advance", q.phases.advance}};
}

nlohmann::json quant_settings_json(const QuantConfig& c, const QuantArgs& a) {
  nlohmann::json j = quant_config_json(c);  // every field of the setting, as the run history records it
  j["stats"] = a.stats;
  j["sequential"] = !a.no_sequential;
  j["reorder_only"] = a.reorder_only;
  return j;
}

}  // namespace rptq::cli
