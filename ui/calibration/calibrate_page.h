#pragma once
// The Calibrate step: calibration text (the bundled sample by default), samples, sequence length, seed and range
// statistic; the device it runs on (CPU or a GPU); progress per layer with an ETA and a Cancel that stops within a layer; the statistics file is saved
// and can be loaded again, and re-opening a model offers the statistics last made for it.
#include <QList>
#include <QWidget>

#include <memory>

#include "rptq/method/calibration.h"

class QComboBox;
class QFrame;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableView;

namespace rptq::ui {

class CalibrationJob;
class DeviceChoice;
class LayerProgressModel;
class Session;
struct CalibrationProgress;
struct LoadedModel;
struct TaskError;

class CalibratePage : public QWidget {
  Q_OBJECT
 public:
  explicit CalibratePage(Session* session, QWidget* parent = nullptr);
  ~CalibratePage() override;

  CalibrationJob* job() const { return job_; }
  bool running() const;
  bool loading() const { return loading_ > 0; }
  // The settings as they would be used now.
  rptq::CalibrationSettings settings() const;
  QString data_path() const;
  QString output_path() const;  // the chosen file, or the automatic one
  QString automatic_output_path() const;
  QString last_stats_offer() const { return offered_; }  // the earlier statistics the banner offers, or ""

  QLineEdit* data_edit() const { return data_edit_; }
  QSpinBox* samples_spin() const { return samples_; }
  QSpinBox* seqlen_spin() const { return seqlen_; }
  QSpinBox* seed_spin() const { return seed_; }
  DeviceChoice* device_choice() const { return device_; }
  QLineEdit* output_edit() const { return out_edit_; }
  QPushButton* calibrate_button() const { return start_; }
  QPushButton* cancel_button() const { return cancel_; }
  QPushButton* load_offered_button() const { return offer_load_; }
  QProgressBar* overall_bar() const { return overall_; }
  QLabel* status_label() const { return status_; }
  LayerProgressModel* layer_model() const { return layers_model_; }

 Q_SIGNALS:
  void explore_requested();
  void threads_changed(int threads);
  void running_changed(bool running);

 public Q_SLOTS:
  void start();
  void cancel();
  void browse_statistics();
  void load_statistics(const QString& path);
  void save_statistics_as();

 private Q_SLOTS:
  void model_changed();
  void stats_changed();
  void progressed(const rptq::ui::CalibrationProgress& p);
  void finished(std::shared_ptr<const rptq::ChannelStats> stats, const QString& path);
  void cancelled();
  void failed(const rptq::ui::TaskError& e);

 private:
  void set_running(bool running);
  void update_output_placeholder();
  void save_settings() const;

  Session* session_;
  CalibrationJob* job_;
  LayerProgressModel* layers_model_;
  QFrame* offer_;
  QLabel* offer_text_;
  QPushButton* offer_load_;
  QString offered_;
  QLineEdit* data_edit_;
  QLabel* data_info_;
  QSpinBox* samples_;
  QSpinBox* seqlen_;
  QSpinBox* seed_;
  QComboBox* stat_;
  QSpinBox* threads_;
  DeviceChoice* device_;
  QLineEdit* out_edit_;
  QPushButton* start_;
  QPushButton* cancel_;
  QPushButton* load_;
  QProgressBar* overall_;
  QLabel* eta_;
  QLabel* status_;
  QTableView* layers_view_;
  QLabel* result_;
  QPushButton* explore_;
  QList<QWidget*> inputs_;  // disabled while calibrating
  int loading_ = 0;
  std::shared_ptr<const LoadedModel> calibrating_;  // the model the running calibration measures
};

}  // namespace rptq::ui
