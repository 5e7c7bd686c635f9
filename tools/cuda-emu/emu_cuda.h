// Host emulation of the CUDA kernel subset the kernels use: compiled into patched copies of kernels/*.cu with g++.
// Each block runs its threads as cooperative fibers (ucontext) in one OS thread; __syncthreads, warp shuffles and
// __syncthreads_or are collectives that wait for every live thread of the block / warp, and a wait that can never
// complete (divergent barrier) aborts with a report. Dynamic shared memory is poisoned (0xFF bytes = NaN) per block.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#undef __shared__
#define __shared__ static
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __forceinline__
#define __forceinline__ inline
#undef __launch_bounds__
#define __launch_bounds__(...)

using std::isfinite;

extern uint3 emu_threadIdx, emu_blockIdx;
extern dim3 emu_blockDim, emu_gridDim;
#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim

namespace emu {
void* dynamic_shared();
void syncthreads();
int syncthreads_or(int pred);
// Deposits v for this lane and waits for the warp; returns the deposit of lane src.
std::uint64_t warp_exchange(std::uint64_t v, int src);
int lane_id();
void run(std::function<void()> body, dim3 grid, dim3 block, std::size_t shared, bool fibers, const char* name);

template <typename T>
std::uint64_t to_bits(T v) {
  std::uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(std::uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

template <typename... P, typename... A>
void launch_impl(bool fibers, const char* name, void (*k)(P...), dim3 grid, dim3 block, std::size_t shared,
                 cudaStream_t, A&&... a) {
  auto args = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(a)...);
  run([k, args] { std::apply(k, *args); }, grid, block, shared, fibers, name);
}
}  // namespace emu

#define EMU_LAUNCH(fibers, kernel, ...) emu::launch_impl(fibers, #kernel, kernel, __VA_ARGS__)

inline void __syncthreads() { emu::syncthreads(); }
inline int __syncthreads_or(int p) { return emu::syncthreads_or(p); }
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask) {
  return emu::from_bits<T>(emu::warp_exchange(emu::to_bits(v), emu::lane_id() ^ mask));
}
template <typename T>
inline T __shfl_sync(unsigned, T v, int src) {
  return emu::from_bits<T>(emu::warp_exchange(emu::to_bits(v), src));
}
inline int atomicCAS(int* p, int compare, int value) {
  const int old = *p;
  if (old == compare) *p = value;
  return old;
}
inline unsigned atomicMin(unsigned* p, unsigned v) {
  const unsigned old = *p;
  if (v < old) *p = v;
  return old;
}
inline int __float_as_int(float f) { return emu::from_bits<int>(emu::to_bits(f)); }
inline float __int_as_float(int i) { return emu::from_bits<float>(emu::to_bits(i)); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
