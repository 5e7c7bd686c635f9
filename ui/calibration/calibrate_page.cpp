#include "calibration/calibrate_page.h"

#include <QComboBox>
#include <QDateTime>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QFrame>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTableView>
#include <QThread>
#include <QVBoxLayout>

#include "calibration/calibration_job.h"
#include "calibration/layer_progress_model.h"
#include "calibration/progress_bar_delegate.h"
#include "common/device_choice.h"
#include "common/error_dialog.h"
#include "common/format.h"
#include "common/page_heading.h"
#include "common/resources.h"
#include "common/task.h"
#include "model/model_source.h"
#include "rptq/base/error.h"
#include "rptq/method/quantize.h"
#include "rptq/export/stats_file.h"
#include "session/persisted.h"
#include "session/session.h"

namespace rptq::ui {

namespace {

QString stats_summary(const rptq::ChannelStats& st) {
  return QObject::tr("%1 layers, %2 windows of %3 tokens (seed %4, %5) from %6, calibrated %7 in %8")
      .arg(st.layers)
      .arg(st.settings.samples)
      .arg(st.settings.seqlen)
      .arg(st.settings.seed)
      .arg(QString::fromLatin1(rptq::range_stat_name(st.settings.stat)))
      .arg(QFileInfo(QString::fromStdString(st.data_path)).fileName())
      .arg(QString::fromStdString(st.created))
      .arg(human_seconds(st.seconds));
}
}  // namespace

CalibratePage::CalibratePage(Session* session, QWidget* parent)
    : QWidget(parent), session_(session), job_(new CalibrationJob(this)), layers_model_(new LayerProgressModel(this)) {
  auto* root = new QVBoxLayout(this);
  root->addWidget(page_heading(tr("Calibrate")));
  auto* intro = new QLabel(tr("Calibration runs text through the model one decoder layer at a time and records every "
                              "channel's max and min at each activation RPTQ quantizes. The statistics file it writes "
                              "is what Explore and quantization use."));
  intro->setWordWrap(true);
  root->addWidget(intro);

  // The banner that offers the statistics calibrated earlier for this model.
  offer_ = new QFrame;
  offer_->setObjectName(QStringLiteral("lastStatsBanner"));
  offer_->setFrameShape(QFrame::StyledPanel);
  offer_->setStyleSheet(QStringLiteral("#lastStatsBanner { background: #e8f1fb; border: 1px solid #9cc0e6; "
                                       "border-radius: 4px; }"));
  auto* ol = new QHBoxLayout(offer_);
  offer_text_ = new QLabel;
  offer_text_->setWordWrap(true);
  offer_load_ = new QPushButton(tr("Load"));
  offer_load_->setObjectName(QStringLiteral("loadOfferedButton"));
  auto* offer_dismiss = new QPushButton(tr("Dismiss"));
  ol->addWidget(offer_text_, 1);
  ol->addWidget(offer_load_);
  ol->addWidget(offer_dismiss);
  offer_->hide();
  root->addWidget(offer_);
  connect(offer_load_, &QPushButton::clicked, this, [this] {
    if (!offered_.isEmpty()) load_statistics(offered_);
  });
  connect(offer_dismiss, &QPushButton::clicked, offer_, &QWidget::hide);

  QSettings s;
  auto* settings_box = new QGroupBox(tr("Settings"));
  auto* form = new QFormLayout(settings_box);
  auto* data_row = new QHBoxLayout;
  data_edit_ = new QLineEdit(s.value(QStringLiteral("calibration/data"), sample_text_path()).toString());
  data_edit_->setObjectName(QStringLiteral("dataEdit"));
  auto* data_browse = new QPushButton(tr("Browse..."));
  auto* data_sample = new QPushButton(tr("Bundled Sample"));
  data_sample->setToolTip(sample_text_path());
  data_row->addWidget(data_edit_, 1);
  data_row->addWidget(data_browse);
  data_row->addWidget(data_sample);
  form->addRow(tr("Calibration text"), data_row);
  data_info_ = new QLabel;
  form->addRow(QString(), data_info_);
  samples_ = new QSpinBox;
  samples_->setObjectName(QStringLiteral("samplesSpin"));
  samples_->setRange(1, 1 << 20);
  samples_->setValue(s.value(QStringLiteral("calibration/samples"), 128).toInt());
  samples_->setToolTip(tr("Random windows of the text (the reference calibrates on 128)"));
  seqlen_ = new QSpinBox;
  seqlen_->setObjectName(QStringLiteral("seqlenSpin"));
  seqlen_->setRange(2, 1 << 20);
  seqlen_->setValue(s.value(QStringLiteral("calibration/seqlen"), 2048).toInt());
  seqlen_->setSuffix(tr(" tokens"));
  seqlen_->setToolTip(tr("Tokens per window (the reference uses 2048, or the model's positions if fewer)"));
  seed_ = new QSpinBox;
  seed_->setObjectName(QStringLiteral("seedSpin"));
  seed_->setRange(0, std::numeric_limits<int>::max());
  seed_->setValue(s.value(QStringLiteral("calibration/seed"), 2).toInt());
  stat_ = new QComboBox;
  stat_->addItem(tr("EMA of per-sample ranges (reference)"), static_cast<int>(rptq::RangeStat::Ema));
  stat_->addItem(tr("plain min/max over all samples"), static_cast<int>(rptq::RangeStat::MinMax));
  stat_->setCurrentIndex(s.value(QStringLiteral("calibration/stat"), 0).toInt() == 1 ? 1 : 0);
  stat_->setToolTip(tr("Both are always recorded; this is the one quantization uses by default"));
  threads_ = new QSpinBox;
  threads_->setRange(0, 4096);
  threads_->setSpecialValueText(tr("all cores (%1)").arg(QThread::idealThreadCount()));
  threads_->setValue(s.value(QStringLiteral("compute/threads"), 0).toInt());
  device_ = new DeviceChoice(QStringLiteral("calibration/device"));
  device_->set_cpu_threads(threads_->value());
  device_->combo()->setToolTip(tr("Where the calibration's forward passes run; the statistics are the same"));
  auto* numbers = new QHBoxLayout;
  numbers->addWidget(new QLabel(tr("Samples")));
  numbers->addWidget(samples_);
  numbers->addSpacing(12);
  numbers->addWidget(new QLabel(tr("Sequence length")));
  numbers->addWidget(seqlen_);
  numbers->addSpacing(12);
  numbers->addWidget(new QLabel(tr("Seed")));
  numbers->addWidget(seed_);
  numbers->addStretch(1);
  form->addRow(tr("Windows"), numbers);
  form->addRow(tr("Range statistic"), stat_);
  form->addRow(tr("CPU threads"), threads_);
  form->addRow(tr("Device"), device_);
  auto* out_row = new QHBoxLayout;
  out_edit_ = new QLineEdit;
  out_edit_->setObjectName(QStringLiteral("outputEdit"));
  out_edit_->setClearButtonEnabled(true);
  auto* out_browse = new QPushButton(tr("Browse..."));
  out_row->addWidget(out_edit_, 1);
  out_row->addWidget(out_browse);
  form->addRow(tr("Save statistics to"), out_row);
  root->addWidget(settings_box);

  auto* actions = new QHBoxLayout;
  start_ = new QPushButton(tr("Calibrate"));
  start_->setObjectName(QStringLiteral("calibrateButton"));
  start_->setDefault(true);
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setObjectName(QStringLiteral("cancelButton"));
  cancel_->setEnabled(false);
  load_ = new QPushButton(tr("Load Statistics..."));
  actions->addWidget(start_);
  actions->addWidget(cancel_);
  actions->addStretch(1);
  actions->addWidget(load_);
  root->addLayout(actions);

  auto* progress_box = new QGroupBox(tr("Progress"));
  auto* pl = new QVBoxLayout(progress_box);
  auto* bar_row = new QHBoxLayout;
  overall_ = new QProgressBar;
  overall_->setObjectName(QStringLiteral("overallProgress"));
  overall_->setRange(0, 1000);
  overall_->setValue(0);
  overall_->setFormat(QStringLiteral("%p%"));
  eta_ = new QLabel;
  eta_->setObjectName(QStringLiteral("etaLabel"));
  eta_->setMinimumWidth(eta_->fontMetrics().horizontalAdvance(QStringLiteral("elapsed 00 min 00 s, about 00 min 00 s left")));
  bar_row->addWidget(overall_, 1);
  bar_row->addWidget(eta_);
  pl->addLayout(bar_row);
  status_ = new QLabel(tr("Ready."));
  status_->setObjectName(QStringLiteral("calibrationStatus"));
  status_->setWordWrap(true);
  pl->addWidget(status_);
  layers_view_ = new QTableView;
  layers_view_->setObjectName(QStringLiteral("layerProgress"));
  layers_view_->setModel(layers_model_);
  layers_view_->setItemDelegateForColumn(LayerProgressModel::Progress,
                                         new ProgressBarDelegate(LayerProgressModel::kFractionRole, layers_view_));
  layers_view_->verticalHeader()->hide();
  layers_view_->setSelectionMode(QAbstractItemView::NoSelection);
  layers_view_->horizontalHeader()->setSectionResizeMode(LayerProgressModel::Layer, QHeaderView::ResizeToContents);
  layers_view_->horizontalHeader()->setSectionResizeMode(LayerProgressModel::Progress, QHeaderView::Stretch);
  layers_view_->horizontalHeader()->setSectionResizeMode(LayerProgressModel::Time, QHeaderView::ResizeToContents);
  layers_view_->verticalHeader()->setDefaultSectionSize(layers_view_->fontMetrics().height() + 8);
  pl->addWidget(layers_view_, 1);
  auto* result_row = new QHBoxLayout;
  result_ = new QLabel;
  result_->setObjectName(QStringLiteral("statsSummary"));
  result_->setWordWrap(true);
  result_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  explore_ = new QPushButton(tr("Explore \u2192"));
  explore_->setEnabled(false);
  result_row->addWidget(result_, 1);
  result_row->addWidget(explore_);
  pl->addLayout(result_row);
  root->addWidget(progress_box, 1);

  inputs_ = {data_edit_, data_browse, data_sample, samples_, seqlen_, seed_, stat_, threads_, device_, out_edit_,
             out_browse};
  connect(data_browse, &QPushButton::clicked, this, [this] {
    const QString p = QFileDialog::getOpenFileName(this, tr("Calibration text"), QFileInfo(data_path()).absolutePath(),
                                                   tr("Text files (*.txt);;All files (*)"));
    if (!p.isEmpty()) data_edit_->setText(p);
  });
  connect(data_sample, &QPushButton::clicked, this, [this] { data_edit_->setText(sample_text_path()); });
  connect(data_edit_, &QLineEdit::textChanged, this, [this] {
    const QFileInfo fi(data_path());
    data_info_->setText(fi.isFile() ? tr("%1, %2").arg(fi.fileName(), human_bytes(static_cast<std::uint64_t>(fi.size())))
                                    : tr("<span style='color:#c62828'>file not found</span>"));
    update_output_placeholder();
  });
  connect(out_browse, &QPushButton::clicked, this, [this] {
    const QString p = QFileDialog::getSaveFileName(this, tr("Save statistics to"), output_path(),
                                                   tr("Statistics files (*.h5);;All files (*)"));
    if (!p.isEmpty()) out_edit_->setText(p);
  });
  for (QSpinBox* sb : {samples_, seqlen_, seed_})
    connect(sb, &QSpinBox::valueChanged, this, &CalibratePage::update_output_placeholder);
  connect(stat_, &QComboBox::currentIndexChanged, this, &CalibratePage::update_output_placeholder);
  connect(threads_, &QSpinBox::valueChanged, this, [this](int t) {
    QSettings().setValue(QStringLiteral("compute/threads"), t);
    if (!running()) rptq::set_num_threads(t);
    device_->set_cpu_threads(t);
    Q_EMIT threads_changed(t);
  });
  connect(start_, &QPushButton::clicked, this, &CalibratePage::start);
  connect(cancel_, &QPushButton::clicked, this, &CalibratePage::cancel);
  connect(load_, &QPushButton::clicked, this, &CalibratePage::browse_statistics);
  connect(explore_, &QPushButton::clicked, this, &CalibratePage::explore_requested);
  connect(job_, &CalibrationJob::progressed, this, &CalibratePage::progressed);
  connect(job_, &CalibrationJob::finished, this, &CalibratePage::finished);
  connect(job_, &CalibrationJob::cancelled, this, &CalibratePage::cancelled);
  connect(job_, &CalibrationJob::failed, this, &CalibratePage::failed);
  connect(session_, &Session::model_changed, this, &CalibratePage::model_changed);
  connect(session_, &Session::stats_changed, this, &CalibratePage::stats_changed);
  rptq::set_num_threads(threads_->value());
  Q_EMIT data_edit_->textChanged(data_edit_->text());
  model_changed();
}

CalibratePage::~CalibratePage() { save_settings(); }

void CalibratePage::save_settings() const {
  QSettings s;
  s.setValue(QStringLiteral("calibration/data"), data_edit_->text());
  s.setValue(QStringLiteral("calibration/samples"), samples_->value());
  s.setValue(QStringLiteral("calibration/seqlen"), seqlen_->value());
  s.setValue(QStringLiteral("calibration/seed"), seed_->value());
  s.setValue(QStringLiteral("calibration/stat"), stat_->currentIndex());
}

bool CalibratePage::running() const { return job_->running(); }

rptq::CalibrationSettings CalibratePage::settings() const {
  rptq::CalibrationSettings cs;
  cs.samples = samples_->value();
  cs.seqlen = seqlen_->value();
  cs.seed = static_cast<std::uint64_t>(seed_->value());
  cs.stat = static_cast<rptq::RangeStat>(stat_->currentData().toInt());
  return cs;
}

QString CalibratePage::data_path() const { return data_edit_->text().trimmed(); }

QString CalibratePage::automatic_output_path() const {
  const LoadedModel* m = session_->model();
  const QString name = m ? m->display_name() : QStringLiteral("model");
  const rptq::CalibrationSettings cs = settings();
  const QString dir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/statistics");
  return QStringLiteral("%1/%2-%3-%4x%5-seed%6-%7.h5")
      .arg(dir, name, QFileInfo(data_path()).completeBaseName())
      .arg(cs.samples)
      .arg(cs.seqlen)
      .arg(cs.seed)
      .arg(QString::fromLatin1(rptq::range_stat_name(cs.stat)));
}

QString CalibratePage::output_path() const {
  const QString p = out_edit_->text().trimmed();
  return p.isEmpty() ? automatic_output_path() : p;
}

void CalibratePage::update_output_placeholder() {
  out_edit_->setPlaceholderText(tr("automatic: %1").arg(QDir::toNativeSeparators(automatic_output_path())));
}

void CalibratePage::model_changed() {
  if (running()) cancel();  // its statistics would belong to the model no longer open
  const LoadedModel* m = session_->model();
  const bool usable = m && m->model;
  if (usable) {
    const std::int64_t positions = m->model->config().max_positions;
    const int max_len = static_cast<int>(std::clamp<std::int64_t>(positions > 0 ? positions : 1 << 20, 2, 1 << 20));
    const int wanted = QSettings().value(QStringLiteral("calibration/seqlen"), 2048).toInt();
    seqlen_->setMaximum(max_len);
    seqlen_->setValue(std::min(wanted, max_len));
  }
  layers_model_->reset(usable ? static_cast<int>(m->model->config().layers) : 0);
  overall_->setValue(0);
  eta_->clear();
  if (!running()) {
    start_->setEnabled(usable);
    status_->setText(!m ? tr("Open a model first.")
                        : usable ? tr("Ready to calibrate %1.").arg(m->display_name())
                                 : tr("%1 is a quantized checkpoint: calibration needs the FP model folder.")
                                       .arg(m->display_name()));
  }
  update_output_placeholder();
  // Offer the statistics made last time for this model.
  offered_ = m ? last_stats_for(m->path) : QString();
  offer_->setVisible(!offered_.isEmpty());
  if (!offered_.isEmpty())
    offer_text_->setText(tr("Statistics calibrated earlier for this model: <b>%1</b> (%2). Load them?")
                             .arg(QFileInfo(offered_).fileName(),
                                  QFileInfo(offered_).lastModified().toString(QStringLiteral("yyyy-MM-dd hh:mm"))));
}

void CalibratePage::stats_changed() {
  const rptq::ChannelStats* st = session_->stats();
  explore_->setEnabled(st != nullptr);
  if (!st) {
    result_->clear();
    return;
  }
  if (session_->stats_path() == offered_) offer_->hide();
  result_->setText(tr("<b>Statistics:</b> %1<br>%2")
                       .arg(QDir::toNativeSeparators(session_->stats_path()).toHtmlEscaped(),
                            stats_summary(*st).toHtmlEscaped()));
}

void CalibratePage::set_running(bool on) {
  start_->setEnabled(!on && session_->fp_model());
  cancel_->setEnabled(on);
  load_->setEnabled(!on);
  for (QWidget* w : inputs_) w->setEnabled(!on);
  Q_EMIT running_changed(on);
}

void CalibratePage::start() {
  if (running()) return;
  auto model = session_->model_ptr();
  if (!model || !model->model) return;
  const QString out = output_path();
  // A file the user named is replaced only when they agree; the automatic one is ours to replace.
  if (!out_edit_->text().trimmed().isEmpty() && QFileInfo::exists(out) &&
      QMessageBox::question(this, tr("Replace statistics file?"),
                            tr("%1 exists. Replace it with the new statistics?").arg(QDir::toNativeSeparators(out))) !=
          QMessageBox::Yes)
    return;
  save_settings();
  CalibrationRequest r;
  r.model = model;
  r.data_path = data_path();
  r.out_path = out;
  r.settings = settings();
  r.threads = threads_->value();
  r.exec = device_->execution();
  layers_model_->reset(static_cast<int>(model->model->config().layers));
  overall_->setValue(0);
  eta_->clear();
  status_->setText(tr("Reading and tokenizing %1\u2026").arg(QFileInfo(r.data_path).fileName()));
  calibrating_ = model;
  set_running(true);
  job_->start(r);
}

void CalibratePage::cancel() {
  if (!running()) return;
  status_->setText(tr("Cancelling\u2026"));
  cancel_->setEnabled(false);
  job_->cancel();
}

void CalibratePage::progressed(const CalibrationProgress& p) {
  using Stage = CalibrationProgress::Stage;
  if (p.stage == Stage::Tokenizing) return;
  if (p.layers.total == 0) {  // the windows are being embedded; no window has run yet
    status_->setText(tr("Preparing %1 windows (%2 tokens of text)\u2026").arg(settings().samples).arg(grouped(p.tokens)));
    return;
  }
  layers_model_->update(p.layers, p.calibrate_seconds);
  overall_->setValue(qRound(p.layers.fraction() * 1000));
  const double eta = p.eta_seconds();
  eta_->setText(eta >= 0 ? tr("elapsed %1, about %2 left").arg(human_seconds(p.calibrate_seconds), human_seconds(eta))
                         : tr("elapsed %1").arg(human_seconds(p.calibrate_seconds)));
  if (job_->running() && cancel_->isEnabled()) {
    if (p.stage == Stage::Saving)
      status_->setText(tr("Saving the statistics file\u2026"));
    else
      status_->setText(tr("Layer %1 of %2, window %3 of %4 (%5 tokens of text)")
                           .arg(p.layers.layer + 1)
                           .arg(p.layers.layers)
                           .arg(p.layers.sample)
                           .arg(p.layers.samples)
                           .arg(grouped(p.tokens)));
  }
}

void CalibratePage::finished(std::shared_ptr<const rptq::ChannelStats> stats, const QString& path) {
  set_running(false);
  layers_model_->mark_all_done(stats->seconds);
  overall_->setValue(1000);
  eta_->setText(tr("done in %1").arg(human_seconds(job_->elapsed_seconds())));
  status_->setText(tr("Calibrated and saved %1.").arg(QDir::toNativeSeparators(path)));
  if (calibrating_) remember_stats_for(calibrating_->path, path);
  const bool current = calibrating_ == session_->model_ptr();
  calibrating_.reset();
  if (!current) return;
  offered_ = path;
  session_->set_stats(std::move(stats), path);
}

void CalibratePage::cancelled() {
  calibrating_.reset();
  set_running(false);
  layers_model_->mark_stopped();
  eta_->clear();
  status_->setText(tr("Cancelled. Nothing was saved; the statistics in use (if any) are unchanged."));
}

void CalibratePage::failed(const TaskError& e) {
  calibrating_.reset();
  set_running(false);
  layers_model_->mark_stopped();
  eta_->clear();
  status_->setText(tr("Calibration failed: %1").arg(e.message));
  show_task_error(window(), tr("Calibration failed"), e);
}

void CalibratePage::browse_statistics() {
  const QString dir = QFileInfo(session_->stats_path().isEmpty() ? automatic_output_path() : session_->stats_path())
                          .absolutePath();
  const QString p =
      QFileDialog::getOpenFileName(this, tr("Load statistics"), dir, tr("Statistics files (*.h5);;All files (*)"));
  if (!p.isEmpty()) load_statistics(p);
}

void CalibratePage::load_statistics(const QString& path) {
  auto model = session_->model_ptr();
  ++loading_;
  status_->setText(tr("Loading %1\u2026").arg(QFileInfo(path).fileName()));
  run_task(
      this, nullptr,
      [path, model] {
        auto st = read_statistics_file(path);
        // Statistics of another model would cluster channels that do not exist: refuse them clearly.
        if (model && model->model) rptq::check_stats_match(*st, model->model->config(), path.toStdString());
        return st;
      },
      [this, path, model](std::shared_ptr<const rptq::ChannelStats> st) {
        --loading_;
        if (model != session_->model_ptr()) return;  // another model was opened meanwhile
        if (model) remember_stats_for(model->path, path);
        status_->setText(tr("Loaded %1.").arg(QDir::toNativeSeparators(path)));
        session_->set_stats(std::move(st), path);
      },
      [this](const TaskError& e) {
        --loading_;
        status_->setText(tr("Could not load the statistics: %1").arg(e.message));
        show_task_error(window(), tr("Cannot load statistics"), e);
      });
}

void CalibratePage::save_statistics_as() {
  auto st = session_->stats_ptr();
  if (!st) return;
  const QString p = QFileDialog::getSaveFileName(this, tr("Save statistics as"), session_->stats_path(),
                                                 tr("Statistics files (*.h5);;All files (*)"));
  if (p.isEmpty() || p == session_->stats_path()) return;
  run_task(
      this, nullptr,
      [st, p] {
        rptq::save_stats(p.toStdString(), *st, /*overwrite=*/true);  // the dialog asked before replacing
        return p;
      },
      [this, st](QString path) {
        if (st != session_->stats_ptr()) return;
        if (const LoadedModel* m = session_->model()) remember_stats_for(m->path, path);
        session_->set_stats(st, path);
      },
      [this](const TaskError& e) { show_task_error(window(), tr("Cannot save statistics"), e); });
}

}  // namespace rptq::ui
