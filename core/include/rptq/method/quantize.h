#pragma once
// The RPTQ pipeline on a loaded model: per decoder layer, cluster the channel ranges, fold the reorder into the
// weights, quantize the weights (GPTQ or RTN, grouped as (output row) x (input cluster)) and install per-cluster
// activation quantizers; then run the model with them (QuantizedModel::hook()).
#include <array>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/model/model.h"
#include "rptq/method/quant_config.h"
#include "rptq/base/quantizer.h"
#include "rptq/method/reorder.h"
#include "rptq/method/weight_quant.h"

namespace rptq {

// How one tap of one layer is quantized: per cluster of its (reordered) channels.
struct TapQuantizer {
  int bits = kFullPrecisionBits;           // 16: left in float
  std::vector<std::int64_t> boundaries;    // clusters, in the reordered layout
  std::vector<QuantParams> params;         // static: one per cluster (empty when dynamic)
  bool dynamic = false;
  bool per_token = false;                  // dynamic, one range per (token, cluster) (an --override remedy)
  QuantGrid grid = QuantGrid::Exact;
  // K and V of a serving target with QuantConfig::kv_fp8: the FP8 E4M3 cache scales (absmax / 448 of the
  // calibration ranges), one or one per KV head; the tap is then rounded as the engine's FP8 cache stores it.
  std::vector<float> fp8_scales;
  bool active() const { return bits < kFullPrecisionBits; }
};

struct LayerQuantization {
  // The ranges the clusters and quantizers were built from: re-measured on the quantized prefix when sequential
  // (what Explore shows as "applied"), else the statistics file's. Empty in a model loaded from a checkpoint.
  LayerRanges ranges;
  LayerReorder reorder;
  std::array<TapQuantizer, kTapCount> taps;  // indexed by Tap
  // The layer's quantized linears are the model's own: LinearWeights::packed (codes, scales, zero points), with
  // no float weight kept; see layer_linears().
};

// The linears of a decoder layer with their short names: q, k, v, o, fc1, fc2 (OPT) or q, k, v, o, gate, up,
// down (LLaMA family), and the tap that is each one's input.
// Each cluster's quantizer of a tap: cluster c is the reordered positions [boundaries[c], boundaries[c + 1]), i.e.
// the original channels order[boundaries[c] ..]; its range is TapRanges::cluster_range (the reference's EMA of the
// cluster, or its plain min/max).
std::vector<QuantParams> tap_cluster_params(const TapRanges& ranges, RangeStat stat, std::span<const std::int32_t> order,
                                           const std::vector<std::int64_t>& boundaries, int bits, QuantGrid grid);

// The FP8 E4M3 KV cache scales of a K or V tap from its calibration ranges: absmax / 448 over every channel
// (Tensor) or over each head's head_dim channels (Head; channel c is in head c / head_dim); a head whose range is 0
// gets 1. Empty for Off. Throws InputError for a width that is not whole heads or a non-finite range.
std::vector<float> kv_fp8_scales(const TapRanges& r, std::int64_t head_dim, KvFp8 granularity);

struct NamedLinear {
  const char* name;
  Tap input;
  const LinearWeights* weights;
};
std::vector<NamedLinear> layer_linears(const ModelConfig& m, const DecoderLayerWeights& w);

struct QuantizeOptions {
  RangeStat stat = RangeStat::Ema;
  // true (the reference): each layer's ranges are measured again on the calibration windows as they come out of
  // the already-quantized earlier layers; false: the statistics file's ranges of the FP model are used as they are
  // (faster; exact for the first layer).
  bool sequential = true;
  bool reorder_only = false;  // fold the reorder, quantize nothing (must give the FP logits)
  std::uint64_t seed = 0;     // k-means
  LayerwiseCallback progress;
};

class QuantizedModel;

// The taps whose values are the inputs of a decoder layer's linears: the Hessians GPTQ needs.
inline constexpr Tap kLinearInputTaps[] = {Tap::AttnInput, Tap::AttnOutput, Tap::FfnInput, Tap::FfnHidden};

// What one measuring pass over a layer gives (LayerPasses::measure).
struct LayerMeasurement {
  LayerRanges ranges;                             // when asked for
  std::map<Tap, HessianAccumulator> hessians;     // when asked for: kLinearInputTaps, in the layer's current order
};

// The passes over the calibration windows that quantize() makes, layer by layer, as the reference does: the inputs
// of layer l are the windows as they come out of layers 0 .. l-1, already quantized. quantize() runs them on the
// CPU (LayerwiseRunner, one window at a time); quantize_gpu() (core/src/cuda/cuda_runner.h) on the GPU. Layer l's calls come in
// this order: changed (its softmax quantizer set), measure (ranges when sequential, and GPTQ's Hessians unless
// its activation ranges are dynamic), changed (reorder and activation quantizers in place), hessians (GPTQ with
// dynamic ranges only), changed (packed weights), advance (but not for the last layer).
class LayerPasses {
 public:
  virtual ~LayerPasses() = default;
  // Layer l's ranges (what RangeRecorder records: per sample, and the attention scores) on its inputs, with the
  // quantizers of layers < l on and layer l's off (its softmax quantizer as set).
  virtual LayerRanges ranges(int l, const LayerwiseCallback& progress) = 0;
  // Layer l's weights (reordered, then packed) or its activation quantizers changed.
  virtual void changed(int l) = 0;
  // The Hessians of layer l's linear inputs (kLinearInputTaps: what its linears see), over every window, as the
  // reference's GPTQ pass sees them: layer l's static activation quantizers off (they are still calibrating there),
  // its dynamic ones and the softmax quantizer on, earlier layers fully quantized.
  virtual std::map<Tap, HessianAccumulator> hessians(int l, const LayerwiseCallback& progress) = 0;
  // ranges() and, while layer l has no activation quantizers yet, hessians() in one pass where the device can
  // (the reference's calibration pass, which also feeds GPTQ): by default the two passes one after the other.
  virtual LayerMeasurement measure(int l, bool want_ranges, bool want_hessians, const LayerwiseCallback& progress) {
    LayerMeasurement m;
    if (want_ranges) m.ranges = ranges(l, progress);
    if (want_hessians) m.hessians = hessians(l, progress);
    return m;
  }
  // Runs layer l, quantized, and makes its outputs the inputs of layer l + 1.
  virtual void advance(int l, const LayerwiseCallback& progress) = 0;
  // Window i's hidden state [seqlen, hidden], the input of the next layer: read, or replaced (for checks that keep
  // two implementations on the same inputs).
  virtual Tensor hidden(std::int64_t i) = 0;
  virtual void set_hidden(std::int64_t i, const Tensor& h) = 0;
};
// Makes the passes for a quantization in progress: q's model and quantizers as they stand when each pass runs;
// passes_per_layer (1 to 3) is how many passes over the windows each layer gets, for progress totals.
using LayerPassesFactory = std::function<std::unique_ptr<LayerPasses>(QuantizedModel& q, int passes_per_layer)>;

// The CPU's passes (what quantize() uses), for callers of quantize_with that compare or wrap them.
std::unique_ptr<LayerPasses> make_cpu_layer_passes(QuantizedModel& q, const ChannelStats& stats,
                                                   int passes_per_layer);

// Reads an RPTQ checkpoint (qcheckpoint.h) back into a runnable quantized model.
std::unique_ptr<QuantizedModel> load_checkpoint(const std::filesystem::path& path);

class QuantizedModel {
 public:
  const Model& model() const { return *model_; }
  Model& model() { return *model_; }
  const QuantConfig& config() const { return cfg_; }
  const LayerQuantization& layer(int i) const { return layers_.at(static_cast<std::size_t>(i)); }
  int layers() const { return static_cast<int>(layers_.size()); }
  // The hook that applies the activation quantizers; pass it to forward(), perplexity(), generate().
  ActivationHook* hook() { return &hook_; }
  // The packed KV cache layout when K and V are quantized with static ranges (the presets' KV settings); null when
  // they are not quantized. Throws InputError for dynamic K/V ranges (a shared static grid is what makes packing
  // possible).
  std::shared_ptr<const KvQuantization> kv_quantization() const;
  double seconds = 0;  // the quantization pipeline's wall time
  // Where that time went, summed over the layers (seconds; the profile of bench/run_quantize_bench.sh).
  struct PhaseSeconds {
    double measure = 0;   // the measuring passes (ranges, and GPTQ's Hessians with static ranges)
    double cluster = 0;   // k-means, folding the reorder, the activation quantizers
    double hessians = 0;  // separate Hessian passes (dynamic ranges only)
    double weights = 0;   // GPTQ or round-to-nearest, and packing
    double advance = 0;   // running each quantized layer to make the next layer's inputs
  } phases;
  std::uint64_t kmeans_seed = 0;     // QuantizeOptions::seed it was clustered with (cluster_seed)
  RangeStat stat = RangeStat::Ema;   // QuantizeOptions::stat its static activation ranges were built from
  bool sequential = true;            // QuantizeOptions::sequential: layer ranges re-measured on the quantized prefix

 private:
  friend std::unique_ptr<QuantizedModel> load_checkpoint(const std::filesystem::path&);
  friend std::unique_ptr<QuantizedModel> quantize_with(std::unique_ptr<Model>, const ChannelStats&,
                                                       const QuantConfig&, const QuantizeOptions&,
                                                       const LayerPassesFactory&);
  class Hook : public ActivationHook {
   public:
    explicit Hook(QuantizedModel& q) : q_(q) {}
    void on_activation(int layer, Tap tap, const ActivationView& act) override;
    int enabled_layers = 1 << 30;  // layers >= this are not quantized (while the pipeline is still running)
    int static_off_layer = -1;     // this layer's static quantizers pass values through (GPTQ's Hessian pass)

   private:
    QuantizedModel& q_;
  };
  QuantizedModel() : hook_(*this) {}
  std::unique_ptr<Model> model_;
  QuantConfig cfg_;
  std::vector<LayerQuantization> layers_;
  Hook hook_;
};

// Quantizes `model` (consumed) with `cfg`, using the calibration windows and ranges of `stats` (which must have been
// measured on this model: same layers and widths, else InputError). Progress may cancel (throws Cancelled).
std::unique_ptr<QuantizedModel> quantize(std::unique_ptr<Model> model, const ChannelStats& stats,
                                         const QuantConfig& cfg, const QuantizeOptions& opts = {});
// quantize() with the calibration passes made by `passes` (quantize() itself: the CPU's).
std::unique_ptr<QuantizedModel> quantize_with(std::unique_ptr<Model> model, const ChannelStats& stats,
                                              const QuantConfig& cfg, const QuantizeOptions& opts,
                                              const LayerPassesFactory& passes);

// The statistics the quantized model's clusters and quantizers were actually built from: `stats` with every layer's
// ranges replaced by LayerQuantization::ranges (re-measured on the quantized prefix when sequential). Clustering
// them with cluster_reorder_index(r, model, applied.ranges[l], config().clusters_of(r), l, kmeans_seed) gives the
// applied partition exactly: what Explore shows as "applied by quantization". Throws InputError for a model loaded
// from a checkpoint (it keeps no ranges).
ChannelStats applied_stats(const QuantizedModel& q, const ChannelStats& stats);

// Checks that statistics belong to a model of this shape; throws InputError naming the difference.
void check_stats_match(const ChannelStats& stats, const ModelConfig& cfg, const std::string& stats_path);

}  // namespace rptq
