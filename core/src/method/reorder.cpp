#include "rptq/method/reorder.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "rptq/base/error.h"

namespace rptq {

bool ReorderIndex::is_identity() const {
  for (std::size_t k = 0; k < order.size(); ++k)
    if (order[k] != static_cast<std::int32_t>(k)) return false;
  return true;
}

ReorderIndex ReorderIndex::identity(std::int64_t channels) {
  ReorderIndex r;
  r.order.resize(static_cast<std::size_t>(channels));
  std::iota(r.order.begin(), r.order.end(), 0);
  r.boundaries = {0, channels};
  return r;
}

void ReorderIndex::check(const char* what) const {
  const std::int64_t n = channels();
  std::vector<char> seen(static_cast<std::size_t>(n), 0);
  for (std::int32_t c : order) {
    if (c < 0 || c >= n || seen[static_cast<std::size_t>(c)])
      throw std::logic_error(std::string(what) + ": reorder index is not a permutation");
    seen[static_cast<std::size_t>(c)] = 1;
  }
  if (boundaries.size() < 2 || boundaries.front() != 0 || boundaries.back() != n)
    throw std::logic_error(std::string(what) + ": cluster boundaries do not span the channels");
  for (std::size_t i = 1; i < boundaries.size(); ++i)
    if (boundaries[i] <= boundaries[i - 1]) throw std::logic_error(std::string(what) + ": empty cluster");
}

const ReorderIndex& LayerReorder::index(int r) const {
  switch (r) {
    case 1: return r1;
    case 2: return r2;
    case 3: return r3;
    case 4: return r4;
    case 5: return r5;
  }
  throw std::out_of_range("reorder index R" + std::to_string(r));
}

namespace {

ReorderIndex from_kmeans(const KMeansResult& km) {
  ReorderIndex r;
  r.order = km.order;
  r.boundaries = km.boundaries;
  return r;
}

KMeansOptions km_options(int k, std::uint64_t seed, int restarts) {
  KMeansOptions o;
  o.k = k;
  o.seed = seed;
  o.restarts = restarts;
  return o;
}

// Appends a head-local index (positions and channels in [0, width)) at offset `base` of a whole-width index.
void append_local(ReorderIndex& whole, const ReorderIndex& local, std::int64_t base) {
  for (std::int32_t c : local.order) whole.order.push_back(static_cast<std::int32_t>(c + base));
  for (std::size_t i = 1; i < local.boundaries.size(); ++i) whole.boundaries.push_back(local.boundaries[i] + base);
}

// Per KV head, clusters of the head's channels from features built by `feature(head, channel, out)`; with pairs,
// channel i and i + head_dim/2 form one point and move together.
template <typename Feature>
TapClusters cluster_per_head(std::int64_t kv_heads, std::int64_t hd, bool pairs, int k, int dims,
                             std::uint64_t seed, int restarts, Feature feature) {
  TapClusters out;
  ReorderIndex& whole = out.index;
  whole.boundaries = {0};
  out.labels.assign(static_cast<std::size_t>(kv_heads * hd), 0);
  int label_base = 0;
  const std::int64_t points = pairs ? hd / 2 : hd;
  std::vector<float> x(static_cast<std::size_t>(points * dims));
  for (std::int64_t g = 0; g < kv_heads; ++g) {
    for (std::int64_t p = 0; p < points; ++p) feature(g, p, x.data() + p * dims);
    const KMeansResult km = kmeans(x, dims, km_options(k, seed + static_cast<std::uint64_t>(g), restarts));
    out.inertia += km.inertia;
    for (std::int64_t p = 0; p < points; ++p) {
      out.labels[static_cast<std::size_t>(g * hd + p)] = label_base + km.labels[static_cast<std::size_t>(p)];
      if (pairs) out.labels[static_cast<std::size_t>(g * hd + p + points)] = label_base + km.labels[static_cast<std::size_t>(p)];
    }
    label_base += km.k;
    out.clusters += km.k;
    ReorderIndex local = from_kmeans(km);
    if (pairs) {
      // Point p stands for channels p and p + hd/2: the pair order repeats in the second half, and a cluster of
      // pairs becomes two runs of positions. Boundaries are kept for the first half's runs and repeated for the
      // second half, so each cluster is two contiguous groups (both quantized with the cluster's range).
      ReorderIndex full;
      full.order = local.order;
      for (std::int32_t c : local.order) full.order.push_back(static_cast<std::int32_t>(c + points));
      full.boundaries = local.boundaries;
      for (std::size_t i = 1; i < local.boundaries.size(); ++i) full.boundaries.push_back(local.boundaries[i] + points);
      local = std::move(full);
    }
    append_local(whole, local, g * hd);
  }
  return out;
}

// Combines the query heads of KV group g: channel c of the group's query heads -> (max of hi, min of lo).
void group_range(const TapRanges& t, RangeStat stat, std::int64_t g, std::int64_t group, std::int64_t hd,
                 std::int64_t c, float& hi, float& lo) {
  hi = -INFINITY;
  lo = INFINITY;
  for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
    hi = std::max(hi, t.hi(stat)[static_cast<std::size_t>(h * hd + c)]);
    lo = std::min(lo, t.lo(stat)[static_cast<std::size_t>(h * hd + c)]);
  }
}

void permute_rows(Tensor& w, const std::vector<std::int32_t>& p) {
  if (w.empty()) return;
  const std::int64_t rows = w.dim(0), cols = w.numel() / rows;
  if (static_cast<std::int64_t>(p.size()) != rows) throw std::logic_error("permute_rows: size mismatch");
  Tensor out(w.shape());
  for (std::int64_t r = 0; r < rows; ++r)
    std::copy_n(w.data() + static_cast<std::int64_t>(p[static_cast<std::size_t>(r)]) * cols, cols,
                out.data() + r * cols);
  w = std::move(out);
}

// Columns [offset, offset + p.size()) of every row: new column offset + k = old column offset + p[k].
void permute_cols(Tensor& w, const std::vector<std::int32_t>& p) {
  if (w.empty()) return;
  const std::int64_t rows = w.dim(0), cols = w.dim(1);
  if (static_cast<std::int64_t>(p.size()) != cols) throw std::logic_error("permute_cols: size mismatch");
  std::vector<float> tmp(static_cast<std::size_t>(cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = w.data() + r * cols;
    for (std::int64_t k = 0; k < cols; ++k) tmp[static_cast<std::size_t>(k)] = row[p[static_cast<std::size_t>(k)]];
    std::copy(tmp.begin(), tmp.end(), row);
  }
}

void permute_linear_out(LinearWeights& l, const std::vector<std::int32_t>& p) {
  permute_rows(l.weight, p);
  if (!l.bias.empty()) permute_rows(l.bias, p);
}

void compose_gather(NormWeights& n, const std::vector<std::int32_t>& p) {
  if (n.gather.empty()) {
    n.gather = p;
    return;
  }
  std::vector<std::int32_t> g(p.size());
  for (std::size_t k = 0; k < p.size(); ++k) g[k] = n.gather[static_cast<std::size_t>(p[k])];
  n.gather = std::move(g);
}

// A KV-width permutation (within KV heads) applied to each query head of the group.
std::vector<std::int32_t> expand_to_query_heads(const std::vector<std::int32_t>& kv, std::int64_t heads,
                                                std::int64_t kv_heads, std::int64_t hd) {
  const std::int64_t group = heads / kv_heads;
  std::vector<std::int32_t> q(static_cast<std::size_t>(heads * hd));
  for (std::int64_t h = 0; h < heads; ++h) {
    const std::int64_t g = h / group;
    for (std::int64_t k = 0; k < hd; ++k)
      q[static_cast<std::size_t>(h * hd + k)] =
          static_cast<std::int32_t>(h * hd + (kv[static_cast<std::size_t>(g * hd + k)] - g * hd));
  }
  return q;
}

std::vector<std::int64_t> expand_boundaries(const std::vector<std::int64_t>& kv, std::int64_t heads,
                                            std::int64_t kv_heads, std::int64_t hd) {
  // kv boundaries run over the whole KV width; split them by KV head and repeat for each query head of the group.
  const std::int64_t group = heads / kv_heads;
  std::vector<std::int64_t> out = {0};
  for (std::int64_t h = 0; h < heads; ++h) {
    const std::int64_t g = h / group;
    for (std::size_t i = 1; i < kv.size(); ++i)
      if (kv[i] > g * hd && kv[i] <= (g + 1) * hd) out.push_back(kv[i] - g * hd + h * hd);
  }
  return out;
}

}  // namespace

namespace {
TapClusters cluster_2d(std::span<const float> hi, std::span<const float> lo, int k, std::uint64_t seed,
                       int restarts) {
  if (hi.size() != lo.size() || hi.empty()) throw std::logic_error("cluster_2d: bad ranges");
  std::vector<float> x(hi.size() * 2);
  for (std::size_t c = 0; c < hi.size(); ++c) {
    x[2 * c] = hi[c];
    x[2 * c + 1] = lo[c];
  }
  const KMeansResult km = kmeans(x, 2, km_options(k, seed, restarts));
  TapClusters t;
  t.index = from_kmeans(km);
  t.labels = km.labels;
  t.inertia = km.inertia;
  t.clusters = km.k;
  return t;
}
}  // namespace

std::uint64_t cluster_seed(std::uint64_t seed, int layer, int r) {
  return (seed + static_cast<std::uint64_t>(layer)) * 5 + static_cast<std::uint64_t>(r);
}

TapClusters cluster_reorder_index(int r, const ModelConfig& m, const LayerRanges& lr, int k, int layer,
                                  std::uint64_t base_seed) {
  // The features are the plain max/min over every calibration token, as the reference clusters (the EMA is its
  // quantizer statistic only: TapRanges::cluster_range).
  constexpr RangeStat stat = RangeStat::MinMax;
  const std::uint64_t seed = cluster_seed(base_seed, layer, r);
  const std::int64_t hd = m.head_dim, group = m.heads / m.kv_heads;
  const bool llama = m.arch != Architecture::OPT;
  // The reference clusters R2 on q_proj's output before OPT's head_dim^-0.5; OPT's Q tap is after it.
  const float q_unscale = llama ? 1.0f : std::sqrt(static_cast<float>(hd));
  auto two_d = [&](Tap t) { return cluster_2d(lr.tap(t).hi(stat), lr.tap(t).lo(stat), k, seed, 8); };
  switch (r) {
    case 1: return two_d(Tap::AttnInput);
    case 4: return two_d(Tap::FfnInput);
    case 5: return two_d(Tap::FfnHidden);
    case 2: {
      // q and k jointly, per KV head, feature (q max, k max, q min, k min); LLaMA pairs (i, i + hd/2).
      const TapRanges& q = lr.tap(Tap::Q);
      const TapRanges& kr = lr.tap(Tap::K);
      return cluster_per_head(m.kv_heads, hd, llama, k, 4, seed, 8, [&](std::int64_t g, std::int64_t p, float* f) {
        float qh, ql, qh2, ql2;
        group_range(q, stat, g, group, hd, p, qh, ql);
        float kh = kr.hi(stat)[static_cast<std::size_t>(g * hd + p)];
        float kl = kr.lo(stat)[static_cast<std::size_t>(g * hd + p)];
        if (llama) {
          const std::int64_t p2 = p + hd / 2;
          group_range(q, stat, g, group, hd, p2, qh2, ql2);
          qh = std::max(qh, qh2);
          ql = std::min(ql, ql2);
          kh = std::max(kh, kr.hi(stat)[static_cast<std::size_t>(g * hd + p2)]);
          kl = std::min(kl, kr.lo(stat)[static_cast<std::size_t>(g * hd + p2)]);
        }
        f[0] = qh * q_unscale;
        f[1] = kh;
        f[2] = ql * q_unscale;
        f[3] = kl;
      });
    }
    case 3: {
      // Per KV head, feature (max, min) of the attention output over the group's query heads.
      const TapRanges& ao = lr.tap(Tap::AttnOutput);
      return cluster_per_head(m.kv_heads, hd, false, k, 2, seed, 8, [&](std::int64_t g, std::int64_t c, float* f) {
        group_range(ao, stat, g, group, hd, c, f[0], f[1]);
      });
    }
  }
  throw std::out_of_range("reorder index R" + std::to_string(r));
}

LayerReorder plan_layer_reorder(const ModelConfig& m, const LayerRanges& lr, const QuantConfig& cfg, int layer,
                                std::uint64_t seed) {
  LayerReorder r;
  auto plan = [&](int i) { return cluster_reorder_index(i, m, lr, cfg.clusters_of(layer, i), layer, seed).index; };
  // Post-LN OPT normalises after the residual add: the attention and FFN inputs are the residual stream itself,
  // so R1/R4 have no norm to fold into. They keep the original order and one cluster.
  // A serving target keeps only the reorders a Hugging Face model holds in its weights as they are (R3, R5): R1
  // and R4 would need the norm's gather, R2 of a rotary model permuted rotary frequencies (and with float
  // activations R2 orders nothing that is quantized).
  const bool serving = cfg.target != ServeTarget::None;
  if (m.pre_layer_norm && !serving) {
    r.r1 = plan(1);
    r.r4 = plan(4);
  } else {
    r.r1 = ReorderIndex::identity(m.hidden);
    r.r4 = ReorderIndex::identity(m.hidden);
  }
  if (serving) {  // one cluster per KV head, in the source order
    r.r2 = ReorderIndex::identity(m.kv_heads * m.head_dim);
    r.r2.boundaries.clear();
    for (std::int64_t g = 0; g <= m.kv_heads; ++g) r.r2.boundaries.push_back(g * m.head_dim);
  } else {
    r.r2 = plan(2);
  }
  r.r3 = plan(3);
  r.r5 = plan(5);
  r.r1.check("R1");
  r.r2.check("R2");
  r.r3.check("R3");
  r.r4.check("R4");
  r.r5.check("R5");
  return r;
}

void apply_reorder(Model& model, int layer, const LayerReorder& r) {
  const ModelConfig& m = model.config();
  DecoderLayerWeights& w = model.layer(layer);
  const std::int64_t hd = m.head_dim;
  const bool opt = m.arch == Architecture::OPT;
  auto need = [&](const ReorderIndex& idx, std::int64_t n, const char* what) {
    idx.check(what);
    if (idx.channels() != n)
      throw std::logic_error(std::string(what) + ": reorder index of " + std::to_string(idx.channels()) +
                             " channels for a width of " + std::to_string(n));
  };
  need(r.r1, m.hidden, "R1");
  need(r.r2, m.kv_dim(), "R2");
  need(r.r3, m.kv_dim(), "R3");
  need(r.r4, m.hidden, "R4");
  need(r.r5, m.intermediate, "R5");
  if (!m.pre_layer_norm && (!r.r1.is_identity() || !r.r4.is_identity()))
    throw InputError("a post-LayerNorm model (" + m.model_type + ", do_layer_norm_before = false) has no norm to "
                     "fold the R1/R4 reorder into");

  // R1: the attention norm writes its output reordered; q/k/v read it through permuted columns.
  if (!r.r1.is_identity()) {
    compose_gather(w.attn_norm, r.r1.order);
    permute_cols(w.q.weight, r.r1.order);
    permute_cols(w.k.weight, r.r1.order);
    permute_cols(w.v.weight, r.r1.order);
  }
  // R2: q and k output channels, identically within each head (QK^T is a sum over the head's channels).
  if (!r.r2.is_identity()) {
    if (!opt) {
      // Pairs must move together, and the rotary frequencies follow the pairs.
      const std::int64_t half = hd / 2;
      std::vector<std::int32_t> old = w.rope_index;
      if (old.empty()) {
        old.resize(static_cast<std::size_t>(m.kv_heads * half));
        for (std::int64_t g = 0; g < m.kv_heads; ++g)
          for (std::int64_t i = 0; i < half; ++i) old[static_cast<std::size_t>(g * half + i)] = static_cast<std::int32_t>(i);
      }
      w.rope_index.assign(old.size(), 0);
      for (std::int64_t g = 0; g < m.kv_heads; ++g)
        for (std::int64_t i = 0; i < half; ++i) {
          const std::int32_t a = r.r2.order[static_cast<std::size_t>(g * hd + i)];
          const std::int32_t b = r.r2.order[static_cast<std::size_t>(g * hd + i + half)];
          const std::int64_t la = a - g * hd;
          if (la < 0 || la >= half || b != a + half)
            throw std::logic_error("R2 of a rotary model must move channel pairs (i, i + head_dim/2) together");
          w.rope_index[static_cast<std::size_t>(g * half + i)] = old[static_cast<std::size_t>(g * half + la)];
        }
    }
    permute_linear_out(w.k, r.r2.order);
    permute_linear_out(w.q, expand_to_query_heads(r.r2.order, m.heads, m.kv_heads, hd));
  }
  // R3: v output channels within each KV head; the attention output of every query head of the group follows, so
  // out_proj / o_proj reads it through permuted columns.
  if (!r.r3.is_identity()) {
    permute_linear_out(w.v, r.r3.order);
    permute_cols(w.o.weight, expand_to_query_heads(r.r3.order, m.heads, m.kv_heads, hd));
  }
  // R4: the FFN norm writes its output reordered; fc1 (gate/up) read it through permuted columns.
  if (!r.r4.is_identity()) {
    compose_gather(w.ffn_norm, r.r4.order);
    if (opt) {
      permute_cols(w.fc1.weight, r.r4.order);
    } else {
      permute_cols(w.gate.weight, r.r4.order);
      permute_cols(w.up.weight, r.r4.order);
    }
  }
  // R5: the FFN hidden channels: fc1 (gate and up jointly) rows and biases; fc2 (down) columns.
  if (!r.r5.is_identity()) {
    if (opt) {
      permute_linear_out(w.fc1, r.r5.order);
      permute_cols(w.fc2.weight, r.r5.order);
    } else {
      permute_linear_out(w.gate, r.r5.order);
      permute_linear_out(w.up, r.r5.order);
      permute_cols(w.down.weight, r.r5.order);
    }
  }
}

std::vector<std::int64_t> tap_boundaries(const ModelConfig& m, const LayerReorder& r, Tap tap) {
  switch (tap) {
    case Tap::AttnInput: return r.r1.boundaries;
    case Tap::Q: return expand_boundaries(r.r2.boundaries, m.heads, m.kv_heads, m.head_dim);
    case Tap::K: return r.r2.boundaries;
    case Tap::V: return r.r3.boundaries;
    case Tap::AttnOutput: return expand_boundaries(r.r3.boundaries, m.heads, m.kv_heads, m.head_dim);
    case Tap::FfnInput: return r.r4.boundaries;
    case Tap::FfnHidden: return r.r5.boundaries;
  }
  return {};
}

std::vector<std::int32_t> tap_order(const ModelConfig& m, const LayerReorder& r, Tap tap) {
  switch (tap) {
    case Tap::AttnInput: return r.r1.order;
    case Tap::Q: return expand_to_query_heads(r.r2.order, m.heads, m.kv_heads, m.head_dim);
    case Tap::K: return r.r2.order;
    case Tap::V: return r.r3.order;
    case Tap::AttnOutput: return expand_to_query_heads(r.r3.order, m.heads, m.kv_heads, m.head_dim);
    case Tap::FfnInput: return r.r4.order;
    case Tap::FfnHidden: return r.r5.order;
  }
  return {};
}

}  // namespace rptq
