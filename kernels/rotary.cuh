#pragma once
// Rotary position embedding on the GPU: the CUDA twin of rptq::ops::rotary (Hugging Face's rotate-half layout, in
// place on x[rows, heads * head_dim], device pointers). Channel i and i + head_dim/2 of each head rotate together
// by positions[r] * theta^(-2i/head_dim); with freq_index ([heads / group, head_dim / 2] int32, RPTQ's R2 pair
// reorder) the pair at i in head h rotates with the frequency of original pair freq_index[(h / group) * half + i].
// freq_index entries must lie in [0, head_dim / 2) (the reorder plan guarantees it; a kernel cannot throw).
// positions is a device array of rows int64 absolute positions. An odd head_dim leaves its last channel as is,
// as the CPU does. Asynchronous on `stream`; shapes are checked (std::invalid_argument) before any CUDA call.
// Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "host_device.cuh"

namespace rptq::cuda {

void rotary(float* x, std::int64_t rows, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
            float theta, const std::int32_t* freq_index = nullptr, std::int64_t group = 1, cudaStream_t stream = 0);

// The index math and angle of the kernel, shared with host tests.
// Inverse frequency of pair i: float32 of theta^(-2i/d) computed in double, as the CPU (and Hugging Face) does.
RPTQ_HD float rotary_inv_freq(std::int64_t i, std::int64_t head_dim, float theta) {
  return static_cast<float>(1.0 / pow(static_cast<double>(theta), (2.0 * static_cast<double>(i)) /
                                                                       static_cast<double>(head_dim)));
}
// Angle of pair i at `position`: the float32 product, as Hugging Face computes its freqs.
RPTQ_HD float rotary_angle(std::int64_t position, float inv_freq) {
  return hd::mul(static_cast<float>(position), inv_freq);
}
// The original pair whose frequency the pair at (head h, index i) uses.
RPTQ_HD std::int64_t rotary_frequency_of(const std::int32_t* freq_index, std::int64_t h, std::int64_t i,
                                         std::int64_t half, std::int64_t group) {
  return freq_index ? freq_index[(h / group) * half + i] : i;
}
// One pair rotated: (a, b) -> (a c - b s, b c + a s), each product rounded, as the CPU does.
RPTQ_HD void rotary_rotate(float& a, float& b, float c, float s) {
  const float na = hd::sub(hd::mul(a, c), hd::mul(b, s));
  const float nb = hd::add(hd::mul(b, c), hd::mul(a, s));
  a = na;
  b = nb;
}

}  // namespace rptq::cuda
