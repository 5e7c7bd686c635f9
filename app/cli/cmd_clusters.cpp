#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "rptq/base/error.h"
#include "rptq/method/reorder.h"
#include "rptq/export/stats_file.h"

namespace rptq::cli {

namespace {
struct ClustersArgs {
  std::string stats, tap, stat;
  int layer = 0, k = 0;
  std::uint64_t seed = 0;
  bool json = false;
};

void run_clusters(const ClustersArgs& a) {
  const ChannelStats st = load_stats(a.stats);
  if (a.layer < 0 || a.layer >= st.layers)
    throw InputError("--layer " + std::to_string(a.layer) + " is out of range: " + a.stats + " has layers 0.." +
                     std::to_string(st.layers - 1));
  const int r = a.tap[1] - '0';
  const RangeStat stat = a.stat.empty() ? st.settings.stat : parse_range_stat(a.stat);
  const ModelConfig cfg = st.model_shape();
  const LayerRanges& lr = st.ranges[static_cast<std::size_t>(a.layer)];
  const TapClusters tc = cluster_reorder_index(r, cfg, lr, a.k, a.layer, a.seed);
  // The channels shown: the tap the index is named after (R2: k; R3: v's KV-head width is the clustered one, shown
  // with the attention output's ranges combined per group as clustered).
  const Tap shown = r == 1 ? Tap::AttnInput : r == 2 ? Tap::K : r == 3 ? Tap::V : r == 4 ? Tap::FfnInput : Tap::FfnHidden;
  const TapRanges& tr = lr.tap(shown);
  if (a.json) {
    nlohmann::json j;
    j["stats"] = a.stats;
    j["layer"] = a.layer;
    j["tap"] = a.tap;
    j["activation"] = tap_name(shown);
    j["stat"] = range_stat_name(stat);
    j["k"] = a.k;
    j["clusters"] = tc.clusters;
    j["per_head"] = r == 2 || r == 3;
    j["max"] = tr.hi(stat);
    j["min"] = tr.lo(stat);
    if (r == 2) {
      j["q_max"] = lr.tap(Tap::Q).hi(stat);
      j["q_min"] = lr.tap(Tap::Q).lo(stat);
    }
    if (r == 3) {
      j["attn_output_max"] = lr.tap(Tap::AttnOutput).hi(stat);
      j["attn_output_min"] = lr.tap(Tap::AttnOutput).lo(stat);
    }
    j["labels"] = tc.labels;
    j["order"] = tc.index.order;
    j["boundaries"] = tc.index.boundaries;
    j["inertia"] = tc.inertia;
    std::cout << j.dump() << "\n";
    return;
  }
  std::printf("%s layer %d %s (%s, %lld channels): %d clusters%s, inertia %.6g\n", a.stats.c_str(), a.layer,
              a.tap.c_str(), tap_name(shown), (long long)tr.channels(), tc.clusters,
              r == 2 || r == 3 ? " (k per head)" : "", tc.inertia);
  std::printf("%8s %14s %14s %8s\n", "channel", "max", "min", "cluster");
  for (std::int64_t c = 0; c < tr.channels(); ++c)
    std::printf("%8lld %14.6g %14.6g %8d\n", (long long)c, tr.hi(stat)[static_cast<std::size_t>(c)],
                tr.lo(stat)[static_cast<std::size_t>(c)], tc.labels[static_cast<std::size_t>(c)]);
}
}  // namespace

void add_clusters(CLI::App& app) {
  auto a = std::make_shared<ClustersArgs>();
  auto* cmd = app.add_subcommand("clusters", "k-means clusters of one layer's channel ranges (a reorder index)");
  cmd->add_option("STATS", a->stats, "Channel statistics file from `rptq calibrate`")->required();
  cmd->add_option("--layer", a->layer, "Decoder layer (0-based)")->required();
  cmd->add_option("--tap", a->tap, "Reorder index: R1 (attention input), R2 (q/k per head), R3 (v / attention "
                                   "output per head), R4 (FFN input), R5 (FFN hidden)")
      ->required()
      ->check(CLI::IsMember({"R1", "R2", "R3", "R4", "R5"}));
  cmd->add_option("--k", a->k, "Clusters (per head for R2/R3)")->required()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--stat", a->stat, "Per-channel range to print: ema or minmax (default: the file's); the clusters "
                                     "are always formed on the plain max/min, as quantization forms them")
      ->check(CLI::IsMember({"ema", "minmax"}));
  cmd->add_option("--seed", a->seed,
                  "Base k-means seed (default 0), as quantization's: the same layer and seed give its partition of "
                  "the same ranges");
  cmd->add_flag("--json", a->json, "Print JSON: max, min, labels, order, boundaries, inertia, k");
  cmd->callback([a] { run_clusters(*a); });
}

}  // namespace rptq::cli
