// The read-bandwidth probe of bench_cuda (bench_cuda_kernels.h): float4 loads, one pass, no stores. Together with a
// device-to-device cudaMemcpy it gives the two memory ceilings the packed GEMV is reported against (the GEMV is
// almost all reads, so the read probe is its fairer ceiling; the copy is the usual "achievable bandwidth").
#include "bench_cuda_kernels.h"

namespace rptq::bench {

namespace {

__global__ void read_kernel(const float4* __restrict__ data, std::size_t n4, float* sink, float never) {
  float acc = 0.0f;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 v = data[i];
    acc += (v.x + v.y) + (v.z + v.w);
  }
  if (acc == never) *sink = acc;
}

}  // namespace

cudaError_t launch_read(const float* data, std::size_t n, float* sink, float never, unsigned blocks, unsigned threads,
                        cudaStream_t stream) {
  if (n % 4 != 0 || reinterpret_cast<std::size_t>(data) % 16 != 0 || blocks == 0 || threads == 0)
    return cudaErrorInvalidValue;
  read_kernel<<<blocks, threads, 0, stream>>>(reinterpret_cast<const float4*>(data), n / 4, sink, never);
  return cudaGetLastError();
}

}  // namespace rptq::bench
