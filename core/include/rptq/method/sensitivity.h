#pragma once
// Which activation hurts: every quantized tap of every decoder layer (and each layer's softmax probabilities) is
// quantized on its own, everything else left in full precision, and compared with the FP model on the same windows
// (KL, perplexity, top-1 agreement), as a layer x tap table with per-layer and per-tap sums.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "rptq/eval/compare.h"
#include "rptq/method/quantize.h"

namespace rptq {

struct SensitivityCell {
  double kl = 0;              // mean KL(P_fp || P_probe) per predicted token, nats
  double ppl = 0;             // perplexity with only this (layer, tap) quantized
  double top1_agreement = 0;  // share of positions whose top-1 token is the FP model's
};

struct SensitivityResult {
  std::vector<std::string> taps;       // columns: the quantized taps' names (tap_name), then "softmax" when quantized
  int layers = 0;
  std::vector<SensitivityCell> cells;  // [layers][taps], row-major
  double ppl_fp = 0;
  std::int64_t windows = 0, seqlen = 0, positions = 0;
  double seconds = 0;

  const SensitivityCell& cell(int layer, std::size_t tap) const {
    return cells.at(static_cast<std::size_t>(layer) * taps.size() + tap);
  }
  // Sums over a layer's taps / over a tap's layers: KL, perplexity increase over the FP model (ppl - ppl_fp), and
  // the share of positions whose top-1 changed (1 - agreement). Each probe alone; the sums rank, they do not add up
  // to the whole model's loss.
  SensitivityCell layer_sum(int layer) const;
  SensitivityCell tap_sum(std::size_t tap) const;
};

// The quantized model a probe needs: the setting's activation quantizers (bits, clusters, grid, ranges) built from
// the statistics file's FP ranges (not sequential: every probe sees FP activations everywhere else) with FP weights,
// however the setting quantizes weights. `model` is consumed.
std::unique_ptr<QuantizedModel> quantize_for_sensitivity(std::unique_ptr<Model> model, const ChannelStats& stats,
                                                         QuantConfig cfg, RangeStat stat, std::uint64_t kmeans_seed);

// Runs the probes over the evaluation windows of `ids` (the perplexity convention of opts; opts.progress is not
// used). q's model gives both the FP reference (no quantizer on) and every probe; the FP hidden states are kept per
// layer so a probe of layer l runs layers l.. only. progress(done, total) counts (window, probe) steps; returning
// false cancels (throws Cancelled). Throws InputError when the setting quantizes no activation.
SensitivityResult activation_sensitivity(QuantizedModel& q, std::span<const std::int32_t> ids,
                                         const PerplexityOptions& opts,
                                         const std::function<bool(std::int64_t, std::int64_t)>& progress = {});

}  // namespace rptq
