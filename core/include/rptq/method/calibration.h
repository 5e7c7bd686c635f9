#pragma once
// Calibration: run calibration windows through the model one decoder layer at a time and record, for every tap of
// every layer, each channel's max and min (the reference's EMA(0.99) over samples and the plain running min/max),
// plus the range of the attention scores (the softmax input) per head.
#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "rptq/model/model.h"
#include "rptq/method/quant_config.h"
#include "rptq/model/tap.h"

namespace rptq {

// Per-channel ranges of one tap, in the model's original channel order.
struct TapRanges {
  std::vector<float> ema_max, ema_min;  // v = 0.99 v + 0.01 (this sample's max/min); the first sample initialises
  std::vector<float> max, min;          // over every token of every sample
  // Every sample's own per-channel max/min, [samples, channels] sample by sample: what the reference's EMA of a
  // cluster needs once the clusters are known (cluster_range). Empty where not kept (the attention scores, and
  // statistics files of format version 1).
  std::vector<float> sample_max, sample_min;
  std::int64_t samples = 0;             // samples folded in

  std::int64_t channels() const { return static_cast<std::int64_t>(max.size()); }
  bool has_samples() const {
    return samples > 0 && sample_max.size() == static_cast<std::size_t>(samples) * max.size() &&
           sample_min.size() == sample_max.size();
  }
  // Per-channel statistics (what the scatter shows; the clusters are always formed on the plain max/min).
  const std::vector<float>& hi(RangeStat s) const { return s == RangeStat::Ema ? ema_max : max; }
  const std::vector<float>& lo(RangeStat s) const { return s == RangeStat::Ema ? ema_min : min; }
  // Folds in one sample's per-channel max/min; keep_sample stores it in sample_max/sample_min too.
  void add_sample(std::span<const float> sample_max, std::span<const float> sample_min, bool keep_sample = true);

  // The quantizer range of a cluster, the channels `channels` (original order), as the reference computes it
  // (rptq-method.md): MinMax: the min of their minima and the max of their maxima. Ema: per sample, the cluster's
  // max (min) over its channels and that sample's tokens, folded into v = 0.99 v + 0.01 x in sample order (the
  // first sample initialises): the EMA of the cluster, which is wider than the max of its channels' EMAs. An empty
  // cluster gets [0, 0]. Ema throws InputError when the per-sample ranges were not kept (old statistics files).
  void cluster_range(RangeStat stat, std::span<const std::int32_t> channels, float& lo, float& hi) const;
};

struct LayerRanges {
  std::array<TapRanges, kTapCount> taps;  // indexed by Tap
  TapRanges scores;  // softmax input (scaled QK^T over the causal entries), one "channel" per attention head
  TapRanges& tap(Tap t) { return taps[static_cast<std::size_t>(t)]; }
  const TapRanges& tap(Tap t) const { return taps[static_cast<std::size_t>(t)]; }
};

// `samples` windows of `seqlen` tokens, each a slice of the tokenized text starting at a seeded random offset
// (splitmix64; the same seed gives the same windows everywhere). Throws InputError when the text is shorter than
// seqlen + 1 tokens.
std::vector<std::int32_t> calibration_windows(std::span<const std::int32_t> ids, std::int64_t samples,
                                              std::int64_t seqlen, std::uint64_t seed);

// Progress of a layer-by-layer pass: `done` of `total` (layer, sample) steps.
struct LayerwiseProgress {
  int layer = 0, layers = 0;
  std::int64_t sample = 0, samples = 0;
  std::int64_t done = 0, total = 0;
  double fraction() const { return total ? static_cast<double>(done) / static_cast<double>(total) : 1.0; }
};
// Returning false cancels: the pass throws Cancelled at the next window.
using LayerwiseCallback = std::function<bool(const LayerwiseProgress&)>;

// The hidden states of every calibration window, advanced through the model one decoder layer at a time, as the
// reference does: the inputs of layer i are the outputs of layers 0..i-1 as they are when layer i runs (already
// quantized, when a quantization pipeline changed them in between). Windows run one at a time (batch 1), so a hook
// sees exactly one sample per call.
class LayerwiseRunner {
 public:
  // tokens: [samples, seqlen]. Embeds every window.
  LayerwiseRunner(const Model& model, std::span<const std::int32_t> tokens, std::int64_t samples,
                  std::int64_t seqlen);
  std::int64_t samples() const { return samples_; }
  std::int64_t seqlen() const { return seqlen_; }
  int next_layer() const { return next_layer_; }

  // Runs layer `layer` (== next_layer()) over every window with `hook`, keeping the hidden states unchanged.
  void observe(ActivationHook* hook, const LayerwiseCallback& progress = {});
  // Runs layer `next_layer()` over every window with `hook` and replaces the hidden states by its outputs.
  void advance(ActivationHook* hook, const LayerwiseCallback& progress = {});
  // Window i's hidden state [seqlen, hidden] (the input of next_layer()).
  const Tensor& hidden(std::int64_t i) const { return hidden_.at(static_cast<std::size_t>(i)); }
  Tensor& hidden(std::int64_t i) { return hidden_.at(static_cast<std::size_t>(i)); }

  // The step counter used for progress over a whole pass of `passes_per_layer` passes per layer.
  void set_progress_plan(int passes_per_layer) { passes_per_layer_ = passes_per_layer; }

 private:
  void run(bool keep, ActivationHook* hook, const LayerwiseCallback& progress);
  static constexpr std::int64_t kBatchRows = 2048;
  const Model& model_;
  std::int64_t samples_, seqlen_;
  int next_layer_ = 0;
  int passes_per_layer_ = 1;
  std::int64_t steps_done_ = 0;
  std::vector<Tensor> hidden_;
};

// A hook that records the ranges of every tap of every layer into `ranges` (one sample per sequence of a call:
// ActivationView::seq, or the whole call), and the attention score range per head and sequence at the K tap (from
// the Q it saw just before).
class RangeRecorder : public ActivationHook {
 public:
  RangeRecorder(const ModelConfig& cfg, std::vector<LayerRanges>& ranges);
  void on_activation(int layer, Tap tap, const ActivationView& act) override;
  // Leaves the first n positions of the sequence out of the taps' ranges (QuantConfig::fp_prefix).
  void set_skip_prefix(std::int64_t n) { skip_prefix_ = n; }

 private:
  const ModelConfig& cfg_;
  std::vector<LayerRanges>& ranges_;
  ActivationView last_q_;
  int last_q_layer_ = -1;
  std::int64_t skip_prefix_ = 0;
};

// The range of the attention scores (the softmax input: scaled q k^T over the causal, windowed entries) of one
// sequence, per head, from its Q and K taps ([seqlen, heads * head_dim] and [seqlen, kv_heads * head_dim]).
void attention_score_range(const ModelConfig& cfg, const ActivationView& q_tap, const ActivationView& k_tap,
                           std::vector<float>& hmax, std::vector<float>& hmin);

// Per-channel max/min of a [rows, cols] activation over its rows.
void channel_max_min(const ActivationView& act, std::vector<float>& mx, std::vector<float>& mn);

struct CalibrationSettings {
  std::int64_t samples = 128;
  std::int64_t seqlen = 2048;
  std::uint64_t seed = 2;
  RangeStat stat = RangeStat::Ema;  // the statistic quantization uses by default (both are always recorded)
};

// What calibration measured, with where it came from: the content of a channel statistics file.
struct ChannelStats {
  // The model's identity.
  std::string model_path, model_type, architecture;
  std::string config_sha256;  // of the model's config.json bytes
  std::int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
  // How it was calibrated.
  std::string data_path, data_sha256;  // the calibration text and the SHA-256 of its bytes
  CalibrationSettings settings;
  std::string tool_version, created;  // created: ISO 8601 UTC
  double seconds = 0;
  std::vector<std::int32_t> tokens;  // [samples, seqlen]: the windows, so quantization reuses the same inputs
  std::vector<LayerRanges> ranges;   // per layer

  const TapRanges& tap(int layer, Tap t) const;  // throws InputError for a layer out of range
  // The measured model's shape as a ModelConfig (architecture family and widths; other fields default), enough for
  // clustering and the widths of the taps when the model itself is not loaded.
  ModelConfig model_shape() const;
};

// Calibrates the (unquantized) model on windows of the tokenized text, layer by layer. model_dir and data_path are
// recorded (config.json is hashed from model_dir when it exists). progress may cancel (throws Cancelled).
ChannelStats calibrate(const Model& model, const std::string& model_dir, std::span<const std::int32_t> text_ids,
                       const std::string& data_path, const std::string& data_sha256,
                       const CalibrationSettings& settings, const LayerwiseCallback& progress = {});

// What calibrate() records before any forward pass, for every calibration path: the identity and settings, and the
// windows drawn from text_ids (no ranges). Throws InputError for OPT windows longer than the model's positions.
ChannelStats calibration_start(const Model& model, const std::string& model_dir, std::span<const std::int32_t> text_ids,
                               const std::string& data_path, const std::string& data_sha256,
                               const CalibrationSettings& settings);

// SHA-256 of bytes / of a file's bytes, lowercase hex (OpenSSL).
std::string sha256_hex(std::string_view bytes);
std::string sha256_file(const std::string& path);  // throws InputError when unreadable

}  // namespace rptq
