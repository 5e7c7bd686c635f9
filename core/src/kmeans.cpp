#include "rptq/kmeans.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <string>
#include <unordered_set>

#include "rptq/error.h"
#include <ctime>
#include <cstdio>
#include <cstdlib>
static bool g_trace = std::getenv("KM_TRACE");
static long g_scans = 0, g_tight = 0;
static double now_ms(){timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t); return t.tv_sec*1e3+t.tv_nsec*1e-6;}

namespace rptq {

namespace {

// Points per reduction chunk. Sums are formed per chunk and the chunks added in index order, so every sum is the
// same whether the chunks run on one thread or many.
constexpr std::int64_t kChunk = 2048;
// Below this many point-centroid pairs per restart, waking the thread pool costs more than it saves.
constexpr std::int64_t kParallelWork = 1 << 16;
constexpr float kInf = std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------------------------------------------------------
// PRNG: splitmix64 to derive and expand seeds, xoshiro256** for the draws. Our own, so results do not depend on the
// standard library's distributions.

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Xoshiro256 {
 public:
  explicit Xoshiro256(std::uint64_t seed) {
    for (auto& x : s_) x = splitmix64(seed);
  }
  std::uint64_t next() {
    const std::uint64_t result = std::rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = std::rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1), 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t s_[4];
};

// Seed of restart r: (seed, r) mixed so that neighbouring seeds and restarts give unrelated streams.
std::uint64_t restart_seed(std::uint64_t seed, int r) {
  std::uint64_t s = seed;
  std::uint64_t a = splitmix64(s);
  a ^= 0xD1B54A32D192ED03ull * (static_cast<std::uint64_t>(r) + 1);
  return splitmix64(a);
}

// ---------------------------------------------------------------------------------------------------------------
// Distinct points, counted up to `limit` (the count stops there: usually after about `limit` rows). -0 and +0 are
// the same point.

std::int64_t count_distinct(const float* pts, std::int64_t n, int dims, std::int64_t limit) {
  auto hash = [&](std::int64_t i) {
    std::uint64_t h = 0x243F6A8885A308D3ull;
    for (int d = 0; d < dims; ++d) {
      h ^= std::bit_cast<std::uint32_t>(pts[i * dims + d] + 0.0f);  // + 0.0f turns -0 into +0
      h *= 0x100000001B3ull;
      h ^= h >> 29;
    }
    return static_cast<std::size_t>(h);
  };
  auto equal = [&](std::int64_t a, std::int64_t b) {
    for (int d = 0; d < dims; ++d)
      if (pts[a * dims + d] != pts[b * dims + d]) return false;
    return true;
  };
  std::unordered_set<std::int64_t, decltype(hash), decltype(equal)> seen(64, hash, equal);
  for (std::int64_t i = 0; i < n && static_cast<std::int64_t>(seen.size()) < limit; ++i) seen.insert(i);
  return static_cast<std::int64_t>(seen.size());
}

// ---------------------------------------------------------------------------------------------------------------
// One restart, templated on the dimension (D = 0: given at run time) so the per-point loops over coordinates
// unroll for the common 2-D and 4-D features. The per-chunk loops are compiled for baseline x86-64 and for AVX2 /
// AVX-512, chosen at load time (as in ops_cpu.cpp); the helpers they call are inlined into each version.

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RPTQ_VECTOR_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define RPTQ_VECTOR_CLONES
#endif
#define RPTQ_INLINE [[gnu::always_inline]] inline

struct Run {
  std::vector<std::int32_t> labels;
  std::vector<double> centroids;  // [k, dims], means of the labelled points
  double inertia = 0;
  int iterations = 0;
};

// How far each centroid moved in the last update, for loosening the distance bounds.
struct Moves {
  std::vector<float> by;  // per centroid
  int argmax = 0;
  float max = 0, second = 0;  // the largest movement, and the largest of the others

  void set(int k) {
    argmax = 0;
    for (int j = 1; j < k; ++j)
      if (by[j] > by[argmax]) argmax = j;
    max = by[argmax];
    second = 0;
    for (int j = 0; j < k; ++j)
      if (j != argmax) second = std::max(second, by[j]);
  }
  // The most any centroid other than a moved.
  float others(int a) const { return a == argmax ? second : max; }
};

template <int D>
class Restart {
 public:
  Restart(const float* pts, std::int64_t n, int dims, int k, bool parallel)
      : pts_(pts), n_(n), dims_(D > 0 ? D : dims), k_(k), parallel_(parallel), chunks_((n + kChunk - 1) / kChunk) {}

  Run run(std::uint64_t seed, int max_iterations);

 private:
  int dims() const { return D > 0 ? D : dims_; }
  const float* point(std::int64_t i) const { return pts_ + i * dims(); }
  std::int64_t chunk_end(std::int64_t ch) const { return std::min(n_, (ch + 1) * kChunk); }
  const float* centroid_f(int j) const { return &cf_[static_cast<std::size_t>(j) * dims()]; }
  const double* centroid(int j) const { return &cent_[static_cast<std::size_t>(j) * dims()]; }

  RPTQ_INLINE float sq_distance(const float* x, const float* c) const;
  RPTQ_INLINE double sq_distance(const float* x, const double* c) const;
  RPTQ_INLINE void distances_to_all(const float* x, float* dist) const;
  void set_centroid(int j, const double* c);
  void set_centroid_views();

  void seed_plus_plus(std::uint64_t seed);
  RPTQ_VECTOR_CLONES double seed_chunk(std::int64_t ch, const float* c, float* d2) const;
  std::int64_t assign(bool full, const Moves& mv);
  RPTQ_VECTOR_CLONES std::int64_t assign_full_chunk(std::int64_t ch, float* dist);
  RPTQ_VECTOR_CLONES std::int64_t assign_bounded_chunk(std::int64_t ch, const Moves& mv, float* dist);
  void reseed_empty();
  void hartigan(int max_passes, bool bounds_valid, bool converged, const Moves& mv);
  RPTQ_VECTOR_CLONES void hartigan_chunk(std::int64_t ch, const std::vector<int>& moved,
                                         const std::vector<char>& is_moved, std::vector<std::int64_t>& candidates,
                                         float* dist, float* score);
  void exact_means();
  double inertia() const;

  const float* pts_;
  std::int64_t n_;
  int dims_, k_;
  bool parallel_;
  std::int64_t chunks_;

  std::vector<double> cent_;             // [k, dims] current centroids
  std::vector<float> cf_, ct_;           // float copies: [k, dims] and transposed [dims, k] (for scans)
  std::vector<float> half_gap_;          // per centroid: half the distance to its nearest other centroid
  std::vector<std::int32_t> labels_;
  std::vector<float> upper_, lower_;     // Lloyd: >= distance to own centroid, <= distance to any other
  std::vector<double> sums_;             // [k, dims] sums of each cluster's points
  std::vector<std::int64_t> counts_;     // [k]
  std::vector<double> chunk_sums_;       // [chunks, k, dims] per-chunk sums (or changes of sums)
  std::vector<std::int64_t> chunk_counts_;  // [chunks, k]
  std::vector<float> weight_, grow_;     // Hartigan, per cluster: n / (n + 1) and n / (n - 1) (0 when n == 1)
  std::vector<float> own_d2_, other_lb_;  // Hartigan, per point: bounds on its own and other clusters' costs
};

template <int D>
float Restart<D>::sq_distance(const float* x, const float* c) const {
  float s = 0.0f;
  for (int d = 0; d < dims(); ++d) {
    const float e = x[d] - c[d];
    s += e * e;
  }
  return s;
}

template <int D>
double Restart<D>::sq_distance(const float* x, const double* c) const {
  double s = 0.0;
  for (int d = 0; d < dims(); ++d) {
    const double e = x[d] - c[d];
    s += e * e;
  }
  return s;
}

// Squared distance of a point to every centroid into dist[0..k), vectorised over the centroids (transposed copy).
template <int D>
void Restart<D>::distances_to_all(const float* x, float* dist) const {
  const int k = k_;
  const float* ct = ct_.data();
  const float x0 = x[0];
#pragma omp simd
  for (int j = 0; j < k; ++j) {
    const float e = x0 - ct[j];
    dist[j] = e * e;
  }
  for (int d = 1; d < dims(); ++d) {
    const float xd = x[d];
    const float* c = ct + static_cast<std::int64_t>(d) * k;
#pragma omp simd
    for (int j = 0; j < k; ++j) {
      const float e = xd - c[j];
      dist[j] += e * e;
    }
  }
}

template <int D>
void Restart<D>::set_centroid(int j, const double* c) {
  for (int d = 0; d < dims(); ++d) {
    cent_[static_cast<std::size_t>(j) * dims() + d] = c[d];
    cf_[static_cast<std::size_t>(j) * dims() + d] = static_cast<float>(c[d]);
    ct_[static_cast<std::size_t>(d) * k_ + j] = static_cast<float>(c[d]);
  }
}

template <int D>
void Restart<D>::set_centroid_views() {
  for (int j = 0; j < k_; ++j) set_centroid(j, centroid(j));
  // Hamerly's s(j): a point closer to its centroid than this cannot be closer to another one.
  half_gap_.assign(k_, kInf);
  for (int a = 0; a < k_; ++a)
    for (int b = a + 1; b < k_; ++b) {
      const float g = 0.5f * std::sqrt(sq_distance(centroid_f(a), centroid_f(b)));
      half_gap_[a] = std::min(half_gap_[a], g);
      half_gap_[b] = std::min(half_gap_[b], g);
    }
}

// d2 = min(d2, |x - c|^2) over one chunk; returns the chunk's sum of d2.
template <int D>
double Restart<D>::seed_chunk(std::int64_t ch, const float* c, float* d2) const {
  float cc[D > 0 ? D : 1];
  if constexpr (D > 0)
    for (int d = 0; d < D; ++d) cc[d] = c[d];
  const float* cp = D > 0 ? cc : c;
  const std::int64_t lo = ch * kChunk, hi = chunk_end(ch);
  if constexpr (D > 0) {
#pragma omp simd
    for (std::int64_t i = lo; i < hi; ++i) d2[i] = std::min(d2[i], sq_distance(point(i), cp));
  } else {
    for (std::int64_t i = lo; i < hi; ++i) d2[i] = std::min(d2[i], sq_distance(point(i), cp));
  }
  double t = 0.0;
#pragma omp simd reduction(+ : t)
  for (std::int64_t i = lo; i < hi; ++i) t += d2[i];
  return t;
}

// k-means++: the first centre uniformly, each next one with probability proportional to the squared distance to
// the nearest centre chosen so far (D^2 sampling).
template <int D>
void Restart<D>::seed_plus_plus(std::uint64_t seed) {
  Xoshiro256 rng(seed);
  std::vector<float> d2(n_, kInf), c(dims());
  std::vector<double> chunk_total(chunks_, 0.0);
  cent_.assign(static_cast<std::size_t>(k_) * dims(), 0.0);
  auto take = [&](int j, std::int64_t p) {
    for (int d = 0; d < dims(); ++d) {
      c[d] = point(p)[d];
      cent_[static_cast<std::size_t>(j) * dims() + d] = c[d];
    }
    if (j + 1 == k_) return;  // the last centre needs no distances
#pragma omp parallel for schedule(static) if (parallel_)
    for (std::int64_t ch = 0; ch < chunks_; ++ch) chunk_total[ch] = seed_chunk(ch, c.data(), d2.data());
  };

  take(0, std::min<std::int64_t>(n_ - 1, static_cast<std::int64_t>(rng.uniform() * static_cast<double>(n_))));
  for (int j = 1; j < k_; ++j) {
    double total = 0.0;
    for (std::int64_t ch = 0; ch < chunks_; ++ch) total += chunk_total[ch];
    std::int64_t pick = -1;
    if (total > 0.0) {
      // The first point whose cumulative weight exceeds u * total (a point of weight 0 is never picked).
      const double target = rng.uniform() * total;
      double acc = 0.0;
      std::int64_t ch = 0;
      while (ch + 1 < chunks_ && acc + chunk_total[ch] <= target) acc += chunk_total[ch++];
      for (std::int64_t i = ch * kChunk; i < chunk_end(ch); ++i) {
        if (d2[i] <= 0.0f) continue;
        pick = i;  // falls back to the chunk's last positive point if rounding leaves acc short of the target
        acc += d2[i];
        if (acc > target) break;
      }
    }
    if (pick < 0) {
      // Every point coincides with a centre (only when distances underflow): take the first one that is not one.
      for (std::int64_t i = 0; i < n_ && pick < 0; ++i)
        if (d2[i] > 0.0f) pick = i;
      if (pick < 0) pick = 0;  // duplicate centre; Lloyd re-seeds the cluster that stays empty
    }
    take(j, pick);
  }
}

// The closest and second-closest centroid of a point from its squared distances (lowest index on ties).
struct Nearest {
  int best;
  float best_d2, second_d2;
};

RPTQ_INLINE Nearest nearest_two(const float* dist, int k) {
  float best = kInf;
#pragma omp simd reduction(min : best)
  for (int j = 0; j < k; ++j) best = std::min(best, dist[j]);
  int bj = k;
#pragma omp simd reduction(min : bj)
  for (int j = 0; j < k; ++j) bj = std::min(bj, dist[j] == best ? j : k);
  float second = kInf;
#pragma omp simd reduction(min : second)
  for (int j = 0; j < k; ++j) second = std::min(second, j == bj ? kInf : dist[j]);
  return {bj, best, second};
}

// Full scan of one chunk: labels, tight bounds, and the chunk's cluster sums from scratch.
template <int D>
std::int64_t Restart<D>::assign_full_chunk(std::int64_t ch, float* dist) {
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
  double* sums = &chunk_sums_[ch * kd];
  std::int64_t* counts = &chunk_counts_[ch * k_];
  std::fill(sums, sums + kd, 0.0);
  std::fill(counts, counts + k_, 0);
  std::int64_t changed = 0;
  for (std::int64_t i = ch * kChunk; i < chunk_end(ch); ++i) {
    const float* x = point(i);
    distances_to_all(x, dist);
    const Nearest nb = nearest_two(dist, k_);
    changed += nb.best != labels_[i];
    labels_[i] = nb.best;
    upper_[i] = std::sqrt(nb.best_d2);
    lower_[i] = std::sqrt(nb.second_d2);
    for (int d = 0; d < dims(); ++d) sums[static_cast<std::size_t>(nb.best) * dims() + d] += x[d];
    ++counts[nb.best];
  }
  return changed;
}

// Hamerly's step for one chunk: the bounds are first loosened by how far the centroids moved, and a point is
// re-examined only when they no longer prove its label. Records the changes of the chunk's cluster sums.
template <int D>
std::int64_t Restart<D>::assign_bounded_chunk(std::int64_t ch, const Moves& mv, float* dist) {
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
  double* dsum = &chunk_sums_[ch * kd];
  std::int64_t* dcount = &chunk_counts_[ch * k_];
  std::int64_t changed = 0;
  for (std::int64_t i = ch * kChunk; i < chunk_end(ch); ++i) {
    const int a = labels_[i];
    float u = upper_[i] + mv.by[a];
    const float l = lower_[i] - mv.others(a);
    lower_[i] = l;
    const float m = std::max(half_gap_[a], l);
    if (u > m) {
      const float* x = point(i);
      u = std::sqrt(sq_distance(x, centroid_f(a)));  // tighten the upper bound first
      ++g_tight;
      if (u > m) {
        ++g_scans;
        distances_to_all(x, dist);
        const Nearest nb = nearest_two(dist, k_);
        u = std::sqrt(nb.best_d2);
        lower_[i] = std::sqrt(nb.second_d2);
        if (nb.best != a) {
          if (changed++ == 0) {  // first change in this chunk: start its change sums
            std::fill(dsum, dsum + kd, 0.0);
            std::fill(dcount, dcount + k_, 0);
          }
          labels_[i] = nb.best;
          for (int d = 0; d < dims(); ++d) {
            dsum[static_cast<std::size_t>(a) * dims() + d] -= x[d];
            dsum[static_cast<std::size_t>(nb.best) * dims() + d] += x[d];
          }
          --dcount[a];
          ++dcount[nb.best];
        }
      }
    }
    upper_[i] = u;
  }
  return changed;
}

// One assignment step over all points; updates the cluster sums and counts and returns how many labels changed.
template <int D>
std::int64_t Restart<D>::assign(bool full, const Moves& mv) {
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
  std::vector<std::int64_t> changed(chunks_, 0);
#pragma omp parallel if (parallel_)
  {
    std::vector<float> dist(k_);
#pragma omp for schedule(static)
    for (std::int64_t ch = 0; ch < chunks_; ++ch)
      changed[ch] = full ? assign_full_chunk(ch, dist.data()) : assign_bounded_chunk(ch, mv, dist.data());
  }
  if (full) {
    sums_.assign(kd, 0.0);
    counts_.assign(k_, 0);
  }
  std::int64_t total = 0;
  for (std::int64_t ch = 0; ch < chunks_; ++ch) {  // chunks in index order
    if (!full && changed[ch] == 0) continue;
    for (std::size_t t = 0; t < kd; ++t) sums_[t] += chunk_sums_[ch * kd + t];
    for (int j = 0; j < k_; ++j) counts_[j] += chunk_counts_[ch * k_ + j];
    total += changed[ch];
  }
  return total;
}

// Each empty cluster takes the point farthest from its own centroid (lowest index on ties), which leaves its old
// cluster; the centroids stay the means of their points.
template <int D>
void Restart<D>::reseed_empty() {
  for (int e = 0; e < k_; ++e) {
    if (counts_[e] > 0) continue;
    std::vector<double> best_d(chunks_, -1.0);
    std::vector<std::int64_t> best_i(chunks_, -1);
#pragma omp parallel for schedule(static) if (parallel_)
    for (std::int64_t ch = 0; ch < chunks_; ++ch)
      for (std::int64_t i = ch * kChunk; i < chunk_end(ch); ++i) {
        const double s = sq_distance(point(i), centroid(labels_[i]));
        if (s > best_d[ch]) {
          best_d[ch] = s;
          best_i[ch] = i;
        }
      }
    std::int64_t p = best_i[0];
    for (std::int64_t ch = 1; ch < chunks_; ++ch)
      if (best_d[ch] > best_d[0]) {
        best_d[0] = best_d[ch];
        p = best_i[ch];
      }
    const int old = labels_[p];
    double* so = &sums_[static_cast<std::size_t>(old) * dims()];
    double* se = &sums_[static_cast<std::size_t>(e) * dims()];
    for (int d = 0; d < dims(); ++d) {
      so[d] -= point(p)[d];
      se[d] = point(p)[d];
      cent_[static_cast<std::size_t>(e) * dims() + d] = point(p)[d];
    }
    --counts_[old];
    counts_[e] = 1;
    labels_[p] = e;
    if (counts_[old] > 0)
      for (int d = 0; d < dims(); ++d)
        cent_[static_cast<std::size_t>(old) * dims() + d] = so[d] / static_cast<double>(counts_[old]);
    else
      e = -1;  // the old cluster emptied (it only held copies of p): look again from the start
  }
}

// One chunk of a Hartigan pass's first step: finds the points whose move might lower the inertia (see hartigan()).
// `moved`: the clusters whose centroid or size changed since the points' bounds were set.
template <int D>
void Restart<D>::hartigan_chunk(std::int64_t ch, const std::vector<int>& moved, const std::vector<char>& is_moved,
                                std::vector<std::int64_t>& candidates, float* dist, float* score) {
  candidates.clear();
  const std::int64_t lo = ch * kChunk, hi = chunk_end(ch);
  // Weighted squared distance to the nearest changed cluster other than the own one (vectorised over points).
  std::fill(score, score + (hi - lo), kInf);
  for (int j : moved) {
    float c[D > 0 ? D : 1];
    if constexpr (D > 0)
      for (int d = 0; d < D; ++d) c[d] = centroid_f(j)[d];
    const float* cp = D > 0 ? c : centroid_f(j);
    const float w = weight_[j];
#pragma omp simd
    for (std::int64_t i = lo; i < hi; ++i) {
      const float s = labels_[i] == j ? kInf : w * sq_distance(point(i), cp);
      score[i - lo] = std::min(score[i - lo], s);
    }
  }
  for (std::int64_t i = lo; i < hi; ++i) {
    const int a = labels_[i];
    const float grow = grow_[a];
    if (grow == 0.0f) continue;  // a point alone is at its mean: moving it cannot help
    const float* x = point(i);
    if (is_moved[a]) own_d2_[i] = sq_distance(x, centroid_f(a));
    const float lb = std::min(other_lb_[i], score[i - lo]);
    if (lb >= grow * own_d2_[i] * (1.0f + 1e-5f)) {
      other_lb_[i] = lb;
      continue;
    }
    distances_to_all(x, dist);
    float best = kInf;
#pragma omp simd reduction(min : best)
    for (int j = 0; j < k_; ++j) best = std::min(best, j == a ? kInf : weight_[j] * dist[j]);
    own_d2_[i] = dist[a];
    other_lb_[i] = best;
    if (best < grow * dist[a] * (1.0f + 1e-5f)) candidates.push_back(i);  // decided exactly in hartigan()
  }
}

// Hartigan's refinement of a Lloyd result. Moving x from its cluster a to cluster j changes the inertia by
// n_j / (n_j + 1) |x - c_j|^2 - n_a / (n_a - 1) |x - c_a|^2 (the means updated at once); Lloyd stops at
// partitions where a point is nearer its own mean yet moving it would still pay, which is common when clusters
// are small (outlier channels), and this step removes them. Its fixed points are Lloyd fixed points too.
//
// Each pass first finds, with the centroids fixed (in parallel), the points whose move might pay; then moves them
// one by one in index order, each decision made in double against the centroids as updated by the moves before
// it. A pass that moves nothing proves the partition stable. Per point, own_d2_ >= |x - c_a|^2 and other_lb_ <=
// n_j / (n_j + 1) |x - c_j|^2 for every cluster j != a not in the pass's `moved` list, whose clusters are
// measured exactly; after a pass, `moved` is the clusters that the moves changed. The first pass starts from
// Lloyd's bounds (loosened by the centroids' last movement unless Lloyd converged) with the small clusters, whose
// weights are far below 1, as `moved`.
template <int D>
void Restart<D>::hartigan(int max_passes, bool bounds_valid, bool converged, const Moves& mv) {
  set_centroid_views();
  weight_.resize(k_);
  grow_.resize(k_);
  own_d2_.resize(n_);
  other_lb_.resize(n_);
  std::vector<int> moved;
  std::vector<char> is_moved(k_, 0);
  constexpr std::int64_t kSmall = 16;  // larger clusters have weights >= 16 / 17
  for (int j = 0; j < k_; ++j)
    if (counts_[j] <= kSmall) {
      moved.push_back(j);
      is_moved[j] = 1;
    }
  for (std::int64_t i = 0; i < n_; ++i) {
    const int a = labels_[i];
    const float u = bounds_valid ? upper_[i] + (converged ? 0.0f : mv.by[a]) : kInf;
    const float l = bounds_valid ? std::max(0.0f, lower_[i] - (converged ? 0.0f : mv.others(a))) : 0.0f;
    own_d2_[i] = u * u;
    other_lb_[i] = static_cast<float>(kSmall) / static_cast<float>(kSmall + 1) * l * l;
  }
  std::vector<std::vector<std::int64_t>> candidates(chunks_);
  std::vector<float> dist(k_);
  std::vector<double> new_a(dims()), new_j(dims());
  for (int pass = 0; pass < max_passes; ++pass) {
    double tp = now_ms();
    for (int j = 0; j < k_; ++j) {
      const auto nj = static_cast<float>(counts_[j]);
      weight_[j] = nj / (nj + 1.0f);
      grow_[j] = counts_[j] > 1 ? nj / (nj - 1.0f) : 0.0f;
    }
#pragma omp parallel if (parallel_)
    {
      std::vector<float> dist_t(k_), score(kChunk);
#pragma omp for schedule(static)
      for (std::int64_t ch = 0; ch < chunks_; ++ch)
        hartigan_chunk(ch, moved, is_moved, candidates[ch], dist_t.data(), score.data());
    }
    std::fill(is_moved.begin(), is_moved.end(), 0);
    std::int64_t moves = 0;
    for (std::int64_t ch = 0; ch < chunks_; ++ch)
      for (std::int64_t i : candidates[ch]) {
        const int a = labels_[i];
        if (counts_[a] == 1) continue;
        const float* x = point(i);
        distances_to_all(x, dist.data());
        int cand = -1;
        float best = kInf;
        for (int j = 0; j < k_; ++j) {
          const float s = static_cast<float>(counts_[j]) / static_cast<float>(counts_[j] + 1) * dist[j];
          if (j != a && s < best) best = s, cand = j;
        }
        if (cand < 0) continue;
        const double na = static_cast<double>(counts_[a]), nj = static_cast<double>(counts_[cand]);
        const double* ca = centroid(a);
        const double* cj = centroid(cand);
        // The move must lower the inertia by more than rounding.
        if (!(nj / (nj + 1.0) * sq_distance(x, cj) < na / (na - 1.0) * sq_distance(x, ca) * (1.0 - 1e-12))) continue;
        for (int d = 0; d < dims(); ++d) {
          new_a[d] = ca[d] + (ca[d] - x[d]) / (na - 1.0);
          new_j[d] = cj[d] + (x[d] - cj[d]) / (nj + 1.0);
        }
        set_centroid(a, new_a.data());
        set_centroid(cand, new_j.data());
        --counts_[a];
        ++counts_[cand];
        labels_[i] = cand;
        other_lb_[i] = 0.0f;  // its new cluster's bounds are unknown: examine it fully next pass
        is_moved[a] = is_moved[cand] = 1;
        ++moves;
      }
    if (g_trace) { std::int64_t nc=0; for (auto& c: candidates) nc += c.size(); std::fprintf(stderr, "  hartigan pass %d nmoved %zu cand %lld moves %lld  %.3f ms\n", pass, moved.size(), (long long)nc, (long long)moves, now_ms()-tp);}
    if (moves == 0) break;
    moved.clear();
    for (int j = 0; j < k_; ++j)
      if (is_moved[j]) moved.push_back(j);
  }
  exact_means();
}

// The centroids recomputed from the labels (chunk sums in index order), so incremental updates leave no drift.
template <int D>
void Restart<D>::exact_means() {
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
#pragma omp parallel for schedule(static) if (parallel_)
  for (std::int64_t ch = 0; ch < chunks_; ++ch) {
    double* sums = &chunk_sums_[ch * kd];
    std::fill(sums, sums + kd, 0.0);
    for (std::int64_t i = ch * kChunk; i < chunk_end(ch); ++i)
      for (int d = 0; d < dims(); ++d) sums[static_cast<std::size_t>(labels_[i]) * dims() + d] += point(i)[d];
  }
  std::fill(cent_.begin(), cent_.end(), 0.0);
  for (std::int64_t ch = 0; ch < chunks_; ++ch)
    for (std::size_t t = 0; t < kd; ++t) cent_[t] += chunk_sums_[ch * kd + t];
  for (int j = 0; j < k_; ++j)
    for (int d = 0; d < dims(); ++d) cent_[static_cast<std::size_t>(j) * dims() + d] /= static_cast<double>(counts_[j]);
}

template <int D>
double Restart<D>::inertia() const {
  std::vector<double> part(chunks_, 0.0);
#pragma omp parallel for schedule(static) if (parallel_)
  for (std::int64_t ch = 0; ch < chunks_; ++ch) {
    double t = 0.0;
    for (std::int64_t i = ch * kChunk; i < chunk_end(ch); ++i) t += sq_distance(point(i), centroid(labels_[i]));
    part[ch] = t;
  }
  double total = 0.0;
  for (double v : part) total += v;
  return total;
}

template <int D>
Run Restart<D>::run(std::uint64_t seed, int max_iterations) {
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
  cf_.resize(kd);
  ct_.resize(kd);
  chunk_sums_.assign(chunks_ * kd, 0.0);
  chunk_counts_.assign(chunks_ * k_, 0);
  labels_.assign(n_, -1);
  upper_.assign(n_, 0.0f);
  lower_.assign(n_, 0.0f);
  double t0 = now_ms();
  seed_plus_plus(seed);
  if (g_trace) std::fprintf(stderr, "seed %.3f ms\n", now_ms() - t0);
  double t1 = now_ms();
  Moves mv;
  mv.by.assign(k_, 0.0f);
  bool full = true, converged = false;
  int it = 0;
  while (it < max_iterations) {
    set_centroid_views();
    ++it;
    double ta = now_ms();
    const std::int64_t ch_ = assign(full, mv);
    if (g_trace && (it < 4 || it % 10 == 0)) std::fprintf(stderr, "  it %d changed %lld  %.3f ms tight %ld scans %ld  maxmove %g second %g\n", it, (long long)ch_, now_ms() - ta, g_tight, g_scans, mv.max, mv.second); g_tight = g_scans = 0;
    if (ch_ == 0) {  // converged: the centroids are already the means of these labels
      converged = true;
      break;
    }
    full = false;
    for (int j = 0; j < k_; ++j)
      if (counts_[j] > 0)
        for (int d = 0; d < dims(); ++d)
          cent_[static_cast<std::size_t>(j) * dims() + d] =
              sums_[static_cast<std::size_t>(j) * dims() + d] / static_cast<double>(counts_[j]);
    if (std::find(counts_.begin(), counts_.end(), 0) != counts_.end()) {
      reseed_empty();
      full = true;  // labels moved outside the bounds' knowledge: examine every point next step
    }
    // How far each centroid moved, rounded up a little so the float bounds stay bounds.
    for (int j = 0; j < k_; ++j)
      mv.by[j] = static_cast<float>(std::sqrt(sq_distance(centroid_f(j), centroid(j))) * (1.0 + 1e-5) + 1e-30);
    mv.set(k_);
  }
  double t2 = now_ms();
  hartigan(max_iterations, converged || !full, converged, mv);
  if (g_trace) std::fprintf(stderr, "lloyd %.3f ms (%d it) hartigan %.3f ms total %.3f\n", t2 - t1, it, now_ms() - t2, now_ms() - t0);
  Run r;
  r.iterations = it;
  r.inertia = inertia();
  r.labels = std::move(labels_);
  r.centroids = std::move(cent_);
  return r;
}

template <int D>
Run run_restart(const float* pts, std::int64_t n, int dims, int k, bool parallel, std::uint64_t seed,
                int max_iterations) {
  return Restart<D>(pts, n, dims, k, parallel).run(seed, max_iterations);
}

}  // namespace

KMeansResult kmeans(std::span<const float> points, int dims, const KMeansOptions& opts) {
  if (dims < 1) throw InputError("k-means: dims must be >= 1, got " + std::to_string(dims));
  if (points.empty()) throw InputError("k-means: no points");
  if (points.size() % static_cast<std::size_t>(dims) != 0)
    throw InputError("k-means: " + std::to_string(points.size()) + " values are not a whole number of " +
                     std::to_string(dims) + "-D points");
  const auto n = static_cast<std::int64_t>(points.size() / static_cast<std::size_t>(dims));
  if (n > std::numeric_limits<std::int32_t>::max())
    throw InputError("k-means: " + std::to_string(n) + " points is more than labels can index");
  if (opts.k < 1) throw InputError("k-means: k must be >= 1, got " + std::to_string(opts.k));
  if (opts.restarts < 1) throw InputError("k-means: restarts must be >= 1, got " + std::to_string(opts.restarts));
  if (opts.max_iterations < 1)
    throw InputError("k-means: max_iterations must be >= 1, got " + std::to_string(opts.max_iterations));
  for (std::size_t i = 0; i < points.size(); ++i)
    if (!std::isfinite(points[i]))
      throw InputError("k-means: point " + std::to_string(i / dims) + " coordinate " + std::to_string(i % dims) +
                       " is not finite (" + std::to_string(points[i]) + ")");

  const float* pts = points.data();
  const int k = static_cast<int>(count_distinct(pts, n, dims, opts.k));
  auto* run_one = dims == 1 ? run_restart<1>
                  : dims == 2 ? run_restart<2>
                  : dims == 3 ? run_restart<3>
                  : dims == 4 ? run_restart<4>
                              : run_restart<0>;

  // Restarts run in parallel when there are several (each restart on one thread); a single restart parallelises
  // its own loops instead. Either way the arithmetic, and so the result, is the same.
  const bool big = n * k >= kParallelWork && omp_get_max_threads() > 1;
  const bool outer = big && opts.restarts > 1;
  const bool inner = big && !outer;
  std::vector<Run> runs(opts.restarts);
  std::vector<std::exception_ptr> errors(opts.restarts);
#pragma omp parallel for schedule(dynamic, 1) if (outer)
  for (int r = 0; r < opts.restarts; ++r) {
    try {
      runs[r] = run_one(pts, n, dims, k, inner, restart_seed(opts.seed, r), opts.max_iterations);
    } catch (...) {
      errors[r] = std::current_exception();
    }
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  int best = 0;
  for (int r = 1; r < opts.restarts; ++r)
    if (runs[r].inertia < runs[best].inertia) best = r;
  Run& run = runs[best];

  // Order the clusters by centroid, lexicographically; identical centroids by their first point.
  std::vector<std::int64_t> first(k, n);
  for (std::int64_t i = n - 1; i >= 0; --i) first[run.labels[i]] = i;
  std::vector<int> perm(k);  // perm[new id] = old id
  std::iota(perm.begin(), perm.end(), 0);
  std::sort(perm.begin(), perm.end(), [&](int a, int b) {
    const double* ca = &run.centroids[static_cast<std::size_t>(a) * dims];
    const double* cb = &run.centroids[static_cast<std::size_t>(b) * dims];
    for (int d = 0; d < dims; ++d)
      if (ca[d] != cb[d]) return ca[d] < cb[d];
    return first[a] < first[b];
  });
  std::vector<std::int32_t> new_id(k);
  for (int c = 0; c < k; ++c) new_id[perm[c]] = c;

  KMeansResult res;
  res.k = k;
  res.dims = dims;
  res.inertia = run.inertia;
  res.iterations = run.iterations;
  res.labels.resize(n);
  res.sizes.assign(k, 0);
  for (std::int64_t i = 0; i < n; ++i) {
    res.labels[i] = new_id[run.labels[i]];
    ++res.sizes[res.labels[i]];
  }
  res.centroids.resize(static_cast<std::size_t>(k) * dims);
  for (int c = 0; c < k; ++c)
    for (int d = 0; d < dims; ++d)
      res.centroids[static_cast<std::size_t>(c) * dims + d] =
          static_cast<float>(run.centroids[static_cast<std::size_t>(perm[c]) * dims + d]);
  // Counting sort by label: stable, so each cluster keeps the points' original order.
  res.boundaries.assign(k + 1, 0);
  for (int c = 0; c < k; ++c) res.boundaries[c + 1] = res.boundaries[c] + res.sizes[c];
  res.order.resize(n);
  std::vector<std::int64_t> next(res.boundaries.begin(), res.boundaries.end() - 1);
  for (std::int64_t i = 0; i < n; ++i) res.order[next[res.labels[i]]++] = static_cast<std::int32_t>(i);
  return res;
}

}  // namespace rptq
