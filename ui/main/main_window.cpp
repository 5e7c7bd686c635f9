#include "main/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QSettings>
#include <QStackedWidget>
#include <QStatusBar>
#include <QThreadPool>
#include <QTimer>

#include <exception>

#include "calibration/calibrate_page.h"
#include "common/chart_view.h"
#include "common/device_choice.h"
#include "compare/compare_page.h"
#include "common/error_dialog.h"
#include "common/format.h"
#include "common/resources.h"
#include "common/task.h"
#include "explore/explore_page.h"
#include "export/export_page.h"
#include "history/history_page.h"
#include "main/step_list.h"
#include "model/model_page.h"
#include "model/model_source.h"
#include "quantize/quantize_page.h"
#include "sensitivity/sensitivity_page.h"
#include "sweep/sweep_page.h"
#include "rptq/device.h"
#include "rptq/model/model.h"
#include "rptq/method/quantize.h"
#include "rptq/version_info.h"
#include "session/persisted.h"
#include "session/session.h"

namespace rptq::ui {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent), session_(new Session(this)) {
  setWindowTitle(tr("RPTQ Workbench"));
  setAcceptDrops(true);
  steps_ = new StepList({tr("Model"), tr("Calibrate"), tr("Explore"), tr("Sensitivity"), tr("Quantize"), tr("Compare"),
                         tr("Sweep"), tr("Export"), tr("History")});
  pages_ = new QStackedWidget;
  model_page_ = new ModelPage(session_);
  calibrate_page_ = new CalibratePage(session_);
  explore_page_ = new ExplorePage(session_);
  pages_->addWidget(model_page_);
  pages_->addWidget(calibrate_page_);
  pages_->addWidget(explore_page_);
  quantize_page_ = new QuantizePage(session_);
  sensitivity_page_ = new SensitivityPage(session_, quantize_page_);
  pages_->addWidget(sensitivity_page_);
  compare_page_ = new ComparePage(session_);
  export_page_ = new ExportPage(session_);
  pages_->addWidget(quantize_page_);
  pages_->addWidget(compare_page_);
  sweep_page_ = new SweepPage(session_, quantize_page_);
  pages_->addWidget(sweep_page_);
  pages_->addWidget(export_page_);
  history_page_ = new HistoryPage(session_);
  pages_->addWidget(history_page_);

  auto* central = new QWidget;
  auto* layout = new QHBoxLayout(central);
  layout->setContentsMargins(6, 6, 6, 0);
  layout->addWidget(steps_);
  layout->addWidget(pages_, 1);
  setCentralWidget(central);
  connect(steps_, &QListWidget::currentRowChanged, this, [this](int row) {
    if (row >= 0) pages_->setCurrentIndex(row);
  });

  device_label_ = new QLabel;
  device_label_->setObjectName(QStringLiteral("deviceLabel"));
  stats_label_ = new QLabel;
  progress_ = new QProgressBar;
  progress_->setRange(0, 1000);
  progress_->setMaximumWidth(220);
  progress_->setVisible(false);
  statusBar()->addPermanentWidget(progress_);
  statusBar()->addPermanentWidget(stats_label_);
  statusBar()->addPermanentWidget(device_label_);
  progress_timer_ = new QTimer(this);
  progress_timer_->setInterval(80);
  connect(progress_timer_, &QTimer::timeout, this, [this] {
    if (!opening_) return;
    const LoadProgress p = opening_->get();
    progress_->setValue(qRound(p.fraction * 1000));
    if (!p.what.isEmpty()) statusBar()->showMessage(p.what);
  });

  build_menus();
  connect(session_, &Session::model_changed, this, &MainWindow::update_steps);
  connect(session_, &Session::stats_changed, this, &MainWindow::update_steps);
  connect(model_page_, &ModelPage::open_requested, this, &MainWindow::open_path);
  connect(model_page_, &ModelPage::open_folder_dialog_requested, this, &MainWindow::open_folder_dialog);
  connect(model_page_, &ModelPage::open_checkpoint_dialog_requested, this, &MainWindow::open_file_dialog);
  connect(calibrate_page_, &CalibratePage::explore_requested, this, [this] { go_to(ExploreStep); });
  connect(calibrate_page_, &CalibratePage::threads_changed, this, &MainWindow::update_device);
  connect(calibrate_page_, &CalibratePage::threads_changed, compare_page_->device_choice(),
          &DeviceChoice::set_cpu_threads);
  connect(calibrate_page_, &CalibratePage::running_changed, this, [this](bool on) {
    calibrate_action_->setEnabled(!on && session_->fp_model());
    update_cancel();
    if (on) statusBar()->showMessage(tr("Calibrating\u2026"));
    else statusBar()->clearMessage();
  });
  connect(explore_page_, &ExplorePage::calibrate_requested, this, [this] { go_to(CalibrateStep); });
  connect(explore_page_, &ExplorePage::load_stats_requested, calibrate_page_, &CalibratePage::browse_statistics);
  connect(session_, &Session::quantized_changed, this, &MainWindow::update_steps);
  connect(quantize_page_, &QuantizePage::compare_requested, this, [this] { go_to(CompareStep); });
  connect(sensitivity_page_, &SensitivityPage::running_changed, this, [this](bool on) {
    update_cancel();
    if (on) statusBar()->showMessage(tr("Probing the sensitivity\u2026"));
    else statusBar()->clearMessage();
  });
  connect(sensitivity_page_, &SensitivityPage::result_changed, this, &MainWindow::update_steps);
  connect(sweep_page_, &SweepPage::running_changed, this, [this](bool on) {
    update_cancel();
    update_device();
    if (on) statusBar()->showMessage(tr("Sweeping…"));
    else statusBar()->clearMessage();
  });
  connect(sweep_page_, &SweepPage::result_changed, this, &MainWindow::update_steps);
  connect(sensitivity_page_, &SensitivityPage::explore_requested, this, [this](int layer, int index, int k) {
    go_to(ExploreStep);
    explore_page_->select(layer, index, k);
  });
  connect(sensitivity_page_, &SensitivityPage::quantize_requested, this, [this] { go_to(QuantizeStep); });
  connect(quantize_page_, &QuantizePage::running_changed, this, [this](bool on) {
    update_cancel();
    update_device();  // free GPU memory changes with the jobs
    if (on) statusBar()->showMessage(tr("Quantizing\u2026"));
    else statusBar()->clearMessage();
  });
  auto follow_config = [this] {
    try {
      compare_page_->set_memory_config(quantize_page_->config());
    } catch (const std::exception&) {
      // an invalid custom setting: the chart keeps the last valid one
    }
  };
  connect(quantize_page_, &QuantizePage::config_changed, this, follow_config);
  follow_config();
  connect(compare_page_, &ComparePage::running_changed, this, &MainWindow::update_steps);
  connect(history_page_, &HistoryPage::runs_changed, this, &MainWindow::update_steps);
  connect(history_page_, &HistoryPage::reopen_requested, this, [this](const rptq::QuantConfig& c) {
    const QString lost = quantize_page_->apply_config(c);
    go_to(QuantizeStep);
    if (!lost.isEmpty())
      statusBar()->showMessage(tr("Re-opened the setting; the Quantize step cannot show: %1").arg(lost), 10000);
  });
  connect(export_page_, &ExportPage::running_changed, this, &MainWindow::update_steps);
  connect(compare_page_, &ComparePage::running_changed, this, &MainWindow::update_cancel);
  connect(export_page_, &ExportPage::running_changed, this, &MainWindow::update_cancel);
  connect(compare_page_, &ComparePage::running_changed, this, &MainWindow::update_device);
  connect(export_page_, &ExportPage::running_changed, this, &MainWindow::update_device);
  connect(export_page_, &ExportPage::open_requested, this, [this](const QString& path) {
    go_to(ModelStep);
    open_path(path);
  });

  update_steps();
  update_device();
  steps_->setCurrentRow(ModelStep);
  QSettings s;
  if (!restoreGeometry(s.value(QStringLiteral("window/geometry")).toByteArray())) resize(1360, 880);
  restoreState(s.value(QStringLiteral("window/state")).toByteArray());
}

MainWindow::~MainWindow() {
  if (opening_) opening_->cancel();
  cancel_jobs();  // nothing of a running job is kept: let it end instead of running on after the window
}

void MainWindow::build_menus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  QAction* open = file->addAction(tr("&Open Model Folder..."), this, &MainWindow::open_folder_dialog);
  open->setShortcut(QKeySequence::Open);
  QAction* open_file = file->addAction(tr("Open &Checkpoint or Statistics File..."), this, &MainWindow::open_file_dialog);
  open_file->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
  file->addAction(tr("Open &Demo Model"), this, [this] { open_path(demo_model_dir()); });
  recent_menu_ = file->addMenu(tr("Open &Recent"));
  connect(recent_menu_, &QMenu::aboutToShow, this, &MainWindow::rebuild_recent_menu);
  rebuild_recent_menu();
  file->addSeparator();
  QAction* load_stats = file->addAction(tr("&Load Statistics..."), calibrate_page_, &CalibratePage::browse_statistics);
  load_stats->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_L));
  save_stats_action_ = file->addAction(tr("&Save Statistics As..."), calibrate_page_, &CalibratePage::save_statistics_as);
  save_stats_action_->setShortcut(QKeySequence::SaveAs);
  file->addSeparator();
  export_chart_action_ = file->addAction(tr("&Export Chart..."), this, [this] {
    go_to(ExploreStep);
    explore_page_->export_scatter();
  });
  export_chart_action_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
  file->addSeparator();
  QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);
  quit->setMenuRole(QAction::QuitRole);

  QMenu* view = menuBar()->addMenu(tr("&View"));
  const QStringList names = {tr("&Model"),    tr("&Calibrate"), tr("&Explore"), tr("&Sensitivity"),
                             tr("&Quantize"), tr("C&ompare"),   tr("S&weep"),   tr("E&xport"),
                             tr("&History")};
  static_assert(StepCount == 9, "one View menu entry per step");
  for (int i = 0; i < StepCount && i < names.size(); ++i) {
    QAction* a = view->addAction(names[i], this, [this, i] { go_to(static_cast<Step>(i)); });
    a->setShortcut(QKeySequence(Qt::CTRL | static_cast<Qt::Key>(Qt::Key_1 + i)));
  }
  view->addSeparator();
  QAction* gl = view->addAction(tr("Use &OpenGL for Large Scatter Plots"));
  gl->setCheckable(true);
  gl->setChecked(ChartView::opengl_enabled());
  gl->setEnabled(ChartView::opengl_available());
  if (!ChartView::opengl_available()) gl->setToolTip(tr("This display platform has no OpenGL"));
  connect(gl, &QAction::toggled, this, [](bool on) { ChartView::set_opengl_enabled(on); });

  QMenu* run = menuBar()->addMenu(tr("&Run"));
  calibrate_action_ = run->addAction(tr("&Calibrate"), this, [this] {
    go_to(CalibrateStep);
    calibrate_page_->start();
  });
  calibrate_action_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_R));
  cancel_action_ = run->addAction(tr("C&ancel"), this, &MainWindow::cancel_jobs);
  cancel_action_->setObjectName(QStringLiteral("cancelAction"));
  cancel_action_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Period));
  cancel_action_->setStatusTip(
      tr("Stop the running calibration, sensitivity run, quantization, comparison, generation, sweep or export"));
  cancel_action_->setEnabled(false);

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About RPTQ Workbench"), this, &MainWindow::about);
  help->addAction(tr("About &Qt"), qApp, &QApplication::aboutQt);
}

void MainWindow::rebuild_recent_menu() {
  recent_menu_->clear();
  const QStringList recent = recent_models();
  for (const QString& p : recent) {
    QAction* a = recent_menu_->addAction(QFileInfo(p).fileName(), this, [this, p] { open_path(p); });
    a->setToolTip(p);
    a->setStatusTip(p);
  }
  if (recent.isEmpty()) recent_menu_->addAction(tr("(none)"))->setEnabled(false);
  recent_menu_->addSeparator();
  recent_menu_->addAction(tr("Clear Recent"), this, [] { clear_recent_models(); })->setEnabled(!recent.isEmpty());
}

void MainWindow::start_up(const QString& model) {
  QString path = model;
  if (path.isEmpty()) {
    const QString last = last_model();
    path = !last.isEmpty() && QFileInfo::exists(last) ? last : demo_model_dir();
  }
  open_path(path);
}

bool MainWindow::cancellable() const {
  return calibrate_page_->running() || sensitivity_page_->running() || quantize_page_->running() ||
         compare_page_->comparing() ||
         compare_page_->generating() || sweep_page_->running() || export_page_->exporting();
}

void MainWindow::cancel_jobs() {
  if (calibrate_page_->running()) calibrate_page_->cancel();
  if (sensitivity_page_->running()) sensitivity_page_->cancel();
  if (quantize_page_->running()) quantize_page_->cancel();
  if (compare_page_->comparing() || compare_page_->generating()) compare_page_->stop();
  if (sweep_page_->running()) sweep_page_->cancel();
  if (export_page_->exporting()) export_page_->cancel();
}

void MainWindow::update_cancel() {
  cancel_action_->setEnabled(cancellable());
  QStringList what;
  if (calibrate_page_->running()) what << tr("Calibration");
  if (sensitivity_page_->running()) what << tr("Sensitivity");
  if (quantize_page_->running()) what << tr("Quantization");
  if (compare_page_->comparing()) what << tr("Comparison");
  if (compare_page_->generating()) what << tr("Generation");
  if (sweep_page_->running()) what << tr("Sweep");
  if (export_page_->exporting()) what << tr("Export");
  cancel_action_->setText(what.isEmpty() ? tr("C&ancel") : tr("C&ancel %1").arg(what.join(QStringLiteral(", "))));
}

MainWindow::Step MainWindow::current_step() const { return static_cast<Step>(pages_->currentIndex()); }

bool MainWindow::idle() const {
  return !opening_ && !calibrate_page_->running() && !calibrate_page_->loading() && explore_page_->up_to_date() &&
         !sensitivity_page_->running() && !sensitivity_page_->looking_up() && !quantize_page_->running() &&
         !compare_page_->comparing() && !compare_page_->generating() && !sweep_page_->running() &&
         !export_page_->exporting();
}

void MainWindow::go_to(Step step) {
  if (!steps_->step_enabled(step)) {
    statusBar()->showMessage(step == ExploreStep ? tr("Explore needs channel statistics: calibrate or load them first.")
                                                 : tr("Open a model folder first."),
                             4000);
    return;
  }
  steps_->setCurrentRow(step);
}

void MainWindow::update_steps() {
  const LoadedModel* m = session_->model();
  const bool fp = session_->fp_model() != nullptr;
  const bool stats = session_->stats() != nullptr;
  steps_->set_step_enabled(ModelStep, true);
  steps_->set_step_enabled(CalibrateStep, m != nullptr);
  steps_->set_step_enabled(ExploreStep, stats);
  steps_->set_step_done(ModelStep, m != nullptr);
  steps_->set_step_done(CalibrateStep, stats);
  steps_->set_step_note(ModelStep, m ? m->display_name() : QString());
  if (const rptq::ChannelStats* st = session_->stats())
    steps_->set_step_note(CalibrateStep, tr("%1 \u00d7 %2 tokens").arg(st->settings.samples).arg(st->settings.seqlen));
  else
    steps_->set_step_note(CalibrateStep, QString());
  const bool quantized = session_->quantized() != nullptr;
  for (int s : {SensitivityStep, QuantizeStep, CompareStep, SweepStep, ExportStep, HistoryStep})
    steps_->set_step_enabled(s, m != nullptr);
  steps_->set_step_note(HistoryStep, history_page_->runs().empty()
                                         ? QString()
                                         : history_page_->runs().size() == 1
                                               ? tr("1 run")
                                               : tr("%1 runs").arg(history_page_->runs().size()));
  steps_->set_step_done(SensitivityStep, sensitivity_page_->result() != nullptr);
  steps_->set_step_note(SensitivityStep, stats ? QString() : tr("needs statistics"));
  steps_->set_step_done(QuantizeStep, quantized);
  steps_->set_step_done(CompareStep, compare_page_->result().has_value());
  steps_->set_step_done(SweepStep, sweep_page_->result() != nullptr);
  steps_->set_step_note(SweepStep, stats ? QString() : tr("needs statistics"));
  steps_->set_step_done(ExportStep, !export_page_->exported_path().isEmpty());
  if (const QuantizationSummary* q = session_->quantization_summary())
    steps_->set_step_note(QuantizeStep, QString::fromStdString(q->config.name));
  else
    steps_->set_step_note(QuantizeStep, stats ? QString() : tr("needs statistics"));
  steps_->set_step_note(CompareStep, quantized ? QString() : tr("needs a quantized model"));
  steps_->set_step_note(ExportStep, quantized ? QString() : tr("needs a quantized model"));
  save_stats_action_->setEnabled(stats);
  export_chart_action_->setEnabled(stats);
  calibrate_action_->setEnabled(fp && !calibrate_page_->running());
  stats_label_->setText(stats ? tr("statistics: %1").arg(QFileInfo(session_->stats_path()).fileName()) : QString());
  stats_label_->setToolTip(session_->stats_path());
  setWindowTitle(m ? tr("%1 \u2014 RPTQ Workbench").arg(m->display_name()) : tr("RPTQ Workbench"));
  if (!steps_->step_enabled(current_step())) steps_->setCurrentRow(m ? CalibrateStep : ModelStep);
}

QString MainWindow::device_text() const { return device_label_->text(); }

namespace {
// What the status bar says about the compute device: the first GPU the kernels run on, with its free memory, when
// CUDA support is compiled in and such a GPU is present; else the CPU and its threads. Probing starts the CUDA
// runtime (and memory_info a context on the GPU), so it runs off the UI thread.
struct DeviceStatus {
  QString text, tooltip;
};

DeviceStatus probe_device_status(int threads) {
  const rptq::DeviceInfo info = rptq::device_info();
  DeviceStatus d;
  d.tooltip = QString::fromStdString(info.description);
  if (const rptq::GpuInfo* gpu = info.gpu(info.first_usable_gpu())) {
    try {
      const rptq::GpuMemory m = rptq::gpu_memory(gpu->ordinal);
      d.text = QCoreApplication::translate("rptq::ui::MainWindow", "%1 \u00b7 %2 free of %3")
                   .arg(QString::fromStdString(gpu->name), human_bytes(m.free_bytes), human_bytes(m.total_bytes));
      return d;
    } catch (const std::exception&) {  // a GPU whose memory cannot be read: say CPU, as without one
    }
  }
  d.text = QCoreApplication::translate("rptq::ui::MainWindow", "CPU \u00b7 %n thread(s)", "", threads);
  return d;
}
}  // namespace

void MainWindow::update_device() {
  // rptq::num_threads() reads this (the UI) thread's OpenMP setting: take it here, probe the GPU on a worker.
  const int threads = rptq::num_threads();
  if (device_label_->text().isEmpty())
    device_label_->setText(tr("CPU \u00b7 %n thread(s)", "", threads));  // until the probe answers
  run_task(
      this, nullptr, [threads] { return probe_device_status(threads); },
      [this](const DeviceStatus& d) {
        device_label_->setText(d.text);
        device_label_->setToolTip(d.tooltip);
      },
      [](const TaskError&) {});  // keeps the last text
}

void MainWindow::set_progress(bool on, const QString& what) {
  progress_->setVisible(on);
  progress_->setValue(0);
  if (on) {
    progress_timer_->start();
    statusBar()->showMessage(what);
  } else {
    progress_timer_->stop();
  }
}

void MainWindow::open_folder_dialog() {
  QSettings s;
  const QString start = s.value(QStringLiteral("paths/modelDir"), QDir::homePath()).toString();
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Open a Hugging Face model folder"), start);
  if (dir.isEmpty()) return;
  s.setValue(QStringLiteral("paths/modelDir"), QFileInfo(dir).absolutePath());
  open_path(dir);
}

void MainWindow::open_file_dialog() {
  QSettings s;
  const QString start = s.value(QStringLiteral("paths/fileDir"), QDir::homePath()).toString();
  const QString f = QFileDialog::getOpenFileName(this, tr("Open a checkpoint or statistics file"), start,
                                                 tr("HDF5 files (*.h5 *.hdf5);;All files (*)"));
  if (f.isEmpty()) return;
  s.setValue(QStringLiteral("paths/fileDir"), QFileInfo(f).absolutePath());
  open_path(f);
}

void MainWindow::open_path(const QString& path) {
  if (path.isEmpty()) return;
  if (opening_) opening_->cancel();  // the newest request wins
  auto progress = std::make_shared<JobProgress<LoadProgress>>();
  opening_ = progress;
  const QString name = QFileInfo(path).fileName();
  set_progress(true, tr("Opening %1\u2026").arg(name));
  model_page_->set_busy(true, tr("Opening %1\u2026").arg(name));
  run_task(
      this, nullptr, [path, progress] { return open_source(path, progress); },
      [this, progress](OpenedSource s) {
        if (progress != opening_) return;  // superseded
        opening_.reset();
        set_progress(false);
        model_page_->set_busy(false);
        opened(s);
      },
      [this, progress, path](const TaskError& e) {
        if (progress != opening_) return;
        opening_.reset();
        set_progress(false);
        model_page_->set_busy(false);
        open_failed(path, e);
      });
}

void MainWindow::opened(const OpenedSource& s) {
  if (s.model) {
    session_->set_model(s.model);
    add_recent_model(s.path);
    set_last_model(s.path);
    statusBar()->showMessage(tr("Opened %1.").arg(s.model->display_name()), 5000);
    if (!s.model->is_folder()) go_to(ModelStep);
    return;
  }
  if (s.stats) {
    // A statistics file: it must belong to the open model (or no model is open).
    if (const auto fp = session_->fp_model()) {
      try {
        rptq::check_stats_match(*s.stats, fp->config(), s.path.toStdString());
      } catch (const std::exception& e) {
        show_error(this, tr("Cannot use %1").arg(QFileInfo(s.path).fileName()), QString::fromStdString(e.what()));
        return;
      }
      remember_stats_for(session_->model()->path, s.path);
    }
    session_->set_stats(s.stats, s.path);
    go_to(ExploreStep);
  }
}

void MainWindow::open_failed(const QString& path, const TaskError& e) {
  statusBar()->showMessage(tr("Could not open %1.").arg(QFileInfo(path).fileName()), 5000);
  show_task_error(this, tr("Cannot open %1").arg(QFileInfo(path).fileName()), e);
}

void MainWindow::about() {
  QMessageBox::about(
      this, tr("About RPTQ Workbench"),
      tr("<h3>RPTQ Workbench %1</h3><p>Reorder-based post-training quantization (RPTQ, arXiv 2304.01089) of large "
         "language models: calibrate, explore the channel clusters, quantize, compare.</p><p>Version %1, git "
         "revision %2<br>%3<br>Compute device: %4</p>")
          .arg(QStringLiteral(RPTQ_VERSION_STRING), QStringLiteral(RPTQ_GIT_REVISION),
               rptq::cuda_compiled_in() ? tr("Built with the CUDA kernels compiled in")
                                        : tr("Built for the CPU only (no CUDA support compiled in)"),
               QString::fromStdString(rptq::device_info().description).toHtmlEscaped()));
}

void MainWindow::closeEvent(QCloseEvent* e) {
  if (quantize_page_->running()) quantize_page_->cancel();  // nothing of it is kept
  if (calibrate_page_->running()) {
    if (QMessageBox::question(this, tr("Calibration running"), tr("A calibration is running. Cancel it and quit?")) !=
        QMessageBox::Yes) {
      e->ignore();
      return;
    }
    calibrate_page_->cancel();
  }
  QSettings s;
  s.setValue(QStringLiteral("window/geometry"), saveGeometry());
  s.setValue(QStringLiteral("window/state"), saveState());
  explore_page_->save_state();
  QMainWindow::closeEvent(e);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
  const QMimeData* m = e->mimeData();
  if (m->hasUrls() && !m->urls().isEmpty() && m->urls().front().isLocalFile()) e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e) {
  const QList<QUrl> urls = e->mimeData()->urls();
  if (urls.isEmpty() || !urls.front().isLocalFile()) return;
  e->acceptProposedAction();
  open_path(urls.front().toLocalFile());
}

}  // namespace rptq::ui
