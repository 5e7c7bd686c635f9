#pragma once
// The memory argument of RPTQ as a chart: weights, KV cache and activations (rptq::estimate_memory) of the loaded
// model or a published OPT size, FP16 next to the chosen quantization, at a batch and sequence length set by two
// sliders. At large batch x sequence the KV cache dominates, which is why quantizing activations matters.
#include <QWidget>

#include <optional>

#include "rptq/eval/memory_model.h"
#include "rptq/model/model_config.h"
#include "rptq/method/quant_config.h"

class QBarSet;
class QBarCategoryAxis;
class QChart;
class QComboBox;
class QLabel;
class QSlider;
class QValueAxis;

namespace rptq::ui {

class ChartView;

class MemoryChart : public QWidget {
  Q_OBJECT
 public:
  explicit MemoryChart(QWidget* parent = nullptr);

  // The loaded model's shape (the first entry of the model list), or none (only the OPT sizes are offered).
  void set_loaded_model(const QString& name, std::optional<rptq::ModelConfig> config);
  void set_quant_config(const rptq::QuantConfig& config);

  QComboBox* model_combo() const { return model_; }
  QSlider* batch_slider() const { return batch_; }
  QSlider* seqlen_slider() const { return seqlen_; }
  std::int64_t batch() const;
  std::int64_t seqlen() const;
  // The estimates shown: FP16 and the quantization (empty when none could be made).
  const std::optional<rptq::MemoryEstimate>& fp_estimate() const { return fp_; }
  const std::optional<rptq::MemoryEstimate>& quantized_estimate() const { return q_; }
  QLabel* totals_label() const { return totals_; }
  ChartView* chart_view() const { return view_; }

 private Q_SLOTS:
  void update_chart();

 private:
  std::optional<rptq::ModelConfig> loaded_;
  rptq::QuantConfig quant_ = rptq::QuantConfig::preset("W4A8");
  std::optional<rptq::MemoryEstimate> fp_, q_;
  QComboBox* model_;
  QSlider* batch_;
  QSlider* seqlen_;
  QLabel* batch_label_;
  QLabel* seqlen_label_;
  QLabel* totals_;
  QChart* chart_;
  QBarSet* weights_;
  QBarSet* kv_;
  QBarSet* activations_;
  QBarCategoryAxis* categories_;
  QValueAxis* bytes_axis_;
  ChartView* view_;
};

}  // namespace rptq::ui
