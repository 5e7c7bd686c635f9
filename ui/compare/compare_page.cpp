#include "compare/compare_page.h"

#include <QComboBox>
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
#include <QTableWidget>
#include <QTextEdit>
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
#include "compare/generation_job.h"
#include "compare/memory_chart.h"
#include "rptq/engine.h"
#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/model/model_info.h"
#include "rptq/tokenizer/tokenizer.h"
#include "session/quantization_summary.h"
#include "session/session.h"

namespace rptq::ui {

namespace {

const QColor kDivergence(0xff, 0xd5, 0x4f);  // the first token where FP and quantized differ
// How this page's jobs name themselves when they hold the quantized model (Session::begin_quantized_use).
const QString kComparisonUse = QStringLiteral("the comparison");
const QString kGenerationUse = QStringLiteral("the generation");
}  // namespace

ComparePage::ComparePage(Session* session, QWidget* parent)
    : QWidget(parent), session_(session), gen_(new GenerationJob(this)), poll_(new QTimer(this)) {
  auto* root = new QVBoxLayout(this);
  root->addWidget(page_heading(tr("Compare")));
  note_ = new QLabel;
  note_->setObjectName(QStringLiteral("compareNote"));
  note_->setWordWrap(true);
  note_->setStyleSheet(QStringLiteral("QLabel { background: #fff4e0; border: 1px solid #e0b060; border-radius: 4px; "
                                      "padding: 6px; }"));
  root->addWidget(note_);

  QSettings s;
  auto* top = new QHBoxLayout;
  // (a) The metrics.
  auto* metrics_box = new QGroupBox(tr("Perplexity, KL and top-1 agreement"));
  auto* ml = new QVBoxLayout(metrics_box);
  auto* form = new QFormLayout;
  auto* data_row = new QHBoxLayout;
  const QString samples = resources_dir() + QStringLiteral("/data/wikitext2-sample.txt;") + resources_dir() +
                          QStringLiteral("/data/c4-sample.txt");
  data_edit_ = new QLineEdit(s.value(QStringLiteral("compare/texts"), samples).toString());
  data_edit_->setObjectName(QStringLiteral("compareDataEdit"));
  data_edit_->setToolTip(tr("One or more text files, separated by \";\": each is compared on its own windows and "
                            "gets a row below (default: the bundled WikiText-2 and C4 samples)"));
  auto* browse = new QPushButton(tr("Browse..."));
  auto* bundled = new QPushButton(tr("Bundled samples"));
  bundled->setObjectName(QStringLiteral("bundledTextsButton"));
  bundled->setToolTip(tr("WikiText-2 and C4 samples shipped with the workbench (PTB is not shipped: its license)"));
  data_row->addWidget(data_edit_, 1);
  data_row->addWidget(browse);
  data_row->addWidget(bundled);
  form->addRow(tr("Texts"), data_row);
  connect(bundled, &QPushButton::clicked, this, [this, samples] { data_edit_->setText(samples); });
  auto* numbers = new QHBoxLayout;
  windows_ = new QSpinBox;
  windows_->setObjectName(QStringLiteral("windowsSpin"));
  windows_->setRange(1, 1 << 20);
  windows_->setValue(s.value(QStringLiteral("compare/windows"), 4).toInt());
  windows_->setToolTip(tr("Evaluate at most this many windows of the text"));
  seqlen_ = new QSpinBox;
  seqlen_->setObjectName(QStringLiteral("compareSeqlenSpin"));
  seqlen_->setRange(2, 1 << 20);
  seqlen_->setValue(s.value(QStringLiteral("compare/seqlen"), 256).toInt());
  seqlen_->setSuffix(tr(" tokens"));
  numbers->addWidget(windows_);
  numbers->addWidget(new QLabel(tr("windows of")));
  numbers->addWidget(seqlen_);
  numbers->addStretch(1);
  form->addRow(tr("Windows"), numbers);
  device_ = new DeviceChoice(QStringLiteral("compare/device"));
  device_->set_cpu_threads(rptq::num_threads());
  device_->combo()->setToolTip(tr("Where the perplexity, KL and top-1 passes and the generation below run"));
  form->addRow(tr("Device"), device_);
  ml->addLayout(form);
  auto* run_row = new QHBoxLayout;
  compare_ = new QPushButton(tr("Compare"));
  compare_->setObjectName(QStringLiteral("compareButton"));
  bar_ = new QProgressBar;
  bar_->setRange(0, 1000);
  bar_->setValue(0);
  run_row->addWidget(compare_);
  run_row->addWidget(bar_, 1);
  ml->addLayout(run_row);
  status_ = new QLabel;
  status_->setObjectName(QStringLiteral("compareStatus"));
  status_->setWordWrap(true);
  ml->addWidget(status_);
  table_ = new QTableWidget(MetricRows, 2);
  table_->setObjectName(QStringLiteral("metricsTable"));
  table_->setHorizontalHeaderLabels({tr("FP"), tr("Quantized")});
  table_->setVerticalHeaderLabels({tr("Perplexity"), tr("KL(FP \u2016 quantized)"), tr("Top-1 agreement"),
                                   tr("Tokens/s"), tr("Weight memory"), tr("Evaluated")});
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionMode(QAbstractItemView::NoSelection);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  table_->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  table_->setMinimumHeight(table_->horizontalHeader()->sizeHint().height() +
                           MetricRows * (table_->fontMetrics().height() + 10) + 4);
  table_->setMaximumHeight(table_->minimumHeight());
  ml->addWidget(table_);
  texts_table_ = new QTableWidget(0, TextColumns);
  texts_table_->setObjectName(QStringLiteral("textsTable"));
  texts_table_->setHorizontalHeaderLabels({tr("Text"), tr("PPL FP"), tr("PPL quantized"), tr("Change"), tr("KL mean"),
                                           tr("KL p50"), tr("KL p90"), tr("KL p99"), tr("KL max"),
                                           tr("Top-1 changed")});
  texts_table_->horizontalHeaderItem(TextKlColumn)
      ->setToolTip(tr("KL(FP \u2016 quantized) per predicted position, nats; percentiles are nearest-rank"));
  texts_table_->verticalHeader()->hide();
  texts_table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  texts_table_->setSelectionMode(QAbstractItemView::NoSelection);
  texts_table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  texts_table_->horizontalHeader()->setStretchLastSection(true);
  // Room for three texts (the paper's WikiText-2, PTB and C4) without a scroll bar.
  texts_table_->setMinimumHeight(texts_table_->horizontalHeader()->sizeHint().height() +
                                 2 * texts_table_->verticalHeader()->defaultSectionSize() + 2 * texts_table_->frameWidth() + 2);
  texts_table_->setMaximumHeight(texts_table_->horizontalHeader()->sizeHint().height() +
                                 3 * texts_table_->verticalHeader()->defaultSectionSize() + 2 * texts_table_->frameWidth() + 2);
  ml->addStretch(1);
  top->addWidget(metrics_box, 1);
  // (c) The memory chart.
  auto* memory_box = new QGroupBox(tr("Memory: weights + KV cache"));
  auto* mel = new QVBoxLayout(memory_box);
  memory_ = new MemoryChart;
  mel->addWidget(memory_);
  top->addWidget(memory_box, 1);
  root->addLayout(top, 3);
  auto* texts_box = new QGroupBox(tr("Every text: perplexity, KL distribution, top-1 changes"));
  auto* tl = new QVBoxLayout(texts_box);
  texts_table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  texts_table_->horizontalHeader()->setSectionResizeMode(TextNameColumn, QHeaderView::ResizeToContents);
  tl->addWidget(texts_table_);
  root->addWidget(texts_box);

  // (b) Side-by-side generation.
  auto* gen_box = new QGroupBox(tr("Generation (greedy, same settings)"));
  gen_box->setToolTip(tr("Generation runs on the device chosen above (on the GPU the FP side first, then the "
                         "quantized side)"));
  auto* gl = new QVBoxLayout(gen_box);
  auto* prompt_row = new QHBoxLayout;
  prompt_ = new QLineEdit(s.value(QStringLiteral("compare/prompt"), tr("Once upon a time")).toString());
  prompt_->setObjectName(QStringLiteral("promptEdit"));
  new_tokens_ = new QSpinBox;
  new_tokens_->setObjectName(QStringLiteral("newTokensSpin"));
  new_tokens_->setRange(1, 4096);
  new_tokens_->setValue(s.value(QStringLiteral("compare/newTokens"), 48).toInt());
  new_tokens_->setSuffix(tr(" new tokens"));
  generate_ = new QPushButton(tr("Generate"));
  generate_->setObjectName(QStringLiteral("generateButton"));
  stop_ = new QPushButton(tr("Stop"));
  stop_->setEnabled(false);
  prompt_row->addWidget(new QLabel(tr("Prompt")));
  prompt_row->addWidget(prompt_, 1);
  prompt_row->addWidget(new_tokens_);
  prompt_row->addWidget(generate_);
  prompt_row->addWidget(stop_);
  gl->addLayout(prompt_row);
  auto* panes = new QHBoxLayout;
  for (int side = 0; side < 2; ++side) {
    auto* col = new QVBoxLayout;
    pane_titles_[side] = new QLabel(side == 0 ? tr("<b>FP</b>") : tr("<b>Quantized</b>"));
    panes_[side] = new QTextEdit;
    panes_[side]->setObjectName(side == 0 ? QStringLiteral("fpPane") : QStringLiteral("quantizedPane"));
    panes_[side]->setReadOnly(true);
    panes_[side]->setAcceptRichText(false);
    col->addWidget(pane_titles_[side]);
    col->addWidget(panes_[side], 1);
    panes->addLayout(col, 1);
  }
  gl->addLayout(panes, 1);
  gen_status_ = new QLabel;
  gen_status_->setObjectName(QStringLiteral("generationStatus"));
  gen_status_->setWordWrap(true);
  gl->addWidget(gen_status_);
  root->addWidget(gen_box, 2);

  poll_->setInterval(50);
  connect(poll_, &QTimer::timeout, this, [this] {
    if (comparing_) bar_->setValue(qRound(comparing_->get().fraction * 1000));
  });
  connect(browse, &QPushButton::clicked, this, [this] {
    const QStringList now = texts();
    const QStringList p =
        QFileDialog::getOpenFileNames(this, tr("Evaluation texts"), now.isEmpty() ? QString() : QFileInfo(now.front()).absolutePath(),
                                      tr("Text files (*.txt);;All files (*)"));
    if (!p.isEmpty()) data_edit_->setText(p.join(QLatin1Char(';')));
  });
  connect(compare_, &QPushButton::clicked, this, &ComparePage::run_comparison);
  connect(generate_, &QPushButton::clicked, this, &ComparePage::run_generation);
  connect(device_, &DeviceChoice::device_changed, this, [this] { set_busy(); });  // the Generate tooltip
  connect(prompt_, &QLineEdit::returnPressed, this, &ComparePage::run_generation);
  connect(stop_, &QPushButton::clicked, this, &ComparePage::stop);
  connect(gen_, &GenerationJob::token, this, &ComparePage::token);
  connect(gen_, &GenerationJob::side_finished, this, &ComparePage::side_finished);
  connect(gen_, &GenerationJob::side_failed, this, &ComparePage::side_failed);
  connect(gen_, &GenerationJob::running_changed, this, [this](bool on) {
    if (!on) session_->end_quantized_use(kGenerationUse);
    set_busy();
    Q_EMIT running_changed(on || comparing());
  });
  connect(session_, &Session::model_changed, this, &ComparePage::update_availability);
  connect(session_, &Session::stats_changed, this, &ComparePage::update_availability);
  connect(session_, &Session::quantized_changed, this, &ComparePage::update_availability);
  connect(session_, &Session::quantized_use_changed, this, &ComparePage::set_busy);
  update_availability();
}

ComparePage::~ComparePage() {
  if (comparing_) comparing_->cancel();
  QSettings s;
  s.setValue(QStringLiteral("compare/data"), data_edit_->text());
  s.setValue(QStringLiteral("compare/windows"), windows_->value());
  s.setValue(QStringLiteral("compare/seqlen"), seqlen_->value());
  s.setValue(QStringLiteral("compare/prompt"), prompt_->text());
  s.setValue(QStringLiteral("compare/newTokens"), new_tokens_->value());
}

bool ComparePage::generating() const { return gen_->running(); }

void ComparePage::set_memory_config(const rptq::QuantConfig& config) {
  chosen_ = config;
  if (!session_->quantized()) memory_->set_quant_config(config);
}

void ComparePage::update_availability() {
  const LoadedModel* m = session_->model();
  const rptq::QuantizedModel* q = session_->quantized();
  QString note;
  if (!m || !m->model)
    note = tr("Open a model folder, calibrate it and quantize it to compare; the memory chart works for the OPT sizes "
              "meanwhile.");
  else if (!q)
    note = tr("Quantize %1 first (Quantize step) to compare it with the FP model; the memory chart below shows the "
              "setting chosen there.")
               .arg(m->display_name());
  note_->setText(note);
  note_->setVisible(!note.isEmpty());
  if (m && m->model && m->model->config().max_positions > 0) {
    seqlen_->setMaximum(static_cast<int>(std::min<std::int64_t>(m->model->config().max_positions, 1 << 20)));
  }
  memory_->set_loaded_model(m ? m->display_name() : QString(),
                            m && m->model ? std::optional<rptq::ModelConfig>(m->model->config()) : std::nullopt);
  if (const QuantizationSummary* s = session_->quantization_summary())
    memory_->set_quant_config(s->config);
  else if (chosen_)
    memory_->set_quant_config(*chosen_);
  pane_titles_[1]->setText(session_->quantization_summary()
                               ? tr("<b>Quantized</b> (%1)")
                                     .arg(QString::fromStdString(session_->quantization_summary()->config.name))
                               : tr("<b>Quantized</b>"));
  if (!q) {
    result_.reset();
    show_result();
    status_->clear();
  }
  set_busy();
}

void ComparePage::set_busy() {
  const bool ready = session_->fp_model() && session_->quantized();
  const bool busy = comparing() || generating();
  // Another step's job (an export) reading the quantized model: wait for it.
  const bool waiting = !busy && session_->quantized_in_use();
  compare_->setEnabled(ready && !busy && !waiting);
  generate_->setEnabled(ready && !busy && !waiting);
  const QString wait_tip = waiting ? tr("Waiting for %1 to finish with the quantized model.")
                                         .arg(session_->quantized_user())
                                   : QString();
  compare_->setToolTip(wait_tip);
  generate_->setToolTip(waiting ? wait_tip
                        : device_->device() == rptq::Device::CUDA
                            ? tr("Generation runs on the GPU: the FP side first, then the quantized side")
                            : tr("Generation runs on the CPU, both sides at once"));
  stop_->setEnabled(busy);
  for (QWidget* w : std::initializer_list<QWidget*>{data_edit_, windows_, seqlen_, device_, prompt_, new_tokens_})
    w->setEnabled(!busy);
}

void ComparePage::run_comparison() {
  auto fp = session_->fp_model();
  auto q = session_->quantized_ptr();
  const LoadedModel* m = session_->model();
  if (!fp || !q || !m || comparing() || generating() || session_->quantized_in_use()) return;
  auto progress = std::make_shared<JobProgress<LoadProgress>>();
  comparing_ = progress;
  const QStringList data = texts();
  if (data.isEmpty()) {
    status_->setText(tr("Name at least one text file to compare on."));
    return;
  }
  QSettings().setValue(QStringLiteral("compare/texts"), data.join(QLatin1Char(';')));
  const QString dir = m->path;
  rptq::PerplexityOptions po;
  po.seqlen = seqlen_->value();
  po.max_windows = windows_->value();
  const rptq::Execution exec = device_->execution();
  const bool on_gpu = exec.device == rptq::Device::CUDA;
  QStringList names;
  for (const QString& d : data) names << QFileInfo(d).fileName();
  status_->setText(on_gpu ? tr("Comparing on %1 (GPU)\u2026").arg(names.join(QStringLiteral(", ")))
                          : tr("Comparing on %1\u2026").arg(names.join(QStringLiteral(", "))));
  bar_->setValue(0);
  poll_->start();
  session_->begin_quantized_use(kComparisonUse);
  set_busy();
  Q_EMIT running_changed(true);
  run_task(
      this, nullptr,
      [fp, q, data, dir, po, progress, exec]() mutable {
        const auto tok = rptq::Tokenizer::load(dir.toStdString());
        std::vector<rptq::CompareText> texts;
        for (const QString& d : data) {
          if (progress->cancelled()) throw rptq::Cancelled();
          rptq::CompareText t;
          t.path = d.toStdString();
          t.name = QFileInfo(d).fileName().toStdString();
          t.ids = tok->encode(rptq::read_text_file(t.path), true);
          texts.push_back(std::move(t));
        }
        po.progress = [progress](std::int64_t done, std::int64_t total) {
          progress->set({total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0.0, QString()});
          return !progress->cancelled();
        };
        return rptq::compare_texts(*fp, nullptr, q->model(), q.get(), texts, po, exec);
      },
      [this, progress, q, data, exec](std::vector<rptq::CompareResult> r) {
        if (progress != comparing_) return;
        comparison_ended();
        if (q != session_->quantized_ptr()) return;  // quantized again meanwhile
        bar_->setValue(1000);
        results_ = std::move(r);
        result_texts_ = data;
        result_ = results_.front();
        double seconds = 0;
        for (const rptq::CompareResult& x : results_) seconds += x.seconds;
        status_->setText(tr("Compared in %1.").arg(human_seconds(seconds)));
        show_result();
        show_texts();
        record(exec);
      },
      [this, progress](const TaskError& e) {
        if (progress != comparing_) return;
        comparison_ended();
        bar_->setValue(0);
        status_->setText(e.cancelled() ? tr("Stopped.") : tr("Comparison failed: %1").arg(e.message));
        show_task_error(window(), tr("Comparison failed"), e);
      });
}

QStringList ComparePage::texts() const {
  QStringList out;
  for (const QString& p : data_edit_->text().split(QLatin1Char(';'), Qt::SkipEmptyParts))
    if (!p.trimmed().isEmpty()) out << p.trimmed();
  return out;
}

void ComparePage::show_texts() {
  texts_table_->setRowCount(static_cast<int>(results_.size()));
  for (int i = 0; i < static_cast<int>(results_.size()); ++i) {
    const rptq::CompareResult& r = results_[static_cast<std::size_t>(i)];
    auto set = [&](int col, const QString& text) {
      auto* item = new QTableWidgetItem(text);
      if (col != TextNameColumn) item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
      texts_table_->setItem(i, col, item);
    };
    set(TextNameColumn, QFileInfo(result_texts_.value(i)).fileName());
    texts_table_->item(i, TextNameColumn)->setToolTip(result_texts_.value(i));
    set(TextPplFpColumn, QString::number(r.fp.ppl, 'f', 3));
    set(TextPplQColumn, QString::number(r.q.ppl, 'f', 3));
    set(TextChangeColumn, QStringLiteral("%1%2%").arg(r.q.ppl >= r.fp.ppl ? QStringLiteral("+") : QString())
                              .arg(100.0 * (r.q.ppl / r.fp.ppl - 1.0), 0, 'f', 2));
    set(TextKlColumn, QString::number(r.kl, 'f', 5));
    set(TextP50Column, QString::number(r.kl_p50, 'f', 5));
    set(TextP90Column, QString::number(r.kl_p90, 'f', 5));
    set(TextP99Column, QString::number(r.kl_p99, 'f', 5));
    set(TextMaxColumn, QString::number(r.kl_max, 'f', 5));
    set(TextTop1ChangedColumn, QStringLiteral("%1%").arg(100.0 * r.top1_changed, 0, 'f', 2));
  }
}

void ComparePage::record(const rptq::Execution& exec) {
  const QuantizationSummary* s = session_->quantization_summary();
  if (!s || !result_) return;
  const rptq::CompareResult& r = *result_;
  rptq::RunRecord rec =
      rptq::new_run_record("compare", s->model_path.toStdString(), s->stats_path.toStdString(), s->config);
  nlohmann::json paths = nlohmann::json::array(), per_text = nlohmann::json::array();
  for (int i = 0; i < static_cast<int>(results_.size()); ++i) {
    const rptq::CompareResult& t = results_[static_cast<std::size_t>(i)];
    const std::string path = QFileInfo(result_texts_.value(i)).absoluteFilePath().toStdString();
    paths.push_back(path);
    per_text.push_back({{"path", path},
                        {"name", QFileInfo(result_texts_.value(i)).fileName().toStdString()},
                        {"ppl_fp", t.fp.ppl},
                        {"ppl_q", t.q.ppl},
                        {"kl", t.kl},
                        {"kl_p50", t.kl_p50},
                        {"kl_p90", t.kl_p90},
                        {"kl_p99", t.kl_p99},
                        {"kl_max", t.kl_max},
                        {"top1_agreement", t.top1_agreement},
                        {"top1_changed", t.top1_changed},
                        {"windows", t.fp.windows},
                        {"positions", t.positions}});
  }
  rec.options = {{"data", paths},
                 {"seqlen", r.fp.seqlen},
                 {"windows", r.fp.windows},
                 {"sequential", s->sequential},
                 {"stat", rptq::range_stat_name(s->stat)},
                 {"kmeans_seed", s->kmeans_seed},
                 {"device", exec.device == rptq::Device::CUDA ? "cuda" : "cpu"}};
  rec.results = {{"ppl_fp", r.fp.ppl},
                 {"ppl_q", r.q.ppl},
                 {"kl", r.kl},
                 {"top1_agreement", r.top1_agreement},
                 {"positions", r.positions},
                 {"seconds", r.seconds},
                 {"quantize_seconds", s->seconds},
                 {"quantized_weight_bytes", s->quantized_weight_bytes},
                 {"texts", per_text}};
  session_->record_run(rec);
}

void ComparePage::comparison_ended() {
  comparing_.reset();
  poll_->stop();
  session_->end_quantized_use(kComparisonUse);
  set_busy();
  Q_EMIT running_changed(generating());
}

void ComparePage::show_result() {
  auto set = [this](int row, int col, const QString& text) {
    auto* item = new QTableWidgetItem(text);
    item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    table_->setItem(row, col, item);
  };
  const QString none = QStringLiteral("\u2014");
  for (int r = 0; r < MetricRows; ++r)
    for (int c = 0; c < 2; ++c) set(r, c, none);
  // Exactly the rows' height: no empty band under the last row.
  table_->resizeRowsToContents();
  const int h = table_->horizontalHeader()->sizeHint().height() + table_->verticalHeader()->length() +
                2 * table_->frameWidth();
  table_->setMinimumHeight(h);
  table_->setMaximumHeight(h);
  if (!result_) return;
  const rptq::CompareResult& r = *result_;
  set(PerplexityRow, 0, QString::number(r.fp.ppl, 'f', 3));
  set(PerplexityRow, 1, tr("%1 (%2%3%)")
                            .arg(r.q.ppl, 0, 'f', 3)
                            .arg(r.q.ppl >= r.fp.ppl ? QStringLiteral("+") : QString())
                            .arg(100.0 * (r.q.ppl / r.fp.ppl - 1.0), 0, 'f', 2));
  set(KlRow, 1, tr("%1 nats/token").arg(r.kl, 0, 'f', 5));
  set(Top1Row, 1, tr("%1%").arg(100.0 * r.top1_agreement, 0, 'f', 2));
  set(TokensPerSecondRow, 0, QString::number(r.fp.tokens_per_s, 'f', 0));
  set(TokensPerSecondRow, 1, QString::number(r.q.tokens_per_s, 'f', 0));
  if (const QuantizationSummary* s = session_->quantization_summary()) {
    set(WeightMemoryRow, 0, human_bytes(s->fp_weight_bytes));
    set(WeightMemoryRow, 1, human_bytes(s->quantized_weight_bytes));
  }
  const QString evaluated = tr("%1 \u00d7 %2 tokens").arg(r.fp.windows).arg(r.fp.seqlen);
  set(WindowsRow, 0, evaluated);
  set(WindowsRow, 1, evaluated);
}

void ComparePage::run_generation() {
  auto fp = session_->fp_model();
  auto q = session_->quantized_ptr();
  const LoadedModel* m = session_->model();
  if (!fp || !q || !m || comparing() || generating() || session_->quantized_in_use()) return;
  GenerationRequest r;
  r.tokenizer_dir = m->path;
  r.fp = fp;
  r.quantized = q;
  r.prompt = prompt_->text();
  r.max_new_tokens = new_tokens_->value();
  r.exec = device_->execution();
  divergence_ = -1;
  for (int side = 0; side < 2; ++side) {
    ids_[side].clear();
    spans_[side].clear();
    finished_[side] = false;
    panes_[side]->clear();
    // The prompt in grey, then the continuation streams in after it.
    QTextCursor c(panes_[side]->document());
    QTextCharFormat grey;
    grey.setForeground(QColor(0x80, 0x80, 0x80));
    c.insertText(r.prompt, grey);
  }
  gen_status_->setText(r.on_gpu() ? tr("Generating on the GPU\u2026") : tr("Generating\u2026"));
  stopped_ = false;
  session_->begin_quantized_use(kGenerationUse);
  gen_->start(r);
}

void ComparePage::stop() {
  if (comparing_) comparing_->cancel();
  if (generating()) {
    stopped_ = true;
    gen_status_->setText(tr("Stopping\u2026"));
  }
  gen_->stop();
}

void ComparePage::token(int side, int id, const QString& text) {
  QTextEdit* pane = panes_[side];
  QTextCursor c(pane->document());
  c.movePosition(QTextCursor::End);
  const int start = c.position();
  c.insertText(text, QTextCharFormat());
  if (id >= 0) {
    ids_[side].push_back(id);
    spans_[side].emplace_back(start, c.position());
  } else if (!spans_[side].empty()) {
    spans_[side].back().second = c.position();  // the decoder's remainder belongs to the last token
  }
  pane->moveCursor(QTextCursor::End);
  pane->ensureCursorVisible();
  find_divergence();
}

void ComparePage::find_divergence() {
  if (divergence_ >= 0) return;
  const std::size_t n = std::min(ids_[0].size(), ids_[1].size());
  for (std::size_t i = 0; i < n; ++i)
    if (ids_[0][i] != ids_[1][i]) {
      divergence_ = static_cast<int>(i);
      break;
    }
  // One side stopped (end of text) while the other went on: they differ at the first extra token.
  if (divergence_ < 0 && finished_[0] && finished_[1] && ids_[0].size() != ids_[1].size())
    divergence_ = static_cast<int>(n);
  if (divergence_ < 0) return;
  highlight(0, divergence_);
  highlight(1, divergence_);
}

void ComparePage::highlight(int side, int token) {
  if (token >= static_cast<int>(spans_[side].size())) return;
  // A token whose text is still pending (an incomplete UTF-8 character) marks the next one that has text.
  int i = token;
  while (i < static_cast<int>(spans_[side].size()) && spans_[side][static_cast<std::size_t>(i)].first ==
                                                          spans_[side][static_cast<std::size_t>(i)].second)
    ++i;
  if (i >= static_cast<int>(spans_[side].size())) return;
  const auto [start, end] = spans_[side][static_cast<std::size_t>(i)];
  QTextCursor c(panes_[side]->document());
  c.setPosition(start);
  c.setPosition(end, QTextCursor::KeepAnchor);
  QTextCharFormat f;
  f.setBackground(kDivergence);
  f.setFontWeight(QFont::Bold);
  f.setToolTip(tr("first token where FP and quantized differ (token %1)").arg(token + 1));
  c.mergeCharFormat(f);
}

void ComparePage::side_finished(int side, const rptq::GenerateResult& r) {
  finished_[side] = true;
  find_divergence();
  // A highlight for a side whose divergent token arrived after the divergence was found.
  if (divergence_ >= 0) highlight(side, divergence_);
  if (!finished_[0] || !finished_[1]) return;
  if (stopped_) {
    gen_status_->setText(tr("Stopped after %1 (FP) and %2 (quantized) new tokens%3.")
                             .arg(ids_[0].size())
                             .arg(ids_[1].size())
                             .arg(divergence_ >= 0 ? tr("; they first differ at token %1 (highlighted)").arg(divergence_ + 1)
                                                   : QString()));
    return;
  }
  gen_status_->setText(divergence_ >= 0
                           ? tr("%1 and %2 new tokens; they first differ at token %3 (highlighted).")
                                 .arg(ids_[0].size())
                                 .arg(ids_[1].size())
                                 .arg(divergence_ + 1)
                           : tr("%1 new tokens; FP and quantized chose the same token every time.").arg(ids_[0].size()));
}

void ComparePage::side_failed(int side, const TaskError& e) {
  finished_[side] = true;
  gen_status_->setText(tr("Generation (%1) failed: %2").arg(side == 0 ? tr("FP") : tr("quantized"), e.message));
  if (!e.cancelled()) show_task_error(window(), tr("Generation failed"), e);
}

}  // namespace rptq::ui
