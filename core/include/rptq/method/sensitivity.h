#pragma once
// Which activation hurts: every quantized tap of every decoder layer (and each layer's softmax probabilities) is
// quantized on its own, everything else left in full precision, and compared with the FP model on the same windows
// (KL, perplexity, top-1 agreement), as a layer x tap table with per-layer and per-tap sums. Results are saved
// beside the statistics file and reloaded for the same setting, and the most sensitive probes become a
// mixed-precision suggestion (QuantConfig overrides) with its memory cost.
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "rptq/eval/compare.h"
#include "rptq/eval/memory_model.h"
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
// however the setting quantizes weights (weight-bit overrides are dropped too). `model` is consumed.
std::unique_ptr<QuantizedModel> quantize_for_sensitivity(std::unique_ptr<Model> model, const ChannelStats& stats,
                                                         QuantConfig cfg, RangeStat stat, std::uint64_t kmeans_seed);

// Runs the probes over the evaluation windows of `ids` (the perplexity convention of opts; opts.progress is not
// used). q's model gives both the FP reference (no quantizer on) and every probe; the FP hidden states are kept per
// layer so a probe of layer l runs layers l.. only. progress(done, total) counts (window, probe) steps; returning
// false cancels (throws Cancelled). Throws InputError when the setting quantizes no activation.
SensitivityResult activation_sensitivity(QuantizedModel& q, std::span<const std::int32_t> ids,
                                         const PerplexityOptions& opts,
                                         const std::function<bool(std::int64_t, std::int64_t)>& progress = {});

// ---- Saved results -----------------------------------------------------------------------------------------------
//
// A sensitivity file sits beside its statistics file (STATS.h5 -> STATS.sensitivity.json) and holds one record per
// measurement: the setting, the statistics file's identity, the evaluation text and windows, and the result. A
// re-run of the same measurement replaces its record; records of an earlier statistics file at the same path (it
// was calibrated again: another `created` or model config hash) are dropped when the file is written. JSON:
//   {"format": "rptq-sensitivity", "version": 1,
//    "records": [{"created": ISO 8601 UTC, "setting": {...SensitivitySetting, names as below...},
//                 "result": {"taps": [...], "layers": L, "ppl_fp", "windows", "seqlen", "positions", "seconds",
//                            "cells": [[kl, ppl, top1_agreement] x taps] x layers}}]}
// Non-finite values are written as null and read back as NaN.

// What a result was measured with. Every probe keeps the weights in FP, so the setting's weight options are not
// part of it; the fields marked "for people" are recorded but not compared (a moved text file with the same bytes
// is the same measurement).
struct SensitivitySetting {
  // The quantization setting's activation side.
  std::string preset;       // QuantConfig::name (for people)
  std::string description;  // QuantConfig::describe() (for people)
  std::array<int, kTapCount> abits{};  // indexed by Tap
  int softmax_bits = kFullPrecisionBits;
  std::array<int, kReorderIndices> clusters{};  // R1..R5
  QuantGrid grid = QuantGrid::Exact;
  RangeMode range_mode = RangeMode::Static;
  int fp_prefix = 0;
  std::vector<std::string> overrides;  // the specs, in order
  RangeStat stat = RangeStat::Ema;     // the quantizers' ranges
  std::uint64_t seed = 0;              // k-means
  // The statistics file: its path (for people), and what names its content.
  std::string stats_path, stats_created, model_config_sha256;
  // The evaluation text (path for people, SHA-256 of its bytes) and windows as asked (max_windows 0: every window).
  std::string data_path, data_sha256;
  std::int64_t seqlen = 0, max_windows = 0;

  // Every field but those for people is equal.
  bool same_measurement(const SensitivitySetting& o) const;
};

SensitivitySetting make_sensitivity_setting(const QuantConfig& cfg, RangeStat stat, std::uint64_t seed,
                                            const ChannelStats& stats, const std::string& stats_path,
                                            const std::string& data_path, const std::string& data_sha256,
                                            const PerplexityOptions& opts);

struct SensitivityRecord {
  SensitivitySetting setting;
  SensitivityResult result;
  std::string created;  // ISO 8601 UTC, when it was saved
};

// STATS.h5 -> STATS.sensitivity.json; a path with another extension or none gets ".sensitivity.json" appended.
std::filesystem::path sensitivity_file_for(const std::filesystem::path& stats_path);

// Every record of a sensitivity file. Throws InputError naming the file when it is missing, not a regular file,
// not JSON, not a sensitivity file, of a newer version, or damaged (a field missing or of the wrong type, cells
// that do not match layers x taps).
std::vector<SensitivityRecord> load_sensitivity_file(const std::filesystem::path& file);

// The record measured with `setting` (SensitivitySetting::same_measurement), or null.
const SensitivityRecord* find_sensitivity(const std::vector<SensitivityRecord>& records,
                                          const SensitivitySetting& setting);

// Writes `rec` into `file` (usually sensitivity_file_for(rec.setting.stats_path)) atomically, keeping the file's
// other records of the same statistics file and replacing one of the same measurement. rec.created is set when
// empty. Throws InputError naming the file when an existing file cannot be read as a sensitivity file (it is left
// as it is) or cannot be written.
void save_sensitivity(const std::filesystem::path& file, SensitivityRecord rec);

// ---- The mixed-precision suggestion ------------------------------------------------------------------------------

// "Keep the N most sensitive taps at higher precision": the N (layer, tap) probes with the largest KL among those an
// override can raise to `bits`. Not eligible: K and V (the KV cache has one layout for every layer) and the softmax
// column (QuantConfig::softmax_bits, one setting for all layers), and probes the setting already keeps at `bits` or
// more in that layer. Ties rank by layer, then tap; a NaN KL (a probe that broke) ranks first. The overrides are one
// spec per tap, its layers listed: "layers=3+5,ffn_hidden:abits=8".
struct SensitivitySuggestion {
  struct Probe {
    int layer = 0;
    Tap tap = Tap::AttnInput;
    double kl = 0;     // the probe's KL
    int from_bits = 0;  // what the setting gives it
  };
  int bits = 8;
  std::vector<Probe> kept;             // most sensitive first
  std::vector<std::string> overrides;  // QuantConfig::overrides specs (parse_override), in tap order
};
// Throws InputError for n < 0, bits not in 2..8 or 16, or a result whose taps are not tap names.
SensitivitySuggestion suggest_overrides(const SensitivityResult& r, const QuantConfig& cfg, int n, int bits = 8);

// cfg with the suggestion's overrides appended (later overrides win), validated.
QuantConfig apply_suggestion(QuantConfig cfg, const SensitivitySuggestion& s);

// The memory model's answer for cfg before and after the suggestion, batch x seqlen tokens.
struct SuggestionMemory {
  MemoryEstimate before, after;
  std::int64_t delta_bytes() const {
    return static_cast<std::int64_t>(after.total_bytes) - static_cast<std::int64_t>(before.total_bytes);
  }
};
SuggestionMemory suggestion_memory(const ModelConfig& model, const QuantConfig& cfg, const SensitivitySuggestion& s,
                                   std::int64_t batch, std::int64_t seqlen);

}  // namespace rptq
