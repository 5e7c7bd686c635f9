#pragma once
// One re-clustering of one reorder index of one layer, with what the Explore step shows of it: the clustered
// channels' (max, min), each channel's cluster, the reorder, and per cluster the quantizer it gets at the chosen
// bit width. Built on a worker thread from the engine's clustering (rptq::cluster_reorder_index) and quantizer
// (rptq::quant_params); the only arithmetic here is the presentation of those results.
#include <QString>

#include <cstdint>
#include <memory>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/method/quant_config.h"
#include "rptq/model/tap.h"

namespace rptq::ui {

struct ClusterRequest {
  std::shared_ptr<const rptq::ChannelStats> stats;
  int layer = 0;
  int index = 1;  // reorder index R1..R5
  int k = 8;      // clusters (per head for R2/R3)
  rptq::RangeStat stat = rptq::RangeStat::Ema;  // the cluster quantizers' range statistic
  int bits = 4;
  rptq::QuantGrid grid = rptq::QuantGrid::Exact;
  std::uint64_t seed = 0;  // base k-means seed (rptq::cluster_seed with the layer and index)
  bool applied = false;    // stats are the quantized model's applied ranges (rptq::applied_stats)
  std::uint64_t id = 0;  // set by ClusterWorker: requests are numbered in the order they were made
};

// The quantizer one cluster gets, with the range quantization gives it (rptq::TapRanges::cluster_range).
struct ClusterQuantizer {
  int cluster = 0;
  std::int64_t channels = 0;
  float min = 0, max = 0;
  float step = 0;          // the quantizer's scale (rptq::quant_params)
  double max_error = 0;    // worst rounding error inside [min, max]: step / 2 (exact grid), 1.5 steps (reference)
  double rms_error = 0;    // step / sqrt(12): the RMS rounding error of values spread evenly over the range
  double finer = 1;        // per-tensor step / this step: how much finer than one quantizer for the whole tensor
};

struct ClusterSnapshot {
  ClusterRequest request;
  rptq::Tap shown = rptq::Tap::AttnInput;  // the activation whose channels are plotted
  QString description;                     // "attn_input", "k (clustered jointly with q)", ...
  bool per_head = false;                   // R2/R3: k counts per (KV) head
  std::int64_t heads = 1;                  // heads the index clusters within (1 for R1/R4/R5)
  std::vector<float> max, min;             // per plotted channel (original order): the clustered feature, the
                                           // plain max/min (whatever request.stat)
  std::vector<std::int32_t> labels;        // per channel: its cluster
  std::vector<std::int32_t> order;         // reordered position -> channel (clusters contiguous)
  int clusters = 0;                        // clusters formed (R2/R3: over all heads)
  double inertia = 0;
  double seconds = 0;                      // clustering wall time
  std::vector<ClusterQuantizer> quantizers;  // one per cluster
  float tensor_min = 0, tensor_max = 0, tensor_step = 0;  // one quantizer over the whole tensor, for comparison

  std::int64_t channels() const { return static_cast<std::int64_t>(max.size()); }
};

// The activation a reorder index is plotted with: R1 attn_input, R2 k, R3 attn_output, R4 ffn_input, R5 ffn_hidden.
rptq::Tap shown_tap(int index);
QString index_title(int index);  // "R1 attention input", ...

// Clusters and describes; throws rptq::InputError for a bad layer or k.
ClusterSnapshot make_cluster_snapshot(const ClusterRequest& request);

}  // namespace rptq::ui
