#pragma once
// Synthetic per-channel activation ranges for the clustering benchmarks (bench_kmeans, bench_gui_scatter), seeded
// and independent of the standard library: max ~ 1.5 e^(0.3 g), min ~ -1.5 e^(0.3 g) with g ~ N(0, 1), and a share
// of outlier channels 50-500x larger (log-uniform) on the max side, the min side or both, as LLM activations have.
#include <cmath>
#include <cstdint>
#include <vector>

namespace rptq::bench {

// splitmix64.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
  double normal() { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()); }
};

// Appends n channels' ranges to max and min, drawn from rng.
inline void append_channel_ranges(std::int64_t n, double outlier_share, Rng& rng, std::vector<float>& max,
                                  std::vector<float>& min) {
  for (std::int64_t i = 0; i < n; ++i) {
    double mx = 1.5 * std::exp(0.3 * rng.normal()), mn = -1.5 * std::exp(0.3 * rng.normal());
    if (rng.uniform() < outlier_share) {
      const double scale = 50.0 * std::pow(10.0, rng.uniform());
      const double side = rng.uniform();
      if (side < 0.4)
        mx *= scale;  // max side only
      else if (side < 0.8)
        mn *= scale;  // min side only
      else
        mx *= scale, mn *= scale;  // both
    }
    max.push_back(static_cast<float>(mx));
    min.push_back(static_cast<float>(mn));
  }
}

}  // namespace rptq::bench
