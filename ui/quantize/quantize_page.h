#pragma once
// The Quantize step: a preset (the paper's W4A16 ... W3A3KV) or custom bits of weights, activations and the KV
// cache; clusters per reorder index R1..R5; RTN or GPTQ weights; the exact or the reference grid. Run quantizes a
// second copy of the FP model on a worker (progress, Cancel) and shows what was quantized: per layer the linears
// and taps with their bits, the time, and the weight memory before and after. It needs the FP model and the
// statistics; without them it is greyed out with a note saying what is missing.
#include <QList>
#include <QString>
#include <QStringList>
#include <QWidget>

#include <array>
#include <memory>

#include "rptq/method/quant_config.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace rptq {
class QuantizedModel;
}

namespace rptq::ui {

class QuantizeJob;
class Session;
struct QuantizationSummary;
struct QuantizeProgress;
struct TaskError;

class DeviceChoice;
class OverridesEditor;

class QuantizePage : public QWidget {
  Q_OBJECT
 public:
  explicit QuantizePage(Session* session, QWidget* parent = nullptr);

  QuantizeJob* job() const { return job_; }
  bool running() const;
  // The setting as the widgets describe it; throws rptq::InputError naming a bad value.
  rptq::QuantConfig config() const;
  // Chooses a preset by name ("W4A8"; "custom" for the custom bits); false when there is no such preset.
  bool select_preset(const QString& name);
  void set_weight_method(rptq::WeightMethod m);

  // Per-(layer, tap) overrides (rptq::QuantConfig::overrides specs, "layers=3,ffn_hidden:abits=8") that config()
  // adds to the chosen setting, in order; replaces the earlier list. The Sensitivity step's "keep the N most
  // sensitive taps" suggestion is handed over here.
  void set_overrides(const QStringList& specs);
  // Shows a recorded setting (the History step's "re-open"): its preset (or custom bits), clusters, weight method,
  // grid and overrides. Returns what the page cannot show and leaves at its default ("act-order, fp prefix"; ""
  // when everything was taken over).
  QString apply_config(const rptq::QuantConfig& c);
  QStringList overrides() const;
  OverridesEditor* overrides_editor() const { return overrides_; }

  QComboBox* preset_combo() const { return preset_; }
  QComboBox* wbits_combo() const { return wbits_; }
  QComboBox* abits_combo() const { return abits_; }
  QComboBox* kvbits_combo() const { return kvbits_; }
  QSpinBox* clusters_spin(int reorder_index) const { return clusters_.at(static_cast<std::size_t>(reorder_index - 1)); }
  QComboBox* method_combo() const { return method_; }
  QComboBox* grid_combo() const { return grid_; }
  QLabel* config_label() const { return describe_; }  // the setting's description, or why it is refused
  // Serve with: RPTQ's own quantization, or one made exactly for vLLM / SGLang (compressed-tensors).
  QComboBox* serving_combo() const { return serving_; }
  QComboBox* group_combo() const { return group_; }
  QComboBox* scale_dtype_combo() const { return scale_dtype_; }
  QPushButton* run_button() const { return run_; }
  QPushButton* cancel_button() const { return cancel_; }
  QProgressBar* progress_bar() const { return bar_; }
  QLabel* status_label() const { return status_; }
  QLabel* summary_label() const { return summary_; }
  QTableWidget* layers_table() const { return layers_; }
  DeviceChoice* device_choice() const { return device_; }
  // Re-measure ranges layer by layer (QuantizeOptions::sequential); the Sweep step quantizes with it too.
  QCheckBox* sequential_check() const { return sequential_; }
  QCheckBox* act_order_check() const { return act_order_; }

 Q_SIGNALS:
  void running_changed(bool running);
  void config_changed();  // the chosen setting changed (Compare's memory chart follows it)
  void compare_requested();

 public Q_SLOTS:
  void start();
  void cancel();

 private Q_SLOTS:
  void update_availability();
  void preset_changed();
  void progressed(const rptq::ui::QuantizeProgress& p);
  void finished(std::shared_ptr<rptq::QuantizedModel> q, std::shared_ptr<const rptq::ui::QuantizationSummary> s);
  void cancelled();
  void failed(const rptq::ui::TaskError& e);
  void show_summary();

 private:
  void set_running(bool on);

  Session* session_;
  QuantizeJob* job_;
  QLabel* note_;
  QComboBox* preset_;
  QComboBox* wbits_;
  QComboBox* abits_;
  QComboBox* kvbits_;
  std::array<QSpinBox*, rptq::kReorderIndices> clusters_{};
  QComboBox* method_;
  QComboBox* grid_;
  QComboBox* serving_;
  QComboBox* group_;
  QComboBox* scale_dtype_;
  QCheckBox* sequential_;
  QCheckBox* act_order_;
  DeviceChoice* device_;
  QLabel* describe_;
  QPushButton* run_;
  QPushButton* cancel_;
  QProgressBar* bar_;
  QLabel* status_;
  QLabel* summary_;
  QTableWidget* layers_;
  QPushButton* compare_;
  QList<QWidget*> inputs_;  // disabled while quantizing or when quantizing is impossible
  bool setting_preset_ = false;
  bool waiting_ = false;         // another job uses the quantized model: the status says so
  QString status_before_wait_;  // and this was the status before
  OverridesEditor* overrides_;  // the mixed-precision table
};

}  // namespace rptq::ui
