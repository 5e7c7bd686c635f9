#include "explore/cluster_snapshot.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "rptq/base/error.h"
#include "rptq/base/quantizer.h"
#include "rptq/method/reorder.h"

namespace rptq::ui {

rptq::Tap shown_tap(int index) {
  switch (index) {
    case 2: return rptq::Tap::K;
    case 3: return rptq::Tap::AttnOutput;
    case 4: return rptq::Tap::FfnInput;
    case 5: return rptq::Tap::FfnHidden;
    default: return rptq::Tap::AttnInput;
  }
}

QString index_title(int index) {
  switch (index) {
    case 1: return QStringLiteral("R1 attention input");
    case 2: return QStringLiteral("R2 queries and keys");
    case 3: return QStringLiteral("R3 values / attention output");
    case 4: return QStringLiteral("R4 FFN input");
    case 5: return QStringLiteral("R5 FFN hidden");
  }
  return QStringLiteral("R%1").arg(index);
}

ClusterSnapshot make_cluster_snapshot(const ClusterRequest& req) {
  if (!req.stats) throw rptq::InputError("no channel statistics");
  if (req.index < 1 || req.index > 5) throw rptq::InputError("reorder index must be R1..R5");
  const rptq::ChannelStats& st = *req.stats;
  const rptq::ModelConfig shape = st.model_shape();
  st.tap(req.layer, rptq::Tap::AttnInput);  // throws for a layer out of range
  const rptq::LayerRanges& lr = st.ranges[static_cast<std::size_t>(req.layer)];

  ClusterSnapshot s;
  s.request = req;
  s.shown = shown_tap(req.index);
  s.per_head = req.index == 2 || req.index == 3;
  s.heads = s.per_head ? shape.kv_heads : 1;

  const auto t0 = std::chrono::steady_clock::now();
  rptq::TapClusters tc = rptq::cluster_reorder_index(req.index, shape, lr, req.k, req.layer, req.seed);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // The plotted feature is the one clustered, the plain max/min over every calibration token (the statistic only
  // chooses the quantizers' ranges, below): R3 clusters the attention output per KV head, over the group's query
  // heads (each channel's widest range among them); with one query head per KV head that is the tap itself.
  const rptq::TapRanges& tr = lr.tap(s.shown);
  if (req.index == 3) {
    const std::int64_t hd = shape.head_dim, group = shape.heads / std::max<std::int64_t>(1, shape.kv_heads);
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
    s.description = group > 1 ? QStringLiteral("attn_output, widest over each KV group's %1 query heads").arg(group)
                              : QStringLiteral("attn_output (v and attn_output share these clusters)");
  } else {
    s.max = tr.max;
    s.min = tr.min;
    s.description = req.index == 2 ? QStringLiteral("k (clustered jointly with q, per head)")
                                   : QString::fromLatin1(rptq::tap_name(s.shown));
  }
  if (tc.labels.size() != s.max.size())
    throw std::logic_error("cluster labels do not match the plotted channels");
  s.labels = std::move(tc.labels);
  s.order = std::move(tc.index.order);
  s.clusters = tc.clusters;
  s.inertia = tc.inertia;

  // Per cluster: its range and the quantizer the engine would build for it.
  s.quantizers.resize(static_cast<std::size_t>(s.clusters));
  for (int c = 0; c < s.clusters; ++c) {
    s.quantizers[static_cast<std::size_t>(c)].cluster = c;
    s.quantizers[static_cast<std::size_t>(c)].min = INFINITY;
    s.quantizers[static_cast<std::size_t>(c)].max = -INFINITY;
  }
  s.tensor_min = INFINITY;
  s.tensor_max = -INFINITY;
  for (std::size_t i = 0; i < s.labels.size(); ++i) {
    const auto c = static_cast<std::size_t>(s.labels[i]);
    if (c >= s.quantizers.size()) throw std::logic_error("cluster label out of range");
    ClusterQuantizer& q = s.quantizers[c];
    ++q.channels;
    q.min = std::min(q.min, s.min[i]);
    q.max = std::max(q.max, s.max[i]);
    s.tensor_min = std::min(s.tensor_min, s.min[i]);
    s.tensor_max = std::max(s.tensor_max, s.max[i]);
  }
  // The quantizer ranges quantization builds (rptq::TapRanges::cluster_range: with the EMA statistic the EMA of each
  // cluster's per-sample range, wider than its channels' widest EMA), wherever the plotted tap is the quantized one
  // (all but R3 over query-head groups, plotted combined).
  const bool own_tap = req.index != 3 || shape.heads == shape.kv_heads;
  if (own_tap && (req.stat == rptq::RangeStat::MinMax || tr.has_samples())) {
    std::vector<std::vector<std::int32_t>> members(s.quantizers.size());
    for (std::size_t i = 0; i < s.labels.size(); ++i)
      members[static_cast<std::size_t>(s.labels[i])].push_back(static_cast<std::int32_t>(i));
    for (ClusterQuantizer& q : s.quantizers)
      tr.cluster_range(req.stat, members[static_cast<std::size_t>(q.cluster)], q.min, q.max);
  }
  const double max_error_steps = req.grid == rptq::QuantGrid::Exact ? 0.5 : 1.5;
  s.tensor_step = rptq::quant_params(s.tensor_min, s.tensor_max, req.bits, req.grid).scale;
  for (ClusterQuantizer& q : s.quantizers) {
    if (q.channels == 0) q.min = q.max = 0;
    q.step = rptq::quant_params(q.min, q.max, req.bits, req.grid).scale;
    q.max_error = max_error_steps * q.step;
    q.rms_error = q.step / std::sqrt(12.0);
    q.finer = q.step > 0 ? s.tensor_step / q.step : 1.0;
  }
  return s;
}

}  // namespace rptq::ui
