#pragma once
// Sweeps, the paper's ablations: one quantization setting (the cluster count of a reorder index, the activation bits
// of a tap, the KV-cache bits or the weight bits) stepped over a list of values, everything else held at a base
// setting. Each point quantizes a fresh copy of the FP model and compares it with the FP model on the same
// evaluation windows (perplexity, KL, top-1 agreement), as `rptq compare` would with that setting. The result is
// saved as JSON, which the CLI (`rptq sweep --out`) writes and the GUI reloads.
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "rptq/eval/perplexity.h"
#include "rptq/execution.h"
#include "rptq/method/quantize.h"

namespace rptq {

enum class SweepAxis {
  Clusters,        // the cluster count of one reorder index R1..R5 (R2/R3 per KV head) or of all five
  ActivationBits,  // the bits of one activation tap or of all of them but K and V (the softmax keeps the base's)
  KvBits,          // the bits of K and V (the KV cache)
  WeightBits,      // the bits of every quantized linear
};
const char* sweep_axis_name(SweepAxis a);            // "clusters", "abits", "kvbits", "wbits"
SweepAxis parse_sweep_axis(const std::string& name);  // throws InputError listing the names

// What a sweep steps. Values are parsed by parse_sweep_values.
//
// Cluster counts above what an index has (its channels; R2/R3 per KV head, and for rotary models R2's channel pairs)
// are not an error: quantize() clusters with at most as many clusters as there are distinct channel ranges (k-means
// clamps k), so such points repeat the saturated setting. Each point records the counts actually used
// (SweepPoint::clusters_used) so a chart can show where the axis saturates.
struct SweepSpec {
  SweepAxis axis = SweepAxis::Clusters;
  // Clusters: "R1".."R5" or "all"; ActivationBits: a tap name but k and v (attn_input, q, attn_output, ffn_input,
  // ffn_hidden) or "all" (those five); KvBits and WeightBits: "all".
  std::string target = "all";
  std::vector<int> values;  // ascending, each once

  // Throws InputError naming the bad target or value (and that there are values at all).
  void validate() const;
  // The base setting with the swept setting at `value` and the name "<base name> <setting>" (e.g. "W4A8 R1=8",
  // "W4A8 abits=4"). The base's overrides stay and apply on top, as they always do (a later one wins where it
  // selects the swept setting). Not validated: see run_sweep.
  QuantConfig apply(const QuantConfig& base, int value) const;
  // The swept setting at `value`, as apply() names it: "R1=8", "clusters=8", "attn_input=4", "abits=4",
  // "kvbits=3", "wbits=3".
  std::string setting(int value) const;
  // What the axis is, for a chart: "clusters of R1", "clusters of R1..R5", "bits of attn_input", "activation bits",
  // "KV-cache bits", "weight bits".
  std::string axis_label() const;
};

// Sweep values: a comma list of items, each N (one value), A-B (every integer from A to B) or A..B (A, 2A, 4A, ...
// up to B), e.g. "1,2,4..64" = 1, 2, 4, 8, 16, 32, 64 and "2-8,16" = 2, 3, ..., 8, 16. The result is sorted, each
// value once. Bits must be 2..8 or 16; cluster counts 1..65536; at most kMaxSweepPoints values. Throws InputError
// naming the bad part.
constexpr int kMaxSweepPoints = 256;
std::vector<int> parse_sweep_values(const std::string& spec, SweepAxis axis);
// Clusters: 1, 2, 4, ..., 64; bits: 2..8 and 16.
std::vector<int> default_sweep_values(SweepAxis axis);
// The spec from its words: axis name, target ("" = "all"; case-insensitive) and values ("" = the defaults).
SweepSpec make_sweep_spec(const std::string& axis, const std::string& target, const std::string& values);

// One measured point.
struct SweepPoint {
  int value = 0;
  std::string name;         // QuantConfig::name of the point's setting (SweepSpec::apply)
  std::string description;  // QuantConfig::describe() of the point's setting
  // R1..R5: the largest cluster count any layer actually got (R2/R3: per KV head), after k-means' clamp to the
  // distinct channel ranges; R1/R4 of post-LayerNorm models stay at 1.
  std::array<int, kReorderIndices> clusters_used{};
  double ppl_q = 0;
  double kl = 0;              // mean KL(P_fp || P_q) per predicted position, nats
  // The per-position KL's nearest-rank percentiles and maximum (CompareResult's; NaN when read from a file written
  // before they were recorded).
  double kl_p50 = 0, kl_p90 = 0, kl_p99 = 0, kl_max = 0;
  double top1_agreement = 0;  // share of predicted positions whose argmax is the FP model's
  double top1_changed = 0;    // the others' share, (positions - agreeing) / positions
  double quantize_seconds = 0, compare_seconds = 0;
};

struct SweepResult {
  SweepSpec spec;
  QuantConfig base;
  // Quantization options of every point (QuantizeOptions without its callback).
  RangeStat stat = RangeStat::Ema;
  bool sequential = true;
  std::uint64_t kmeans_seed = 0;
  std::string device;  // Execution::describe() of the run
  // Provenance, filled in by the caller (run_sweep does not know them): the model folder, the statistics file and
  // the evaluation text.
  std::string model, stats, data;
  // The evaluation windows, the same for every point.
  std::int64_t windows = 0, seqlen = 0, positions = 0;
  double ppl_fp = 0;  // the FP model's perplexity on them (identical at every point; recorded once)
  std::vector<SweepPoint> points;  // in the order of spec.values; fewer when the sweep was cancelled
  double seconds = 0;              // wall time of the whole sweep

  bool complete() const { return points.size() == spec.values.size(); }
};

// Progress of a sweep: which point (0-based, of `points`), and within it the phase's own progress (layer-by-layer
// steps of the quantization, or windows of the comparison). Phase::PointDone comes once per point, with the point
// just measured (so a chart can grow point by point). Returning false cancels: run_sweep throws Cancelled.
struct SweepProgress {
  enum class Phase { Quantize, Compare, PointDone };
  Phase phase = Phase::Quantize;
  int point = 0, points = 0;
  int value = 0;                         // the point's setting
  std::int64_t done = 0, total = 0;      // within the phase
  const SweepPoint* finished = nullptr;  // PointDone only
  // The whole sweep's share done, 0..1: each point counts one, half for its quantization and half for its
  // comparison.
  double fraction() const;
};
using SweepCallback = std::function<bool(const SweepProgress&)>;

// Makes a fresh FP copy of the model for each point (quantize() consumes its model): e.g. Model::load of the folder.
using ModelFactory = std::function<std::unique_ptr<Model>()>;

// Runs the sweep: for each value of spec, quantize(fresh_model(), stats, spec.apply(base, value), opts, exec) and
// compare_models(fp, that model) on the windows of `ids` (po: seqlen, max_windows; its callback is not used), as
// engine.h's functions do. `fp` is the unquantized model the points are compared with; fresh_model must make the
// same model. Every point's setting is validated before the first runs (InputError naming the value). opts.progress
// is not used (progress reports through `progress`); opts.reorder_only is refused (it quantizes nothing).
SweepResult run_sweep(const SweepSpec& spec, const QuantConfig& base, const QuantizeOptions& opts, const Model& fp,
                      const ModelFactory& fresh_model, const ChannelStats& stats, std::span<const std::int32_t> ids,
                      const PerplexityOptions& po, const Execution& exec, const SweepCallback& progress = {});

// The result as JSON (format "rptq-sweep", version 1): spec, base setting (every field of QuantConfig), options,
// provenance, windows, ppl_fp, and the points. Doubles are written exactly (they read back bit for bit);
// non-finite numbers are written as null and read back as NaN.
std::string sweep_to_json(const SweepResult& r, int indent = 2);
// The inverse; `source` names the file (or stream) in errors: throws InputError "SOURCE: ..." for text that is not
// JSON, not a sweep, a newer version, or inconsistent (points that do not follow the values, a bad setting).
SweepResult sweep_from_json(const std::string& text, const std::string& source);
// One header line and a row per point: axis, target, value, setting name, ppl_fp, ppl_q, kl, kl_p50, kl_p90,
// kl_p99, kl_max, top1_agreement, top1_changed, quantize_seconds, compare_seconds, clusters_used R1..R5, description
// (quoted). Numbers exactly (%.17g).
std::string sweep_to_csv(const SweepResult& r);

// Atomically writes sweep_to_json(r) (or the CSV) to `path`: a temporary file beside it, then renamed. Throws
// OutputExists when it exists and overwrite is false, InputError naming the path when it cannot be written.
void save_sweep(const std::filesystem::path& path, const SweepResult& r, bool overwrite);
void save_sweep_csv(const std::filesystem::path& path, const SweepResult& r, bool overwrite);
// Reads a file save_sweep wrote; throws InputError naming the file.
SweepResult load_sweep(const std::filesystem::path& path);

}  // namespace rptq
