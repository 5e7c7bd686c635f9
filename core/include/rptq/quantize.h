#pragma once
// The RPTQ pipeline on a loaded model: per decoder layer, cluster the channel ranges, fold the reorder into the
// weights, quantize the weights (GPTQ or RTN, grouped as (output row) x (input cluster)) and install per-cluster
// activation quantizers; then run the model with them (QuantizedModel::hook()).
#include <array>
#include <filesystem>
#include <memory>
#include <vector>

#include "rptq/calibration.h"
#include "rptq/model.h"
#include "rptq/quant_config.h"
#include "rptq/quantizer.h"
#include "rptq/reorder.h"
#include "rptq/weight_quant.h"

namespace rptq {

// How one tap of one layer is quantized: per cluster of its (reordered) channels.
struct TapQuantizer {
  int bits = kFullPrecisionBits;           // 16: left in float
  std::vector<std::int64_t> boundaries;    // clusters, in the reordered layout
  std::vector<QuantParams> params;         // static: one per cluster (empty when dynamic)
  bool dynamic = false;
  QuantGrid grid = QuantGrid::Exact;
  bool active() const { return bits < kFullPrecisionBits; }
};

struct LayerQuantization {
  LayerReorder reorder;
  std::array<TapQuantizer, kTapCount> taps;  // indexed by Tap
  // The layer's quantized linears are the model's own: LinearWeights::packed (codes, scales, zero points), with
  // no float weight kept; see layer_linears().
};

// The linears of a decoder layer with their short names: q, k, v, o, fc1, fc2 (OPT) or q, k, v, o, gate, up,
// down (LLaMA family), and the tap that is each one's input.
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

 private:
  friend std::unique_ptr<QuantizedModel> load_checkpoint(const std::filesystem::path&);
  friend std::unique_ptr<QuantizedModel> quantize(std::unique_ptr<Model>, const ChannelStats&, const QuantConfig&,
                                                  const QuantizeOptions&);
  class Hook : public ActivationHook {
   public:
    explicit Hook(QuantizedModel& q) : q_(q) {}
    void on_activation(int layer, Tap tap, const ActivationView& act) override;
    int enabled_layers = 1 << 30;  // layers >= this are not quantized (while the pipeline is still running)

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

// Checks that statistics belong to a model of this shape; throws InputError naming the difference.
void check_stats_match(const ChannelStats& stats, const ModelConfig& cfg, const std::string& stats_path);

}  // namespace rptq
