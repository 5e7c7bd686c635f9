#include "session/quantization_summary.h"

#include "rptq/method/quantize.h"
#include "rptq/model/packed_weight.h"

namespace rptq::ui {

namespace {
QString bits_text(int bits) {
  return bits < rptq::kFullPrecisionBits ? QStringLiteral("%1-bit").arg(bits) : QStringLiteral("FP");
}
}  // namespace

QString QuantizationSummary::linears_text(int layer) const {
  QStringList parts;
  for (const Linear& l : layers.at(static_cast<std::size_t>(layer)).linears)
    parts << (l.groups > 0 ? QStringLiteral("%1 %2 (%3 groups)").arg(l.name, bits_text(l.bits)).arg(l.groups)
                           : QStringLiteral("%1 %2").arg(l.name, bits_text(l.bits)));
  return parts.join(QStringLiteral(", "));
}

QString QuantizationSummary::taps_text(int layer) const {
  QStringList parts;
  for (const TapBits& t : layers.at(static_cast<std::size_t>(layer)).taps)
    parts << (t.clusters > 0 ? QStringLiteral("%1 %2 (%3 clusters)").arg(t.name, bits_text(t.bits)).arg(t.clusters)
                             : QStringLiteral("%1 %2").arg(t.name, bits_text(t.bits)));
  return parts.join(QStringLiteral(", "));
}

QuantizationSummary summarize_quantization(const rptq::QuantizedModel& q, std::size_t fp_weight_bytes) {
  QuantizationSummary s;
  s.config = q.config();
  s.description = QString::fromStdString(q.config().describe());
  s.seconds = q.seconds;
  s.kmeans_seed = q.kmeans_seed;
  s.stat = q.stat;
  s.sequential = q.sequential;
  s.fp_weight_bytes = fp_weight_bytes;
  s.quantized_weight_bytes = q.model().weight_bytes();
  const rptq::Model& m = q.model();
  for (int i = 0; i < q.layers(); ++i) {
    QuantizationSummary::Layer layer;
    for (const rptq::NamedLinear& l : rptq::layer_linears(m.config(), m.layer(i))) {
      QuantizationSummary::Linear row;
      row.name = QString::fromLatin1(l.name);
      if (l.weights->packed) {
        row.bits = l.weights->packed->bits;
        row.groups = l.weights->packed->groups();
      }
      layer.linears.push_back(row);
    }
    const rptq::LayerQuantization& lq = q.layer(i);
    for (rptq::Tap t : rptq::kAllTaps) {
      const rptq::TapQuantizer& tq = lq.taps[static_cast<std::size_t>(t)];
      QuantizationSummary::TapBits tb;
      tb.name = QString::fromLatin1(rptq::tap_name(t));
      tb.bits = tq.bits;
      if (tq.active() && tq.boundaries.size() > 1) tb.clusters = static_cast<int>(tq.boundaries.size()) - 1;
      layer.taps.push_back(tb);
    }
    s.layers.push_back(std::move(layer));
  }
  return s;
}

}  // namespace rptq::ui
