#pragma once
// The one kernel bench_cuda needs of its own: a read-bandwidth probe. Plain host header (safe to include from .cpp).
#include <cuda_runtime.h>

#include <cstddef>

namespace rptq::bench {

// Reads n floats of `data` once (n a multiple of 4, data 16-byte aligned) with 16-byte loads in a grid-stride
// loop and sums them per thread. A thread writes its sum to *sink only when it equals `never`, which the caller
// picks so that it does not happen: the compiler must keep every load, and nothing but the loads costs.
// Returns the launch's status (cudaGetLastError), so the caller checks it like any other CUDA call.
cudaError_t launch_read(const float* data, std::size_t n, float* sink, float never, unsigned blocks, unsigned threads,
                        cudaStream_t stream);

}  // namespace rptq::bench
