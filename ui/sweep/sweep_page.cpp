#include "sweep/sweep_page.h"

#include <QCheckBox>
#include <QComboBox>
#include <QCoreApplication>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QTimer>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

#include "common/device_choice.h"
#include "common/error_dialog.h"
#include "common/format.h"
#include "common/page_heading.h"
#include "common/resources.h"
#include "common/task.h"
#include "quantize/quantize_page.h"
#include "rptq/base/error.h"
#include "rptq/engine.h"
#include "rptq/io/files.h"
#include "rptq/io/run_history.h"
#include "rptq/model/model.h"
#include "rptq/model/model_info.h"
#include "rptq/tokenizer/tokenizer.h"
#include "session/session.h"
#include "sweep/sweep_chart.h"

namespace rptq::ui {

namespace {
constexpr std::uint64_t kKmeansSeed = 0;  // as the Quantize step and `rptq sweep` use

enum Column { ColSetting, ColPpl, ColVsFp, ColKl, ColKlP99, ColTop1, ColClusters, ColSeconds, ColumnCount };

// The default values' text of an axis, in the parser's words.
QString default_values(const QString& axis) {
  return axis == QStringLiteral("clusters") ? QStringLiteral("1,2,4..64") : QStringLiteral("2-8,16");
}

// "1 point", "7 points".
QString points_text(int n) {
  return n == 1 ? QCoreApplication::translate("rptq::ui::SweepPage", "1 point")
                : QCoreApplication::translate("rptq::ui::SweepPage", "%1 points").arg(n);
}

QString clusters_text(const rptq::SweepPoint& p) {
  QStringList s;
  for (int k : p.clusters_used) s << QString::number(k);
  return s.join(QLatin1Char('/'));
}
}  // namespace

struct SweepPage::Request {
  QString model_dir;
  std::shared_ptr<const rptq::Model> fp;
  std::shared_ptr<const rptq::ChannelStats> stats;
  QString stats_path;
  rptq::SweepSpec spec;
  rptq::QuantConfig base;
  rptq::QuantizeOptions options;
  QString data;
  rptq::PerplexityOptions windows;
  rptq::Execution exec;
};

SweepPage::SweepPage(Session* session, QuantizePage* quantize, QWidget* parent)
    : QWidget(parent), session_(session), quantize_(quantize), poll_(new QTimer(this)) {
  auto* root = new QVBoxLayout(this);
  root->addWidget(page_heading(tr("Sweep")));
  auto* intro = new QLabel(
      tr("The paper's ablations: one setting of the Quantize step's stepped over values, everything else held. "
         "Each point quantizes a fresh copy of the model and compares it with the FP model on the same windows "
         "(as <tt>rptq sweep</tt>)."));
  intro->setWordWrap(true);
  root->addWidget(intro);
  note_ = new QLabel;
  note_->setObjectName(QStringLiteral("sweepNote"));
  note_->setWordWrap(true);
  note_->setStyleSheet(
      QStringLiteral("QLabel { background: #fff4e0; border: 1px solid #e0b060; border-radius: 4px; padding: 6px; }"));
  root->addWidget(note_);

  QSettings s;
  auto* box = new QGroupBox(tr("Sweep"));
  auto* form = new QFormLayout(box);
  auto* axis_row = new QHBoxLayout;
  axis_ = new QComboBox;
  axis_->setObjectName(QStringLiteral("sweepAxis"));
  axis_->addItem(tr("Cluster count"), QStringLiteral("clusters"));
  axis_->addItem(tr("Activation bits"), QStringLiteral("abits"));
  axis_->addItem(tr("KV-cache bits"), QStringLiteral("kvbits"));
  axis_->addItem(tr("Weight bits"), QStringLiteral("wbits"));
  target_ = new QComboBox;
  target_->setObjectName(QStringLiteral("sweepTarget"));
  values_ = new QLineEdit;
  values_->setObjectName(QStringLiteral("sweepValues"));
  values_->setToolTip(tr("A comma list of N, A-B (every integer) or A..B (A, 2A, 4A, ... up to B), e.g. 1,2,4..64"));
  axis_row->addWidget(axis_);
  axis_row->addWidget(new QLabel(tr("of")));
  axis_row->addWidget(target_);
  axis_row->addWidget(new QLabel(tr("values")));
  axis_row->addWidget(values_, 1);
  form->addRow(tr("Axis"), axis_row);
  describe_ = new QLabel;
  describe_->setObjectName(QStringLiteral("sweepDescription"));
  describe_->setWordWrap(true);
  describe_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  form->addRow(tr("Base"), describe_);
  auto* data_row = new QHBoxLayout;
  data_edit_ = new QLineEdit(s.value(QStringLiteral("sweep/data"), sample_text_path()).toString());
  data_edit_->setObjectName(QStringLiteral("sweepDataEdit"));
  auto* browse = new QPushButton(tr("Browse..."));
  data_row->addWidget(data_edit_, 1);
  data_row->addWidget(browse);
  form->addRow(tr("Text"), data_row);
  auto* numbers = new QHBoxLayout;
  windows_ = new QSpinBox;
  windows_->setObjectName(QStringLiteral("sweepWindowsSpin"));
  windows_->setRange(1, 1 << 20);
  windows_->setValue(s.value(QStringLiteral("sweep/windows"), 2).toInt());
  windows_->setToolTip(tr("Evaluate at most this many windows of the text; every point runs them all"));
  seqlen_ = new QSpinBox;
  seqlen_->setObjectName(QStringLiteral("sweepSeqlenSpin"));
  seqlen_->setRange(2, 1 << 20);
  seqlen_->setValue(s.value(QStringLiteral("sweep/seqlen"), 128).toInt());
  seqlen_->setSuffix(tr(" tokens"));
  numbers->addWidget(windows_);
  numbers->addWidget(new QLabel(tr("windows of")));
  numbers->addWidget(seqlen_);
  numbers->addStretch(1);
  form->addRow(tr("Windows"), numbers);
  auto* run_row = new QHBoxLayout;
  run_ = new QPushButton(tr("Run"));
  run_->setObjectName(QStringLiteral("sweepRunButton"));
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setObjectName(QStringLiteral("sweepCancelButton"));
  cancel_->setEnabled(false);
  bar_ = new QProgressBar;
  bar_->setObjectName(QStringLiteral("sweepProgress"));
  bar_->setRange(0, 1000);
  bar_->setValue(0);
  save_ = new QPushButton(tr("Save..."));
  save_->setObjectName(QStringLiteral("sweepSaveButton"));
  save_->setToolTip(tr("Save the sweep as JSON (the file `rptq sweep --out` writes)"));
  load_ = new QPushButton(tr("Load..."));
  load_->setObjectName(QStringLiteral("sweepLoadButton"));
  load_->setToolTip(tr("Show a sweep file (saved here or by `rptq sweep --out`)"));
  run_row->addWidget(run_);
  run_row->addWidget(cancel_);
  run_row->addWidget(bar_, 1);
  run_row->addWidget(save_);
  run_row->addWidget(load_);
  form->addRow(QString(), run_row);
  status_ = new QLabel;
  status_->setObjectName(QStringLiteral("sweepStatus"));
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  form->addRow(QString(), status_);
  root->addWidget(box);

  auto* split = new QSplitter(Qt::Vertical);
  chart_ = new SweepChart;
  split->addWidget(chart_);
  table_ = new QTableWidget(0, ColumnCount);
  table_->setObjectName(QStringLiteral("sweepTable"));
  table_->setHorizontalHeaderLabels({tr("Setting"), tr("Perplexity"), tr("vs FP"), tr("KL"), tr("KL p99"),
                                     tr("Top-1"), tr("Clusters R1..R5"), tr("Seconds")});
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  table_->verticalHeader()->hide();
  table_->verticalHeader()->setDefaultSectionSize(table_->fontMetrics().height() + 6);  // compact rows
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setToolTip(tr("KL in nats per predicted position; clusters: what each index actually got (k-means "
                        "clamps a count to the distinct channel ranges)"));
  split->addWidget(table_);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 2);
  root->addWidget(split, 1);

  const int axis = axis_->findData(s.value(QStringLiteral("sweep/axis"), QStringLiteral("clusters")));
  axis_->setCurrentIndex(std::max(0, axis));
  axis_changed();

  poll_->setInterval(50);
  connect(poll_, &QTimer::timeout, this, &SweepPage::poll);
  connect(axis_, &QComboBox::currentIndexChanged, this, &SweepPage::axis_changed);
  connect(target_, &QComboBox::currentIndexChanged, this, &SweepPage::update_availability);
  connect(values_, &QLineEdit::textChanged, this, &SweepPage::update_availability);
  connect(data_edit_, &QLineEdit::textChanged, this, &SweepPage::update_availability);
  connect(browse, &QPushButton::clicked, this, [this] {
    const QString p = QFileDialog::getOpenFileName(this, tr("Evaluation text"),
                                                   QFileInfo(data_edit_->text()).absolutePath(),
                                                   tr("Text files (*.txt);;All files (*)"));
    if (!p.isEmpty()) data_edit_->setText(p);
  });
  connect(run_, &QPushButton::clicked, this, &SweepPage::start);
  connect(cancel_, &QPushButton::clicked, this, &SweepPage::cancel);
  connect(save_, &QPushButton::clicked, this, &SweepPage::save_dialog);
  connect(load_, &QPushButton::clicked, this, &SweepPage::load_dialog);
  connect(quantize_, &QuantizePage::config_changed, this, &SweepPage::update_availability);
  connect(session_, &Session::model_changed, this, &SweepPage::update_availability);
  connect(session_, &Session::stats_changed, this, &SweepPage::update_availability);
  update_availability();
}

SweepPage::~SweepPage() {
  if (job_) job_->cancel();  // the worker owns its data and stops at its next check
  QSettings s;
  s.setValue(QStringLiteral("sweep/axis"), axis_->currentData());
  s.setValue(QStringLiteral("sweep/data"), data_edit_->text());
  s.setValue(QStringLiteral("sweep/windows"), windows_->value());
  s.setValue(QStringLiteral("sweep/seqlen"), seqlen_->value());
}

void SweepPage::axis_changed() {
  const QString axis = axis_->currentData().toString();
  const QSignalBlocker block(target_);
  target_->clear();
  target_->addItem(tr("all"), QStringLiteral("all"));
  if (axis == QStringLiteral("clusters")) {
    target_->setItemText(0, tr("all (R1..R5)"));
    for (int r = 1; r <= rptq::kReorderIndices; ++r) target_->addItem(QStringLiteral("R%1").arg(r), QStringLiteral("R%1").arg(r));
  } else if (axis == QStringLiteral("abits")) {
    target_->setItemText(0, tr("all but K/V"));
    for (const char* t : {"attn_input", "q", "attn_output", "ffn_input", "ffn_hidden"})
      target_->addItem(QString::fromLatin1(t), QString::fromLatin1(t));
  }
  target_->setEnabled(target_->count() > 1 && !running());
  values_->setText(default_values(axis));
  update_availability();
}

rptq::SweepSpec SweepPage::spec() const {
  return rptq::make_sweep_spec(axis_->currentData().toString().toStdString(),
                               target_->currentData().toString().toStdString(), values_->text().toStdString());
}

std::unique_ptr<SweepPage::Request> SweepPage::request(QString* why_not) const {
  const LoadedModel* m = session_->model();
  QString why;
  if (!m)
    why = tr("Open a model folder first (Model step).");
  else if (!session_->fp_model())
    why = tr("%1 is a quantized checkpoint: a sweep needs the FP model folder.").arg(m->display_name());
  else if (!session_->stats())
    why = tr("A sweep needs channel statistics of %1: calibrate it or load a statistics file (Calibrate step).")
              .arg(m->display_name());
  auto r = std::make_unique<Request>();
  if (why.isEmpty()) {
    try {
      r->spec = spec();
    } catch (const std::exception& e) {
      why = QString::fromStdString(e.what());
    }
  }
  if (why.isEmpty()) {
    try {
      r->base = quantize_->config();
      r->base.validate();
      // Every point's setting must be valid (run_sweep checks them all too, on the worker).
      for (int v : r->spec.values) r->spec.apply(r->base, v).validate();
    } catch (const std::exception& e) {
      why = tr("The Quantize step's setting is not valid for this sweep: %1").arg(QString::fromStdString(e.what()));
    }
  }
  if (!why.isEmpty()) {
    if (why_not) *why_not = why;
    return nullptr;
  }
  r->model_dir = m->path;
  r->fp = session_->fp_model();
  r->stats = session_->stats_ptr();
  r->stats_path = session_->stats_path();
  r->options.stat = r->stats->settings.stat;  // as the Quantize step and `rptq sweep` quantize with them
  r->options.sequential = quantize_->sequential_check()->isChecked();
  r->options.seed = kKmeansSeed;
  r->data = data_edit_->text().trimmed();
  r->windows.seqlen = seqlen_->value();
  r->windows.max_windows = windows_->value();
  r->exec = quantize_->device_choice()->execution();
  return r;
}

void SweepPage::update_availability() {
  QString why;
  const auto r = request(&why);
  const bool model_ready = session_->fp_model() && session_->stats();
  note_->setText(model_ready ? QString() : why);
  note_->setVisible(!model_ready && !why.isEmpty());
  QString text;
  try {
    const rptq::QuantConfig base = quantize_->config();
    text = QString::fromStdString(base.describe()).toHtmlEscaped();
  } catch (const std::exception& e) {
    text = QStringLiteral("<span style='color:#c62828'>%1</span>").arg(QString::fromStdString(e.what()).toHtmlEscaped());
  }
  if (r) {
    QStringList values;
    for (int v : r->spec.values) values << QString::number(v);
    text += QStringLiteral("<br>") + tr("%1 of %2: %3")
                                         .arg(points_text(static_cast<int>(r->spec.values.size())),
                                              QString::fromStdString(r->spec.axis_label()).toHtmlEscaped(),
                                              values.join(QStringLiteral(", ")));
  } else if (model_ready) {
    text += QStringLiteral("<br><span style='color:#c62828'>%1</span>").arg(why.toHtmlEscaped());
  }
  describe_->setText(text);
  if (const auto fp = session_->fp_model())
    seqlen_->setMaximum(static_cast<int>(std::clamp<std::int64_t>(fp->config().max_positions, 2, 1 << 20)));
  set_busy(running());
}

void SweepPage::set_busy(bool on) {
  run_->setEnabled(!on && request(nullptr) != nullptr);
  cancel_->setEnabled(on && job_ && !job_->cancelled());
  for (QWidget* w : std::initializer_list<QWidget*>{axis_, values_, data_edit_, windows_, seqlen_, load_})
    w->setEnabled(!on);
  target_->setEnabled(!on && target_->count() > 1);
  save_->setEnabled(!on && result_ != nullptr);
}

void SweepPage::showEvent(QShowEvent* e) {
  QWidget::showEvent(e);
  update_availability();  // the Quantize step's setting may have changed
}

void SweepPage::begin_points(const rptq::SweepSpec& spec) {
  chart_->reset(QString::fromStdString(spec.axis_label()), spec.axis == rptq::SweepAxis::Clusters);
  table_->setRowCount(0);
  shown_ = 0;
}

void SweepPage::add_point(const rptq::SweepPoint& p, double ppl_fp) {
  chart_->add_point(p.value, p.ppl_q, p.kl, p.top1_agreement);
  const int row = table_->rowCount();
  table_->insertRow(row);
  auto set = [&](int col, const QString& text) {
    auto* item = new QTableWidgetItem(text);
    item->setTextAlignment(col == ColSetting ? (Qt::AlignLeft | Qt::AlignVCenter) : (Qt::AlignRight | Qt::AlignVCenter));
    table_->setItem(row, col, item);
  };
  set(ColSetting, QString::fromStdString(p.name));
  table_->item(row, ColSetting)->setToolTip(QString::fromStdString(p.description));
  set(ColPpl, QString::number(p.ppl_q, 'f', 4));
  set(ColVsFp, ppl_fp > 0 ? QStringLiteral("%1%2%").arg(p.ppl_q >= ppl_fp ? QStringLiteral("+") : QString())
                                .arg(100.0 * (p.ppl_q / ppl_fp - 1.0), 0, 'f', 2)
                          : QStringLiteral("\u2014"));
  set(ColKl, QString::number(p.kl, 'f', 5));
  set(ColKlP99, std::isfinite(p.kl_p99) ? QString::number(p.kl_p99, 'f', 5) : QStringLiteral("\u2014"));
  set(ColTop1, QStringLiteral("%1%").arg(100.0 * p.top1_agreement, 0, 'f', 2));
  set(ColClusters, clusters_text(p));
  set(ColSeconds, QString::number(p.quantize_seconds + p.compare_seconds, 'f', 2));
  ++shown_;
}

void SweepPage::show_result(std::shared_ptr<const rptq::SweepResult> r) {
  result_ = std::move(r);
  if (result_) {
    begin_points(result_->spec);
    for (const rptq::SweepPoint& p : result_->points) add_point(p, result_->ppl_fp);
    chart_->set_fp_ppl(result_->ppl_fp);
  }
  set_busy(running());
  Q_EMIT result_changed();
}

void SweepPage::start() {
  if (running()) return;
  QString why;
  auto r = request(&why);
  if (!r) {
    show_error(window(), tr("Cannot run the sweep"), why);
    return;
  }
  QSettings s;
  s.setValue(QStringLiteral("sweep/axis"), axis_->currentData());
  s.setValue(QStringLiteral("sweep/data"), r->data);
  s.setValue(QStringLiteral("sweep/windows"), windows_->value());
  s.setValue(QStringLiteral("sweep/seqlen"), seqlen_->value());
  auto progress = std::make_shared<JobProgress<SweepJobProgress>>();
  job_ = progress;
  seen_ = 0;
  result_.reset();
  begin_points(r->spec);
  bar_->setValue(0);
  status_->setText(tr("Reading the text\u2026"));
  poll_->start();
  set_busy(true);
  Q_EMIT result_changed();
  Q_EMIT running_changed(true);
  const QString device = r->exec.device == rptq::Device::CUDA ? QStringLiteral("cuda") : QStringLiteral("cpu");
  std::shared_ptr<const Request> req(std::move(r));
  run_task(
      this, nullptr,
      [req, progress]() {
        const std::string text = rptq::read_text_file(req->data.toStdString());
        const auto ids = rptq::Tokenizer::load(req->model_dir.toStdString())->encode(text, true);
        rptq::check_stats_match(*req->stats, req->fp->config(), req->stats_path.toStdString());
        if (progress->cancelled()) throw rptq::Cancelled();
        std::vector<rptq::SweepPoint> done;
        const std::string dir = req->model_dir.toStdString();
        rptq::SweepResult res = rptq::run_sweep(
            req->spec, req->base, req->options, *req->fp, [dir] { return rptq::Model::load(dir); }, *req->stats, ids,
            req->windows, req->exec, [&](const rptq::SweepProgress& sp) {
              if (sp.phase == rptq::SweepProgress::Phase::PointDone && sp.finished) done.push_back(*sp.finished);
              const char* phase = sp.phase == rptq::SweepProgress::Phase::Quantize  ? "quantizing"
                                  : sp.phase == rptq::SweepProgress::Phase::Compare ? "comparing with FP"
                                                                                    : "done";
              progress->set({sp.fraction(),
                             QCoreApplication::translate("rptq::ui::SweepPage", "Point %1 of %2 (%3): %4")
                                 .arg(sp.point + 1)
                                 .arg(sp.points)
                                 .arg(QString::fromStdString(req->spec.setting(sp.value)),
                                      QCoreApplication::translate("rptq::ui::SweepPage", phase)),
                             done});
              return !progress->cancelled();
            });
        res.model = req->model_dir.toStdString();
        res.stats = req->stats_path.toStdString();
        res.data = req->data.toStdString();
        return std::make_shared<const rptq::SweepResult>(std::move(res));
      },
      [this, progress, device](std::shared_ptr<const rptq::SweepResult> res) {
        if (progress != job_) return;
        job_.reset();
        poll_->stop();
        bar_->setValue(1000);
        show_result(res);
        record(*res, device);
        status_->setText(tr("%1 over %2 windows \u00d7 %3 tokens in %4; FP perplexity %5.")
                             .arg(points_text(static_cast<int>(res->points.size())))
                             .arg(res->windows)
                             .arg(res->seqlen)
                             .arg(human_seconds(res->seconds))
                             .arg(res->ppl_fp, 0, 'f', 4));
        Q_EMIT running_changed(false);
      },
      [this, progress](const TaskError& e) {
        if (progress != job_) return;
        poll();  // the points measured before the end stay shown
        job_.reset();
        poll_->stop();
        set_busy(false);
        bar_->setValue(0);
        status_->setText(e.cancelled() ? tr("Cancelled after %1; the points measured stay on the chart, nothing was "
                                            "saved or recorded.")
                                             .arg(points_text(shown_))
                                       : tr("The sweep failed: %1").arg(e.message));
        Q_EMIT running_changed(false);
        show_task_error(window(), tr("The sweep failed"), e);
      });
}

void SweepPage::poll() {
  if (!job_) return;
  bool changed = false;
  const SweepJobProgress p = job_->get(&seen_, &changed);
  if (!changed) return;
  bar_->setValue(static_cast<int>(std::lround(1000 * p.fraction)));
  if (!job_->cancelled()) status_->setText(p.what);
  for (std::size_t i = static_cast<std::size_t>(shown_); i < p.points.size(); ++i) add_point(p.points[i], -1);
}

void SweepPage::cancel() {
  if (!job_) return;
  job_->cancel();
  cancel_->setEnabled(false);
  status_->setText(tr("Cancelling\u2026"));
}

void SweepPage::record(const rptq::SweepResult& r, const QString& device) {
  rptq::RunRecord rec = rptq::new_run_record("sweep", r.model, r.stats, r.base);
  nlohmann::json points = nlohmann::json::array();
  for (const rptq::SweepPoint& p : r.points)
    points.push_back({{"value", p.value}, {"ppl_q", p.ppl_q}, {"kl", p.kl}, {"top1_agreement", p.top1_agreement}});
  rec.options = {{"axis", rptq::sweep_axis_name(r.spec.axis)},
                 {"target", r.spec.target},
                 {"values", r.spec.values},
                 {"data", {QFileInfo(QString::fromStdString(r.data)).absoluteFilePath().toStdString()}},
                 {"seqlen", r.seqlen},
                 {"windows", r.windows},
                 {"sequential", r.sequential},
                 {"stat", rptq::range_stat_name(r.stat)},
                 {"kmeans_seed", r.kmeans_seed},
                 {"device", device.toStdString()}};
  rec.results = {{"ppl_fp", r.ppl_fp}, {"points", points}, {"seconds", r.seconds}};
  session_->record_run(rec);
}

bool SweepPage::save_to(const QString& path) {
  if (!result_) return false;
  try {
    rptq::save_sweep(path.toStdString(), *result_, /*overwrite=*/true);  // the dialog asked before overwriting
  } catch (const std::exception& e) {
    show_error(window(), tr("Cannot save the sweep"), QString::fromStdString(e.what()));
    return false;
  }
  status_->setText(tr("Saved in %1.").arg(path));
  return true;
}

bool SweepPage::load_from(const QString& path) {
  if (running()) return false;
  std::shared_ptr<const rptq::SweepResult> r;
  try {
    r = std::make_shared<const rptq::SweepResult>(rptq::load_sweep(path.toStdString()));
  } catch (const std::exception& e) {
    show_error(window(), tr("Cannot load the sweep"), QString::fromStdString(e.what()));
    return false;
  }
  show_result(r);
  bar_->setValue(0);
  status_->setText(tr("Loaded %1: %2 of %3, %4 over %5 windows \u00d7 %6 tokens; FP perplexity %7.")
                       .arg(QFileInfo(path).fileName(), QString::fromStdString(r->spec.axis_label()),
                            QFileInfo(QString::fromStdString(r->model)).fileName(),
                            points_text(static_cast<int>(r->points.size())))
                       .arg(r->windows)
                       .arg(r->seqlen)
                       .arg(r->ppl_fp, 0, 'f', 4));
  return true;
}

void SweepPage::save_dialog() {
  if (!result_) return;
  const QString name = QFileInfo(QString::fromStdString(result_->model)).fileName() + QLatin1Char('-') +
                       QString::fromLatin1(rptq::sweep_axis_name(result_->spec.axis)) + QStringLiteral(".json");
  const QString dir = QSettings().value(QStringLiteral("sweep/folder"), QDir::homePath()).toString();
  const QString p = QFileDialog::getSaveFileName(this, tr("Save the sweep"), dir + QLatin1Char('/') + name,
                                                 tr("Sweep files (*.json);;All files (*)"));
  if (p.isEmpty()) return;
  QSettings().setValue(QStringLiteral("sweep/folder"), QFileInfo(p).absolutePath());
  save_to(p);
}

void SweepPage::load_dialog() {
  const QString dir = QSettings().value(QStringLiteral("sweep/folder"), QDir::homePath()).toString();
  const QString p =
      QFileDialog::getOpenFileName(this, tr("Load a sweep"), dir, tr("Sweep files (*.json);;All files (*)"));
  if (p.isEmpty()) return;
  QSettings().setValue(QStringLiteral("sweep/folder"), QFileInfo(p).absolutePath());
  load_from(p);
}

}  // namespace rptq::ui
