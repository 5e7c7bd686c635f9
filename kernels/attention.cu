// Causal attention, flash-attention style in float32: one block per (query tile of 16, head, sequence). The block
// streams the keys its queries see through shared memory in tiles of 32 and keeps, per query, a running maximum,
// a running sum and a [head_dim] output accumulator (online softmax), so no [tq, keys] score matrix exists
// anywhere. Each of the 4 warps owns 4 queries:
//   scores: lane j computes the dot product of key j0 + j with the warp's 4 queries (K rows padded to head_dim + 1
//           floats, so the 32 lanes reading column d of 32 rows hit 32 different banks; q rows are broadcasts);
//   P V:    lane owns channels lane, lane + 32, ... of the output; the 32 probabilities of the tile are broadcast
//           by shuffles, and V rows are read across the lanes, conflict free.
// With quantize_probs the probabilities must be the CPU's round(p * 255) / 255 of the *normalised* p, which needs
// the row's final maximum and sum first: a first pass over the keys computes them (online), a second recomputes
// the same scores and accumulates the quantized probabilities times V, unnormalised as the CPU does.
// head_dim is a template bound (32, 64, 128, 256) so the accumulators are registers. __launch_bounds__(128, 4):
// with the thread count alone ptxas spilled a few registers on sm_80 / sm_89; with the minimum of 4 blocks per
// multiprocessor it uses 88-121 registers and no stack on all three targets.
//
// Numerics: scores are float dot products in a different order than the CPU's sgemm, expf is CUDA's (2 ulp) where
// the CPU has its own polynomial (2e-7), and the running rescales add a rounding per tile: agreement to ~1e-6
// relative, except with quantize_probs, where a probability within that distance of a rounding boundary of the
// 8-bit grid may round to the neighbouring level (a change of 1/255 times one V row).
#include "attention.cuh"

#include <string>

#include "attention_tile.cuh"
#include "cuda_check.cuh"
#include "reduce.cuh"

namespace rptq::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kQueriesPerWarp = static_cast<int>(kAttentionQueryTile) / kWarps;
constexpr int kKeyTile = static_cast<int>(kAttentionKeyTile);
static_assert(kKeyTile == kWarpSize, "one key per lane");

struct Params {
  std::int64_t tq, past, heads, group, head_dim, kv_batch_stride, kv_ld, window;
  float scale;
  bool quantize;
};

template <int kChunks>
__global__ void __launch_bounds__(kThreads, 4) attention_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                                             const float* __restrict__ v, float* __restrict__ out,
                                                             Params p) {
  extern __shared__ float shared[];
  const int hd = static_cast<int>(p.head_dim);
  float* qs = shared;                               // [query tile][hd]
  float* ks = qs + kAttentionQueryTile * hd;        // [key tile][hd + 1]
  float* vs = ks + kKeyTile * (hd + 1);             // [key tile][hd]
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const std::int64_t b = blockIdx.z, h = blockIdx.y;
  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * kAttentionQueryTile;
  const std::int64_t i1 = i0 + kAttentionQueryTile < p.tq ? i0 + kAttentionQueryTile : p.tq;
  const std::int64_t q_ld = p.heads * p.head_dim;
  const KeyRange keys = attention_keys_of_queries(p.past, i0, i1, p.window);

  for (int e = threadIdx.x; e < kAttentionQueryTile * hd; e += kThreads) {
    const std::int64_t i = i0 + e / hd;
    qs[e] = i < i1 ? q[(b * p.tq + i) * q_ld + h * hd + e % hd] : 0.0f;
  }

  // This warp's queries w0 .. w0 + nq - 1 and the keys they see. Key indices from here on are relative to
  // keys.begin and fit an int (checked on the host): fewer 64-bit registers in the loops.
  const std::int64_t w0 = i0 + warp * kQueriesPerWarp;
  const int nq = static_cast<int>(w0 >= i1 ? 0 : (i1 - w0 < kQueriesPerWarp ? i1 - w0 : kQueriesPerWarp));
  const int nkeys = static_cast<int>(keys.end - keys.begin);
  int lo[kQueriesPerWarp], hi[kQueriesPerWarp];
  warp_query_keys(p.past, w0, p.window, keys.begin, lo, hi);
  const int warp_lo = lo[0];
  const int warp_hi = nq > 0 ? static_cast<int>(p.past + w0 + nq - 1 - keys.begin) : -1;  // hi of its last query

  float m[kQueriesPerWarp], l[kQueriesPerWarp], inv[kQueriesPerWarp], acc[kQueriesPerWarp][kChunks];
#pragma unroll
  for (int t = 0; t < kQueriesPerWarp; ++t) {
    m[t] = -INFINITY;
    l[t] = 0.0f;
    inv[t] = 1.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) acc[t][c] = 0.0f;
  }

  const std::int64_t kv_offset = b * p.kv_batch_stride + (h / p.group) * p.head_dim + keys.begin * p.kv_ld;
  const float* kb = k + kv_offset;
  const float* vb = v + kv_offset;
  const int passes = p.quantize ? 2 : 1;
  for (int pass = 0; pass < passes; ++pass) {
    const bool statistics = pass == 0;             // m and l move in this pass
    const bool multiply_v = pass == passes - 1;    // P V is accumulated in this pass
    for (int j0 = 0; j0 < nkeys; j0 += kKeyTile) {
      __syncthreads();  // the previous tile is consumed (and, before the first, the q tile is written)
      for (int e = threadIdx.x; e < kKeyTile * hd; e += kThreads) {
        const int r = e / hd, c = e % hd;
        const int j = j0 + r;
        const bool valid = j < nkeys;
        const std::int64_t at = static_cast<std::int64_t>(j) * p.kv_ld + c;
        ks[r * (hd + 1) + c] = valid ? kb[at] : 0.0f;
        if (multiply_v) vs[e] = valid ? vb[at] : 0.0f;  // zeros: 0 * garbage could be NaN
      }
      __syncthreads();
      if (nq == 0 || j0 > warp_hi || j0 + kKeyTile - 1 < warp_lo) continue;  // warp-uniform

      const int j = j0 + lane;
      float score[kQueriesPerWarp];
      key_tile_scores(ks, qs + warp * kQueriesPerWarp * hd, lane, hd, score);

      float prob[kQueriesPerWarp];
#pragma unroll
      for (int t = 0; t < kQueriesPerWarp; ++t) {
        prob[t] = 0.0f;
        if (t >= nq) continue;  // warp-uniform
        const float s = j >= lo[t] && j <= hi[t] ? score[t] * p.scale : -INFINITY;
        if (statistics) {
          const float factor = online_softmax_rescale(m[t], warp_max(s));
          const float e = softmax_weight(s, m[t]);
          l[t] = l[t] * factor + warp_sum(e);
          if (multiply_v) {
#pragma unroll
            for (int c = 0; c < kChunks; ++c) acc[t][c] *= factor;
          }
          prob[t] = e;
        } else {
          prob[t] = s == -INFINITY ? 0.0f : quantized_probability(softmax_weight(s, m[t]), inv[t]);
        }
      }
      if (!multiply_v) continue;
      const int tile_keys = nkeys - j0 < kKeyTile ? nkeys - j0 : kKeyTile;
      for (int jj = 0; jj < tile_keys; ++jj) {
        float vv[kChunks];
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          const int d = lane + c * kWarpSize;
          vv[c] = d < hd ? vs[jj * hd + d] : 0.0f;
        }
#pragma unroll
        for (int t = 0; t < kQueriesPerWarp; ++t) {
          const float pj = __shfl_sync(kFullMask, prob[t], jj);
#pragma unroll
          for (int c = 0; c < kChunks; ++c) acc[t][c] += pj * vv[c];
        }
      }
    }
    if (statistics && p.quantize) {
#pragma unroll
      for (int t = 0; t < kQueriesPerWarp; ++t) inv[t] = hd::div(1.0f, l[t]);
    }
  }

#pragma unroll
  for (int t = 0; t < kQueriesPerWarp; ++t) {
    if (t >= nq) continue;
    // Normalised by the reciprocal, as the CPU scales its output rows; quantized probabilities are used as they are.
    const float f = p.quantize ? 1.0f : hd::div(1.0f, l[t]);
    float* orow = out + (b * p.tq + w0 + t) * q_ld + h * hd;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int d = lane + c * kWarpSize;
      if (d < hd) orow[d] = acc[t][c] * f;
    }
  }
}

std::size_t shared_bytes(std::int64_t hd) {
  return static_cast<std::size_t>(kAttentionQueryTile * hd + kKeyTile * (hd + 1) + kKeyTile * hd) * sizeof(float);
}

template <int kChunks>
void launch(const float* q, const float* k, const float* v, float* out, const AttentionShape& s, cudaStream_t stream) {
  const Params p{s.tq, s.past, s.heads, s.heads / s.kv_heads, s.head_dim, s.kv_batch_stride, s.kv_ld, s.window,
                 s.scale, s.quantize_probs};
  const std::size_t shared = shared_bytes(s.head_dim);
  const void* kernel = reinterpret_cast<const void*>(attention_kernel<kChunks>);
  if (shared > 48 * 1024) {
    // Past the 48 KiB every block may use, the kernel opts in to the device's larger limit (99 KiB on sm_89, more
    // on sm_80 / sm_90); only head_dim > 128 gets here.
    int device = 0, optin = 0;
    RPTQ_CUDA_CHECK(cudaGetDevice(&device));
    RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (shared > static_cast<std::size_t>(optin))
      throw std::invalid_argument("rptq::cuda::attention: head_dim " + std::to_string(s.head_dim) + " needs " +
                                  std::to_string(shared) + " bytes of shared memory; this GPU allows " +
                                  std::to_string(optin));
    RPTQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(shared)));
  }
  const dim3 grid(static_cast<unsigned>((s.tq + kAttentionQueryTile - 1) / kAttentionQueryTile),
                  static_cast<unsigned>(s.heads), static_cast<unsigned>(s.batch));
  attention_kernel<kChunks><<<grid, kThreads, shared, stream>>>(q, k, v, out, p);
  RPTQ_CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention(const float* q, const float* k, const float* v, float* out, const AttentionShape& s,
               cudaStream_t stream) {
  const char* op = "attention";
  require(s.batch >= 0 && s.tq >= 0 && s.past >= 0 && s.window >= 0, op,
          "negative batch, tq, past or window (batch " + std::to_string(s.batch) + ", tq " + std::to_string(s.tq) +
              ", past " + std::to_string(s.past) + ", window " + std::to_string(s.window) + ")");
  require(s.heads >= 1 && s.kv_heads >= 1 && s.heads % s.kv_heads == 0, op,
          std::to_string(s.heads) + " query heads cannot share " + std::to_string(s.kv_heads) + " kv heads");
  require(s.head_dim >= 1 && s.head_dim <= kAttentionMaxHeadDim, op,
          "head_dim must be 1.." + std::to_string(kAttentionMaxHeadDim) + "; got " + std::to_string(s.head_dim));
  require(s.kv_ld >= s.kv_heads * s.head_dim, op,
          "kv row stride " + std::to_string(s.kv_ld) + " is less than kv_heads * head_dim = " +
              std::to_string(s.kv_heads * s.head_dim));
  require(s.kv_batch_stride >= 0, op, "negative kv_batch_stride");
  require(s.heads <= 65535 && s.batch <= 65535, op, "more than 65535 heads or sequences in one launch");
  require_int(op, (s.tq + kAttentionQueryTile - 1) / kAttentionQueryTile, "query tiles");
  require_int(op, s.past + s.tq, "past + tq keys");
  if (s.batch == 0 || s.tq == 0) return;
  require_data(op, q, "q");
  require_data(op, k, "k");
  require_data(op, v, "v");
  require_data(op, out, "out");
  if (s.head_dim <= 32) return launch<1>(q, k, v, out, s, stream);
  if (s.head_dim <= 64) return launch<2>(q, k, v, out, s, stream);
  if (s.head_dim <= 128) return launch<4>(q, k, v, out, s, stream);
  return launch<8>(q, k, v, out, s, stream);
}

}  // namespace rptq::cuda
