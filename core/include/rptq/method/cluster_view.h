#pragma once
// One clustering of one reorder index of one layer, as the Explore step and `rptq clusters` show it: the clustered
// channels' (max, min), each channel's cluster, the reorder, and per cluster the quantizer it gets at a bit width,
// next to one quantizer for the whole tensor. Built from the engine's clustering (cluster_reorder_index), cluster
// ranges (TapRanges::cluster_range) and quantizer (quant_params), so what is shown is what quantization builds.
#include <cstdint>
#include <string>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/method/quant_config.h"
#include "rptq/model/tap.h"

namespace rptq {

struct ClusterView {
  // The quantizer one cluster gets, with the range quantization gives it (TapRanges::cluster_range).
  struct Quantizer {
    int cluster = 0;
    std::int64_t channels = 0;
    float min = 0, max = 0;
    float step = 0;        // the quantizer's scale (quant_params)
    double max_error = 0;  // worst rounding error inside [min, max]: step / 2 (exact grid), 1.5 steps (reference)
    double rms_error = 0;  // step / sqrt(12): the RMS rounding error of values spread evenly over the range
    double finer = 1;      // per-tensor step / this step: how much finer than one quantizer for the whole tensor
  };

  Tap shown = Tap::AttnInput;         // the activation whose channels are plotted (shown_tap)
  std::string description;            // "attn_input", "k (clustered jointly with q, per head)", ...
  bool per_head = false;              // R2/R3: k counts per (KV) head
  std::int64_t heads = 1;             // heads the index clusters within (1 for R1/R4/R5)
  std::vector<float> max, min;        // per plotted channel (original order): the clustered feature, the plain
                                      // max/min over every calibration token (whatever the quantizers' statistic)
  std::vector<std::int32_t> labels;   // per channel: its cluster
  std::vector<std::int32_t> order;    // reordered position -> channel (clusters contiguous)
  std::vector<std::int64_t> boundaries;  // cluster c is reordered positions [boundaries[c], boundaries[c + 1])
  int clusters = 0;                   // clusters formed (R2/R3: over all heads)
  double inertia = 0;                 // k-means inertia (summed over heads)
  double seconds = 0;                 // clustering wall time
  std::vector<Quantizer> quantizers;  // one per cluster
  bool stat_ranges = false;  // the quantizer ranges are the shown tap's cluster_range by the statistic asked for;
                             // false: the plain bounds of the plotted feature over each cluster
  float tensor_min = 0, tensor_max = 0, tensor_step = 0;  // one quantizer over the whole tensor, for comparison

  std::int64_t channels() const { return static_cast<std::int64_t>(max.size()); }
};

// The activation a reorder index is plotted with: R1 attn_input, R2 k, R3 attn_output, R4 ffn_input, R5 ffn_hidden.
Tap shown_tap(int index);

// Clusters reorder index `index` (1..5) of layer `layer` into k clusters (per head for R2/R3) with the k-means seed
// quantization uses (cluster_seed(seed, layer, index)), and gives each cluster the quantizer of `bits` on `grid`
// over its range by statistic `stat`. R3's plotted feature is the attention output's widest range over each KV
// group's query heads (the feature it is clustered on). The quantizer ranges are the shown tap's cluster_range, or
// the plain bounds of the clustered feature where that is not the quantized tap (R3 with query-head groups) or the
// EMA has no per-sample ranges to come from (statistics files of format version 1). Throws InputError for a bad
// layer, index, k or bit width.
ClusterView cluster_view(const ChannelStats& stats, int layer, int index, int k, RangeStat stat, int bits,
                         QuantGrid grid, std::uint64_t seed = 0);

}  // namespace rptq
