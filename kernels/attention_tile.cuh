#pragma once
// The tiled attention kernels' inner step, shared by attention.cu and attention_scores.cu. Device code: include from
// .cu files only.
#ifndef __CUDACC__
#error "attention_tile.cuh holds device code; include it from .cu files only"
#endif
#include <cuda_runtime.h>

#include <cstdint>

#include "attention.cuh"

namespace rptq::cuda {

// The keys each of a warp's Q queries w0 .. w0 + Q - 1 sees (attention_keys_of_query with `past` cached keys), as
// [lo[t], hi[t]] relative to `keys_begin`: they fit an int (checked on the host), which saves 64-bit registers.
template <int Q>
__device__ __forceinline__ void warp_query_keys(std::int64_t past, std::int64_t w0, std::int64_t window,
                                                std::int64_t keys_begin, int (&lo)[Q], int (&hi)[Q]) {
#pragma unroll
  for (int t = 0; t < Q; ++t) {
    std::int64_t a = 0, z = 0;
    attention_keys_of_query(past, w0 + t, window, &a, &z);
    lo[t] = static_cast<int>(a - keys_begin);
    hi[t] = static_cast<int>(z - keys_begin);
  }
}

// Lane `lane` of a warp computes the dot products of key row `lane` of the shared key tile `ks` (rows padded to
// hd + 1 floats, so the 32 lanes reading column d of 32 rows hit 32 different banks) with the warp's Q queries at
// `qrow` ([Q][hd] in shared memory; each read a broadcast), summed over d in order.
template <int Q>
__device__ __forceinline__ void key_tile_scores(const float* ks, const float* qrow, int lane, int hd, float (&score)[Q]) {
#pragma unroll
  for (int t = 0; t < Q; ++t) score[t] = 0.0f;
  const float* krow = ks + lane * (hd + 1);
#pragma unroll 4
  for (int d = 0; d < hd; ++d) {
    const float kd = krow[d];
#pragma unroll
    for (int t = 0; t < Q; ++t) score[t] += qrow[t * hd + d] * kd;
  }
}

}  // namespace rptq::cuda
