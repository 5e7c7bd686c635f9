#pragma once
// k-means for RPTQ's channel clustering: each channel of one activation tap is a point built from its calibration
// ranges, e.g. 2-D (max, min), or 4-D (q max, k max, q min, k min) for R2; the clusters become the channel groups
// that share one quantizer, and `order` is the reorder index that makes each group contiguous.
//
// Method, per restart: greedy k-means++ seeding (D^2 sampling, the best of 2 + floor(ln k) draws per centre), Lloyd
// iterations until no label changes or max_iterations (with Hamerly's distance bounds, which give the labels of
// plain Lloyd while skipping most distance computations), then Hartigan's single-point moves: a point moves to
// another cluster whenever that lowers the inertia (n_j / (n_j + 1) |x - c_j|^2 < n_a / (n_a - 1) |x - c_a|^2),
// which repairs the local minima Lloyd leaves when clusters are small, as outlier channels' clusters are. The
// refinement stops when a pass moves nothing (the partition is then a fixed point of both), when a pass lowers the
// inertia by less than 1e-5 of it, or after max_iterations passes. On small problems (see restart_work) a swap
// search follows: move one centroid to a data point (the best-scoring of 2 + floor(ln k) D^2 draws against every
// removal, scored with the centroids fixed), descend again with Lloyd and Hartigan, keep the result while the
// inertia falls; this repairs local minima where one region has a centroid too many and another one too few. The
// restart with the lowest inertia is kept (ties: the lowest restart index).
//
// Against scikit-learn's KMeans(n_init=10) (what the RPTQ reference uses), on every tap of tiny-opt-16m,
// stories260k and SmolLM2-135M at k = 4..64 (R2/R3 per head at 2..8) the inertia is never higher
// (tools/kmeans-vs-sklearn, bench/results/kmeans-vs-sklearn-*.txt).
//
// Conventions:
// - Cluster ids are ORDERED BY CENTROID: clusters are sorted lexicographically by their centroid coordinates
//   (first coordinate ascending, then the second, ...; identical centroids by their lowest point index), so the
//   labels do not depend on the arbitrary ids of the random initialisation. Cluster 0 has the smallest first
//   coordinate.
// - A cluster that Lloyd empties is re-seeded with the point farthest from its centroid (lowest index on ties).
// - Fewer distinct points than k: k becomes the number of distinct points, each its own cluster (inertia 0).
//   -0 and +0 are the same coordinate.
// - Deterministic: the same points and options give a bit-identical result whatever the OpenMP thread count
//   (restarts run in parallel, or a single restart's loops over fixed chunks of points whose partial sums are
//   added in index order; the PRNG is our own splitmix64 / xoshiro256**). Results may differ between CPUs with
//   different vector widths (the hot loops are compiled for baseline x86-64, AVX2 and AVX-512).
// - Centroids are the means of their clusters' points (computed in double, stored as float); inertia is the sum
//   over points of the squared distance to their centroid, in double. Distances for the assignment are float.
#include <cstdint>
#include <span>
#include <vector>

namespace rptq {

struct KMeansOptions {
  int k = 8;                 // clusters (clamped to the number of distinct points; k >= 1 else InputError)
  int restarts = 8;          // independent k-means++ initialisations, at least; the best inertia is kept (>= 1)
  // Search budget W, in units where a plain restart on n points costs n * (k + 16) and one with the swap search
  // 3 n (k + 16). When W >= restarts * 3 n (k + 16), every restart runs the swap search and restarts are added up to
  // min(32, W / (3 n (k + 16))); otherwise exactly `restarts` run, without it. The default is 8 plain restarts of
  // 36,864 points at k = 32: such calls (and wider ones, or larger k) search exactly as before the swap search was
  // added, while taps of a few thousand channels or fewer get 32 restarts with it. 0: exactly `restarts`, no swaps.
  std::int64_t restart_work = std::int64_t{8} * 36864 * (32 + 16);
  int max_iterations = 100;  // Lloyd iterations per restart, and the cap on Hartigan passes (>= 1)
  std::uint64_t seed = 0;    // restart r uses a seed derived from (seed, r)
};

struct KMeansResult {
  int k = 0;                             // clusters actually used (<= options.k)
  int dims = 0;
  std::vector<std::int32_t> labels;      // per point, in [0, k): cluster ids ordered by centroid (see above)
  std::vector<float> centroids;          // [k, dims], in that order
  std::vector<std::int64_t> sizes;       // points per cluster (each >= 1)
  std::vector<std::int32_t> order;       // the reorder index: point ids sorted by (label, original index), stable
  std::vector<std::int64_t> boundaries;  // k + 1 offsets into `order`: cluster c is
                                         // order[boundaries[c] .. boundaries[c + 1])
  double inertia = 0;                    // sum of squared distances to the assigned centroid
  int iterations = 0;                    // Lloyd iterations (assignment steps) of the kept restart's first descent
                                         // (before any swap)
};

// points: [n, dims] row-major (n = points.size() / dims). Throws InputError on n == 0, dims < 1, a size that is not
// a multiple of dims, n above INT32_MAX, non-finite values, k < 1, restarts < 1, max_iterations < 1 or
// restart_work < 0.
KMeansResult kmeans(std::span<const float> points, int dims, const KMeansOptions& opts);

}  // namespace rptq
