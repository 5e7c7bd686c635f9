#include "rptq/method/cluster_view.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "rptq/base/error.h"
#include "rptq/base/quantizer.h"
#include "rptq/method/reorder.h"

namespace rptq {

Tap shown_tap(int index) {
  switch (index) {
    case 2: return Tap::K;
    case 3: return Tap::AttnOutput;
    case 4: return Tap::FfnInput;
    case 5: return Tap::FfnHidden;
    default: return Tap::AttnInput;
  }
}

ClusterView cluster_view(const ChannelStats& st, int layer, int index, int k, RangeStat stat, int bits,
                         QuantGrid grid, std::uint64_t seed) {
  if (index < 1 || index > 5)
    throw InputError("reorder index must be R1..R5, got R" + std::to_string(index));
  if (k < 1) throw InputError("k (clusters, per head for R2/R3) must be at least 1, got " + std::to_string(k));
  st.tap(layer, Tap::AttnInput);  // throws for a layer out of range
  const ModelConfig shape = st.model_shape();
  if (shape.kv_heads < 1 || shape.heads % shape.kv_heads != 0)
    throw InputError("the statistics' heads (" + std::to_string(shape.heads) + ") are not a whole number of KV " +
                     "heads (" + std::to_string(shape.kv_heads) + ")");
  const LayerRanges& lr = st.ranges[static_cast<std::size_t>(layer)];

  ClusterView s;
  s.shown = shown_tap(index);
  s.per_head = index == 2 || index == 3;
  s.heads = s.per_head ? shape.kv_heads : 1;

  const auto t0 = std::chrono::steady_clock::now();
  TapClusters tc = cluster_reorder_index(index, shape, lr, k, layer, seed);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // The plotted feature is the one clustered, the plain max/min over every calibration token (the statistic only
  // chooses the quantizers' ranges, below): R3 clusters the attention output per KV head, over the group's query
  // heads (each channel's widest range among them); with one query head per KV head that is the tap itself.
  const TapRanges& tr = lr.tap(s.shown);
  const std::int64_t group = shape.heads / shape.kv_heads;
  if (index == 3) {
    const std::int64_t hd = shape.head_dim;
    const std::int64_t n = shape.kv_heads * hd;
    s.max.assign(static_cast<std::size_t>(n), -INFINITY);
    s.min.assign(static_cast<std::size_t>(n), INFINITY);
    for (std::int64_t g = 0; g < shape.kv_heads; ++g)
      for (std::int64_t h = g * group; h < (g + 1) * group; ++h)
        for (std::int64_t c = 0; c < hd; ++c) {
          const auto dst = static_cast<std::size_t>(g * hd + c), src = static_cast<std::size_t>(h * hd + c);
          s.max[dst] = std::max(s.max[dst], tr.max[src]);
          s.min[dst] = std::min(s.min[dst], tr.min[src]);
        }
    s.description = group > 1 ? "attn_output, widest over each KV group's " + std::to_string(group) + " query heads"
                              : std::string("attn_output (v and attn_output share these clusters)");
  } else {
    s.max = tr.max;
    s.min = tr.min;
    s.description = index == 2 ? std::string("k (clustered jointly with q, per head)") : tap_name(s.shown);
  }
  if (tc.labels.size() != s.max.size()) throw std::logic_error("cluster labels do not match the plotted channels");
  s.labels = std::move(tc.labels);
  s.order = std::move(tc.index.order);
  s.boundaries = std::move(tc.index.boundaries);
  s.clusters = tc.clusters;
  s.inertia = tc.inertia;

  // Per cluster: the bounds of its channels' feature, and of the whole tensor's.
  s.quantizers.resize(static_cast<std::size_t>(s.clusters));
  for (int c = 0; c < s.clusters; ++c) {
    ClusterView::Quantizer& q = s.quantizers[static_cast<std::size_t>(c)];
    q.cluster = c;
    q.min = INFINITY;
    q.max = -INFINITY;
  }
  s.tensor_min = INFINITY;
  s.tensor_max = -INFINITY;
  for (std::size_t i = 0; i < s.labels.size(); ++i) {
    const auto c = static_cast<std::size_t>(s.labels[i]);
    if (c >= s.quantizers.size()) throw std::logic_error("cluster label out of range");
    ClusterView::Quantizer& q = s.quantizers[c];
    ++q.channels;
    q.min = std::min(q.min, s.min[i]);
    q.max = std::max(q.max, s.max[i]);
    s.tensor_min = std::min(s.tensor_min, s.min[i]);
    s.tensor_max = std::max(s.tensor_max, s.max[i]);
  }
  // The quantizer ranges quantization builds (TapRanges::cluster_range: with the EMA statistic the EMA of each
  // cluster's per-sample range, wider than its channels' widest EMA), wherever the plotted tap is the quantized one
  // (all but R3 over query-head groups, plotted combined).
  const bool own_tap = index != 3 || group == 1;
  s.stat_ranges = own_tap && (stat == RangeStat::MinMax || tr.has_samples());
  if (s.stat_ranges) {
    std::vector<std::vector<std::int32_t>> members(s.quantizers.size());
    for (std::size_t i = 0; i < s.labels.size(); ++i)
      members[static_cast<std::size_t>(s.labels[i])].push_back(static_cast<std::int32_t>(i));
    for (ClusterView::Quantizer& q : s.quantizers)
      tr.cluster_range(stat, members[static_cast<std::size_t>(q.cluster)], q.min, q.max);
  }
  const double max_error_steps = grid == QuantGrid::Exact ? 0.5 : 1.5;
  s.tensor_step = quant_params(s.tensor_min, s.tensor_max, bits, grid).scale;
  for (ClusterView::Quantizer& q : s.quantizers) {
    if (q.channels == 0) q.min = q.max = 0;
    q.step = quant_params(q.min, q.max, bits, grid).scale;
    q.max_error = max_error_steps * q.step;
    q.rms_error = q.step / std::sqrt(12.0);
    q.finer = q.step > 0 ? s.tensor_step / q.step : 1.0;
  }
  return s;
}

}  // namespace rptq
