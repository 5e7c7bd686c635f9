#pragma once
// k-means for RPTQ channel clustering: each channel of a tap is a point (e.g. 2-D (max, min), or 4-D
// (q max, k max, q min, k min) for R2), and the clusters become the groups of channels that share one quantizer.
//
// Lloyd iterations (with Hamerly's distance bounds, which skip the points whose assignment cannot change) after
// k-means++ seeding, several restarts, the lowest inertia kept. The result is deterministic: the same points and
// options give a bit-identical result on any thread count (restarts run in parallel, each one serially; ties in
// the inertia go to the lowest restart index).
#include <cstdint>
#include <span>
#include <vector>

namespace rptq {

struct KMeansOptions {
  int k = 8;               // clusters (clamped to the number of distinct points; k >= 1 else InputError)
  int restarts = 8;        // independent k-means++ initialisations (>= 1); the best inertia is kept
  int max_iterations = 100;  // Lloyd iterations per restart (>= 1); a restart also stops when no label changes
  std::uint64_t seed = 0;  // restart r seeds its own PRNG (xoshiro256**) from (seed, r)
};

// Clusters are numbered in centroid order: sorted lexicographically by centroid coordinates (first coordinate
// ascending, then the second, ...; exact ties by the lowest point index in the cluster), so the labels do not
// depend on which random ids the restart happened to give them. Cluster 0 has the smallest first coordinate.
struct KMeansResult {
  int k = 0;                             // clusters actually used (<= options.k): min(options.k, distinct points)
  int dims = 0;
  std::vector<std::int32_t> labels;      // per point, in [0, k), in centroid order
  std::vector<float> centroids;          // [k, dims], in that order: the mean of each cluster's points
  std::vector<std::int64_t> sizes;       // points per cluster (all >= 1)
  std::vector<std::int32_t> order;       // the reorder index: point ids sorted by (label, original index)
  std::vector<std::int64_t> boundaries;  // k + 1 offsets into `order`: cluster c is order[boundaries[c] ..
                                         // boundaries[c + 1])
  double inertia = 0;                    // sum of squared distances to the assigned centroid, in double (against
                                         // the double-precision means the float centroids are rounded from)
  int iterations = 0;                    // Lloyd iterations of the kept restart
};

// points: [n, dims] row-major (n = points.size() / dims). Throws InputError on n == 0, dims < 1, a size that is
// not a multiple of dims, more than 2^31 - 1 points, k < 1, restarts < 1, max_iterations < 1, or a non-finite
// coordinate (naming the point and coordinate).
KMeansResult kmeans(std::span<const float> points, int dims, const KMeansOptions& opts);

}  // namespace rptq
