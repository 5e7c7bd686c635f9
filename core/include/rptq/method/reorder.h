#pragma once
// RPTQ's reorder: the channels of each tap are clustered by their calibration ranges and permuted so every cluster
// is contiguous; the permutation is folded into the norm gathers and the weights that produce and consume the
// activation (never an explicit run-time permutation). Indices R1..R5 of one decoder layer:
//   R1  attn_input: norm writes its output gathered; q/k/v weight columns
//   R2  q and k, jointly, within each (KV) head: q and k weight rows and biases (QK^T unchanged); LLaMA: channel
//       pairs (i, i + head_dim/2) move together and the rotary frequencies follow them
//   R3  v and attn_output, within each KV head: v weight rows and bias; out_proj / o_proj columns of every query
//       head of the group
//   R4  ffn_input: norm gather; fc1 (gate/up) weight columns
//   R5  ffn_hidden: fc1 (gate and up) rows and biases; fc2 (down) columns
#include <cstdint>
#include <span>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/method/kmeans.h"
#include "rptq/model/model.h"
#include "rptq/method/quant_config.h"

namespace rptq {

// A permutation of a tap's channels and its clusters: position k of the reordered activation holds channel
// order[k] of the layout it was applied to; cluster c is positions [boundaries[c], boundaries[c + 1]).
struct ReorderIndex {
  std::vector<std::int32_t> order;
  std::vector<std::int64_t> boundaries;

  std::int64_t channels() const { return static_cast<std::int64_t>(order.size()); }
  int clusters() const { return static_cast<int>(boundaries.size()) - 1; }
  bool is_identity() const;
  static ReorderIndex identity(std::int64_t channels);  // one cluster
  // Throws std::logic_error unless order is a permutation and boundaries increase from 0 to channels.
  void check(const char* what) const;
};

struct LayerReorder {
  ReorderIndex r1;  // [hidden]
  ReorderIndex r2;  // [kv_heads * head_dim]: within each KV head; boundaries over the whole width
  ReorderIndex r3;  // [kv_heads * head_dim]: within each KV head
  ReorderIndex r4;  // [hidden]
  ReorderIndex r5;  // [intermediate]
  const ReorderIndex& index(int r) const;  // 1..5
};

// The clusters of one reorder index (1..5) of a layer: R1/R4/R5 k-means of (max, min) per channel; R2 per KV head
// of (q max, k max, q min, k min) (rotary models: per channel pair; OPT's q before its head_dim^-0.5 scaling, as the
// reference); R3 per KV head of the attention output's (max, min). k counts per head for R2/R3. The features are
// always the plain max/min over every calibration token (the reference's; RangeStat only chooses the quantizer
// ranges). The k-means seed is cluster_seed(seed, layer, r): quantization, Explore and `rptq clusters` call this
// with the same (layer, seed) and so form the same partition of the same ranges.
struct TapClusters {
  ReorderIndex index;                 // the reorder (head-local for R2/R3)
  std::vector<std::int32_t> labels;   // per channel in the original order: its cluster (R2/R3: head * k + local)
  double inertia = 0;                 // k-means inertia (summed over heads)
  int clusters = 0;                   // clusters in all (R2/R3: over all heads)
};
TapClusters cluster_reorder_index(int r, const ModelConfig& model, const LayerRanges& ranges, int k, int layer,
                                  std::uint64_t seed = 0);

// The one rule for the k-means seed of reorder index r (1..5) of layer `layer` from a base seed (QuantizeOptions::
// seed, `--seed`): (seed + layer) * 5 + r. R2/R3 add the KV head to it.
std::uint64_t cluster_seed(std::uint64_t seed, int layer, int r);

// The whole reorder of one layer from its calibration ranges. clusters: R1..R5 counts (R2/R3 per head) from cfg;
// for a post-LayerNorm model R1/R4 stay in the original order (there is no norm to fold them into, so they get one
// cluster); with a serving target (cfg.target) R1, R2 and R4 do (only R3 and R5 live in the weights alone).
LayerReorder plan_layer_reorder(const ModelConfig& model, const LayerRanges& ranges, const QuantConfig& cfg,
                                int layer, std::uint64_t seed = 0);

// Folds the reorder into layer `layer`'s weights and norm gathers, relative to the layer's current layout (so
// reorders compose). Logits are unchanged up to float rounding.
void apply_reorder(Model& model, int layer, const LayerReorder& r);

// The cluster boundaries each tap is quantized with, in the reordered layout: R1 for attn_input, R2 for k and,
// repeated over the query heads of each KV group, for q; R3 for v and (per query head) attn_output; R4, R5.
std::vector<std::int64_t> tap_boundaries(const ModelConfig& model, const LayerReorder& r, Tap tap);
// The permutation each tap's channels went through (reordered position -> original channel), for mapping
// calibration ranges (recorded in the original order) onto the reordered layout.
std::vector<std::int32_t> tap_order(const ModelConfig& model, const LayerReorder& r, Tap tap);

}  // namespace rptq
