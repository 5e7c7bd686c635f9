// Calibration's device range recording; a CPU-only build has no use for it.
#ifdef RPTQ_WITH_CUDA
#include "cuda/device_range_recorder.h"

#include <cmath>
#include <stdexcept>

#include "attention_scores.cuh"
#include "channel_range.cuh"
#include "cuda_check.cuh"

namespace rptq {

void DeviceRangeRecorder::begin(const ModelConfig& cfg, std::int64_t samples) {
  cfg_ = cfg;
  std::vector<std::int64_t> channels;
  for (Tap t : kAllTaps) channels.push_back(tap_channels(cfg, t));
  channels.push_back(cfg.heads);
  std::size_t results = 0;
  for (std::size_t i = 0; i < channels.size(); ++i) {
    results += 4 * static_cast<std::size_t>(channels[i]);
    if (i < kTapCount) results += 2 * static_cast<std::size_t>(samples * channels[i]);
  }
  arena_ = cuda::DeviceBuffer<float>();  // freed before the new one is allocated
  arena_ = cuda::DeviceBuffer<float>(results);
  result_floats_ = results;
  samples_ = samples;
  taps_.assign(channels.size(), TapArena{});
  float* at = arena_.data();
  for (std::size_t i = 0; i < channels.size(); ++i) {
    TapArena& r = taps_[i];
    r.channels = channels[i];
    for (float** p : {&r.ema_max, &r.ema_min, &r.max, &r.min}) {
      *p = at;
      at += r.channels;
    }
  }
  for (std::size_t i = 0; i < kTapCount; ++i) {
    TapArena& r = taps_[i];
    for (float** p : {&r.smax, &r.smin}) {
      *p = at;
      at += samples * r.channels;
    }
  }
}

void DeviceRangeRecorder::add_tap(Tap t, const float* x, std::int64_t nseq, std::int64_t seq,
                                  std::int64_t first_sample, cudaStream_t stream) {
  TapArena& r = taps_.at(static_cast<std::size_t>(t));
  const std::int64_t cols = r.channels;
  for (std::int64_t b = 0; b < nseq; ++b) {
    // Each window's ranges in its own row of [samples, channels] (TapRanges::sample_max/min).
    float* smax = r.smax + (first_sample + b) * cols;
    float* smin = r.smin + (first_sample + b) * cols;
    cuda::channel_range(x + b * seq * cols, seq, cols, cols, smax, smin, cuda::RangeUpdate::Write, stream);
    cuda::tap_ranges_add_sample(smax, smin, r.ema_max, r.ema_min, r.max, r.min, cols, first_sample + b == 0, stream);
  }
}

void DeviceRangeRecorder::add_scores(const float* q, const float* k, std::int64_t nseq, std::int64_t seq,
                                     std::int64_t first_sample, float* scratch, cudaStream_t stream) {
  const std::int64_t heads = cfg_.heads;
  cuda::ScoreRangeShape s;
  s.batch = nseq;
  s.seq = seq;
  s.heads = heads;
  s.kv_heads = cfg_.kv_heads;
  s.head_dim = cfg_.head_dim;
  s.q_ld = cfg_.q_dim();
  s.k_ld = cfg_.kv_dim();
  s.window = cfg_.sliding_window;
  // OPT's Q tap is already scaled by head_dim^-0.5; LLaMA's attention scales the product (calibration.cpp).
  s.scale = cfg_.arch == Architecture::OPT ? 1.0f : 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));
  float* hmax = scratch;
  float* hmin = scratch + nseq * heads;
  cuda::attention_score_range(q, k, hmax, hmin, s, stream);
  TapArena& r = taps_.at(kTapCount);
  for (std::int64_t b = 0; b < nseq; ++b)
    cuda::tap_ranges_add_sample(hmax + b * heads, hmin + b * heads, r.ema_max, r.ema_min, r.max, r.min, heads,
                                first_sample + b == 0, stream);
}

void DeviceRangeRecorder::read(LayerRanges& lr, std::int64_t samples, cudaStream_t stream) {
  if (samples != samples_) throw std::logic_error("DeviceRangeRecorder::read: the arena holds another sample count");
  host_.resize(result_floats_);
  RPTQ_CUDA_CHECK(cudaMemcpyAsync(host_.data(), arena_.data(), result_floats_ * sizeof(float), cudaMemcpyDeviceToHost,
                                  stream));
  RPTQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  const float* at = host_.data();
  for (std::size_t i = 0; i < taps_.size(); ++i) {
    const auto c = static_cast<std::size_t>(taps_[i].channels);
    TapRanges& tr = i < kTapCount ? lr.taps[i] : lr.scores;
    for (std::vector<float>* v : {&tr.ema_max, &tr.ema_min, &tr.max, &tr.min}) {
      v->assign(at, at + c);
      at += c;
    }
    tr.samples = samples;
  }
  for (std::size_t i = 0; i < kTapCount; ++i) {
    const auto n = static_cast<std::size_t>(samples * taps_[i].channels);
    TapRanges& tr = lr.taps[i];
    tr.sample_max.assign(at, at + n);
    at += n;
    tr.sample_min.assign(at, at + n);
    at += n;
  }
}

}  // namespace rptq
#endif  // RPTQ_WITH_CUDA
