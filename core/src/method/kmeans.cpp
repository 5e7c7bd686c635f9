#include "rptq/method/kmeans.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <string>
#include <unordered_set>

#include "rptq/base/error.h"

namespace rptq {

namespace {

// Points per reduction chunk. Sums are formed per chunk and the chunks added in index order, so every sum is the
// same whether the chunks run on one thread or many.
constexpr std::int64_t kChunk = 2048;
// A Hartigan pass that lowers the inertia by less than this fraction of it is the last one.
constexpr double kHartiganTolerance = 1e-5;
// Below this many point-centroid pairs per restart, waking the thread pool costs more than it saves.
constexpr std::int64_t kParallelWork = 1 << 16;
// The search effort of a call (see effort()): the most restarts the budget adds; a plain restart's cost per point,
// k + kPointCost (its per-point work besides the distances to the k centroids weighs about as much as 16 more
// centroids: at 36,864 points k = 4 takes 60% of k = 32's time); and the swap search's factor on it.
constexpr std::int64_t kMaxRestarts = 32;
constexpr std::int64_t kPointCost = 16;
constexpr std::int64_t kSwapCost = 3;
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

// Scans are batched: the points to examine are gathered into a structure-of-arrays block (xs[d * stride + t]) and
// each centroid is compared with all of them in a loop over the points, which vectorises with no horizontal
// reductions. Every point sees the same operations in the same order whichever batch it is in.
constexpr int kBlock = 256;

// Squared distance from centroid c to each point of a block into v[0..nb).
template <int D>
RPTQ_INLINE void block_distances(const float* __restrict xs, std::int64_t stride, int nb, int dims,
                                 const float* __restrict c, float* __restrict v) {
  if constexpr (D > 0) {
    float cc[D];
    for (int d = 0; d < D; ++d) cc[d] = c[d];
    for (int t = 0; t < nb; ++t) {
      float s = 0.0f;
      for (int d = 0; d < D; ++d) {
        const float e = xs[d * stride + t] - cc[d];
        s += e * e;
      }
      v[t] = s;
    }
  } else {
    for (int t = 0; t < nb; ++t) v[t] = 0.0f;
    for (int d = 0; d < dims; ++d) {
      const float cd = c[d];
      const float* __restrict x = xs + d * stride;
      for (int t = 0; t < nb; ++t) {
        const float e = x[t] - cd;
        v[t] += e * e;
      }
    }
  }
}

// Nearest centroid (lowest index on ties) and the nearest and second-nearest squared distances of m points.
template <int D>
RPTQ_INLINE void nearest_batch(const float* xs, std::int64_t stride, std::int64_t m, int dims, const float* cf, int k,
                               std::int32_t* __restrict label, float* __restrict best, float* __restrict second) {
  float v[kBlock];
  for (std::int64_t t0 = 0; t0 < m; t0 += kBlock) {
    const int nb = static_cast<int>(std::min<std::int64_t>(kBlock, m - t0));
    std::int32_t* __restrict ix = label + t0;
    float* __restrict b = best + t0;
    float* __restrict s = second + t0;
    for (int t = 0; t < nb; ++t) {
      ix[t] = 0;
      b[t] = kInf;
      s[t] = kInf;
    }
    for (int j = 0; j < k; ++j) {
      block_distances<D>(xs + t0, stride, nb, dims, cf + static_cast<std::size_t>(j) * dims, v);
      for (int t = 0; t < nb; ++t) {
        const float bo = b[t];
        const float hi = v[t] < bo ? bo : v[t];
        s[t] = hi < s[t] ? hi : s[t];
        ix[t] = v[t] < bo ? j : ix[t];
        b[t] = v[t] < bo ? v[t] : bo;
      }
    }
  }
}

// For Hartigan: each point's squared distance to its own centroid (own[t], label a[t]) and the smallest
// weight[j] * squared distance over the other centroids.
template <int D>
RPTQ_INLINE void weighted_batch(const float* xs, std::int64_t stride, std::int64_t m, int dims, const float* cf, int k,
                                const float* weight, const std::int32_t* __restrict a, float* __restrict own,
                                float* __restrict best) {
  float v[kBlock];
  for (std::int64_t t0 = 0; t0 < m; t0 += kBlock) {
    const int nb = static_cast<int>(std::min<std::int64_t>(kBlock, m - t0));
    const std::int32_t* __restrict at = a + t0;
    float* __restrict o = own + t0;
    float* __restrict b = best + t0;
    for (int t = 0; t < nb; ++t) {
      o[t] = 0.0f;
      b[t] = kInf;
    }
    for (int j = 0; j < k; ++j) {
      block_distances<D>(xs + t0, stride, nb, dims, cf + static_cast<std::size_t>(j) * dims, v);
      const float w = weight[j];
      // The selects as bit masks: written with ?: they vectorise only with AVX-512's mask registers.
      constexpr std::uint32_t kInfBits = std::bit_cast<std::uint32_t>(kInf);
      for (int t = 0; t < nb; ++t) {
        const std::uint32_t mine = 0u - static_cast<std::uint32_t>(at[t] == j);  // all ones for the own cluster
        const std::uint32_t vb = std::bit_cast<std::uint32_t>(v[t]);
        o[t] = std::bit_cast<float>((vb & mine) | (std::bit_cast<std::uint32_t>(o[t]) & ~mine));
        const float sc = std::bit_cast<float>((kInfBits & mine) | (std::bit_cast<std::uint32_t>(w * v[t]) & ~mine));
        b[t] = sc < b[t] ? sc : b[t];
      }
    }
  }
}

// Per-thread buffers of the batched scans: the gathered points and the results, one chunk's worth.
struct Scratch {
  std::vector<float> xs, f1, f2;
  std::vector<std::int32_t> i1;
  std::vector<std::int64_t> idx;
  explicit Scratch(int dims) : xs(static_cast<std::size_t>(dims) * kChunk), f1(kChunk), f2(kChunk), i1(kChunk) {
    idx.reserve(kChunk);
  }
};

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
  Restart(const float* pts, const float* soa, std::int64_t n, int dims, int k, bool parallel)
      : pts_(pts),
        soa_(soa),
        n_(n),
        dims_(D > 0 ? D : dims),
        k_(k),
        parallel_(parallel),
        chunks_((n + kChunk - 1) / kChunk) {}

  Run run(std::uint64_t seed, int max_iterations, bool swaps);

 private:
  int dims() const { return D > 0 ? D : dims_; }
  const float* point(std::int64_t i) const { return pts_ + i * dims(); }
  std::int64_t chunk_end(std::int64_t ch) const { return std::min(n_, (ch + 1) * kChunk); }
  const float* centroid_f(int j) const { return &cf_[static_cast<std::size_t>(j) * dims()]; }
  const double* centroid(int j) const { return &cent_[static_cast<std::size_t>(j) * dims()]; }

  RPTQ_INLINE float sq_distance(const float* x, const float* c) const;
  RPTQ_INLINE double sq_distance(const float* x, const double* c) const;
  void gather(const std::int64_t* idx, std::int64_t m, float* xs) const;
  void set_centroid(int j, const double* c);
  void set_centroid_views();

  void seed_plus_plus(Xoshiro256& rng);
  RPTQ_VECTOR_CLONES double seed_chunk(std::int64_t ch, const float* c, float* d2) const;
  RPTQ_VECTOR_CLONES void seed_potentials_chunk(std::int64_t ch, const float* cands, int m, const float* d2,
                                                double* out) const;
  std::int64_t assign(bool full, const Moves& mv);
  RPTQ_VECTOR_CLONES std::int64_t assign_full_chunk(std::int64_t ch, Scratch& sc);
  RPTQ_VECTOR_CLONES std::int64_t assign_bounded_chunk(std::int64_t ch, const Moves& mv, Scratch& sc);
  std::int64_t assign_bounded(const Moves& mv);
  RPTQ_VECTOR_CLONES std::int64_t loosen_cluster(int a, const Moves& mv);
  bool loosen_point(std::int64_t p, const Moves& mv);
  RPTQ_VECTOR_CLONES void scan_block(const std::int64_t* pos, std::int64_t m, Scratch& sc);
  void build_layout();
  void bounds_from_layout();
  void reseed_empty();
  void hartigan(int max_passes);
  RPTQ_VECTOR_CLONES void hartigan_chunk(std::int64_t ch, const std::vector<int>& moved,
                                         const std::vector<char>& is_moved, std::vector<std::int64_t>& candidates,
                                         Scratch& sc);
  void exact_means();
  double inertia() const;
  int descend(int max_iterations);
  RPTQ_VECTOR_CLONES void swap_distances_chunk(std::int64_t ch, Scratch& sc);
  double swap_search(Xoshiro256& rng, double sse, int max_iterations);

  const float* pts_;  // [n, dims]
  const float* soa_;  // the same points as [dims, n]
  std::int64_t n_;
  int dims_, k_;
  bool parallel_;
  std::int64_t chunks_;

  std::vector<double> cent_;     // [k, dims] current centroids
  std::vector<float> cf_;        // float copy [k, dims], for the scans
  std::vector<float> half_gap_;  // Lloyd, per centroid: half the distance to its nearest other centroid
  std::vector<std::int32_t> labels_;
  std::vector<float> upper_, lower_;        // Lloyd, per point: >= distance to own centroid, <= to any other
  std::vector<double> sums_;                // [k, dims] sums of each cluster's points
  std::vector<std::int64_t> counts_;        // [k]
  std::vector<double> chunk_sums_;          // [chunks, k, dims] per-chunk sums (or changes of sums)
  std::vector<std::int64_t> chunk_counts_;  // [chunks, k]
  // Lloyd's cluster-contiguous layout (see assign_bounded()): positions start_[a] .. start_[a + 1] hold the points
  // that were in cluster a when it was built, in no particular order; per position the point's coordinates
  // ([dims, n]), its bounds (upper_ and lower_ hold them only after bounds_from_layout()), its index, whether it is
  // still in that cluster (all ones) or has left it (0: then it is listed in foreign_), and a scratch flag; per point
  // its position.
  bool layout_ = false;    // whether the layout holds the bounds (else upper_ and lower_ do)
  int bounded_steps_ = 0;  // bounded steps since the last full one
  std::int64_t last_changes_ = 0;  // labels the last step changed
  std::vector<std::int64_t> start_, foreign_;
  std::vector<float> lx_, lu_, ll_;
  std::vector<std::int32_t> lid_, lpos_, lflag_;
  std::vector<std::uint32_t> lown_;
  // Points whose label the current bounded step changed: (index, old label, new label).
  struct Change {
    std::int32_t i, a, b;
  };
  std::vector<Change> changes_;
  // Hartigan (see hartigan()): per cluster, weight n / (n + 1), grow n / (n - 1) (0 for n == 1)
  // and gap_test; per point, own_d2_ >= squared distance to its own centroid, other_lb_ (0: unknown).
  std::vector<float> weight_, grow_, gap_test_, own_d2_, other_lb_;
  // Swap search: weight 1 per cluster; per point the squared distance to its own and to the nearest other centroid.
  std::vector<float> ones_, swap_d2_, swap_other_;
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

// Points idx[0..m) into structure-of-arrays xs[d * m + t].
template <int D>
void Restart<D>::gather(const std::int64_t* idx, std::int64_t m, float* xs) const {
  for (std::int64_t t = 0; t < m; ++t)
    for (int d = 0; d < dims(); ++d) xs[d * m + t] = point(idx[t])[d];
}

template <int D>
void Restart<D>::set_centroid(int j, const double* c) {
  for (int d = 0; d < dims(); ++d) {
    cent_[static_cast<std::size_t>(j) * dims() + d] = c[d];
    cf_[static_cast<std::size_t>(j) * dims() + d] = static_cast<float>(c[d]);
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
double Restart<D>::seed_chunk(std::int64_t ch, const float* c, float* __restrict d2) const {
  const std::int64_t lo = ch * kChunk, hi = chunk_end(ch);
  float v[kBlock];
  double t = 0.0;
  for (std::int64_t b0 = lo; b0 < hi; b0 += kBlock) {
    const int nb = static_cast<int>(std::min<std::int64_t>(kBlock, hi - b0));
    block_distances<D>(soa_ + b0, n_, nb, dims(), c, v);
    float* __restrict db = d2 + b0;
    float tb = 0.0f;
#pragma omp simd reduction(+ : tb)
    for (int t = 0; t < nb; ++t) {
      db[t] = v[t] < db[t] ? v[t] : db[t];
      tb += db[t];
    }
    t += tb;
  }
  return t;
}

// For m candidate centres cands[m, dims]: the sum over one chunk of min(d2, |x - c|^2), the total D^2 if that
// candidate were added, into out[0..m). Blocks of points stay in L1 while all candidates visit them.
template <int D>
void Restart<D>::seed_potentials_chunk(std::int64_t ch, const float* cands, int m, const float* __restrict d2,
                                       double* out) const {
  const std::int64_t lo = ch * kChunk, hi = chunk_end(ch);
  for (int c = 0; c < m; ++c) out[c] = 0.0;
  float v[kBlock];
  for (std::int64_t b0 = lo; b0 < hi; b0 += kBlock) {
    const int nb = static_cast<int>(std::min<std::int64_t>(kBlock, hi - b0));
    const float* __restrict db = d2 + b0;
    for (int c = 0; c < m; ++c) {
      block_distances<D>(soa_ + b0, n_, nb, dims(), cands + static_cast<std::size_t>(c) * dims(), v);
      float tb = 0.0f;
#pragma omp simd reduction(+ : tb)
      for (int t = 0; t < nb; ++t) tb += v[t] < db[t] ? v[t] : db[t];
      out[c] += tb;
    }
  }
}

// Greedy k-means++ (as scikit-learn's): the first centre uniformly; for each next one, 2 + floor(ln k) points
// drawn with probability proportional to the squared distance to the nearest centre chosen so far (D^2 sampling),
// of which the one leaving the smallest total squared distance is taken (the first drawn on ties). On
// outlier-heavy channel ranges plain D^2 sampling gives much worse and more scattered restarts (bench/README.md).
template <int D>
void Restart<D>::seed_plus_plus(Xoshiro256& rng) {
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

  // One D^2 draw: the first point whose cumulative weight exceeds u * total (a point of weight 0 is never drawn).
  auto draw = [&](double total) -> std::int64_t {
    std::int64_t pick = -1;
    if (total > 0.0) {
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
    return pick;
  };
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k_)));
  std::vector<double> part(chunks_ * trials);
  std::vector<std::int64_t> cand(trials);
  std::vector<float> cand_xy(static_cast<std::size_t>(trials) * dims());
  take(0, std::min<std::int64_t>(n_ - 1, static_cast<std::int64_t>(rng.uniform() * static_cast<double>(n_))));
  for (int j = 1; j < k_; ++j) {
    double total = 0.0;
    for (std::int64_t ch = 0; ch < chunks_; ++ch) total += chunk_total[ch];
    for (int t = 0; t < trials; ++t) {
      cand[t] = draw(total);
      for (int d = 0; d < dims(); ++d) cand_xy[static_cast<std::size_t>(t) * dims() + d] = point(cand[t])[d];
    }
#pragma omp parallel for schedule(static) if (parallel_)
    for (std::int64_t ch = 0; ch < chunks_; ++ch)
      seed_potentials_chunk(ch, cand_xy.data(), trials, d2.data(), &part[ch * trials]);
    std::int64_t pick = cand[0];
    double best = std::numeric_limits<double>::infinity();
    for (int t = 0; t < trials; ++t) {
      double pot = 0.0;
      for (std::int64_t ch = 0; ch < chunks_; ++ch) pot += part[ch * trials + t];
      if (pot < best) best = pot, pick = cand[t];
    }
    take(j, pick);
  }
}

// Full scan of one chunk: labels, tight bounds, and the chunk's cluster sums from scratch.
template <int D>
std::int64_t Restart<D>::assign_full_chunk(std::int64_t ch, Scratch& sc) {
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
  double* sums = &chunk_sums_[ch * kd];
  std::int64_t* counts = &chunk_counts_[ch * k_];
  std::fill(sums, sums + kd, 0.0);
  std::fill(counts, counts + k_, 0);
  const std::int64_t lo = ch * kChunk, m = chunk_end(ch) - lo;
  nearest_batch<D>(soa_ + lo, n_, m, dims(), cf_.data(), k_, sc.i1.data(), sc.f1.data(), sc.f2.data());
  std::int64_t changed = 0;
  for (std::int64_t t = 0; t < m; ++t) {
    const std::int64_t i = lo + t;
    const int a = sc.i1[t];
    changed += a != labels_[i];
    labels_[i] = a;
    upper_[i] = std::sqrt(sc.f1[t]);
    lower_[i] = std::sqrt(sc.f2[t]);
    for (int d = 0; d < dims(); ++d) sums[static_cast<std::size_t>(a) * dims() + d] += point(i)[d];
    ++counts[a];
  }
  return changed;
}

// Hamerly's step for one chunk: the bounds are first loosened by how far the centroids moved, and a point is
// scanned only when they no longer prove its label. Records the changes of the chunk's cluster sums.
template <int D>
std::int64_t Restart<D>::assign_bounded_chunk(std::int64_t ch, const Moves& mv, Scratch& sc) {
  std::int32_t* __restrict labels = labels_.data();
  float* __restrict upper = upper_.data();
  float* __restrict lower = lower_.data();
  const float* __restrict move = mv.by.data();
  const float* __restrict half_gap = half_gap_.data();
  sc.idx.clear();
  for (std::int64_t i = ch * kChunk; i < chunk_end(ch); ++i) {
    const int a = labels[i];
    float u = upper[i] + move[a];
    const float l = lower[i] - mv.others(a);
    lower[i] = l;
    const float m = std::max(half_gap[a], l);
    if (u > m) {
      u = std::sqrt(sq_distance(point(i), centroid_f(a)));  // tighten the upper bound first
      if (u > m) sc.idx.push_back(i);
    }
    upper[i] = u;
  }
  const auto m = static_cast<std::int64_t>(sc.idx.size());
  if (m == 0) return 0;
  gather(sc.idx.data(), m, sc.xs.data());
  nearest_batch<D>(sc.xs.data(), m, m, dims(), cf_.data(), k_, sc.i1.data(), sc.f1.data(), sc.f2.data());
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
  double* dsum = &chunk_sums_[ch * kd];
  std::int64_t* dcount = &chunk_counts_[ch * k_];
  std::int64_t changed = 0;
  for (std::int64_t t = 0; t < m; ++t) {
    const std::int64_t i = sc.idx[t];
    const int a = labels[i], b = sc.i1[t];
    upper[i] = std::sqrt(sc.f1[t]);
    lower[i] = std::sqrt(sc.f2[t]);
    if (b == a) continue;
    if (changed++ == 0) {  // first change in this chunk: start its change sums
      std::fill(dsum, dsum + kd, 0.0);
      std::fill(dcount, dcount + k_, 0);
    }
    labels[i] = b;
    for (int d = 0; d < dims(); ++d) {
      dsum[static_cast<std::size_t>(a) * dims() + d] -= point(i)[d];
      dsum[static_cast<std::size_t>(b) * dims() + d] += point(i)[d];
    }
    --dcount[a];
    ++dcount[b];
  }
  return changed;
}

// When Lloyd runs longer than a few bounded steps (many clusters in a dense band: k = 64 on channel ranges takes
// 30 to 100), the following steps keep the points in a cluster-contiguous layout, so that Hamerly's per-point bound
// test, the step that visits every point every iteration, runs over contiguous arrays with the cluster's values
// (its movement, the others' largest movement, its half gap and centroid) fixed: it vectorises without gathers.
// Only the points whose bounds no longer prove their label are scanned against every centroid. Building the layout
// (fresh memory for each restart) costs several steps of the chunked pass above, so it is built only after 8
// chunked bounded steps, once a step changed fewer than 1/64 of the labels; runs that converge sooner (most at
// k <= 32) never build it. A point that changes cluster afterwards stays where it is, marked as gone, and is tested
// on its own (few points change by then) until so many have changed that the layout is rebuilt. The order of points
// has no effect on any result: a point's bounds and scan are its own, and the changes of the cluster sums are
// applied in point index order, per chunk of kChunk points, exactly as a chunked pass in index order would apply
// them.

template <int D>
void Restart<D>::build_layout() {
  start_.assign(k_ + 1, 0);
  for (std::int64_t i = 0; i < n_; ++i) ++start_[labels_[i] + 1];
  for (int j = 0; j < k_; ++j) start_[j + 1] += start_[j];
  lx_.resize(static_cast<std::size_t>(dims()) * n_);
  lu_.resize(n_);
  ll_.resize(n_);
  lid_.resize(n_);
  lpos_.resize(n_);
  lflag_.resize(n_);
  lown_.assign(n_, ~0u);
  foreign_.clear();
  std::vector<std::int64_t> next(start_.begin(), start_.end() - 1);
  for (std::int64_t i = 0; i < n_; ++i) {
    const std::int64_t p = next[labels_[i]]++;
    for (int d = 0; d < dims(); ++d) lx_[d * n_ + p] = point(i)[d];
    lu_[p] = upper_[i];
    ll_[p] = lower_[i];
    lid_[p] = static_cast<std::int32_t>(i);
    lpos_[i] = static_cast<std::int32_t>(p);
  }
}

template <int D>
void Restart<D>::bounds_from_layout() {
  for (std::int64_t p = 0; p < n_; ++p) {
    upper_[lid_[p]] = lu_[p];
    lower_[lid_[p]] = ll_[p];
  }
}

// Hamerly's test for the points still in cluster a's segment: the bounds are loosened by how far the centroids
// moved; where they no longer prove the label the upper bound becomes the exact distance (computed for every point,
// kept only there), and lflag_ marks the points that even that does not prove. The same values as testing one
// point at a time (loosen_point). Points that left the segment are left alone (bit masks: selects written with ?:
// vectorise only with AVX-512). Returns how many points were flagged.
template <int D>
std::int64_t Restart<D>::loosen_cluster(int a, const Moves& mv) {
  const std::int64_t lo = start_[a], hi = start_[a + 1], n = n_;
  const float move = mv.by[a], others = mv.others(a), half_gap = half_gap_[a];
  float c[D > 0 ? D : 1];
  if constexpr (D > 0)
    for (int d = 0; d < D; ++d) c[d] = cf_[static_cast<std::size_t>(a) * D + d];
  const float* __restrict cfa = D > 0 ? c : &cf_[static_cast<std::size_t>(a) * dims()];
  const float* __restrict x = lx_.data();
  const std::uint32_t* __restrict own = lown_.data();
  float* __restrict u = lu_.data();
  float* __restrict l = ll_.data();
  std::int32_t* __restrict flag = lflag_.data();
  std::int32_t flagged = 0;
  for (std::int64_t p = lo; p < hi; ++p) {
    const float up = u[p] + move;
    const float lp = l[p] - others;
    const float bound = std::max(half_gap, lp);
    float d2 = 0.0f;
    for (int d = 0; d < dims(); ++d) {
      const float e = x[d * n + p] - cfa[d];
      d2 += e * e;
    }
    const float r = std::sqrt(d2);
    const std::uint32_t gt = 0u - static_cast<std::uint32_t>(up > bound);
    const float tight = std::bit_cast<float>((std::bit_cast<std::uint32_t>(r) & gt) |  // up > bound ? r : up
                                             (std::bit_cast<std::uint32_t>(up) & ~gt));
    const std::uint32_t m = own[p];
    u[p] = std::bit_cast<float>((std::bit_cast<std::uint32_t>(tight) & m) | (std::bit_cast<std::uint32_t>(u[p]) & ~m));
    l[p] = std::bit_cast<float>((std::bit_cast<std::uint32_t>(lp) & m) | (std::bit_cast<std::uint32_t>(l[p]) & ~m));
    const std::int32_t f = static_cast<std::int32_t>((tight > bound) & (m != 0));
    flag[p] = f;
    flagged += f;
  }
  return flagged;
}

// The same test for one point that left its segment (its cluster from labels_); true when it must be scanned.
template <int D>
bool Restart<D>::loosen_point(std::int64_t p, const Moves& mv) {
  const int a = labels_[lid_[p]];
  float up = lu_[p] + mv.by[a];
  const float lp = ll_[p] - mv.others(a);
  ll_[p] = lp;
  const float bound = std::max(half_gap_[a], lp);
  if (up > bound) {
    float d2 = 0.0f;
    for (int d = 0; d < dims(); ++d) {
      const float e = lx_[d * n_ + p] - centroid_f(a)[d];
      d2 += e * e;
    }
    up = std::sqrt(d2);
  }
  lu_[p] = up;
  return up > bound;
}

// Scans the points at layout positions pos[0..m) (m <= kChunk) against every centroid: tight bounds, and the new
// labels in sc.i1.
template <int D>
void Restart<D>::scan_block(const std::int64_t* pos, std::int64_t m, Scratch& sc) {
  for (std::int64_t t = 0; t < m; ++t)
    for (int d = 0; d < dims(); ++d) sc.xs[d * m + t] = lx_[d * n_ + pos[t]];
  nearest_batch<D>(sc.xs.data(), m, m, dims(), cf_.data(), k_, sc.i1.data(), sc.f1.data(), sc.f2.data());
  for (std::int64_t t = 0; t < m; ++t) {
    const std::int64_t p = pos[t];
    lu_[p] = std::sqrt(sc.f1[t]);
    ll_[p] = std::sqrt(sc.f2[t]);
  }
}

// One bounded assignment step (Hamerly); updates the cluster sums and counts and returns how many labels changed.
template <int D>
std::int64_t Restart<D>::assign_bounded(const Moves& mv) {
  std::vector<std::int64_t> flagged(k_);
#pragma omp parallel for schedule(dynamic, 1) if (parallel_)
  for (int a = 0; a < k_; ++a) flagged[a] = loosen_cluster(a, mv);
  std::vector<std::int64_t> scan(std::accumulate(flagged.begin(), flagged.end(), std::int64_t{0}) +
                                 static_cast<std::int64_t>(foreign_.size()) + 1);
  std::int64_t m = 0;
  for (int a = 0; a < k_; ++a)
    if (flagged[a] > 0)
      for (std::int64_t p = start_[a]; p < start_[a + 1]; ++p) {  // branch-free: flags are irregular
        scan[m] = p;
        m += lflag_[p];
      }
  for (std::int64_t p : foreign_)
    if (loosen_point(p, mv)) scan[m++] = p;
  const std::int64_t blocks = (m + kChunk - 1) / kChunk;
  std::vector<std::vector<std::int32_t>> labels(blocks);
#pragma omp parallel if (parallel_ && blocks > 1)
  {
    Scratch sc(dims());
#pragma omp for schedule(static)
    for (std::int64_t bl = 0; bl < blocks; ++bl) {
      const std::int64_t b0 = bl * kChunk, nb = std::min(kChunk, m - b0);
      scan_block(scan.data() + b0, nb, sc);
      labels[bl].assign(sc.i1.begin(), sc.i1.begin() + nb);
    }
  }
  changes_.clear();
  for (std::int64_t t = 0; t < m; ++t) {
    const std::int32_t i = lid_[scan[t]], b = labels[t / kChunk][t % kChunk], a = labels_[i];
    if (b != a) changes_.push_back({i, a, b});
  }
  if (changes_.empty()) return 0;
  std::sort(changes_.begin(), changes_.end(), [](const Change& x, const Change& y) { return x.i < y.i; });
  // The sums change chunk by chunk of point indices, in index order within a chunk.
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
  std::vector<double> dsum(kd);
  std::vector<std::int64_t> dcount(k_);
  for (std::size_t c0 = 0; c0 < changes_.size();) {
    const std::int64_t ch = changes_[c0].i / kChunk;
    std::fill(dsum.begin(), dsum.end(), 0.0);
    std::fill(dcount.begin(), dcount.end(), 0);
    std::size_t c1 = c0;
    for (; c1 < changes_.size() && changes_[c1].i / kChunk == ch; ++c1) {
      const Change& c = changes_[c1];
      for (int d = 0; d < dims(); ++d) {
        dsum[static_cast<std::size_t>(c.a) * dims() + d] -= point(c.i)[d];
        dsum[static_cast<std::size_t>(c.b) * dims() + d] += point(c.i)[d];
      }
      --dcount[c.a];
      ++dcount[c.b];
      labels_[c.i] = c.b;
      const std::int64_t p = lpos_[c.i];
      if (lown_[p]) {  // it leaves its segment: tested on its own from now on
        lown_[p] = 0;
        foreign_.push_back(p);
      }
    }
    for (std::size_t t = 0; t < kd; ++t) sums_[t] += dsum[t];
    for (int j = 0; j < k_; ++j) counts_[j] += dcount[j];
    c0 = c1;
  }
  if (foreign_.size() * 16 > static_cast<std::size_t>(n_)) {  // many have left their segments: rebuild
    bounds_from_layout();
    build_layout();
  }
  return static_cast<std::int64_t>(changes_.size());
}

// One assignment step over all points; updates the cluster sums and counts and returns how many labels changed.
template <int D>
std::int64_t Restart<D>::assign(bool full, const Moves& mv) {
  constexpr int kChunkedSteps = 8;  // see above
  if (full) {  // rewrites every bound in upper_ / lower_
    layout_ = false;
    bounded_steps_ = 0;
  } else if (layout_) {
    return last_changes_ = assign_bounded(mv);
  } else if (++bounded_steps_ > kChunkedSteps && last_changes_ * 64 < n_) {
    build_layout();
    layout_ = true;
    return last_changes_ = assign_bounded(mv);
  }
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
  std::vector<std::int64_t> changed(chunks_, 0);
#pragma omp parallel if (parallel_)
  {
    Scratch sc(dims());
#pragma omp for schedule(static)
    for (std::int64_t ch = 0; ch < chunks_; ++ch)
      changed[ch] = full ? assign_full_chunk(ch, sc) : assign_bounded_chunk(ch, mv, sc);
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
  return last_changes_ = total;
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

// One chunk of a Hartigan pass's first step: the points whose move might lower the inertia (see hartigan()).
template <int D>
void Restart<D>::hartigan_chunk(std::int64_t ch, const std::vector<int>& moved, const std::vector<char>& is_moved,
                                std::vector<std::int64_t>& candidates, Scratch& sc) {
  constexpr std::size_t kFewMoved = 4;  // up to this many changed clusters, check a point against those alone
  candidates.clear();
  sc.idx.clear();
  const bool few = moved.size() <= kFewMoved;
  for (std::int64_t i = ch * kChunk; i < chunk_end(ch); ++i) {
    const int a = labels_[i];
    const float grow = grow_[a];
    if (grow == 0.0f) {  // a point alone is at its mean: moving it cannot help
      other_lb_[i] = 0.0f;
      continue;
    }
    const float* x = point(i);
    if (is_moved[a]) own_d2_[i] = sq_distance(x, centroid_f(a));
    const float own = own_d2_[i];
    if (own <= gap_test_[a]) {  // far inside its cluster
      other_lb_[i] = 0.0f;      // not kept up to date while this holds
      continue;
    }
    if (few && other_lb_[i] > 0.0f) {
      float lb = other_lb_[i];
      for (int j : moved)
        if (j != a) lb = std::min(lb, weight_[j] * sq_distance(x, centroid_f(j)));
      if (lb >= grow * own * (1.0f + 1e-5f)) {  // a move pays only if some w_j d_j^2 is below g_a d_a^2
        other_lb_[i] = lb;
        continue;
      }
    }
    sc.idx.push_back(i);
  }
  const auto m = static_cast<std::int64_t>(sc.idx.size());
  if (m == 0) return;
  gather(sc.idx.data(), m, sc.xs.data());
  for (std::int64_t t = 0; t < m; ++t) sc.i1[t] = labels_[sc.idx[t]];
  weighted_batch<D>(sc.xs.data(), m, m, dims(), cf_.data(), k_, weight_.data(), sc.i1.data(), sc.f1.data(),
                    sc.f2.data());
  for (std::int64_t t = 0; t < m; ++t) {
    const std::int64_t i = sc.idx[t];
    own_d2_[i] = sc.f1[t];
    other_lb_[i] = sc.f2[t];
    if (sc.f2[t] < grow_[sc.i1[t]] * sc.f1[t] * (1.0f + 1e-5f)) candidates.push_back(i);  // decided in hartigan()
  }
}

// Hartigan's refinement of the Lloyd result. Moving x from its cluster a to cluster j changes the inertia by
// w_j |x - c_j|^2 - g_a |x - c_a|^2 with w_j = n_j / (n_j + 1), g_a = n_a / (n_a - 1) (the means updated at once);
// Lloyd stops at partitions where a point is nearer its own mean yet moving it would still pay, common when
// clusters are small (outlier channels), and this step removes them. Its fixed points are Lloyd fixed points too.
//
// Each pass first finds, with the centroids fixed (in parallel), the points whose move might pay; then moves them
// one by one in index order, each decision made in double against the centroids as updated by the moves before
// it. A pass that moves nothing proves the partition stable. Most points are cleared without a scan:
// - gap test: with G_a = min over j != a of sqrt(w_j) |c_a - c_j|, the triangle inequality gives
//   sqrt(w_j) |x - c_j| >= G_a - |x - c_a|, so no move pays while |x - c_a| (1 + sqrt(g_a)) <= G_a;
// - otherwise other_lb_ (a lower bound on w_j |x - c_j|^2 over the clusters j that did not change since it was
//   computed) combined with the few clusters the last pass changed.
// own_d2_ starts from Lloyd's upper bounds, loosened by the centroids' last movement unless Lloyd converged.
template <int D>
void Restart<D>::hartigan(int max_passes) {
  set_centroid_views();
  weight_.resize(k_);
  grow_.resize(k_);
  gap_test_.resize(k_);
  own_d2_.resize(n_);
  other_lb_.assign(n_, 0.0f);
  for (std::int64_t i = 0; i < n_; ++i) own_d2_[i] = upper_[i] * upper_[i];
  std::vector<int> moved;
  std::vector<char> is_moved(k_, 0);
  std::vector<std::vector<std::int64_t>> candidates(chunks_);
  std::vector<double> new_a(dims()), new_j(dims());
  double sse = inertia();
  for (int pass = 0; pass < max_passes; ++pass) {
    for (int j = 0; j < k_; ++j) {
      const auto nj = static_cast<float>(counts_[j]);
      weight_[j] = nj / (nj + 1.0f);
      grow_[j] = counts_[j] > 1 ? nj / (nj - 1.0f) : 0.0f;
    }
    for (int a = 0; a < k_; ++a) {
      float g = kInf;
      for (int j = 0; j < k_; ++j)
        if (j != a) g = std::min(g, weight_[j] * sq_distance(centroid_f(a), centroid_f(j)));  // G_a^2
      const float f = 1.0f + std::sqrt(grow_[a]);
      gap_test_[a] = g / (f * f) * (1.0f - 1e-5f);
    }
#pragma omp parallel if (parallel_)
    {
      Scratch sc(dims());
#pragma omp for schedule(static)
      for (std::int64_t ch = 0; ch < chunks_; ++ch) hartigan_chunk(ch, moved, is_moved, candidates[ch], sc);
    }
    std::fill(is_moved.begin(), is_moved.end(), 0);
    std::int64_t moves = 0;
    double gain = 0.0;
    for (std::int64_t ch = 0; ch < chunks_; ++ch)
      for (std::int64_t i : candidates[ch]) {
        const int a = labels_[i];
        if (counts_[a] == 1) continue;
        const float* x = point(i);
        int cand = -1;
        float best = kInf;
        for (int j = 0; j < k_; ++j) {
          const float s =
              static_cast<float>(counts_[j]) / static_cast<float>(counts_[j] + 1) * sq_distance(x, centroid_f(j));
          if (j != a && s < best) best = s, cand = j;
        }
        if (cand < 0) continue;
        const double na = static_cast<double>(counts_[a]), nj = static_cast<double>(counts_[cand]);
        const double* ca = centroid(a);
        const double* cj = centroid(cand);
        // The move must lower the inertia by more than rounding.
        const double add = nj / (nj + 1.0) * sq_distance(x, cj), remove = na / (na - 1.0) * sq_distance(x, ca);
        if (!(add < remove * (1.0 - 1e-12))) continue;
        gain += remove - add;
        for (int d = 0; d < dims(); ++d) {
          new_a[d] = ca[d] + (ca[d] - x[d]) / (na - 1.0);
          new_j[d] = cj[d] + (x[d] - cj[d]) / (nj + 1.0);
        }
        set_centroid(a, new_a.data());
        set_centroid(cand, new_j.data());
        --counts_[a];
        ++counts_[cand];
        labels_[i] = cand;
        other_lb_[i] = 0.0f;  // unknown for its new cluster
        is_moved[a] = is_moved[cand] = 1;
        ++moves;
      }
    if (moves == 0) break;
    // Slow sliding of many boundaries by tiny steps (dense regions) is not worth more passes.
    sse -= gain;
    if (gain < kHartiganTolerance * sse) break;
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

// Lloyd from the centroids in cent_ (every label examined in the first step), then Hartigan; the centroids end as
// the means of the labels. Returns the Lloyd iterations.
template <int D>
int Restart<D>::descend(int max_iterations) {
  labels_.assign(n_, -1);
  Moves mv;
  mv.by.assign(k_, 0.0f);
  bool full = true, converged = false;
  int it = 0;
  while (it < max_iterations) {
    set_centroid_views();
    ++it;
    if (assign(full, mv) == 0) {  // converged: the centroids are already the means of these labels
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
  if (layout_) bounds_from_layout();
  // Hartigan starts from Lloyd's upper bounds: loosened by the last centroid update unless Lloyd converged, or
  // unknown (+inf) when that update re-seeded a cluster.
  if (!converged)
    for (std::int64_t i = 0; i < n_; ++i) upper_[i] = full ? kInf : upper_[i] + mv.by[labels_[i]];
  hartigan(max_iterations);
  return it;
}

// One chunk's points: the squared distance to their own centroid (swap_d2_) and to the nearest other one
// (swap_other_).
template <int D>
void Restart<D>::swap_distances_chunk(std::int64_t ch, Scratch& sc) {
  const std::int64_t lo = ch * kChunk, m = chunk_end(ch) - lo;
  weighted_batch<D>(soa_ + lo, n_, m, dims(), cf_.data(), k_, ones_.data(), labels_.data() + lo, sc.f1.data(),
                    sc.f2.data());
  std::copy_n(sc.f1.data(), m, swap_d2_.data() + lo);
  std::copy_n(sc.f2.data(), m, swap_other_.data() + lo);
}

// Swap search, after Lloyd and Hartigan: their local minima often serve one dense region with two centroids while a
// wide cluster elsewhere has one, and no single-point move repairs that. A swap removes one centroid and puts one
// at a data point p. With the centroids held fixed its inertia is exact and cheap: point i then costs
// min(d_i, |x_i - p|^2), or min(o_i, |x_i - p|^2) if it was in the removed cluster (d_i, o_i: its squared distance
// to its own and to the nearest other centroid), so one pass over the points scores p against every removal. Each
// trial draws 2 + floor(ln k) places p by D^2 sampling (as the seeding does), takes the best-scoring swap, descends
// from it (Lloyd, Hartigan) and keeps the result if the inertia fell by more than rounding; the first trial that
// keeps nothing ends the search. On the channel ranges of three real models (tools/kmeans-vs-sklearn) it raises the
// chance that one restart lands within 1% of sklearn's KMeans(n_init=10) on the hardest taps from 4% to 18%.
template <int D>
double Restart<D>::swap_search(Xoshiro256& rng, double sse, int max_iterations) {
  if (k_ < 2) return sse;
  ones_.assign(k_, 1.0f);
  swap_d2_.resize(n_);
  swap_other_.resize(n_);
  const int draws = 2 + static_cast<int>(std::log(static_cast<double>(k_)));
  std::vector<double> corr(k_);
  while (true) {
    set_centroid_views();
#pragma omp parallel if (parallel_)
    {
      Scratch sc(dims());
#pragma omp for schedule(static)
      for (std::int64_t ch = 0; ch < chunks_; ++ch) swap_distances_chunk(ch, sc);
    }
    double fixed = 0.0;  // the inertia against the float centroids, the scale of the D^2 draws
    for (std::int64_t i = 0; i < n_; ++i) fixed += swap_d2_[i];
    if (!(fixed > 0.0)) return sse;
    double best = std::numeric_limits<double>::infinity();
    std::int64_t best_p = -1;
    int best_r = -1;
    for (int t = 0; t < draws; ++t) {
      const double u = rng.uniform() * fixed;
      double acc = 0.0;
      std::int64_t p = -1;
      for (std::int64_t i = 0; i < n_; ++i)
        if (swap_d2_[i] > 0.0f) {
          p = i;  // falls back to the last positive point if rounding leaves acc short of the target
          if ((acc += swap_d2_[i]) > u) break;
        }
      if (p < 0) break;
      const float* xp = point(p);
      double base = 0.0;
      std::fill(corr.begin(), corr.end(), 0.0);
      for (std::int64_t i = 0; i < n_; ++i) {
        const float d = sq_distance(point(i), xp);
        const float stay = std::min(swap_d2_[i], d);
        base += stay;
        corr[labels_[i]] += std::min(swap_other_[i], d) - stay;
      }
      for (int r = 0; r < k_; ++r)
        if (base + corr[r] < best) best = base + corr[r], best_p = p, best_r = r;
    }
    if (best_p < 0) return sse;
    std::vector<std::int32_t> saved_labels = labels_;
    std::vector<double> saved_cent = cent_;
    std::vector<std::int64_t> saved_counts = counts_;
    for (int d = 0; d < dims(); ++d) cent_[static_cast<std::size_t>(best_r) * dims() + d] = point(best_p)[d];
    descend(max_iterations);
    const double trial = inertia();
    if (!(trial < sse * (1.0 - 1e-9))) {
      labels_ = std::move(saved_labels);
      cent_ = std::move(saved_cent);
      counts_ = std::move(saved_counts);
      return sse;
    }
    sse = trial;
  }
}

template <int D>
Run Restart<D>::run(std::uint64_t seed, int max_iterations, bool swaps) {
  const std::size_t kd = static_cast<std::size_t>(k_) * dims();
  cf_.resize(kd);
  chunk_sums_.assign(chunks_ * kd, 0.0);
  chunk_counts_.assign(chunks_ * k_, 0);
  upper_.assign(n_, 0.0f);
  lower_.assign(n_, 0.0f);
  Xoshiro256 rng(seed);
  seed_plus_plus(rng);
  Run r;
  r.iterations = descend(max_iterations);
  r.inertia = inertia();
  if (swaps) r.inertia = swap_search(rng, r.inertia, max_iterations);
  r.labels = std::move(labels_);
  r.centroids = std::move(cent_);
  return r;
}

template <int D>
Run run_restart(const float* pts, const float* soa, std::int64_t n, int dims, int k, bool parallel, std::uint64_t seed,
                int max_iterations, bool swaps) {
  return Restart<D>(pts, soa, n, dims, k, parallel).run(seed, max_iterations, swaps);
}

// How hard a call searches (KMeansOptions::restart_work, W). A restart with the swap search costs about
// kSwapCost * n * (k + kPointCost). If W affords opts.restarts of those, every restart runs the swap search and
// restarts are added while they fit (at most kMaxRestarts); otherwise exactly opts.restarts run, without it. On
// small taps one restart lands within 1% of sklearn's result as rarely as 18% of the time even with the swap search
// (4% without: k-means on outlier-heavy ranges has many local minima), and there the extra search costs little.
struct Effort {
  int restarts;
  bool swaps;
};

Effort effort(std::int64_t n, int k, const KMeansOptions& opts) {
  // floor(W / (kSwapCost n (k + kPointCost))), without overflow
  const std::int64_t fits = opts.restart_work / kSwapCost / n / (k + kPointCost);
  if (fits < opts.restarts) return {opts.restarts, false};
  return {static_cast<int>(std::max<std::int64_t>(opts.restarts, std::min(fits, kMaxRestarts))), true};
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
  if (opts.restart_work < 0)
    throw InputError("k-means: restart_work must be >= 0, got " + std::to_string(opts.restart_work));
  for (std::size_t i = 0; i < points.size(); ++i)
    if (!std::isfinite(points[i]))
      throw InputError("k-means: point " + std::to_string(i / dims) + " coordinate " + std::to_string(i % dims) +
                       " is not finite (" + std::to_string(points[i]) + ")");

  const float* pts = points.data();
  const int k = static_cast<int>(count_distinct(pts, n, dims, opts.k));
  auto* run_one = dims == 1   ? run_restart<1>
                  : dims == 2 ? run_restart<2>
                  : dims == 3 ? run_restart<3>
                  : dims == 4 ? run_restart<4>
                              : run_restart<0>;

  const Effort plan = effort(n, k, opts);
  const int restarts = plan.restarts;
  // Restarts run in parallel when there are several (each restart on one thread); a single restart parallelises
  // its own loops instead. Either way the arithmetic, and so the result, is the same.
  const bool threads = omp_get_max_threads() > 1;
  const bool outer = threads && restarts > 1 && n * k * restarts >= kParallelWork;
  const bool inner = threads && restarts == 1 && n * k >= kParallelWork;
  std::vector<float> soa(points.size());  // [dims, n]: the batched scans read coordinates this way
  for (std::int64_t i = 0; i < n; ++i)
    for (int d = 0; d < dims; ++d) soa[static_cast<std::size_t>(d) * n + i] = pts[i * dims + d];
  std::vector<Run> runs(restarts);
  std::vector<std::exception_ptr> errors(restarts);
#pragma omp parallel for schedule(dynamic, 1) if (outer)
  for (int r = 0; r < restarts; ++r) {
    try {
      runs[r] = run_one(pts, soa.data(), n, dims, k, inner, restart_seed(opts.seed, r), opts.max_iterations,
                        plan.swaps);
    } catch (...) {
      errors[r] = std::current_exception();
    }
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  int best = 0;
  for (int r = 1; r < restarts; ++r)
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
