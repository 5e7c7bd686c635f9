#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "rptq/base/error.h"
#include "rptq/method/cluster_view.h"
#include "rptq/export/stats_file.h"

namespace rptq::cli {

namespace {
struct ClustersArgs {
  std::string stats, tap, stat, grid = "exact";
  int layer = 0, k = 0, bits = 4;
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
  const QuantGrid grid = parse_grid(a.grid);
  // What Explore shows: the clustered feature, the clusters and each cluster's quantizer (one computation).
  const ClusterView v = cluster_view(st, a.layer, r, a.k, stat, a.bits, grid, a.seed);
  const LayerRanges& lr = st.ranges[static_cast<std::size_t>(a.layer)];
  if (a.json) {
    nlohmann::json j;
    j["stats"] = a.stats;
    j["layer"] = a.layer;
    j["tap"] = a.tap;
    j["activation"] = tap_name(v.shown);
    j["description"] = v.description;
    j["stat"] = range_stat_name(stat);
    j["quantizer_ranges"] = v.stat_ranges ? range_stat_name(stat) : "feature";
    j["bits"] = a.bits;
    j["grid"] = grid_name(grid);
    j["seed"] = a.seed;
    j["k"] = a.k;
    j["clusters"] = v.clusters;
    j["per_head"] = v.per_head;
    j["heads"] = v.heads;
    j["max"] = v.max;
    j["min"] = v.min;
    if (r == 2) {
      j["q_max"] = lr.tap(Tap::Q).hi(stat);
      j["q_min"] = lr.tap(Tap::Q).lo(stat);
    }
    if (r == 3) {
      j["attn_output_max"] = lr.tap(Tap::AttnOutput).hi(stat);
      j["attn_output_min"] = lr.tap(Tap::AttnOutput).lo(stat);
    }
    j["labels"] = v.labels;
    j["order"] = v.order;
    j["boundaries"] = v.boundaries;
    j["inertia"] = v.inertia;
    nlohmann::json qs = nlohmann::json::array();
    for (const ClusterView::Quantizer& q : v.quantizers)
      qs.push_back({{"cluster", q.cluster}, {"channels", q.channels}, {"min", q.min}, {"max", q.max},
                    {"step", q.step}, {"max_error", q.max_error}, {"rms_error", q.rms_error}, {"finer", q.finer}});
    j["quantizers"] = qs;
    j["tensor"] = {{"min", v.tensor_min}, {"max", v.tensor_max}, {"step", v.tensor_step}};
    std::cout << json_text(j, -1) << "\n";
    return;
  }
  std::printf("%s layer %d %s (%s, %lld channels): %d clusters%s, inertia %.6g\n", a.stats.c_str(), a.layer,
              a.tap.c_str(), v.description.c_str(), (long long)v.channels(), v.clusters,
              v.per_head ? " (k per head)" : "", v.inertia);
  std::printf("%8s %14s %14s %8s\n", "channel", "max", "min", "cluster");
  for (std::int64_t c = 0; c < v.channels(); ++c) {
    const auto i = static_cast<std::size_t>(c);
    std::printf("%8lld %14.6g %14.6g %8d\n", (long long)c, v.max[i], v.min[i], v.labels[i]);
  }
  const std::string ranges = v.stat_ranges ? std::string(range_stat_name(stat)) + " ranges" : "the max/min shown";
  std::printf("\n%d-bit quantizers (%s grid, %s); one for the whole tensor: [%.6g, %.6g], step %.6g\n", a.bits,
              grid_name(grid), ranges.c_str(), v.tensor_min, v.tensor_max, v.tensor_step);
  std::printf("%8s %8s %14s %14s %12s %12s %12s %8s\n", "cluster", "channels", "min", "max", "step", "max error",
              "rms error", "finer");
  for (const ClusterView::Quantizer& q : v.quantizers)
    std::printf("%8d %8lld %14.6g %14.6g %12.4g %12.4g %12.4g %8.3g\n", q.cluster, (long long)q.channels, q.min,
                q.max, q.step, q.max_error, q.rms_error, q.finer);
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
  cmd->add_option("--stat", a->stat, "Range statistic of the cluster quantizers: ema or minmax (default: the "
                                     "file's); the clusters are always formed on the plain max/min, as quantization "
                                     "forms them, and the per-channel max/min shown are those")
      ->check(CLI::IsMember({"ema", "minmax"}));
  cmd->add_option("--bits", a->bits, "Bits of the cluster quantizers shown (default 4)")->check(CLI::Range(2, 8));
  cmd->add_option("--grid", a->grid, "Integer grid: exact (2^n - 1 steps, default) or reference (2^n, as RPTQ's code)")
      ->check(CLI::IsMember({"exact", "reference"}));
  cmd->add_option("--seed", a->seed,
                  "Base k-means seed (default 0), as quantization's: the same layer and seed give its partition of "
                  "the same ranges");
  cmd->add_flag("--json", a->json, "Print JSON: max, min, labels, order, boundaries, inertia, k, and per cluster its "
                                   "quantizer (quantizers: min, max, step, max_error, rms_error, finer; tensor; "
                                   "quantizer_ranges: ema, minmax, or feature where they are the max/min shown)");
  cmd->callback([a] { run_clusters(*a); });
}

}  // namespace rptq::cli
