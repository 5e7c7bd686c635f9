#include "sensitivity/sensitivity_page.h"

#include <QComboBox>
#include <QCoreApplication>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontDatabase>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
#include <QTableView>
#include <QTimer>
#include <QVBoxLayout>

#include <algorithm>
#include <filesystem>

#include "common/error_dialog.h"
#include "common/format.h"
#include "common/page_heading.h"
#include "common/resources.h"
#include "common/task.h"
#include "quantize/quantize_page.h"
#include "rptq/base/error.h"
#include "rptq/method/calibration.h"
#include "rptq/model/model.h"
#include "rptq/model/model_info.h"
#include "rptq/tokenizer/tokenizer.h"
#include "sensitivity/sensitivity_model.h"
#include "session/session.h"

namespace rptq::ui {

namespace {
const QString kQuantizeSetting = QStringLiteral("quantize");  // the setting combo's entry for the Quantize step's
constexpr std::uint64_t kKmeansSeed = 0;                      // as the Quantize step and `rptq sensitivity` use
constexpr std::int64_t kMemoryBatch = 1;                      // the suggestion's memory: one sequence, whole context

std::int64_t memory_seqlen(const rptq::ModelConfig& m) { return m.max_positions > 0 ? m.max_positions : 2048; }

QString signed_bytes(std::int64_t d) {
  return (d < 0 ? QStringLiteral("\u2212") : QStringLiteral("+")) +
         human_bytes(static_cast<std::uint64_t>(d < 0 ? -d : d));
}
}  // namespace

struct SensitivityPage::Request {
  QString model_dir;
  std::shared_ptr<const rptq::ChannelStats> stats;
  QString stats_path;
  rptq::QuantConfig config;
  rptq::RangeStat stat = rptq::RangeStat::Ema;
  QString data;
  rptq::PerplexityOptions windows;
};

SensitivityPage::SensitivityPage(Session* session, QuantizePage* quantize, QWidget* parent)
    : QWidget(parent),
      session_(session),
      quantize_(quantize),
      lookup_timer_(new QTimer(this)),
      poll_(new QTimer(this)) {
  auto* root = new QVBoxLayout(this);
  root->addWidget(page_heading(tr("Sensitivity")));
  auto* intro =
      new QLabel(tr("Which activation hurts: each quantized tap of each layer (and each layer's softmax) "
                    "is quantized alone at the chosen setting, the weights and every other activation "
                    "left in full precision, and compared with the FP model on a few windows of a text."));
  intro->setWordWrap(true);
  root->addWidget(intro);
  note_ = new QLabel;
  note_->setObjectName(QStringLiteral("sensitivityNote"));
  note_->setWordWrap(true);
  note_->setStyleSheet(
      QStringLiteral("QLabel { background: #fff4e0; border: 1px solid #e0b060; border-radius: 4px; "
                     "padding: 6px; }"));
  root->addWidget(note_);

  QSettings s;
  auto* box = new QGroupBox(tr("Probe"));
  auto* form = new QFormLayout(box);
  setting_ = new QComboBox;
  setting_->setObjectName(QStringLiteral("sensitivitySetting"));
  for (const std::string& n : rptq::QuantConfig::preset_names())
    if (rptq::QuantConfig::preset(n).quantizes_activations())
      setting_->addItem(QString::fromStdString(n), QString::fromStdString(n));
  setting_->addItem(tr("The Quantize step's setting"), kQuantizeSetting);
  setting_->setToolTip(
      tr("The activation quantizers to probe (weights stay FP in every probe). The Quantize step's "
         "setting includes its custom bits, clusters, grid and overrides."));
  const int chosen = setting_->findData(s.value(QStringLiteral("sensitivity/setting"), QStringLiteral("W4A8")));
  setting_->setCurrentIndex(chosen >= 0 ? chosen : 0);
  describe_ = new QLabel;
  describe_->setObjectName(QStringLiteral("sensitivityDescription"));
  describe_->setWordWrap(true);
  auto* setting_col = new QVBoxLayout;
  setting_col->addWidget(setting_);
  setting_col->addWidget(describe_);
  form->addRow(tr("Setting"), setting_col);
  auto* data_row = new QHBoxLayout;
  data_edit_ = new QLineEdit(s.value(QStringLiteral("sensitivity/data"), sample_text_path()).toString());
  data_edit_->setObjectName(QStringLiteral("sensitivityDataEdit"));
  auto* browse = new QPushButton(tr("Browse..."));
  data_row->addWidget(data_edit_, 1);
  data_row->addWidget(browse);
  form->addRow(tr("Text"), data_row);
  auto* numbers = new QHBoxLayout;
  windows_ = new QSpinBox;
  windows_->setObjectName(QStringLiteral("sensitivityWindowsSpin"));
  windows_->setRange(1, 1 << 20);
  windows_->setValue(s.value(QStringLiteral("sensitivity/windows"), 2).toInt());
  windows_->setToolTip(tr("Evaluate at most this many windows of the text; every probe runs them all"));
  seqlen_ = new QSpinBox;
  seqlen_->setObjectName(QStringLiteral("sensitivitySeqlenSpin"));
  seqlen_->setRange(2, 1 << 20);
  seqlen_->setValue(s.value(QStringLiteral("sensitivity/seqlen"), 128).toInt());
  seqlen_->setSuffix(tr(" tokens"));
  numbers->addWidget(windows_);
  numbers->addWidget(new QLabel(tr("windows of")));
  numbers->addWidget(seqlen_);
  numbers->addStretch(1);
  form->addRow(tr("Windows"), numbers);
  auto* run_row = new QHBoxLayout;
  run_ = new QPushButton(tr("Run"));
  run_->setObjectName(QStringLiteral("sensitivityRunButton"));
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setObjectName(QStringLiteral("sensitivityCancelButton"));
  cancel_->setEnabled(false);
  bar_ = new QProgressBar;
  bar_->setObjectName(QStringLiteral("sensitivityProgress"));
  bar_->setRange(0, 1000);
  bar_->setValue(0);
  run_row->addWidget(run_);
  run_row->addWidget(cancel_);
  run_row->addWidget(bar_, 1);
  form->addRow(QString(), run_row);
  status_ = new QLabel;
  status_->setObjectName(QStringLiteral("sensitivityStatus"));
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  form->addRow(QString(), status_);
  root->addWidget(box);

  auto* split = new QSplitter(Qt::Horizontal);
  // The heat map.
  auto* heat_box = new QGroupBox(tr("Layers \u00d7 taps: each probe alone"));
  auto* hl = new QVBoxLayout(heat_box);
  auto* metric_row = new QHBoxLayout;
  metric_ = new QComboBox;
  metric_->setObjectName(QStringLiteral("sensitivityMetric"));
  for (SensitivityModel::Metric m :
       {SensitivityModel::Kl, SensitivityModel::PplIncrease, SensitivityModel::Top1Changed})
    metric_->addItem(SensitivityModel::metric_name(m), static_cast<int>(m));
  metric_row->addWidget(new QLabel(tr("Show")));
  metric_row->addWidget(metric_);
  metric_row->addStretch(1);
  hl->addLayout(metric_row);
  model_ = new SensitivityModel(this);
  view_ = new QTableView;
  view_->setObjectName(QStringLiteral("sensitivityTable"));
  view_->setModel(model_);
  view_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  // Rows share the height (a few layers make tall cells); many layers scroll at one text line each.
  view_->verticalHeader()->setMinimumSectionSize(view_->fontMetrics().height() + 8);
  view_->verticalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  view_->setSelectionMode(QAbstractItemView::SingleSelection);
  view_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  view_->setWordWrap(true);
  hl->addWidget(view_, 1);
  auto* legend =
      new QLabel(tr("Colour: log scale over three decades below the largest probe (totals on scales of "
                    "their own). Hover a cell for its numbers; double-click it to explore that layer's "
                    "channels of the tap's reorder index."));
  legend->setWordWrap(true);
  hl->addWidget(legend);
  split->addWidget(heat_box);
  // The suggestion.
  auto* sug_box = new QGroupBox(tr("Keep the most sensitive at higher precision"));
  auto* sl = new QVBoxLayout(sug_box);
  auto* n_row = new QHBoxLayout;
  suggest_n_ = new QSpinBox;
  suggest_n_->setObjectName(QStringLiteral("suggestCountSpin"));
  suggest_n_->setRange(0, 100000);
  suggest_n_->setValue(s.value(QStringLiteral("sensitivity/suggestN"), 4).toInt());
  suggest_bits_ = new QComboBox;
  suggest_bits_->setObjectName(QStringLiteral("suggestBitsCombo"));
  for (int b = 2; b <= 8; ++b) suggest_bits_->addItem(QStringLiteral("%1-bit").arg(b), b);
  suggest_bits_->addItem(tr("FP16"), rptq::kFullPrecisionBits);
  suggest_bits_->setCurrentIndex(
      std::max(0, suggest_bits_->findData(s.value(QStringLiteral("sensitivity/suggestBits"), 8).toInt())));
  n_row->addWidget(new QLabel(tr("Keep")));
  n_row->addWidget(suggest_n_);
  n_row->addWidget(new QLabel(tr("taps at")));
  n_row->addWidget(suggest_bits_);
  n_row->addStretch(1);
  sl->addLayout(n_row);
  auto* sug_note =
      new QLabel(tr("Ranked by KL. K and V (the KV cache) and the softmax have one setting for every "
                    "layer and are not suggested."));
  sug_note->setWordWrap(true);
  sl->addWidget(sug_note);
  overrides_ = new QPlainTextEdit;
  overrides_->setObjectName(QStringLiteral("suggestedOverrides"));
  overrides_->setReadOnly(true);
  overrides_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  overrides_->setLineWrapMode(QPlainTextEdit::NoWrap);
  overrides_->setToolTip(tr("QuantConfig overrides, as `rptq --override` takes them"));
  sl->addWidget(overrides_, 1);
  memory_ = new QLabel;
  memory_->setObjectName(QStringLiteral("suggestionMemory"));
  memory_->setWordWrap(true);
  sl->addWidget(memory_);
  use_ = new QPushButton(tr("Use on the Quantize step \u2192"));
  use_->setObjectName(QStringLiteral("useSuggestionButton"));
  use_->setEnabled(false);
  auto* use_row = new QHBoxLayout;
  use_row->addStretch(1);
  use_row->addWidget(use_);
  sl->addLayout(use_row);
  split->addWidget(sug_box);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 1);
  root->addWidget(split, 1);

  lookup_timer_->setSingleShot(true);
  lookup_timer_->setInterval(200);
  connect(lookup_timer_, &QTimer::timeout, this, &SensitivityPage::look_up_saved);
  poll_->setInterval(50);
  connect(poll_, &QTimer::timeout, this, [this] {
    if (!job_) return;
    const LoadProgress p = job_->get();
    bar_->setValue(qRound(p.fraction * 1000));
    if (!p.what.isEmpty() && cancel_->isEnabled()) status_->setText(p.what);
  });
  connect(browse, &QPushButton::clicked, this, [this] {
    const QString p =
        QFileDialog::getOpenFileName(this, tr("Evaluation text"), QFileInfo(data_edit_->text()).absolutePath(),
                                     tr("Text files (*.txt);;All files (*)"));
    if (!p.isEmpty()) data_edit_->setText(p);
  });
  connect(setting_, &QComboBox::currentIndexChanged, this, [this] {
    QSettings().setValue(QStringLiteral("sensitivity/setting"), setting_->currentData().toString());
    update_availability();
    schedule_look_up();
  });
  connect(quantize_, &QuantizePage::config_changed, this, [this] {
    if (setting_->currentData().toString() != kQuantizeSetting) return;
    update_availability();
    schedule_look_up();
  });
  connect(data_edit_, &QLineEdit::textChanged, this, &SensitivityPage::schedule_look_up);
  connect(windows_, &QSpinBox::valueChanged, this, &SensitivityPage::schedule_look_up);
  connect(seqlen_, &QSpinBox::valueChanged, this, &SensitivityPage::schedule_look_up);
  connect(run_, &QPushButton::clicked, this, &SensitivityPage::start);
  connect(cancel_, &QPushButton::clicked, this, &SensitivityPage::cancel);
  connect(metric_, &QComboBox::currentIndexChanged, this,
          [this] { model_->set_metric(static_cast<SensitivityModel::Metric>(metric_->currentData().toInt())); });
  connect(view_, &QAbstractItemView::activated, this, &SensitivityPage::activated);
  connect(suggest_n_, &QSpinBox::valueChanged, this, &SensitivityPage::update_suggestion);
  connect(suggest_bits_, &QComboBox::currentIndexChanged, this, &SensitivityPage::update_suggestion);
  connect(use_, &QPushButton::clicked, this, &SensitivityPage::use_suggestion);
  connect(session_, &Session::model_changed, this, [this] {
    show_result(nullptr, false);
    update_availability();
  });
  connect(session_, &Session::stats_changed, this, [this] {
    show_result(nullptr, false);
    update_availability();
    schedule_look_up();
  });
  update_availability();
  show_result(nullptr, false);
}

SensitivityPage::~SensitivityPage() {
  if (job_) job_->cancel();  // the worker owns its data and stops at its next probe
  QSettings s;
  s.setValue(QStringLiteral("sensitivity/data"), data_edit_->text());
  s.setValue(QStringLiteral("sensitivity/windows"), windows_->value());
  s.setValue(QStringLiteral("sensitivity/seqlen"), seqlen_->value());
  s.setValue(QStringLiteral("sensitivity/suggestN"), suggest_n_->value());
  s.setValue(QStringLiteral("sensitivity/suggestBits"), suggest_bits_->currentData().toInt());
}

const rptq::SensitivityResult* SensitivityPage::result() const { return model_->result(); }

bool SensitivityPage::lookup_timer_pending() const { return lookup_timer_->isActive(); }

rptq::QuantConfig SensitivityPage::config() const {
  const QString name = setting_->currentData().toString();
  rptq::QuantConfig c = name == kQuantizeSetting ? quantize_->config() : rptq::QuantConfig::preset(name.toStdString());
  c.validate();
  return c;
}

bool SensitivityPage::select_setting(const QString& name) {
  for (int i = 0; i < setting_->count(); ++i)
    if (setting_->itemData(i).toString().compare(name, Qt::CaseInsensitive) == 0) {
      setting_->setCurrentIndex(i);
      return true;
    }
  return false;
}

std::optional<SensitivityPage::Request> SensitivityPage::request(QString* why_not) const {
  const LoadedModel* m = session_->model();
  QString why;
  if (!m)
    why = tr("Open a model folder first (Model step).");
  else if (!session_->fp_model())
    why = tr("%1 is a quantized checkpoint: the probes need the FP model folder.").arg(m->display_name());
  else if (!session_->stats())
    why = tr("The probes need channel statistics of %1: calibrate it or load a statistics file (Calibrate step).")
              .arg(m->display_name());
  Request r;
  if (why.isEmpty()) {
    try {
      r.config = config();
      if (!r.config.quantizes_activations())
        why = tr("%1 quantizes no activation: there is nothing to probe.").arg(QString::fromStdString(r.config.name));
    } catch (const std::exception& e) {
      why = tr("The Quantize step's setting is not valid: %1").arg(QString::fromStdString(e.what()));
    }
  }
  if (!why.isEmpty()) {
    if (why_not) *why_not = why;
    return std::nullopt;
  }
  r.model_dir = m->path;
  r.stats = session_->stats_ptr();
  r.stats_path = session_->stats_path();
  r.stat = r.stats->settings.stat;  // as the Quantize step quantizes with them
  r.data = data_edit_->text().trimmed();
  r.windows.seqlen = seqlen_->value();
  r.windows.max_windows = windows_->value();
  return r;
}

void SensitivityPage::update_availability() {
  QString why;
  const bool ready = request(&why).has_value();
  // A bad Quantize-step setting is said beside the setting, not as a missing step.
  const bool setting_problem = session_->fp_model() && session_->stats();
  note_->setText(setting_problem ? QString() : why);
  note_->setVisible(!setting_problem && !why.isEmpty());
  try {
    // What the probes quantize: the setting's activations, its weights in FP.
    rptq::QuantConfig probed = config();
    const int wbits = probed.wbits;
    probed.wbits = rptq::kFullPrecisionBits;
    for (rptq::TapOverride& o : probed.overrides) o.wbits = 0;
    describe_->setText(QString::fromStdString(probed.describe()).toHtmlEscaped() +
                       (wbits < rptq::kFullPrecisionBits
                            ? tr("<br><i>The setting's %1-bit weights stay FP in every probe (the memory cost of a "
                                 "suggestion counts them at %1 bits).</i>")
                                  .arg(wbits)
                            : QString()));
  } catch (const std::exception& e) {
    describe_->setText(
        QStringLiteral("<span style='color:#c62828'>%1</span>").arg(QString::fromStdString(e.what()).toHtmlEscaped()));
  }
  if (setting_problem && !ready)
    describe_->setText(describe_->text() +
                       QStringLiteral("<br><span style='color:#c62828'>%1</span>").arg(why.toHtmlEscaped()));
  if (const auto fp = session_->fp_model())
    seqlen_->setMaximum(static_cast<int>(std::clamp<std::int64_t>(fp->config().max_positions, 2, 1 << 20)));
  set_busy(running());
}

void SensitivityPage::set_busy(bool on) {
  const bool ready = request(nullptr).has_value();
  run_->setEnabled(!on && ready);
  cancel_->setEnabled(on);
  for (QWidget* w : std::initializer_list<QWidget*>{setting_, data_edit_, windows_, seqlen_}) w->setEnabled(!on);
  use_->setEnabled(!on && suggestion_ && !suggestion_->overrides.empty());
}

void SensitivityPage::showEvent(QShowEvent* e) {
  QWidget::showEvent(e);
  update_availability();
  look_up_saved();  // the page opens: show the saved result of what it is set to
}

void SensitivityPage::schedule_look_up() {
  if (!running()) lookup_timer_->start();
}

void SensitivityPage::look_up_saved() {
  lookup_timer_->stop();
  if (running()) return;
  const auto r = request(nullptr);
  if (!r) {
    if (!session_->stats()) status_->clear();
    return;
  }
  const std::uint64_t id = ++lookup_id_;
  ++lookups_running_;
  struct Answer {
    rptq::SensitivitySetting setting;
    std::optional<rptq::SensitivityRecord> record;
    QString file;
  };
  run_task(
      this, nullptr,
      [r = *r]() {
        Answer a;
        const std::string text = rptq::read_text_file(r.data.toStdString());
        a.setting = rptq::make_sensitivity_setting(r.config, r.stat, kKmeansSeed, *r.stats, r.stats_path.toStdString(),
                                                   r.data.toStdString(), rptq::sha256_hex(text), r.windows);
        if (r.stats_path.isEmpty()) return a;
        const auto file = rptq::sensitivity_file_for(r.stats_path.toStdString());
        a.file = QString::fromStdString(file.string());
        std::error_code ec;
        if (!std::filesystem::exists(file, ec)) return a;
        const auto records = rptq::load_sensitivity_file(file);
        if (const rptq::SensitivityRecord* rec = rptq::find_sensitivity(records, a.setting)) a.record = *rec;
        return a;
      },
      [this, id, cfg = r->config](Answer a) {
        --lookups_running_;
        if (id != lookup_id_ || running()) return;
        if (a.record) {
          shown_config_ = std::make_shared<const rptq::QuantConfig>(cfg);
          shown_setting_ = a.setting;
          show_result(std::make_shared<const rptq::SensitivityResult>(std::move(a.record->result)), true);
          status_->setText(tr("Showing the result saved on %1 in %2 (%3 windows \u00d7 %4 tokens, measured in %5). Run "
                              "measures it again.")
                               .arg(QString::fromStdString(a.record->created), QFileInfo(a.file).fileName())
                               .arg(result()->windows)
                               .arg(result()->seqlen)
                               .arg(human_seconds(result()->seconds)));
          return;
        }
        if (result() && !loaded_ && shown_setting_matches(a.setting)) return;  // the result just measured
        show_result(nullptr, false);
        status_->setText(tr("No saved result for this setting, text and windows yet: Run measures it."));
      },
      [this, id](const TaskError& e) {
        --lookups_running_;
        if (id != lookup_id_ || running()) return;
        show_result(nullptr, false);
        status_->setText(tr("<span style='color:#c62828'>%1</span>").arg(e.message.toHtmlEscaped()));
      });
}

void SensitivityPage::start() {
  if (running()) return;
  QString why;
  const auto r = request(&why);
  if (!r) {
    show_error(window(), tr("Cannot run the sensitivity probes"), why);
    return;
  }
  QSettings s;
  s.setValue(QStringLiteral("sensitivity/data"), r->data);
  s.setValue(QStringLiteral("sensitivity/windows"), windows_->value());
  s.setValue(QStringLiteral("sensitivity/seqlen"), seqlen_->value());
  ++lookup_id_;  // a look-up still running answers a question no longer asked
  lookup_timer_->stop();
  auto progress = std::make_shared<JobProgress<LoadProgress>>();
  job_ = progress;
  show_result(nullptr, false);
  bar_->setValue(0);
  status_->setText(tr("Loading a copy of %1\u2026").arg(session_->model()->display_name()));
  poll_->start();
  set_busy(true);
  Q_EMIT running_changed(true);
  struct Answer {
    rptq::SensitivityRecord record;
    QString saved, save_error;
  };
  run_task(
      this, nullptr,
      [r = *r, progress]() {
        rptq::LoadOptions lo;
        lo.progress = [&](double f, const std::string&) {
          progress->set({0.05 * f, QString()});
          return !progress->cancelled();
        };
        auto model = rptq::Model::load(r.model_dir.toStdString(), lo);
        rptq::check_stats_match(*r.stats, model->config(), r.stats_path.toStdString());
        const std::string text = rptq::read_text_file(r.data.toStdString());
        const auto ids = rptq::Tokenizer::load(r.model_dir.toStdString())->encode(text, true);
        if (progress->cancelled()) throw rptq::Cancelled();
        progress->set(
            {0.05, QCoreApplication::translate("rptq::ui::SensitivityPage", "Building the quantizers\u2026")});
        auto q = rptq::quantize_for_sensitivity(std::move(model), *r.stats, r.config, r.stat, kKmeansSeed);
        if (progress->cancelled()) throw rptq::Cancelled();
        Answer a;
        a.record.result = rptq::activation_sensitivity(*q, ids, r.windows, [&](std::int64_t done, std::int64_t total) {
          progress->set(
              {0.05 + 0.95 * static_cast<double>(done) / static_cast<double>(std::max<std::int64_t>(total, 1)),
               QCoreApplication::translate("rptq::ui::SensitivityPage",
                                           "Probe %1 of %2 (window \u00d7 layer "
                                           "\u00d7 tap)")
                   .arg(done)
                   .arg(total)});
          return !progress->cancelled();
        });
        a.record.setting =
            rptq::make_sensitivity_setting(r.config, r.stat, kKmeansSeed, *r.stats, r.stats_path.toStdString(),
                                           r.data.toStdString(), rptq::sha256_hex(text), r.windows);
        if (!r.stats_path.isEmpty()) {
          const auto file = rptq::sensitivity_file_for(r.stats_path.toStdString());
          try {
            rptq::save_sensitivity(file, a.record);
            a.saved = QString::fromStdString(file.string());
          } catch (const std::exception& e) {  // the result is still shown
            a.save_error = QString::fromStdString(e.what());
          }
        }
        return a;
      },
      [this, progress, r = *r](Answer a) {
        if (progress != job_) return;
        job_.reset();
        poll_->stop();
        set_busy(false);
        Q_EMIT running_changed(false);
        // The statistics may have changed while it ran: the result (saved with them) is not theirs.
        if (session_->stats_ptr() != r.stats) {
          bar_->setValue(0);
          status_->setText(tr("The probes finished for statistics no longer open; the result was saved with them."));
          return;
        }
        bar_->setValue(1000);
        shown_config_ = std::make_shared<const rptq::QuantConfig>(r.config);
        shown_setting_ = a.record.setting;
        show_result(std::make_shared<const rptq::SensitivityResult>(std::move(a.record.result)), false);
        QString text = tr("%1 probes over %2 windows \u00d7 %3 tokens in %4.")
                           .arg(result()->layers * static_cast<int>(result()->taps.size()))
                           .arg(result()->windows)
                           .arg(result()->seqlen)
                           .arg(human_seconds(result()->seconds));
        if (!a.saved.isEmpty())
          text += QLatin1Char(' ') + tr("Saved in %1.").arg(QFileInfo(a.saved).fileName());
        else if (r.stats_path.isEmpty())
          text += QLatin1Char(' ') + tr("Not saved: the statistics are not in a file.");
        status_->setText(text);
        if (!a.save_error.isEmpty()) show_error(window(), tr("Cannot save the sensitivity result"), a.save_error);
      },
      [this, progress](const TaskError& e) {
        if (progress != job_) return;
        job_.reset();
        poll_->stop();
        set_busy(false);
        Q_EMIT running_changed(false);
        bar_->setValue(0);
        status_->setText(e.cancelled() ? tr("Cancelled. Nothing was measured.")
                                       : tr("The probes failed: %1").arg(e.message));
        show_task_error(window(), tr("The sensitivity probes failed"), e);
      });
}

void SensitivityPage::cancel() {
  if (!job_) return;
  job_->cancel();
  cancel_->setEnabled(false);
  status_->setText(tr("Cancelling\u2026"));
}

void SensitivityPage::show_result(std::shared_ptr<const rptq::SensitivityResult> r, bool loaded) {
  loaded_ = r && loaded;
  if (!r) {
    shown_config_.reset();
    shown_setting_.reset();
  }
  model_->set_result(std::move(r));
  update_suggestion();
  Q_EMIT result_changed();
}

bool SensitivityPage::shown_setting_matches(const rptq::SensitivitySetting& s) const {
  return shown_setting_ && shown_setting_->same_measurement(s);
}

void SensitivityPage::update_suggestion() {
  suggestion_.reset();
  const rptq::SensitivityResult* r = result();
  const auto fp = session_->fp_model();
  if (!r || !shown_config_ || !fp) {
    overrides_->setPlainText(QString());
    memory_->setText(tr("Run the probes (or open a saved result) for a suggestion."));
    set_busy(running());
    return;
  }
  try {
    const int n = suggest_n_->value(), bits = suggest_bits_->currentData().toInt();
    suggestion_ = rptq::suggest_overrides(*r, *shown_config_, n, bits);
    QSettings s;
    s.setValue(QStringLiteral("sensitivity/suggestN"), n);
    s.setValue(QStringLiteral("sensitivity/suggestBits"), bits);
    if (suggestion_->overrides.empty()) {
      overrides_->setPlainText(n == 0
                                   ? tr("(keep 0 taps: nothing to suggest)")
                                   : tr("(nothing to keep: every tap an override can change is at %1 already)")
                                         .arg(bits == rptq::kFullPrecisionBits ? tr("FP16") : tr("%1 bits").arg(bits)));
      memory_->clear();
      set_busy(running());
      return;
    }
    QStringList lines;
    for (const std::string& o : suggestion_->overrides) lines << QString::fromStdString(o);
    lines << QString() << tr("keeps (layer, tap, KL, bits now):");
    for (const auto& k : suggestion_->kept)
      lines << QStringLiteral("%1 %2 %3 %4")
                   .arg(k.layer, 3)
                   .arg(QString::fromLatin1(rptq::tap_name(k.tap)), -11)
                   .arg(SensitivityModel::format(k.kl, SensitivityModel::Kl), 7)
                   .arg(k.from_bits, 2);
    overrides_->setPlainText(lines.join(QLatin1Char('\n')));
    const rptq::ModelConfig& mc = fp->config();
    const rptq::SuggestionMemory m =
        rptq::suggestion_memory(mc, *shown_config_, *suggestion_, kMemoryBatch, memory_seqlen(mc));
    QString text =
        tr("Memory (the memory model, %1 sequence \u00d7 %2 tokens, weights at the setting's bits): %3 "
           "\u2192 <b>%4</b> (%5; activations %6 \u2192 %7).")
            .arg(kMemoryBatch)
            .arg(memory_seqlen(mc))
            .arg(human_bytes(m.before.total_bytes), human_bytes(m.after.total_bytes), signed_bytes(m.delta_bytes()),
                 human_bytes(m.before.activation_bytes), human_bytes(m.after.activation_bytes));
    if (m.delta_bytes() == 0)
      text += QLatin1Char(' ') + tr("The memory model counts q/k/v and the FFN hidden at their bits, and one layer's "
                                    "peak: keeping these taps costs nothing there.");
    memory_->setText(text);
  } catch (const std::exception& e) {
    suggestion_.reset();
    overrides_->setPlainText(QString());
    memory_->setText(
        QStringLiteral("<span style='color:#c62828'>%1</span>").arg(QString::fromStdString(e.what()).toHtmlEscaped()));
  }
  set_busy(running());
}

void SensitivityPage::use_suggestion() {
  if (!suggestion_ || suggestion_->overrides.empty() || !shown_config_) return;
  rptq::QuantConfig applied;
  try {
    applied = rptq::apply_suggestion(*shown_config_, *suggestion_);
  } catch (const std::exception& e) {
    show_error(window(), tr("Cannot use the suggestion"), QString::fromStdString(e.what()));
    return;
  }
  // The suggestion is relative to the setting it was measured with: a preset is chosen there too; the Quantize
  // step's own setting keeps its overrides, the suggestion's after them.
  if (setting_->currentData().toString() != kQuantizeSetting)
    quantize_->select_preset(QString::fromStdString(applied.name));
  QStringList specs;
  for (const rptq::TapOverride& o : applied.overrides) specs << QString::fromStdString(o.spec);
  quantize_->set_overrides(specs);
  Q_EMIT quantize_requested();
}

void SensitivityPage::activated(const QModelIndex& index) {
  if (!index.isValid() || !result() || !shown_config_) return;
  if (model_->is_total_row(index.row()) || model_->is_total_column(index.column())) return;
  const int ri = model_->reorder_index_of_column(index.column());
  if (ri == 0) return;  // the softmax has no channels to explore
  Q_EMIT explore_requested(index.row(), ri, shown_config_->clusters_of(index.row(), ri));
}

}  // namespace rptq::ui
