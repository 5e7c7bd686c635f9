#include "rptq/method/quantize.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>

#include "rptq/base/error.h"

namespace rptq {

namespace {

// One linear of a layer, the tap that is its input, and its weights (mutable: the pipeline replaces them).
struct LinearRef {
  const char* name;
  Tap input;
  LinearWeights* w;
};

std::vector<LinearRef> linears(const ModelConfig& m, DecoderLayerWeights& w) {
  std::vector<LinearRef> v;
  for (const NamedLinear& n : layer_linears(m, w)) v.push_back({n.name, n.input, const_cast<LinearWeights*>(n.weights)});
  return v;
}

// At one layer's taps: its ranges (a RangeRecorder) and/or the Hessians of its linears' inputs, after the quantized
// model's hook (which quantizes the earlier layers, and this one as the caller set it).
class MeasuringHook : public ActivationHook {
 public:
  MeasuringHook(ActivationHook& quant, int layer, const ModelConfig& m, bool want_ranges, bool want_hessians,
                std::int64_t skip_prefix)
      : quant_(quant), layer_(layer) {
    if (want_ranges) {
      measured_.resize(static_cast<std::size_t>(m.layers));
      rec_.emplace(m, measured_);
      rec_->set_skip_prefix(skip_prefix);
    }
    if (want_hessians)
      for (Tap t : kLinearInputTaps) h.emplace(t, HessianAccumulator(tap_channels(m, t)));
  }
  void on_activation(int layer, Tap tap, const ActivationView& act) override {
    quant_.on_activation(layer, tap, act);
    if (layer != layer_) return;
    if (rec_) rec_->on_activation(layer, tap, act);
    auto it = h.find(tap);
    if (it != h.end()) it->second.add(act.data, act.rows, act.ld);
  }
  LayerRanges ranges() { return rec_ ? std::move(measured_[static_cast<std::size_t>(layer_)]) : LayerRanges(); }
  std::map<Tap, HessianAccumulator> h;

 private:
  ActivationHook& quant_;
  int layer_;
  std::vector<LayerRanges> measured_;
  std::optional<RangeRecorder> rec_;
};

// The CPU's passes: a LayerwiseRunner over the windows, the quantized model's hook at the taps.
class CpuLayerPasses : public LayerPasses {
 public:
  CpuLayerPasses(QuantizedModel& q, const ChannelStats& stats, int passes_per_layer)
      : q_(q), runner_(q.model(), stats.tokens, stats.settings.samples, stats.settings.seqlen) {
    runner_.set_progress_plan(passes_per_layer);
  }
  LayerRanges ranges(int l, const LayerwiseCallback& progress) override {
    return measure(l, true, false, progress).ranges;
  }
  void changed(int) override {}  // the runner reads the model as it is
  std::map<Tap, HessianAccumulator> hessians(int l, const LayerwiseCallback& progress) override {
    return measure(l, false, true, progress).hessians;
  }
  LayerMeasurement measure(int l, bool want_ranges, bool want_hessians, const LayerwiseCallback& progress) override {
    MeasuringHook mh(*q_.hook(), l, q_.model().config(), want_ranges, want_hessians, q_.config().fp_prefix);
    runner_.observe(&mh, progress);
    LayerMeasurement out;
    out.ranges = mh.ranges();
    out.hessians = std::move(mh.h);
    return out;
  }
  void advance(int, const LayerwiseCallback& progress) override { runner_.advance(q_.hook(), progress); }
  Tensor hidden(std::int64_t i) override { return runner_.hidden(i); }
  void set_hidden(std::int64_t i, const Tensor& h) override {
    Tensor& t = runner_.hidden(i);
    if (h.shape() != t.shape()) throw std::invalid_argument("set_hidden: wrong shape");
    t = h;
  }

 private:
  QuantizedModel& q_;
  LayerwiseRunner runner_;
};

}  // namespace

std::vector<QuantParams> tap_cluster_params(const TapRanges& tr, RangeStat stat, std::span<const std::int32_t> order,
                                           const std::vector<std::int64_t>& boundaries, int bits, QuantGrid grid) {
  check_boundaries(boundaries, static_cast<std::int64_t>(order.size()), "tap_cluster_params");
  std::vector<QuantParams> out;
  out.reserve(boundaries.size() - 1);
  for (std::size_t c = 0; c + 1 < boundaries.size(); ++c) {
    float lo = 0.0f, hi = 0.0f;
    tr.cluster_range(stat, order.subspan(static_cast<std::size_t>(boundaries[c]),
                                         static_cast<std::size_t>(boundaries[c + 1] - boundaries[c])),
                     lo, hi);
    out.push_back(quant_params(lo, hi, bits, grid));
  }
  return out;
}

std::vector<NamedLinear> layer_linears(const ModelConfig& m, const DecoderLayerWeights& w) {
  std::vector<NamedLinear> v = {{"q", Tap::AttnInput, &w.q}, {"k", Tap::AttnInput, &w.k},
                                {"v", Tap::AttnInput, &w.v}, {"o", Tap::AttnOutput, &w.o}};
  if (m.arch == Architecture::OPT) {
    v.push_back({"fc1", Tap::FfnInput, &w.fc1});
    v.push_back({"fc2", Tap::FfnHidden, &w.fc2});
  } else {
    v.push_back({"gate", Tap::FfnInput, &w.gate});
    v.push_back({"up", Tap::FfnInput, &w.up});
    v.push_back({"down", Tap::FfnHidden, &w.down});
  }
  return v;
}

void QuantizedModel::Hook::on_activation(int layer, Tap tap, const ActivationView& act) {
  if (layer >= enabled_layers || layer >= static_cast<int>(q_.layers_.size())) return;
  const TapQuantizer& tq = q_.layers_[static_cast<std::size_t>(layer)].taps[static_cast<std::size_t>(tap)];
  if (!tq.fp8_scales.empty()) {
    if (layer != static_off_layer)
      fake_quant_fp8(act.data, act.rows, act.cols, act.ld, tq.fp8_scales, q_.model_->config().head_dim);
    return;
  }
  if (!tq.active() || (layer == static_off_layer && !tq.dynamic)) return;
  const std::int64_t seq = act.seq > 0 ? act.seq : act.rows;
  if (tq.dynamic && tq.per_token) {
    fake_quant_clusters_per_token(act.data, act.rows, act.cols, act.ld, tq.boundaries, tq.bits, tq.grid);
    return;
  }
  if (tq.dynamic) {
    // Each sequence's own ranges (a batch of windows quantizes as the windows one at a time).
    for (std::int64_t r0 = 0; r0 < act.rows; r0 += seq)
      fake_quant_clusters_dynamic(act.row(r0), std::min(seq, act.rows - r0), act.cols, act.ld, tq.boundaries, tq.bits,
                                  tq.grid);
    return;
  }
  // Each sequence's tokens past the full-precision prefix (all of them without one).
  const std::int64_t skip = std::clamp<std::int64_t>(q_.cfg_.fp_prefix - act.past, 0, seq);
  if (skip == 0) {
    fake_quant_clusters(act.data, act.rows, act.cols, act.ld, tq.boundaries, tq.params);
    return;
  }
  for (std::int64_t r0 = 0; r0 + seq <= act.rows; r0 += seq)
    fake_quant_clusters(act.row(r0 + skip), seq - skip, act.cols, act.ld, tq.boundaries, tq.params);
}

std::shared_ptr<const KvQuantization> QuantizedModel::kv_quantization() const {
  if (!cfg_.quantizes(Tap::K) || !cfg_.quantizes(Tap::V)) return nullptr;
  // The prefix's K/V stay in float: the cache holds every row in float, quantized by the hook (simulated, as the
  // reference's KV cache), not packed.
  if (cfg_.fp_prefix > 0) return nullptr;
  if (cfg_.range_mode == RangeMode::Dynamic)
    throw InputError("a packed KV cache needs static K/V ranges from calibration (not dynamic ranges)");
  auto q = std::make_shared<KvQuantization>();
  for (const LayerQuantization& l : layers_) {
    for (Tap t : {Tap::K, Tap::V}) {
      const TapQuantizer& tq = l.taps[static_cast<std::size_t>(t)];
      KvSideQuantization side;
      side.bits = tq.bits;
      side.boundaries = tq.boundaries;
      for (const QuantParams& p : tq.params) {
        side.scale.push_back(p.scale);
        side.zero_point.push_back(p.zero_point);
      }
      (t == Tap::K ? q->k : q->v).push_back(std::move(side));
    }
  }
  return q;
}

void check_stats_match(const ChannelStats& s, const ModelConfig& m, const std::string& path) {
  auto diff = [&](const char* what, std::int64_t a, std::int64_t b) {
    if (a != b)
      throw InputError(path + ": statistics were measured on a model with " + what + " " + std::to_string(a) +
                       ", this model has " + std::to_string(b) + " (calibrate this model first)");
  };
  diff("layers", s.layers, m.layers);
  diff("hidden size", s.hidden, m.hidden);
  diff("heads", s.heads, m.heads);
  diff("KV heads", s.kv_heads, m.kv_heads);
  diff("head size", s.head_dim, m.head_dim);
  diff("intermediate size", s.intermediate, m.intermediate);
  if (static_cast<std::int64_t>(s.ranges.size()) != m.layers) throw InputError(path + ": ranges missing for layers");
}

ChannelStats applied_stats(const QuantizedModel& q, const ChannelStats& stats) {
  check_stats_match(stats, q.model().config(), stats.model_path);
  ChannelStats out = stats;
  for (int l = 0; l < q.layers(); ++l) {
    const LayerRanges& r = q.layer(l).ranges;
    if (r.tap(Tap::AttnInput).samples == 0)
      throw InputError("the quantized model keeps no calibration ranges (it was loaded from a checkpoint)");
    out.ranges[static_cast<std::size_t>(l)] = r;
  }
  return out;
}

namespace {
// A serving target's uniform weight groups must tile every linear's input (vLLM's grouped kernels need it).
void check_serving_groups(const ModelConfig& m, const QuantConfig& cfg) {
  const std::int64_t g = cfg.weight_group;
  if (g < 0) return;  // one group per output channel fits any width
  const std::pair<const char*, std::int64_t> widths[] = {
      {"hidden size (q/k/v and fc1 or gate/up inputs)", m.hidden},
      {"attention width (o_proj / out_proj input)", m.heads * m.head_dim},
      {"intermediate size (fc2 / down_proj input)", m.intermediate}};
  for (const auto& [what, n] : widths)
    if (n % g != 0) {
      std::string fits;
      for (int c : {128, 64, 32})
        if (m.hidden % c == 0 && (m.heads * m.head_dim) % c == 0 && m.intermediate % c == 0)
          fits += (fits.empty() ? "" : ", ") + std::to_string(c);
      throw InputError("target compressed-tensors: the model's " + std::string(what) + " " + std::to_string(n) +
                       " is not a multiple of the weight group size " + std::to_string(g) +
                       "; group sizes that fit: " + (fits.empty() ? std::string("") : fits + ", ") +
                       "-1 (one group per output channel)");
    }
}
}  // namespace

std::vector<float> kv_fp8_scales(const TapRanges& r, std::int64_t head_dim, KvFp8 granularity) {
  if (granularity == KvFp8::Off) return {};
  const std::int64_t n = r.channels();
  if (head_dim < 1 || n % head_dim != 0)
    throw InputError("FP8 KV scales: " + std::to_string(n) + " channels are not whole heads of " + std::to_string(head_dim));
  std::vector<float> absmax(static_cast<std::size_t>(granularity == KvFp8::Head ? n / head_dim : 1), 0.0f);
  for (std::int64_t c = 0; c < n; ++c) {
    float& a = absmax[granularity == KvFp8::Head ? static_cast<std::size_t>(c / head_dim) : 0];
    a = std::max({a, std::fabs(r.max[static_cast<std::size_t>(c)]), std::fabs(r.min[static_cast<std::size_t>(c)])});
  }
  for (float& a : absmax) {
    if (!std::isfinite(a)) throw InputError("FP8 KV scales: a calibration range is not finite");
    a = a > 0.0f ? a / kFp8E4m3Max : 1.0f;  // a head that never moved keeps scale 1
  }
  return absmax;
}

std::unique_ptr<QuantizedModel> quantize(std::unique_ptr<Model> model, const ChannelStats& stats,
                                         const QuantConfig& cfg, const QuantizeOptions& opts) {
  return quantize_with(std::move(model), stats, cfg, opts, [&stats](QuantizedModel& q, int passes_per_layer) {
    return make_cpu_layer_passes(q, stats, passes_per_layer);
  });
}

std::unique_ptr<LayerPasses> make_cpu_layer_passes(QuantizedModel& q, const ChannelStats& stats,
                                                   int passes_per_layer) {
  return std::make_unique<CpuLayerPasses>(q, stats, passes_per_layer);
}

std::unique_ptr<QuantizedModel> quantize_with(std::unique_ptr<Model> model, const ChannelStats& stats,
                                              const QuantConfig& cfg, const QuantizeOptions& opts,
                                              const LayerPassesFactory& make_passes) {
  const auto t0 = std::chrono::steady_clock::now();
  cfg.validate();
  const ModelConfig& m = model->config();
  check_stats_match(stats, m, stats.model_path);
  if (cfg.fp_prefix > 0 && !opts.sequential && !opts.reorder_only)
    throw InputError("a full-precision prefix needs each layer's ranges measured without it (sequential "
                     "quantization); the statistics file's ranges include every token");
  if (cfg.target == ServeTarget::CompressedTensors && !opts.reorder_only) check_serving_groups(m, cfg);
  std::unique_ptr<QuantizedModel> q(new QuantizedModel());
  q->model_ = std::move(model);
  q->cfg_ = cfg;
  q->kmeans_seed = opts.seed;
  q->stat = opts.stat;
  q->sequential = opts.sequential;
  q->layers_.resize(static_cast<std::size_t>(m.layers));
  Model& mod = *q->model_;
  const int L = static_cast<int>(m.layers);

  if (opts.reorder_only) {
    for (int l = 0; l < L; ++l) {
      auto& lq = q->layers_[static_cast<std::size_t>(l)];
      lq.ranges = stats.ranges[static_cast<std::size_t>(l)];
      lq.reorder = plan_layer_reorder(m, lq.ranges, cfg, l, opts.seed);
      apply_reorder(mod, l, lq.reorder);
    }
    q->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return q;
  }

  for (const TapOverride& o : cfg.overrides)
    for (int layer : o.layer_list)
      if (layer >= L) throw InputError("override \"" + o.spec + "\": the model has layers 0.." + std::to_string(L - 1));
  const bool gptq = cfg.quantizes_weights() && cfg.weight_method == WeightMethod::GPTQ;
  // GPTQ's Hessians come from the measuring pass (permuted into the reordered layout after), as the reference's
  // calibration pass feeds both, unless the layer's dynamic quantizers must be on for them: then a pass of its own.
  auto layer_dynamic = [&](int l) {
    return std::any_of(std::begin(kAllTaps), std::end(kAllTaps),
                       [&](Tap t) { return cfg.bits(l, t) < kFullPrecisionBits && cfg.dynamic(l, t); });
  };
  bool any_dynamic = false, any_static = false;
  for (int l = 0; l < L; ++l) (layer_dynamic(l) ? any_dynamic : any_static) = true;
  const bool measure_passes = opts.sequential || (gptq && any_static);
  const bool hessian_passes = gptq && any_dynamic;
  std::unique_ptr<LayerPasses> runner;
  if (measure_passes || hessian_passes)
    runner = make_passes(*q, (measure_passes ? 1 : 0) + (hessian_passes ? 1 : 0) + 1);
  QuantizedModel::Hook& hook = q->hook_;
  auto mark = std::chrono::steady_clock::now();
  auto since_mark = [&mark] {
    const auto now = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(now - mark).count();
    mark = now;
    return s;
  };
  std::vector<std::pair<LinearWeights*, std::shared_ptr<const PackedWeight>>> packed;  // one layer's, pending
  WeightFormat format;  // RPTQ's own, or the serving target's scales and zero points
  if (cfg.target == ServeTarget::CompressedTensors) format = {cfg.scale_dtype, true};
  for (int l = 0; l < L; ++l) {
    LayerQuantization& lq = q->layers_[static_cast<std::size_t>(l)];
    const bool measure_pass = opts.sequential || (gptq && !layer_dynamic(l));
    const bool hessian_pass = gptq && layer_dynamic(l);
    // 1. This layer's ranges, measured on its actual (quantized-prefix) inputs, its own activation quantizers off
    // and its softmax quantizer on (the reference's calibration pass: its fixed-grid softmax quantizer never
    // calibrates); with GPTQ, the Hessians of its linears' inputs from the same pass.
    hook.enabled_layers = l;
    mod.layer(l).quantize_softmax = cfg.softmax_bits < kFullPrecisionBits;
    LayerMeasurement measured;
    if (runner) {
      runner->changed(l);
      if (measure_pass) measured = runner->measure(l, opts.sequential, gptq && !hessian_pass, opts.progress);
    }
    if (opts.sequential)
      lq.ranges = std::move(measured.ranges);
    else
      lq.ranges = stats.ranges[static_cast<std::size_t>(l)];
    const LayerRanges& ranges = lq.ranges;
    q->phases.measure += since_mark();
    // 2. Cluster (on the plain max/min) and fold the reorder.
    lq.reorder = plan_layer_reorder(m, ranges, cfg, l, opts.seed);
    apply_reorder(mod, l, lq.reorder);
    // 3. Activation quantizers per cluster, in the reordered layout, each from its cluster's range (opts.stat).
    for (Tap t : kAllTaps) {
      TapQuantizer& tq = lq.taps[static_cast<std::size_t>(t)];
      tq.bits = cfg.bits(l, t);
      tq.grid = cfg.grid;
      tq.boundaries = tap_boundaries(m, lq.reorder, t);
      tq.dynamic = cfg.dynamic(l, t);
      tq.per_token = cfg.per_token(l, t);
      if (!tq.active() || tq.dynamic) continue;
      tq.params = tap_cluster_params(ranges.tap(t), opts.stat, tap_order(m, lq.reorder, t), tq.boundaries, tq.bits,
                                     tq.grid);
    }
    if (cfg.kv_fp8 != KvFp8::Off)
      for (Tap t : {Tap::K, Tap::V})
        lq.taps[static_cast<std::size_t>(t)].fp8_scales = kv_fp8_scales(ranges.tap(t), m.head_dim, cfg.kv_fp8);
    hook.enabled_layers = l + 1;
    if (runner) runner->changed(l);
    q->phases.cluster += since_mark();
    // 4. Weights, grouped by (output row) x (input cluster).
    if (cfg.quantizes_weights()) {
      std::map<Tap, HessianAccumulator> hessians;
      std::map<Tap, GptqFactor> factors;  // one per input tap, shared by the linears that read it
      if (hessian_pass) {
        // As the reference's GPTQ pass (RPTQ4LLM quant_layer), whose static activation quantizers are still
        // calibrating and pass values through: this layer's static quantizers off, dynamic ones and the softmax's on.
        hook.static_off_layer = l;
        hessians = runner->hessians(l, opts.progress);
        hook.static_off_layer = -1;
        q->phases.hessians += since_mark();
      } else if (gptq) {
        for (auto& [tap, h] : measured.hessians) hessians.emplace(tap, h.permuted(tap_order(m, lq.reorder, tap)));
      }
      for (const LinearRef& lr : linears(m, mod.layer(l))) {
        const int wbits = cfg.weight_bits(l, lr.input);
        if (wbits >= kFullPrecisionBits) continue;  // kept in float by an override
        const std::int64_t out = lr.w->out(), in = lr.w->in();
        const std::vector<std::int64_t> groups =
            cfg.weight_group > 0   ? fixed_group_boundaries(in, cfg.weight_group)
            : cfg.weight_group < 0 ? fixed_group_boundaries(in, in)
                                   : tap_boundaries(m, lq.reorder, lr.input);
        if (gptq && !factors.contains(lr.input))
          factors.emplace(lr.input, gptq_factor(hessians.at(lr.input), cfg.gptq_damp, cfg.act_order));
        QuantizedWeight qw = gptq ? quantize_gptq(lr.w->weight.data(), out, in, wbits, cfg.grid, groups,
                                                  factors.at(lr.input), cfg.gptq_block, cfg.weight_clip, format)
                                  : quantize_rtn(lr.w->weight.data(), out, in, wbits, cfg.grid, groups,
                                                 cfg.weight_clip, {}, format);
        // The advance pass below computes with the dequantized weights as floats (the values the packed codes
        // stand for, without unpacking them for every window); after it, the layer keeps only the packed codes.
        auto pw = std::make_shared<const PackedWeight>(PackedWeight::pack(qw));
        pw->dequantize(lr.w->weight.data());
        packed.emplace_back(lr.w, std::move(pw));
      }
      if (runner) runner->changed(l);
      q->phases.weights += since_mark();
    }
    // 5. The quantized layer's outputs become the next layer's inputs.
    if (runner && l + 1 < L) runner->advance(l, opts.progress);
    if (!packed.empty()) {
      for (auto& [w, pw] : packed) {
        w->packed = std::move(pw);
        w->weight = Tensor();
      }
      packed.clear();
      if (runner) runner->changed(l);
    }
    q->phases.advance += since_mark();
  }
  hook.enabled_layers = 1 << 30;
  q->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return q;
}

}  // namespace rptq
