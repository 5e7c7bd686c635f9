#include "rptq/method/sensitivity.h"

#include <chrono>
#include <cmath>

#include "rptq/base/error.h"
#include "rptq/model/model.h"

namespace rptq {

namespace {

constexpr const char* kSoftmax = "softmax";

// The quantized model's hook at one (layer, tap) only.
class OneTapHook : public ActivationHook {
 public:
  OneTapHook(ActivationHook& inner, int layer, Tap tap) : inner_(inner), layer_(layer), tap_(tap) {}
  void on_activation(int layer, Tap tap, const ActivationView& act) override {
    if (layer == layer_ && tap == tap_) inner_.on_activation(layer, tap, act);
  }

 private:
  ActivationHook& inner_;
  int layer_;
  Tap tap_;
};

}  // namespace

SensitivityCell SensitivityResult::layer_sum(int layer) const {
  SensitivityCell s;
  for (std::size_t t = 0; t < taps.size(); ++t) {
    const SensitivityCell& c = cell(layer, t);
    s.kl += c.kl;
    s.ppl += c.ppl - ppl_fp;
    s.top1_agreement += 1.0 - c.top1_agreement;
  }
  return s;
}

SensitivityCell SensitivityResult::tap_sum(std::size_t tap) const {
  SensitivityCell s;
  for (int l = 0; l < layers; ++l) {
    const SensitivityCell& c = cell(l, tap);
    s.kl += c.kl;
    s.ppl += c.ppl - ppl_fp;
    s.top1_agreement += 1.0 - c.top1_agreement;
  }
  return s;
}

std::unique_ptr<QuantizedModel> quantize_for_sensitivity(std::unique_ptr<Model> model, const ChannelStats& stats,
                                                         QuantConfig cfg, RangeStat stat, std::uint64_t kmeans_seed) {
  cfg.wbits = kFullPrecisionBits;
  cfg.weight_method = WeightMethod::RTN;
  QuantizeOptions o;
  o.stat = stat;
  o.seed = kmeans_seed;
  o.sequential = false;
  return quantize(std::move(model), stats, cfg, o);
}

SensitivityResult activation_sensitivity(QuantizedModel& q, std::span<const std::int32_t> ids,
                                         const PerplexityOptions& opts,
                                         const std::function<bool(std::int64_t, std::int64_t)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  Model& model = q.model();
  const ModelConfig& m = model.config();
  const QuantConfig& cfg = q.config();
  const int L = static_cast<int>(m.layers);

  // The probes: every tap the setting quantizes, then the softmax probabilities.
  struct Probe {
    Tap tap = Tap::AttnInput;
    bool softmax = false;
  };
  std::vector<Probe> probes;
  SensitivityResult res;
  for (Tap t : kAllTaps)
    if (cfg.quantizes(t)) {
      probes.push_back({t, false});
      res.taps.emplace_back(tap_name(t));
    }
  if (cfg.softmax_bits < kFullPrecisionBits) {
    probes.push_back({Tap::AttnInput, true});
    res.taps.emplace_back(kSoftmax);
  }
  if (probes.empty()) throw InputError("the setting quantizes no activation: there is nothing to probe");
  res.layers = L;

  // The softmax flags are the model's: all off for the FP reference, one on per softmax probe; restored at the end.
  std::vector<bool> softmax_was(static_cast<std::size_t>(L));
  for (int l = 0; l < L; ++l) {
    softmax_was[static_cast<std::size_t>(l)] = model.layer(l).quantize_softmax;
    model.layer(l).quantize_softmax = false;
  }
  struct Restore {
    Model& model;
    const std::vector<bool>& was;
    ~Restore() {
      for (std::size_t l = 0; l < was.size(); ++l) model.layer(static_cast<int>(l)).quantize_softmax = was[l];
    }
  } restore{model, softmax_was};

  const std::size_t P = probes.size();
  std::vector<CompareAccumulator> acc;
  acc.reserve(static_cast<std::size_t>(L) * P);
  for (std::size_t i = 0; i < static_cast<std::size_t>(L) * P; ++i) acc.emplace_back(ids, opts, m.vocab, m.vocab);
  const std::int64_t windows = acc.front().windows(), T = opts.seqlen, rows = T - 1;
  const std::int64_t total = windows * L * static_cast<std::int64_t>(P);
  std::int64_t done = 0;

  std::vector<Tensor> fp_in(static_cast<std::size_t>(L));  // the FP hidden state entering each layer
  Tensor fp_logits, lq;
  for (std::int64_t w = 0; w < windows; ++w) {
    const auto win = acc.front().window(w);
    Tensor h = model.embed(win, 1);
    for (int l = 0; l < L; ++l) {
      fp_in[static_cast<std::size_t>(l)] = h;
      model.layer_forward(l, h, 1);
    }
    model.head(h.data(), rows, fp_logits);
    for (int l = 0; l < L; ++l) {
      for (std::size_t p = 0; p < P; ++p) {
        Tensor x = fp_in[static_cast<std::size_t>(l)];
        OneTapHook one(*q.hook(), l, probes[p].tap);
        ActivationHook* hook = probes[p].softmax ? nullptr : &one;
        if (probes[p].softmax) model.layer(l).quantize_softmax = true;
        model.layer_forward(l, x, 1, nullptr, hook);
        model.layer(l).quantize_softmax = false;
        for (int k = l + 1; k < L; ++k) model.layer_forward(k, x, 1);
        model.head(x.data(), rows, lq);
        CompareAccumulator& a = acc[static_cast<std::size_t>(l) * P + p];
        a.add_rows(w, fp_logits.data(), lq.data(), 0, rows);
        a.end_window(0, 0);
        if (progress && !progress(++done, total)) throw Cancelled();
      }
    }
  }
  res.cells.resize(acc.size());
  for (std::size_t i = 0; i < acc.size(); ++i) {
    const CompareResult r = acc[i].finish(0);
    res.cells[i] = {r.kl, r.q.ppl, r.top1_agreement};
    res.ppl_fp = r.fp.ppl;
    res.windows = r.fp.windows;
    res.seqlen = r.fp.seqlen;
    res.positions = r.positions;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return res;
}

}  // namespace rptq
