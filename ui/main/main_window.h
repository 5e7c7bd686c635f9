#pragma once
// The workbench window: the workflow steps down the side, a page per step, standard menus and shortcuts, recent
// models, drag and drop of a model folder or .h5 file, and a status bar with the compute device and the running
// job. It owns the session and opens models; the pages do their own steps' work.
#include <QMainWindow>

#include <memory>

#include "common/job_progress.h"

class QAction;
class QLabel;
class QMenu;
class QProgressBar;
class QStackedWidget;
class QTimer;

namespace rptq::ui {

class CalibratePage;
class ComparePage;
class ExplorePage;
class ExportPage;
class HistoryPage;
class ModelPage;
class QuantizePage;
class SensitivityPage;
class Session;
class StepList;
class SweepPage;
struct OpenedSource;
struct TaskError;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  enum Step { ModelStep, CalibrateStep, ExploreStep, SensitivityStep, QuantizeStep, CompareStep, SweepStep, ExportStep,
              HistoryStep,
              StepCount };

  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  // Opens `model` when given, else the model open when the workbench last closed, else (first start, or that model
  // is gone) the embedded demo model.
  void start_up(const QString& model = {});

  Session* session() const { return session_; }
  ModelPage* model_page() const { return model_page_; }
  CalibratePage* calibrate_page() const { return calibrate_page_; }
  ExplorePage* explore_page() const { return explore_page_; }
  SensitivityPage* sensitivity_page() const { return sensitivity_page_; }
  QuantizePage* quantize_page() const { return quantize_page_; }
  ComparePage* compare_page() const { return compare_page_; }
  SweepPage* sweep_page() const { return sweep_page_; }
  ExportPage* export_page() const { return export_page_; }
  HistoryPage* history_page() const { return history_page_; }
  StepList* step_list() const { return steps_; }
  Step current_step() const;
  bool opening() const { return opening_ != nullptr; }
  // Nothing is loading, calibrating, clustering, quantizing, comparing or exporting.
  bool idle() const;
  QString device_text() const;
  QAction* cancel_action() const { return cancel_action_; }
  // A calibration, sensitivity run, quantization, comparison, generation, sweep or export runs (what Run > Cancel stops).
  bool cancellable() const;

 public Q_SLOTS:
  void go_to(rptq::ui::MainWindow::Step step);
  void open_path(const QString& path);
  void open_folder_dialog();
  void open_file_dialog();
  // Run > Cancel (Ctrl+.): stops every running job of the steps.
  void cancel_jobs();

 protected:
  void closeEvent(QCloseEvent* e) override;
  void dragEnterEvent(QDragEnterEvent* e) override;
  void dropEvent(QDropEvent* e) override;

 private Q_SLOTS:
  void opened(const rptq::ui::OpenedSource& source);
  void open_failed(const QString& path, const rptq::ui::TaskError& e);
  void update_steps();
  void update_device();
  void update_cancel();
  void rebuild_recent_menu();
  void about();

 private:
  void build_menus();
  void set_progress(bool on, const QString& what = {});

  Session* session_;
  StepList* steps_;
  QStackedWidget* pages_;
  ModelPage* model_page_;
  CalibratePage* calibrate_page_;
  ExplorePage* explore_page_;
  SensitivityPage* sensitivity_page_;
  QuantizePage* quantize_page_;
  ComparePage* compare_page_;
  SweepPage* sweep_page_;
  ExportPage* export_page_;
  HistoryPage* history_page_;
  QMenu* recent_menu_ = nullptr;
  QAction* save_stats_action_ = nullptr;
  QAction* export_chart_action_ = nullptr;
  QAction* calibrate_action_ = nullptr;
  QAction* cancel_action_ = nullptr;
  QLabel* device_label_;
  QLabel* stats_label_;
  QProgressBar* progress_;
  QTimer* progress_timer_;
  std::shared_ptr<JobProgress<LoadProgress>> opening_;  // the open in progress
};

}  // namespace rptq::ui
