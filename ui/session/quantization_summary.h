#pragma once
// What the Quantize step produced, read off the quantized model once it exists (the engine computed every
// number): per layer its linears with their bit widths and weight groups, the taps with their bits and clusters,
// the pipeline's time and the weight memory before and after (Model::weight_bytes()).
#include <QString>
#include <QStringList>

#include <cstddef>
#include <memory>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/method/quant_config.h"

namespace rptq {
class QuantizedModel;
}

namespace rptq::ui {

struct QuantizationSummary {
  struct Linear {
    QString name;      // "q", "fc1", ...
    int bits = 16;     // 16: kept in float
    std::int64_t groups = 0;  // input groups (weight clusters); 0 when not packed
  };
  struct TapBits {
    QString name;      // "attn_input", ...
    int bits = 16;
    int clusters = 0;  // quantizer clusters (0 when not quantized)
  };
  struct Layer {
    std::vector<Linear> linears;
    std::vector<TapBits> taps;
  };
  rptq::QuantConfig config;
  QString description;            // QuantConfig::describe()
  QString model_path, stats_path;  // what it was quantized from
  std::vector<Layer> layers;
  double seconds = 0;             // the pipeline's wall time
  std::size_t fp_weight_bytes = 0, quantized_weight_bytes = 0;
  // What the clusters and quantizers were built from (rptq::applied_stats: the ranges re-measured on the quantized
  // prefix), with the k-means seed and range statistic used: Explore's "applied by quantization" view. Null when
  // the model keeps no ranges.
  std::shared_ptr<const rptq::ChannelStats> applied;
  std::uint64_t kmeans_seed = 0;
  rptq::RangeStat stat = rptq::RangeStat::Ema;
  bool sequential = true;

  // "q 4-bit (32 groups), k 4-bit, ..." / "attn_input 4-bit (32 clusters), ..." for layer i.
  QString linears_text(int layer) const;
  QString taps_text(int layer) const;
};

QuantizationSummary summarize_quantization(const rptq::QuantizedModel& q, std::size_t fp_weight_bytes);

}  // namespace rptq::ui
