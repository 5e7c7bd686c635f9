#pragma once
// The Sweep step, the paper's ablations: one setting of the Quantize step's (the cluster count of a reorder index or
// of all five, the activation bits of a tap or of all, the KV-cache bits or the weight bits) stepped over values,
// each point quantized afresh and compared with the FP model on a few windows of a text (rptq::run_sweep, as
// `rptq sweep`). Perplexity, KL and top-1 agreement against the value as charts that grow point by point, and a
// table. Progress (point i of n and its phase), Cancel (here or Run > Cancel), Save / Load of the sweep file (the
// JSON `rptq sweep --out` writes), and each finished sweep recorded in the run history (kind "sweep").
#include <QWidget>

#include <memory>
#include <vector>

#include "common/job_progress.h"
#include "rptq/method/sweep.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;
class QTimer;

namespace rptq::ui {

class QuantizePage;
class Session;
class SweepChart;

// What the worker reports: the share done, the phase in words, and the points measured so far.
struct SweepJobProgress {
  double fraction = 0;
  QString what;
  std::vector<rptq::SweepPoint> points;
};

class SweepPage : public QWidget {
  Q_OBJECT
 public:
  // `quantize` gives the base setting (its config(), ranges option and device).
  SweepPage(Session* session, QuantizePage* quantize, QWidget* parent = nullptr);
  ~SweepPage() override;

  bool running() const { return job_ != nullptr; }
  // The sweep shown when it is complete (measured here or loaded), else null.
  const rptq::SweepResult* result() const { return result_.get(); }
  // The sweep the controls describe; throws rptq::InputError naming a bad axis, target or value.
  rptq::SweepSpec spec() const;
  // Saves the shown sweep as JSON / shows a sweep file; failures are shown in a dialog and return false.
  bool save_to(const QString& path);
  bool load_from(const QString& path);

  QComboBox* axis_combo() const { return axis_; }
  QComboBox* target_combo() const { return target_; }
  QLineEdit* values_edit() const { return values_; }
  QLineEdit* data_edit() const { return data_edit_; }
  QSpinBox* windows_spin() const { return windows_; }
  QSpinBox* seqlen_spin() const { return seqlen_; }
  QPushButton* run_button() const { return run_; }
  QPushButton* cancel_button() const { return cancel_; }
  QPushButton* save_button() const { return save_; }
  QPushButton* load_button() const { return load_; }
  QProgressBar* progress_bar() const { return bar_; }
  QLabel* status_label() const { return status_; }
  SweepChart* chart() const { return chart_; }
  QTableWidget* table() const { return table_; }
  // Points measured by the run in progress (or the last one, when cancelled).
  int points_shown() const { return shown_; }

 Q_SIGNALS:
  void running_changed(bool running);
  void result_changed();

 public Q_SLOTS:
  void start();
  void cancel();
  void save_dialog();
  void load_dialog();

 protected:
  void showEvent(QShowEvent* e) override;

 private:
  struct Request;  // what one run is about (sweep_page.cpp)
  std::unique_ptr<Request> request(QString* why_not) const;
  void axis_changed();
  void update_availability();
  void set_busy(bool on);
  void poll();
  void begin_points(const rptq::SweepSpec& spec);
  void add_point(const rptq::SweepPoint& p, double ppl_fp);
  void show_result(std::shared_ptr<const rptq::SweepResult> r);
  void record(const rptq::SweepResult& r, const QString& device);

  Session* session_;
  QuantizePage* quantize_;
  QLabel* note_;
  QComboBox* axis_;
  QComboBox* target_;
  QLineEdit* values_;
  QLabel* describe_;
  QLineEdit* data_edit_;
  QSpinBox* windows_;
  QSpinBox* seqlen_;
  QPushButton* run_;
  QPushButton* cancel_;
  QPushButton* save_;
  QPushButton* load_;
  QProgressBar* bar_;
  QLabel* status_;
  SweepChart* chart_;
  QTableWidget* table_;
  QTimer* poll_;
  std::shared_ptr<JobProgress<SweepJobProgress>> job_;  // the run in progress
  unsigned seen_ = 0;                                   // the job's progress version last shown
  int shown_ = 0;                                       // points on the chart
  std::shared_ptr<const rptq::SweepResult> result_;
};

}  // namespace rptq::ui
