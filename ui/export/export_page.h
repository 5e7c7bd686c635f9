#pragma once
// The Export step: write the quantized model as a really packed RPTQ checkpoint (HDF5) or as a Hugging Face folder
// of its dequantized weights (safetensors), with an overwrite confirmation, progress on a worker and a result with
// the size and location; "Open the Export" then opens it in the Model step.
#include <QWidget>

#include <memory>

#include "common/job_progress.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;

namespace rptq::ui {

class Session;
struct TaskError;

class ExportPage : public QWidget {
  Q_OBJECT
 public:
  enum Format { Hdf5, Safetensors, CompressedTensors };
  explicit ExportPage(Session* session, QWidget* parent = nullptr);
  ~ExportPage() override;

  bool exporting() const { return exporting_ != nullptr; }
  QString output_path() const;  // the chosen path, or the automatic one
  QString automatic_output_path() const;
  QString exported_path() const { return exported_; }  // the last export written ("" before)
  // Ask before replacing an existing output (tests and screenshots turn it off: they replace their own files).
  void set_confirm_overwrite(bool on) { confirm_overwrite_ = on; }

  QLineEdit* output_edit() const { return out_edit_; }
  QComboBox* format_combo() const { return format_; }
  QPushButton* export_button() const { return export_; }
  QPushButton* open_button() const { return open_; }
  QPushButton* cancel_button() const { return cancel_; }
  QProgressBar* progress_bar() const { return bar_; }
  QLabel* result_label() const { return result_; }
  QLabel* status_label() const { return status_; }

 Q_SIGNALS:
  void open_requested(const QString& path);
  void running_changed(bool running);

 public Q_SLOTS:
  void start();
  // Stops an HDF5 export at its next tensor (nothing is left behind); a Hugging Face folder export cannot stop.
  void cancel();

 private Q_SLOTS:
  void update_availability();
  // Why the chosen format cannot hold the session's quantization ("" when it can).
  QString format_mismatch() const;

 private:
  void finished(const QString& path, std::uint64_t bytes, double seconds);
  void failed(const TaskError& e);
  void set_busy(bool on);

  Session* session_;
  QLabel* note_;
  QLabel* what_;
  QLineEdit* out_edit_;
  QComboBox* format_;
  QPushButton* export_;
  QPushButton* cancel_;
  QProgressBar* bar_;
  QLabel* status_;
  QLabel* result_;
  QPushButton* open_;
  QString exported_;
  bool confirm_overwrite_ = true;
  std::shared_ptr<JobProgress<LoadProgress>> exporting_;
  class QTimer* poll_;
};

}  // namespace rptq::ui
