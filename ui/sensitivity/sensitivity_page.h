#pragma once
// The Sensitivity step: which activation hurts. Every quantized (layer, tap) of the chosen setting, and each layer's
// softmax, is quantized alone (weights and every other activation in FP) and compared with the FP model on a few
// windows of a text (rptq::activation_sensitivity, as `rptq sensitivity`): a layer x tap heat map of KL, perplexity
// increase or top-1 changes, with per-layer and per-tap totals. The run loads its own copy of the FP model on a
// worker (progress, Cancel between probes). Results are saved beside the statistics file
// (rptq::sensitivity_file_for) and shown again when the page opens with the same statistics, setting, text and
// windows. A double-click on a cell explores that layer and tap's reorder index; "keep the N most sensitive taps at
// higher precision" turns the result into overrides for the Quantize step, with their memory cost.
#include <QStringList>
#include <QWidget>

#include <memory>
#include <optional>

#include "common/job_progress.h"
#include "rptq/method/sensitivity.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableView;
class QTimer;

namespace rptq::ui {

class QuantizePage;
class SensitivityModel;
class Session;

class SensitivityPage : public QWidget {
  Q_OBJECT
 public:
  // `quantize` gives the "Quantize step's setting" choice and receives the suggested overrides.
  SensitivityPage(Session* session, QuantizePage* quantize, QWidget* parent = nullptr);
  ~SensitivityPage() override;

  bool running() const { return job_ != nullptr; }
  // A saved result is being looked up (reading the text's hash and the sensitivity file).
  bool looking_up() const { return lookups_running_ > 0 || lookup_timer_pending(); }
  // The result shown (measured or loaded), or null.
  const rptq::SensitivityResult* result() const;
  // Where the shown result came from: true when it was loaded from the sensitivity file.
  bool result_loaded() const { return loaded_; }
  // The setting the page probes (a preset, or the Quantize step's setting); throws rptq::InputError naming a bad
  // value.
  rptq::QuantConfig config() const;
  // Chooses the setting: a preset name ("W4A4") or "quantize" for the Quantize step's; false when not offered.
  bool select_setting(const QString& name);
  // The suggestion for the shown result and the current N and bits (empty without a result).
  const std::optional<rptq::SensitivitySuggestion>& suggestion() const { return suggestion_; }

  QComboBox* setting_combo() const { return setting_; }
  QLineEdit* data_edit() const { return data_edit_; }
  QSpinBox* windows_spin() const { return windows_; }
  QSpinBox* seqlen_spin() const { return seqlen_; }
  QPushButton* run_button() const { return run_; }
  QPushButton* cancel_button() const { return cancel_; }
  QProgressBar* progress_bar() const { return bar_; }
  QLabel* status_label() const { return status_; }
  QComboBox* metric_combo() const { return metric_; }
  SensitivityModel* heat_model() const { return model_; }
  QTableView* heat_view() const { return view_; }
  QSpinBox* suggest_count_spin() const { return suggest_n_; }
  QComboBox* suggest_bits_combo() const { return suggest_bits_; }
  QPlainTextEdit* overrides_text() const { return overrides_; }
  QLabel* memory_label() const { return memory_; }
  QPushButton* use_button() const { return use_; }

 Q_SIGNALS:
  void running_changed(bool running);
  void result_changed();
  void explore_requested(int layer, int reorder_index, int k);
  void quantize_requested();  // after the suggestion was handed to the Quantize step

 public Q_SLOTS:
  void start();
  void cancel();
  // Looks for a saved result of the current statistics, setting, text and windows (on a worker), and shows it.
  void look_up_saved();
  // Hands the suggestion's overrides (with the setting's own) to the Quantize step and asks to go there.
  void use_suggestion();

 protected:
  void showEvent(QShowEvent* e) override;

 private:
  struct Request;  // what one run or look-up is about (sensitivity_page.cpp)
  std::optional<Request> request(QString* why_not) const;
  void update_availability();
  void schedule_look_up();
  bool lookup_timer_pending() const;
  void show_result(std::shared_ptr<const rptq::SensitivityResult> r, bool loaded);
  bool shown_setting_matches(const rptq::SensitivitySetting& s) const;
  void update_suggestion();
  void activated(const QModelIndex& index);
  void set_busy(bool on);

  Session* session_;
  QuantizePage* quantize_;
  QLabel* note_;
  QComboBox* setting_;
  QLabel* describe_;
  QLineEdit* data_edit_;
  QSpinBox* windows_;
  QSpinBox* seqlen_;
  QPushButton* run_;
  QPushButton* cancel_;
  QProgressBar* bar_;
  QLabel* status_;
  QComboBox* metric_;
  SensitivityModel* model_;
  QTableView* view_;
  QSpinBox* suggest_n_;
  QComboBox* suggest_bits_;
  QPlainTextEdit* overrides_;
  QLabel* memory_;
  QPushButton* use_;
  QTimer* lookup_timer_;
  QTimer* poll_;
  std::shared_ptr<JobProgress<LoadProgress>> job_;         // the run in progress
  std::shared_ptr<const rptq::QuantConfig> shown_config_;  // the setting the shown result was measured with
  std::optional<rptq::SensitivitySetting> shown_setting_;  // and what it was measured on (a run's)
  std::optional<rptq::SensitivitySuggestion> suggestion_;
  std::uint64_t lookup_id_ = 0;  // the latest look-up; older answers are dropped
  int lookups_running_ = 0;
  bool loaded_ = false;
};

}  // namespace rptq::ui
