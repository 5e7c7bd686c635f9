#pragma once
// Calibration taps on the GPU: each channel's max and min over the rows of an activation, and the folding of one
// sample's ranges into the running statistics of rptq::TapRanges (EMA and plain min/max).
// Activations are row-major float32 [rows, cols] with row stride ld >= cols; the range arrays are [cols] float32.
// All results are exact (max / min and the EMA's separately rounded products and sum reproduce the CPU's bits),
// with the CPU's NaN rule: a NaN activation is never chosen as a maximum or a minimum.
// Asynchronous on `stream`; shapes are checked (std::invalid_argument) before any CUDA call.
// Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cstdint>

#include "host_device.cuh"

namespace rptq::cuda {

enum class RangeUpdate {
  Write,  // mx, mn = this activation's per-channel max, min (rptq::channel_max_min; -inf / +inf when rows == 0)
  Merge,  // mx = max(mx, this max), mn = min(mn, this min): a running range over several activations
};

void channel_range(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, float* mx, float* mn,
                   RangeUpdate update = RangeUpdate::Write, cudaStream_t stream = 0);

// TapRanges::add_sample on device arrays of `channels` floats: with first_sample the running arrays are set to the
// sample; otherwise ema = 0.99 ema + 0.01 sample and max / min merge with std::max / std::min.
void tap_ranges_add_sample(const float* sample_max, const float* sample_min, float* ema_max, float* ema_min,
                           float* max, float* min, std::int64_t channels, bool first_sample,
                           cudaStream_t stream = 0);

// One channel's EMA step, rounded as calibration.cpp computes it (0.99f * v + 0.01f * s, no FMA).
RPTQ_HD float tap_ema(float running, float sample) {
  return hd::add(hd::mul(0.99f, running), hd::mul(0.01f, sample));
}

}  // namespace rptq::cuda
