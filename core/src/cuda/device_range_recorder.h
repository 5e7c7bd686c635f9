#pragma once
// Calibration's range recording on the device, for the layer being run: per tap the running ranges of
// calibration.h's TapRanges (EMA and plain max / min over windows, and each window's own max / min) and the
// attention score ranges (one channel per head), all in one arena the host reads with one copy per layer. The
// device twin of calibration.cpp's RangeRecorder, window for window (kernels/channel_range.cuh,
// kernels/attention_scores.cuh). Built only with RPTQ_WITH_CUDA.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "device.cuh"
#include "rptq/method/calibration.h"
#include "rptq/model/model_config.h"
#include "rptq/model/tap.h"

namespace rptq {

class DeviceRangeRecorder {
 public:
  // Lays out a fresh arena for `samples` windows of a model shaped `cfg` (the old one is freed first: the caller
  // makes sure no queued work still writes it).
  void begin(const ModelConfig& cfg, std::int64_t samples);
  std::size_t arena_bytes() const { return arena_.bytes(); }

  // Folds the ranges of x [nseq * seq, cols] at tap t into the tap's running ranges, window by window; the windows
  // are first_sample .. first_sample + nseq - 1 of the calibration.
  void add_tap(Tap t, const float* x, std::int64_t nseq, std::int64_t seq, std::int64_t first_sample,
               cudaStream_t stream);
  // The same for the attention scores of the (quantized) q and k taps of nseq windows (attention_score_range of
  // calibration.cpp). scratch: 2 * nseq * heads floats of device memory.
  void add_scores(const float* q, const float* k, std::int64_t nseq, std::int64_t seq, std::int64_t first_sample,
                  float* scratch, cudaStream_t stream);

  // The ranges recorded since begin(), into lr (one copy, then a wait on `stream`, which wrote them).
  void read(LayerRanges& lr, std::int64_t samples, cudaStream_t stream);

 private:
  // One tap's running ranges and its per-sample ranges: pointers into the arena.
  struct TapArena {
    std::int64_t channels = 0;
    float *ema_max = nullptr, *ema_min = nullptr, *max = nullptr, *min = nullptr, *smax = nullptr, *smin = nullptr;
  };
  ModelConfig cfg_;
  std::int64_t samples_ = 0;
  std::vector<TapArena> taps_;  // per Tap, then the attention scores
  cuda::DeviceBuffer<float> arena_;
  std::size_t result_floats_ = 0;
  std::vector<float> host_;
};

}  // namespace rptq
