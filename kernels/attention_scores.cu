// Attention-score ranges, tiled as kernels/attention.cu: one block per (query tile of 32, head, sequence) streams
// the keys its queries see through shared memory in tiles of 32, so no [seq, seq] score matrix exists anywhere
// (calibration windows are 2048 tokens: one head's square would be 16 MiB, the batch's gigabytes). Each of the 4
// warps owns 8 queries; lane j computes the dot products of key j0 + j with them (K rows padded to head_dim + 1
// floats, so the 32 lanes reading column d of 32 rows hit 32 different banks; q rows are broadcasts) and keeps a
// running max / min of the scores its mask admits in registers. The block reduces them (shuffles, then shared
// memory) and merges them into the (sequence, head) entry with the compare-and-swap max / min of reduce.cuh, which
// moves a value only when it improves: the CPU's comparison, exact in any order of blocks.
// Twice the queries per warp of the attention kernel: nothing but the dot products is computed here, so the
// registers the output accumulators took there hold more queries, and each key tile loaded is reused by more.
#include "attention_scores.cuh"

#include <string>

#include "attention.cuh"
#include "attention_tile.cuh"
#include "cuda_check.cuh"
#include "reduce.cuh"

namespace rptq::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kQueriesPerWarp = 8;
constexpr int kQueryTile = kWarps * kQueriesPerWarp;
constexpr int kKeyTile = kWarpSize;  // one key per lane

struct Params {
  std::int64_t seq, heads, group, head_dim, q_ld, k_ld, window;
  float scale;
};

__global__ void range_fill_kernel(float* mx, float* mn, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    mx[i] = -INFINITY;
    mn[i] = INFINITY;
  }
}

__global__ void __launch_bounds__(kThreads) score_range_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                                               float* mx, float* mn, Params p) {
  extern __shared__ float shared[];
  __shared__ float block_hi[kWarps], block_lo[kWarps];
  const int hd = static_cast<int>(p.head_dim);
  float* qs = shared;                   // [query tile][hd]
  float* ks = qs + kQueryTile * hd;     // [key tile][hd + 1]
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const std::int64_t b = blockIdx.z, h = blockIdx.y;
  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * kQueryTile;
  const std::int64_t i1 = i0 + kQueryTile < p.seq ? i0 + kQueryTile : p.seq;
  const KeyRange keys = attention_keys_of_queries(0, i0, i1, p.window);

  for (int e = threadIdx.x; e < kQueryTile * hd; e += kThreads) {
    const std::int64_t i = i0 + e / hd;
    qs[e] = i < i1 ? q[(b * p.seq + i) * p.q_ld + h * hd + e % hd] : 0.0f;
  }

  // This warp's queries w0 .. w0 + nq - 1 and the keys each sees, relative to keys.begin (they fit an int: checked
  // on the host).
  const std::int64_t w0 = i0 + warp * kQueriesPerWarp;
  const int nq = static_cast<int>(w0 >= i1 ? 0 : (i1 - w0 < kQueriesPerWarp ? i1 - w0 : kQueriesPerWarp));
  const int nkeys = static_cast<int>(keys.end - keys.begin);
  int lo[kQueriesPerWarp], hi[kQueriesPerWarp];
  warp_query_keys(0, w0, p.window, keys.begin, lo, hi);
  const int warp_lo = lo[0];
  const int warp_hi = nq > 0 ? hi[nq - 1] : -1;

  const float* kb = k + (b * p.seq + keys.begin) * p.k_ld + (h / p.group) * p.head_dim;
  float top = -INFINITY, bottom = INFINITY;
  for (int j0 = 0; j0 < nkeys; j0 += kKeyTile) {
    __syncthreads();  // the previous tile is consumed (and, before the first, the q tile is written)
    for (int e = threadIdx.x; e < kKeyTile * hd; e += kThreads) {
      const int r = e / hd, c = e % hd;
      const int j = j0 + r;
      ks[r * (hd + 1) + c] = j < nkeys ? kb[static_cast<std::int64_t>(j) * p.k_ld + c] : 0.0f;
    }
    __syncthreads();
    if (nq == 0 || j0 > warp_hi || j0 + kKeyTile - 1 < warp_lo) continue;  // warp-uniform

    const int j = j0 + lane;
    float score[kQueriesPerWarp];
    key_tile_scores(ks, qs + warp * kQueriesPerWarp * hd, lane, hd, score);
#pragma unroll
    for (int t = 0; t < kQueriesPerWarp; ++t) {
      if (t >= nq || j < lo[t] || j > hi[t]) continue;  // j <= hi[t] < nkeys: a real key
      const float s = score[t] * p.scale;
      top = s > top ? s : top;  // attention_score_range's comparisons: a NaN never lands
      bottom = s < bottom ? s : bottom;
    }
  }

  top = warp_max(top);
  bottom = warp_min(bottom);
  if (lane == 0) {
    block_hi[warp] = top;
    block_lo[warp] = bottom;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;  // lane 0 of warp 0: top and bottom are block_hi[0], block_lo[0]
#pragma unroll
  for (int w = 1; w < kWarps; ++w) {
    top = hd::max(top, block_hi[w]);
    bottom = hd::min(bottom, block_lo[w]);
  }
  atomic_max_float(mx + b * p.heads + h, top);
  atomic_min_float(mn + b * p.heads + h, bottom);
}

std::size_t shared_bytes(std::int64_t hd) {
  return static_cast<std::size_t>(kQueryTile * hd + kKeyTile * (hd + 1)) * sizeof(float);
}

}  // namespace

void attention_score_range(const float* q, const float* k, float* mx, float* mn, const ScoreRangeShape& s,
                           cudaStream_t stream) {
  const char* op = "attention_score_range";
  require(s.batch >= 0 && s.seq >= 0 && s.window >= 0, op,
          "negative batch, seq or window (batch " + std::to_string(s.batch) + ", seq " + std::to_string(s.seq) +
              ", window " + std::to_string(s.window) + ")");
  require(s.heads >= 1 && s.kv_heads >= 1 && s.heads % s.kv_heads == 0, op,
          std::to_string(s.heads) + " query heads cannot share " + std::to_string(s.kv_heads) + " kv heads");
  require(s.head_dim >= 1 && s.head_dim <= kScoreRangeMaxHeadDim, op,
          "head_dim must be 1.." + std::to_string(kScoreRangeMaxHeadDim) + "; got " + std::to_string(s.head_dim));
  require_ld(op, s.q_ld, s.heads * s.head_dim);
  require_ld(op, s.k_ld, s.kv_heads * s.head_dim);
  require(s.heads <= 65535 && s.batch <= 65535, op, "more than 65535 heads or sequences in one launch");
  require_int(op, (s.seq + kQueryTile - 1) / kQueryTile, "query tiles");
  require_int(op, s.seq, "seq keys");
  if (s.batch == 0) return;
  require_data(op, mx, "max");
  require_data(op, mn, "min");
  const std::int64_t n = s.batch * s.heads;
  range_fill_kernel<<<grid_for(n, 256), 256, 0, stream>>>(mx, mn, n);
  RPTQ_CUDA_CHECK_LAUNCH();
  if (s.seq == 0) return;
  require_data(op, q, "q");
  require_data(op, k, "k");

  const Params p{s.seq, s.heads, s.heads / s.kv_heads, s.head_dim, s.q_ld, s.k_ld, s.window, s.scale};
  const std::size_t shared = shared_bytes(s.head_dim);
  if (shared > 48 * 1024) {
    // Past the 48 KiB every block may use, opt in to the device's larger limit (only head_dim > 191 gets here).
    int device = 0, optin = 0;
    RPTQ_CUDA_CHECK(cudaGetDevice(&device));
    RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (shared > static_cast<std::size_t>(optin))
      throw std::invalid_argument("rptq::cuda::attention_score_range: head_dim " + std::to_string(s.head_dim) +
                                  " needs " + std::to_string(shared) + " bytes of shared memory; this GPU allows " +
                                  std::to_string(optin));
    RPTQ_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(score_range_kernel),
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
  }
  const dim3 grid(static_cast<unsigned>((s.seq + kQueryTile - 1) / kQueryTile), static_cast<unsigned>(s.heads),
                  static_cast<unsigned>(s.batch));
  score_range_kernel<<<grid, kThreads, shared, stream>>>(q, k, mx, mn, p);
  RPTQ_CUDA_CHECK_LAUNCH();
}

}  // namespace rptq::cuda
