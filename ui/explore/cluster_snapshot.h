#pragma once
// One re-clustering of one reorder index of one layer, with what the Explore step shows of it: the clustered
// channels' (max, min), each channel's cluster, the reorder, and per cluster the quantizer it gets at the chosen
// bit width. Built on a worker thread by the engine (rptq::cluster_view, which `rptq clusters` prints too); this
// file only carries the request that asked for it.
#include <QString>

#include <cstdint>
#include <memory>

#include "rptq/method/calibration.h"
#include "rptq/method/cluster_view.h"
#include "rptq/method/quant_config.h"

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

// The quantizer one cluster gets (rptq::ClusterView::Quantizer).
using ClusterQuantizer = rptq::ClusterView::Quantizer;

// The engine's view of the clustering (rptq::cluster_view: feature, clusters, per-cluster quantizers) with the
// request it answers.
struct ClusterSnapshot : rptq::ClusterView {
  ClusterRequest request;

  QString description_text() const { return QString::fromStdString(description); }
};

// The activation each index is plotted with is rptq::shown_tap(index).
QString index_title(int index);  // "R1 attention input", ...

// Clusters and describes (rptq::cluster_view); throws rptq::InputError without statistics or for a bad layer,
// index or k.
ClusterSnapshot make_cluster_snapshot(const ClusterRequest& request);

}  // namespace rptq::ui
