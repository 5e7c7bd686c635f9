#include "export/export_page.h"

#include <algorithm>

#include <QComboBox>
#include <QDir>
#include <QDirIterator>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QStandardPaths>
#include <QTimer>
#include <QVBoxLayout>

#include <filesystem>

#include "common/error_dialog.h"
#include "common/format.h"
#include "common/page_heading.h"
#include "common/task.h"
#include "rptq/base/error.h"
#include "rptq/export/hf_export.h"
#include "rptq/export/qcheckpoint.h"
#include "session/quantization_summary.h"
#include "session/session.h"

namespace rptq::ui {

namespace {
const QString kExportUse = QStringLiteral("the export");  // Session::begin_quantized_use


std::uint64_t folder_bytes(const QString& dir) {
  std::uint64_t n = 0;
  QDirIterator it(dir, QDir::Files, QDirIterator::Subdirectories);
  while (it.hasNext()) n += static_cast<std::uint64_t>(QFileInfo(it.next()).size());
  return n;
}

// An output that would be replaced: an existing file, or a folder that is not empty.
bool output_exists(const QString& path) {
  const QFileInfo fi(path);
  if (fi.isDir()) return !QDir(path).isEmpty();
  return fi.exists();
}
}  // namespace

ExportPage::ExportPage(Session* session, QWidget* parent)
    : QWidget(parent), session_(session), poll_(new QTimer(this)) {
  auto* root = new QVBoxLayout(this);
  root->addWidget(page_heading(tr("Export")));
  auto* intro = new QLabel(tr("An <b>HDF5 checkpoint</b> holds the reordered model really packed (integer codes with "
                              "their scales, the activation and KV quantizers, config and tokenizer): the workbench and "
                              "<tt>rptq</tt> run it as it is. A <b>safetensors folder</b> holds the quantized weights "
                              "dequantized in the source's channel order, for Hugging Face transformers (without the "
                              "activation quantizers). A <b>compressed-tensors folder</b> holds packed integer weights "
                              "that vLLM and SGLang serve, with tensor parallelism; it needs a quantization made for "
                              "it (Quantize step, <i>Serve with</i>: vLLM / SGLang)."));
  intro->setWordWrap(true);
  root->addWidget(intro);
  note_ = new QLabel;
  note_->setObjectName(QStringLiteral("exportNote"));
  note_->setWordWrap(true);
  note_->setStyleSheet(QStringLiteral("QLabel { background: #fff4e0; border: 1px solid #e0b060; border-radius: 4px; "
                                      "padding: 6px; }"));
  root->addWidget(note_);

  auto* box = new QGroupBox(tr("Output"));
  auto* form = new QFormLayout(box);
  what_ = new QLabel;
  what_->setWordWrap(true);
  form->addRow(tr("Quantized model"), what_);
  format_ = new QComboBox;
  format_->setObjectName(QStringLiteral("formatCombo"));
  format_->addItem(tr("RPTQ checkpoint (HDF5, packed)"), Hdf5);
  format_->addItem(tr("Hugging Face folder (safetensors, dequantized)"), Safetensors);
  format_->addItem(tr("compressed-tensors folder (vLLM / SGLang, packed)"), CompressedTensors);
  format_->setCurrentIndex(std::clamp(QSettings().value(QStringLiteral("export/format"), 0).toInt(), 0, 2));
  form->addRow(tr("Format"), format_);
  auto* out_row = new QHBoxLayout;
  out_edit_ = new QLineEdit;
  out_edit_->setObjectName(QStringLiteral("exportPathEdit"));
  out_edit_->setClearButtonEnabled(true);
  auto* browse = new QPushButton(tr("Browse..."));
  out_row->addWidget(out_edit_, 1);
  out_row->addWidget(browse);
  form->addRow(tr("Write to"), out_row);
  root->addWidget(box);

  auto* actions = new QHBoxLayout;
  export_ = new QPushButton(tr("Export"));
  export_->setObjectName(QStringLiteral("exportButton"));
  export_->setDefault(true);
  bar_ = new QProgressBar;
  bar_->setObjectName(QStringLiteral("exportProgress"));
  bar_->setRange(0, 1000);
  bar_->setValue(0);
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setObjectName(QStringLiteral("cancelExportButton"));
  cancel_->setEnabled(false);
  connect(cancel_, &QPushButton::clicked, this, &ExportPage::cancel);
  actions->addWidget(export_);
  actions->addWidget(cancel_);
  actions->addWidget(bar_, 1);
  root->addLayout(actions);
  status_ = new QLabel;
  status_->setWordWrap(true);
  root->addWidget(status_);
  auto* result_box = new QGroupBox(tr("Result"));
  auto* rl = new QHBoxLayout(result_box);
  result_ = new QLabel(tr("Nothing exported yet."));
  result_->setObjectName(QStringLiteral("exportResult"));
  result_->setWordWrap(true);
  result_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  open_ = new QPushButton(tr("Open the Export"));
  open_->setObjectName(QStringLiteral("openExportButton"));
  open_->setEnabled(false);
  rl->addWidget(result_, 1);
  rl->addWidget(open_, 0, Qt::AlignTop);
  root->addWidget(result_box);
  root->addStretch(1);

  poll_->setInterval(50);
  connect(poll_, &QTimer::timeout, this, [this] {
    if (!exporting_) return;
    const LoadProgress p = exporting_->get();
    bar_->setValue(qRound(p.fraction * 1000));
    if (!p.what.isEmpty()) status_->setText(p.what);
  });
  connect(browse, &QPushButton::clicked, this, [this] {
    const QString p = format_->currentData().toInt() == Hdf5
                          ? QFileDialog::getSaveFileName(this, tr("Export checkpoint"), output_path(),
                                                         tr("RPTQ checkpoints (*.h5);;All files (*)"),
                                                         nullptr, QFileDialog::DontConfirmOverwrite)
                          : QFileDialog::getExistingDirectory(this, tr("Export folder"), output_path());
    if (!p.isEmpty()) out_edit_->setText(p);
  });
  connect(format_, &QComboBox::currentIndexChanged, this, [this](int i) {
    QSettings().setValue(QStringLiteral("export/format"), i);
    update_availability();
  });
  connect(export_, &QPushButton::clicked, this, &ExportPage::start);
  connect(open_, &QPushButton::clicked, this, [this] {
    if (!exported_.isEmpty()) Q_EMIT open_requested(exported_);
  });
  connect(session_, &Session::model_changed, this, &ExportPage::update_availability);
  connect(session_, &Session::quantized_changed, this, [this] {
    // A quantization made for serving has one format; RPTQ's own has the other two.
    const QuantizationSummary* s = session_->quantization_summary();
    if (s && !exporting() && !format_mismatch().isEmpty())
      format_->setCurrentIndex(format_->findData(s->config.target != rptq::ServeTarget::None ? CompressedTensors : Hdf5));
    update_availability();
  });
  connect(session_, &Session::quantized_use_changed, this, [this] { set_busy(exporting()); });
  update_availability();
}

ExportPage::~ExportPage() {
  if (exporting_) exporting_->cancel();
}

QString ExportPage::automatic_output_path() const {
  const QString dir = QStandardPaths::writableLocation(QStandardPaths::AppLocalDataLocation) + QStringLiteral("/exports");
  const LoadedModel* m = session_->model();
  const QuantizationSummary* s = session_->quantization_summary();
  const QString base = QStringLiteral("%1-%2").arg(m ? m->display_name() : QStringLiteral("model"),
                                                   s ? QString::fromStdString(s->config.name) : QStringLiteral("rptq"));
  const int f = format_->currentData().toInt();
  return f == Hdf5 ? QStringLiteral("%1/%2.h5").arg(dir, base)
                   : QStringLiteral("%1/%2-%3").arg(dir, base, f == Safetensors ? QStringLiteral("hf")
                                                                                : QStringLiteral("ct"));
}

QString ExportPage::output_path() const {
  const QString p = out_edit_->text().trimmed();
  return p.isEmpty() ? automatic_output_path() : p;
}

QString ExportPage::format_mismatch() const {
  const QuantizationSummary* s = session_->quantization_summary();
  if (!s) return {};
  const bool served = s->config.target != rptq::ServeTarget::None;
  const bool ct = format_->currentData().toInt() == CompressedTensors;
  if (served && !ct)
    return tr("This quantization was made for vLLM / SGLang: export it as a compressed-tensors folder.");
  if (!served && ct)
    return tr("A compressed-tensors folder needs a quantization made for it: in the Quantize step choose "
              "<i>Serve with: vLLM / SGLang</i> and quantize again. RPTQ's own setting has per-cluster weight "
              "groups and reorders that the format cannot hold.");
  return {};
}

void ExportPage::update_availability() {
  const QuantizationSummary* s = session_->quantization_summary();
  const QString mismatch = format_mismatch();
  note_->setText(!s ? tr("Quantize a model first (Quantize step); the export writes that quantized model.") : mismatch);
  note_->setVisible(!s || !mismatch.isEmpty());
  what_->setText(s ? tr("%1 of %2 (%3 of weights in memory)")
                         .arg(QString::fromStdString(s->config.name), QFileInfo(s->model_path).fileName(),
                              human_bytes(s->quantized_weight_bytes))
                   : tr("none"));
  out_edit_->setPlaceholderText(tr("automatic: %1").arg(QDir::toNativeSeparators(automatic_output_path())));
  set_busy(exporting());
}

void ExportPage::set_busy(bool on) {
  // A comparison or generation reading the quantized model: wait for it.
  const bool waiting = !on && session_->quantized_in_use();
  export_->setEnabled(!on && !waiting && session_->quantized() && session_->stats() && format_mismatch().isEmpty());
  export_->setToolTip(waiting ? tr("Waiting for %1 to finish with the quantized model.").arg(session_->quantized_user())
                              : QString());
  format_->setEnabled(!on);
  out_edit_->setEnabled(!on);
}

void ExportPage::start() {
  auto q = session_->quantized_ptr();
  auto stats = session_->stats_ptr();
  const QuantizationSummary* s = session_->quantization_summary();
  if (!q || !stats || !s || exporting() || session_->quantized_in_use()) return;
  const QString out = QFileInfo(output_path()).absoluteFilePath();
  const int format = format_->currentData().toInt();
  const bool exists = output_exists(out);
  if (exists && confirm_overwrite_ &&
      QMessageBox::question(this, tr("Replace the export?"),
                            tr("%1 exists. Replace it?").arg(QDir::toNativeSeparators(out))) != QMessageBox::Yes)
    return;
  const QString source = s->model_path;
  auto progress = std::make_shared<JobProgress<LoadProgress>>();
  exporting_ = progress;
  bar_->setValue(0);
  status_->setText(tr("Exporting to %1\u2026").arg(QDir::toNativeSeparators(out)));
  poll_->start();
  session_->begin_quantized_use(kExportUse);
  cancel_->setEnabled(true);
  set_busy(true);
  Q_EMIT running_changed(true);
  struct Written {
    QString path;
    std::uint64_t bytes = 0;
    double seconds = 0;
  };
  run_task(
      this, nullptr,
      [q, stats, source, out, format, exists, progress]() -> Written {
        QElapsedTimer clock;
        clock.start();
        const QString parent = QFileInfo(out).absolutePath();
        if (!QDir().mkpath(parent)) throw rptq::InputError(parent.toStdString() + ": cannot create the folder");
        Written w;
        w.path = out;
        const auto report = [progress](double f, const std::string& what) {
          progress->set({f, QString::fromStdString(what)});
          return !progress->cancelled();
        };
        if (format == Hdf5) {
          rptq::ExportOptions eo;
          eo.overwrite = exists;  // the user agreed (or it does not exist)
          eo.progress = report;
          rptq::export_checkpoint(*q, *stats, source.toStdString(), out.toStdString(), eo);
          w.bytes = static_cast<std::uint64_t>(QFileInfo(out).size());
        } else if (format == CompressedTensors) {
          rptq::export_compressed_tensors(*q, source.toStdString(), out.toStdString(), exists, report);
          w.bytes = folder_bytes(out);
        } else {
          rptq::export_hf_folder(*q, source.toStdString(), out.toStdString(), exists, rptq::DType::F32, report);
          w.bytes = folder_bytes(out);
        }
        w.seconds = clock.nsecsElapsed() / 1e9;
        return w;
      },
      [this, progress](Written w) {
        if (progress != exporting_) return;
        finished(w.path, w.bytes, w.seconds);
      },
      [this, progress](const TaskError& e) {
        if (progress != exporting_) return;
        failed(e);
      });
}

void ExportPage::cancel() {
  if (!exporting_) return;
  exporting_->cancel();
  cancel_->setEnabled(false);
  status_->setText(tr("Cancelling\u2026"));
}

void ExportPage::finished(const QString& path, std::uint64_t bytes, double seconds) {
  exporting_.reset();
  session_->end_quantized_use(kExportUse);
  cancel_->setEnabled(false);
  poll_->stop();
  bar_->setRange(0, 1000);
  bar_->setValue(1000);
  exported_ = path;
  status_->setText(tr("Exported in %1.").arg(human_seconds(seconds)));
  const bool folder = QFileInfo(path).isDir();
  // The format combo is disabled while exporting: it still names what was written. A compressed-tensors folder is
  // for a serving engine (docs/serving.md); the workbench does not open it.
  const bool served = format_->currentData().toInt() == CompressedTensors;
  result_->setText(tr("Wrote <b>%1</b> (%2, %3).")
                       .arg(QDir::toNativeSeparators(path).toHtmlEscaped(),
                            served   ? tr("compressed-tensors folder for vLLM / SGLang")
                            : folder ? tr("Hugging Face folder")
                                     : tr("RPTQ checkpoint"),
                            human_bytes(bytes)));
  if (served)
    result_->setText(result_->text() +
                     tr(" Serve it with <tt>vllm serve %1 --tensor-parallel-size N</tt>.")
                         .arg(QDir::toNativeSeparators(path).toHtmlEscaped()));
  open_->setEnabled(!served);
  set_busy(false);
  Q_EMIT running_changed(false);
}

void ExportPage::failed(const TaskError& e) {
  exporting_.reset();
  session_->end_quantized_use(kExportUse);
  cancel_->setEnabled(false);
  poll_->stop();
  bar_->setRange(0, 1000);
  bar_->setValue(0);
  status_->setText(e.cancelled() ? tr("Cancelled; nothing was written.") : tr("Export failed: %1").arg(e.message));
  set_busy(false);
  Q_EMIT running_changed(false);
  show_task_error(window(), tr("Export failed"), e);
}

}  // namespace rptq::ui
