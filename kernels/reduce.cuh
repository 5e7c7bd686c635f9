#pragma once
// Warp and block reductions shared by the kernels. Device code: include from .cu files only.
#ifndef __CUDACC__
#error "reduce.cuh holds device code; include it from .cu files only"
#endif
#include <cuda_runtime.h>

#include "host_device.cuh"

namespace rptq::cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// Max / min with the CPU's NaN rule (a NaN is never chosen over a number); -inf / +inf are the identities.
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v = hd::max(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

__device__ __forceinline__ float warp_min(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v = hd::min(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Block-wide reductions, returned to every thread. scratch holds one value per warp (kWarpSize entries suffice for
// any block); blockDim.x is a multiple of 32. The closing barrier lets the caller reuse scratch at once.
struct WarpMaxOp {
  __device__ float operator()(float v) const { return warp_max(v); }
};
struct WarpMinOp {
  __device__ float operator()(float v) const { return warp_min(v); }
};
struct WarpSumOp {
  __device__ float operator()(float v) const { return warp_sum(v); }
  __device__ double operator()(double v) const { return warp_sum(v); }
};

template <typename T, typename WarpOp>
__device__ __forceinline__ T block_reduce(T v, T identity, T* scratch, WarpOp op) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  v = op(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / kWarpSize) ? scratch[lane] : identity;
  v = op(v);
  __syncthreads();
  return v;
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  return block_reduce(v, -INFINITY, scratch, WarpMaxOp{});
}
__device__ __forceinline__ double block_sum(double v, double* scratch) {
  return block_reduce(v, 0.0, scratch, WarpSumOp{});
}

// atomicMax / atomicMin on floats with the CPU's comparison: x replaces the stored value only when x > it
// (x < it), so a NaN never lands and ties keep what is stored. Compare-and-swap loops; they spin only while the
// value actually moves, which in a reduction over many rows is rare.
__device__ __forceinline__ void atomic_max_float(float* address, float x) {
  int* word = reinterpret_cast<int*>(address);
  int old = *reinterpret_cast<volatile int*>(word);
  while (x > __int_as_float(old)) {
    const int seen = atomicCAS(word, old, __float_as_int(x));
    if (seen == old) break;
    old = seen;
  }
}

__device__ __forceinline__ void atomic_min_float(float* address, float x) {
  int* word = reinterpret_cast<int*>(address);
  int old = *reinterpret_cast<volatile int*>(word);
  while (x < __int_as_float(old)) {
    const int seen = atomicCAS(word, old, __float_as_int(x));
    if (seen == old) break;
    old = seen;
  }
}

}  // namespace rptq::cuda
