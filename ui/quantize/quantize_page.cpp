#include "quantize/quantize_page.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QTableWidget>
#include <QVBoxLayout>

#include "common/device_choice.h"
#include "common/error_dialog.h"
#include "common/format.h"
#include "common/page_heading.h"
#include "common/task.h"
#include "quantize/overrides_editor.h"
#include "quantize/quantize_job.h"
#include "rptq/base/error.h"
#include "session/quantization_summary.h"
#include "session/session.h"

namespace rptq::ui {

namespace {

// Bit widths a quantizer takes: 2..8, or 16 (not quantized).
QComboBox* bits_combo(const QString& name) {
  auto* c = new QComboBox;
  c->setObjectName(name);
  for (int b = 2; b <= 8; ++b) c->addItem(QStringLiteral("%1-bit").arg(b), b);
  c->addItem(QObject::tr("FP16 (not quantized)"), rptq::kFullPrecisionBits);
  return c;
}

void set_bits(QComboBox* c, int bits) {
  const int i = c->findData(bits);
  if (i >= 0) c->setCurrentIndex(i);
}

const QString kCustom = QStringLiteral("custom");
}  // namespace

QuantizePage::QuantizePage(Session* session, QWidget* parent)
    : QWidget(parent), session_(session), job_(new QuantizeJob(this)) {
  auto* root = new QVBoxLayout(this);
  root->addWidget(page_heading(tr("Quantize")));
  auto* intro = new QLabel(tr("RPTQ quantizes layer by layer: it clusters each activation's channels by their "
                              "calibrated ranges, folds the reorder into the weights, quantizes the weights (GPTQ or "
                              "RTN, grouped by the input clusters) and installs one quantizer per cluster."));
  intro->setWordWrap(true);
  root->addWidget(intro);
  note_ = new QLabel;
  note_->setObjectName(QStringLiteral("quantizeNote"));
  note_->setWordWrap(true);
  note_->setStyleSheet(QStringLiteral("QLabel { background: #fff4e0; border: 1px solid #e0b060; border-radius: 4px; "
                                      "padding: 6px; }"));
  root->addWidget(note_);

  QSettings s;
  auto* box = new QGroupBox(tr("Setting"));
  auto* form = new QFormLayout(box);
  preset_ = new QComboBox;
  preset_->setObjectName(QStringLiteral("presetCombo"));
  for (const std::string& n : rptq::QuantConfig::preset_names()) preset_->addItem(QString::fromStdString(n), QString::fromStdString(n));
  preset_->addItem(tr("Custom bits"), kCustom);
  form->addRow(tr("Preset"), preset_);
  wbits_ = bits_combo(QStringLiteral("wbitsCombo"));
  abits_ = bits_combo(QStringLiteral("abitsCombo"));
  kvbits_ = bits_combo(QStringLiteral("kvbitsCombo"));
  auto* bits_row = new QHBoxLayout;
  bits_row->addWidget(new QLabel(tr("Weights")));
  bits_row->addWidget(wbits_);
  bits_row->addSpacing(12);
  bits_row->addWidget(new QLabel(tr("Activations")));
  bits_row->addWidget(abits_);
  bits_row->addSpacing(12);
  bits_row->addWidget(new QLabel(tr("KV cache")));
  bits_row->addWidget(kvbits_);
  bits_row->addStretch(1);
  form->addRow(tr("Bits"), bits_row);
  auto* clusters_row = new QHBoxLayout;
  for (int r = 1; r <= rptq::kReorderIndices; ++r) {
    auto* sb = new QSpinBox;
    sb->setObjectName(QStringLiteral("clustersR%1").arg(r));
    sb->setRange(1, 4096);
    sb->setToolTip(r == 2 || r == 3 ? tr("R%1 clusters, per attention head").arg(r) : tr("R%1 clusters").arg(r));
    clusters_[static_cast<std::size_t>(r - 1)] = sb;
    clusters_row->addWidget(new QLabel(QStringLiteral("R%1").arg(r)));
    clusters_row->addWidget(sb);
    clusters_row->addSpacing(8);
  }
  clusters_row->addStretch(1);
  form->addRow(tr("Clusters"), clusters_row);
  method_ = new QComboBox;
  method_->setObjectName(QStringLiteral("methodCombo"));
  method_->addItem(tr("GPTQ (error-compensating, the reference)"), static_cast<int>(rptq::WeightMethod::GPTQ));
  method_->addItem(tr("RTN (round to nearest, fast)"), static_cast<int>(rptq::WeightMethod::RTN));
  method_->setCurrentIndex(s.value(QStringLiteral("quantize/method"), 0).toInt() == 1 ? 1 : 0);
  grid_ = new QComboBox;
  grid_->setObjectName(QStringLiteral("gridCombo"));
  grid_->addItem(tr("exact: min and max on the grid (2\u207f \u2212 1 steps)"), static_cast<int>(rptq::QuantGrid::Exact));
  grid_->addItem(tr("reference: as RPTQ's code (2\u207f steps)"), static_cast<int>(rptq::QuantGrid::Reference));
  auto* method_row = new QHBoxLayout;
  method_row->addWidget(method_);
  method_row->addSpacing(12);
  method_row->addWidget(new QLabel(tr("Grid")));
  method_row->addWidget(grid_);
  act_order_ = new QCheckBox(tr("act-order"));
  act_order_->setObjectName(QStringLiteral("actOrderCheck"));
  act_order_->setToolTip(tr("GPTQ quantizes the columns by decreasing Hessian diagonal (desc_act); the groups stay the "
                            "same column sets. Not a paper setting; recommended when serving (docs/serving.md)."));
  method_row->addSpacing(12);
  method_row->addWidget(act_order_);
  method_row->addStretch(1);
  form->addRow(tr("Weights"), method_row);
  serving_ = new QComboBox;
  serving_->setObjectName(QStringLiteral("servingCombo"));
  serving_->addItem(tr("RPTQ workbench (its checkpoint: every reorder, per-cluster groups)"),
                    static_cast<int>(rptq::ServeTarget::None));
  serving_->addItem(tr("vLLM / SGLang (compressed-tensors: W4A16 or W8A16, uniform groups)"),
                    static_cast<int>(rptq::ServeTarget::CompressedTensors));
  serving_->setToolTip(tr("A quantization made exactly for an existing engine's format, so Compare shows the quality "
                          "of what will be served: weights only, uniform groups in each linear's input order, and only "
                          "the reorders the weights can hold (R3, R5). Choose the W4A16 preset (or custom W4 or W8 "
                          "with A16). docs/serving.md"));
  group_ = new QComboBox;
  group_->setObjectName(QStringLiteral("groupCombo"));
  for (int g : {128, 64, 32}) group_->addItem(tr("group %1").arg(g), g);
  group_->addItem(tr("per output channel"), -1);
  scale_dtype_ = new QComboBox;
  scale_dtype_->setObjectName(QStringLiteral("scaleDtypeCombo"));
  scale_dtype_->addItem(tr("BF16 scales"), static_cast<int>(rptq::DType::BF16));
  scale_dtype_->addItem(tr("F16 scales"), static_cast<int>(rptq::DType::F16));
  scale_dtype_->addItem(tr("F32 scales"), static_cast<int>(rptq::DType::F32));
  auto* serving_row = new QHBoxLayout;
  serving_row->addWidget(serving_);
  serving_row->addSpacing(12);
  serving_row->addWidget(group_);
  serving_row->addWidget(scale_dtype_);
  serving_row->addStretch(1);
  form->addRow(tr("Serve with"), serving_row);
  const auto serving_inputs = [this] {
    const bool on = serving_->currentData().toInt() != static_cast<int>(rptq::ServeTarget::None);
    group_->setEnabled(on && serving_->isEnabled());
    scale_dtype_->setEnabled(on && serving_->isEnabled());
    // Serving keeps only R3 and R5: the other cluster counts do not apply.
    for (int r : {1, 2, 4}) clusters_spin(r)->setEnabled(!on && serving_->isEnabled());
  };
  connect(serving_, &QComboBox::currentIndexChanged, this, serving_inputs);
  serving_inputs();
  sequential_ = new QCheckBox(tr("Re-measure each layer's ranges on the outputs of the quantized layers before it "
                                 "(the reference; slower)"));
  sequential_->setChecked(s.value(QStringLiteral("quantize/sequential"), true).toBool());
  form->addRow(tr("Ranges"), sequential_);
  device_ = new DeviceChoice(QStringLiteral("quantize/device"));
  device_->set_cpu_threads(rptq::num_threads());
  device_->combo()->setToolTip(tr("Where the passes over the calibration windows run (re-measured ranges, GPTQ's "
                                  "Hessians, each quantized layer's outputs); clustering and the GPTQ solve run on "
                                  "the CPU"));
  form->addRow(tr("Device"), device_);
  describe_ = new QLabel;
  describe_->setObjectName(QStringLiteral("configDescription"));
  describe_->setWordWrap(true);
  form->addRow(QString(), describe_);
  root->addWidget(box);

  auto* mixed = new QGroupBox(tr("Mixed precision: per-layer overrides"));
  mixed->setObjectName(QStringLiteral("overridesBox"));
  auto* ml = new QVBoxLayout(mixed);
  overrides_ = new OverridesEditor;
  ml->addWidget(overrides_);
  root->addWidget(mixed);

  auto* actions = new QHBoxLayout;
  run_ = new QPushButton(tr("Quantize"));
  run_->setObjectName(QStringLiteral("quantizeButton"));
  run_->setDefault(true);
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setObjectName(QStringLiteral("cancelQuantizeButton"));
  cancel_->setEnabled(false);
  bar_ = new QProgressBar;
  bar_->setObjectName(QStringLiteral("quantizeProgress"));
  bar_->setRange(0, 1000);
  bar_->setValue(0);
  actions->addWidget(run_);
  actions->addWidget(cancel_);
  actions->addWidget(bar_, 1);
  root->addLayout(actions);
  status_ = new QLabel;
  status_->setObjectName(QStringLiteral("quantizeStatus"));
  status_->setWordWrap(true);
  root->addWidget(status_);

  auto* result_box = new QGroupBox(tr("Result"));
  auto* rl = new QVBoxLayout(result_box);
  summary_ = new QLabel;
  summary_->setObjectName(QStringLiteral("quantizeSummary"));
  summary_->setWordWrap(true);
  summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  rl->addWidget(summary_);
  layers_ = new QTableWidget(0, 3);
  layers_->setObjectName(QStringLiteral("quantizedLayers"));
  layers_->setHorizontalHeaderLabels({tr("Layer"), tr("Linears (bits, weight groups)"), tr("Activations (bits, clusters)")});
  layers_->verticalHeader()->hide();
  layers_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  layers_->setSelectionMode(QAbstractItemView::NoSelection);
  layers_->setWordWrap(true);
  layers_->horizontalHeader()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
  layers_->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Stretch);
  layers_->horizontalHeader()->setSectionResizeMode(2, QHeaderView::Stretch);
  rl->addWidget(layers_, 1);
  auto* result_row = new QHBoxLayout;
  result_row->addStretch(1);
  compare_ = new QPushButton(tr("Compare \u2192"));
  compare_->setEnabled(false);
  result_row->addWidget(compare_);
  rl->addLayout(result_row);
  root->addWidget(result_box, 1);

  inputs_ = {preset_, wbits_, abits_, kvbits_, method_, grid_, act_order_, serving_, sequential_, device_, overrides_};
  for (QSpinBox* sb : clusters_) inputs_ << sb;

  connect(preset_, &QComboBox::currentIndexChanged, this, &QuantizePage::preset_changed);
  for (QComboBox* c : {wbits_, abits_, kvbits_, method_, grid_, serving_, group_, scale_dtype_})
    connect(c, &QComboBox::currentIndexChanged, this, [this] {
      if (!setting_preset_) Q_EMIT config_changed();
    });
  connect(act_order_, &QCheckBox::toggled, this, [this] {
    if (!setting_preset_) Q_EMIT config_changed();
  });
  for (QSpinBox* sb : clusters_)
    connect(sb, &QSpinBox::valueChanged, this, [this] {
      if (!setting_preset_) Q_EMIT config_changed();
    });
  connect(overrides_, &OverridesEditor::changed, this, &QuantizePage::config_changed);
  connect(this, &QuantizePage::config_changed, this, [this] {
    try {
      describe_->setText(QString::fromStdString(config().describe()).toHtmlEscaped());
    } catch (const std::exception& e) {
      describe_->setText(QStringLiteral("<span style='color:#c62828'>%1</span>")
                             .arg(QString::fromStdString(e.what()).toHtmlEscaped()));
    }
  });
  connect(run_, &QPushButton::clicked, this, &QuantizePage::start);
  connect(cancel_, &QPushButton::clicked, this, &QuantizePage::cancel);
  connect(compare_, &QPushButton::clicked, this, &QuantizePage::compare_requested);
  connect(job_, &QuantizeJob::progressed, this, &QuantizePage::progressed);
  connect(job_, &QuantizeJob::finished, this, &QuantizePage::finished);
  connect(job_, &QuantizeJob::cancelled, this, &QuantizePage::cancelled);
  connect(job_, &QuantizeJob::failed, this, &QuantizePage::failed);
  connect(session_, &Session::model_changed, this, &QuantizePage::update_availability);
  connect(session_, &Session::stats_changed, this, &QuantizePage::update_availability);
  connect(session_, &Session::quantized_changed, this, &QuantizePage::show_summary);
  connect(session_, &Session::quantized_use_changed, this, &QuantizePage::update_availability);

  const int preset = preset_->findData(s.value(QStringLiteral("quantize/preset"), QStringLiteral("W4A8")).toString());
  preset_->setCurrentIndex(preset >= 0 ? preset : 0);
  preset_changed();
  update_availability();
  show_summary();
}

bool QuantizePage::running() const { return job_->running(); }

bool QuantizePage::select_preset(const QString& name) {
  for (int i = 0; i < preset_->count(); ++i)
    if (preset_->itemData(i).toString().compare(name, Qt::CaseInsensitive) == 0) {
      preset_->setCurrentIndex(i);
      return true;
    }
  return false;
}

void QuantizePage::set_weight_method(rptq::WeightMethod m) {
  method_->setCurrentIndex(method_->findData(static_cast<int>(m)));
}

void QuantizePage::preset_changed() {
  const QString name = preset_->currentData().toString();
  const bool custom = name == kCustom;
  for (QComboBox* c : {wbits_, abits_, kvbits_}) c->setEnabled(custom && !running());
  if (!custom) {
    // Show the preset's own bits and clusters; editing the clusters keeps the preset's bits.
    const rptq::QuantConfig p = rptq::QuantConfig::preset(name.toStdString());
    setting_preset_ = true;
    set_bits(wbits_, p.wbits);
    set_bits(abits_, p.bits(rptq::Tap::AttnInput));
    set_bits(kvbits_, p.kv_bits());
    for (int r = 1; r <= rptq::kReorderIndices; ++r) clusters_spin(r)->setValue(p.clusters_of(r));
    setting_preset_ = false;
  }
  QSettings().setValue(QStringLiteral("quantize/preset"), name);
  Q_EMIT config_changed();
}

rptq::QuantConfig QuantizePage::config() const {
  const QString name = preset_->currentData().toString();
  rptq::QuantConfig c = name == kCustom
                            ? rptq::QuantConfig::custom(wbits_->currentData().toInt(), abits_->currentData().toInt(),
                                                        kvbits_->currentData().toInt())
                            : rptq::QuantConfig::preset(name.toStdString());
  for (int r = 1; r <= rptq::kReorderIndices; ++r)
    c.clusters[static_cast<std::size_t>(r - 1)] = clusters_spin(r)->value();
  c.weight_method = static_cast<rptq::WeightMethod>(method_->currentData().toInt());
  c.grid = static_cast<rptq::QuantGrid>(grid_->currentData().toInt());
  for (const QString& o : overrides()) c.overrides.push_back(rptq::parse_override(o.toStdString()));
  c.act_order = act_order_->isChecked();
  c.target = static_cast<rptq::ServeTarget>(serving_->currentData().toInt());
  if (c.target != rptq::ServeTarget::None) {
    c.weight_group = group_->currentData().toInt();
    c.scale_dtype = static_cast<rptq::DType>(scale_dtype_->currentData().toInt());
  }
  c.validate();
  return c;
}

void QuantizePage::set_overrides(const QStringList& specs) { overrides_->set_specs(specs); }  // emits changed

QStringList QuantizePage::overrides() const { return overrides_->specs(); }

QString QuantizePage::apply_config(const rptq::QuantConfig& c) {
  // A preset when the record names one and has its bits; otherwise custom bits (weights, the taps but K and V,
  // the KV cache), which is all a custom setting of this page can say.
  bool preset = false;
  if (c.name != "custom") {
    try {
      const rptq::QuantConfig p = rptq::QuantConfig::preset(c.name);
      preset = p.wbits == c.wbits && p.abits == c.abits && p.softmax_bits == c.softmax_bits;
    } catch (const rptq::InputError&) {
      preset = false;  // a name this version has no preset for
    }
  }
  if (preset) {
    select_preset(QString::fromStdString(c.name));
  } else {
    select_preset(kCustom);
    setting_preset_ = true;
    set_bits(wbits_, c.wbits);
    set_bits(abits_, c.bits(rptq::Tap::AttnInput));
    set_bits(kvbits_, c.kv_bits());
    setting_preset_ = false;
  }
  setting_preset_ = true;
  for (int r = 1; r <= rptq::kReorderIndices; ++r) clusters_spin(r)->setValue(c.clusters_of(r));
  setting_preset_ = false;
  set_weight_method(c.weight_method);
  grid_->setCurrentIndex(grid_->findData(static_cast<int>(c.grid)));
  act_order_->setChecked(c.act_order);
  serving_->setCurrentIndex(serving_->findData(static_cast<int>(c.target)));
  if (c.target != rptq::ServeTarget::None) {
    group_->setCurrentIndex(std::max(0, group_->findData(c.weight_group)));
    scale_dtype_->setCurrentIndex(std::max(0, scale_dtype_->findData(static_cast<int>(c.scale_dtype))));
  }
  QStringList specs;
  for (const rptq::TapOverride& o : c.overrides) specs << QString::fromStdString(o.spec);
  set_overrides(specs);  // emits config_changed
  // What this page has no control for.
  QStringList lost;
  rptq::QuantConfig now;
  try {
    now = config();
  } catch (const std::exception&) {
    return tr("the overrides (they do not apply to this model)");
  }
  if (now.abits != c.abits || now.softmax_bits != c.softmax_bits) lost << tr("per-tap bits");
  if (c.weight_group != 0 && c.target == rptq::ServeTarget::None) lost << tr("weight group %1").arg(c.weight_group);
  if (c.kv_fp8 != rptq::KvFp8::Off) lost << tr("FP8 KV scales");
  if (c.weight_clip != rptq::WeightClip::MinMax) lost << tr("MSE weight ranges");
  if (c.range_mode != rptq::RangeMode::Static) lost << tr("dynamic ranges");
  if (c.fp_prefix > 0) lost << tr("FP prefix %1").arg(c.fp_prefix);
  if (c.gptq_damp != now.gptq_damp || c.gptq_block != now.gptq_block) lost << tr("GPTQ damping/block");
  return lost.join(QStringLiteral(", "));
}

void QuantizePage::update_availability() {
  const LoadedModel* m = session_->model();
  const bool fp = session_->fp_model() != nullptr;
  const bool stats = session_->stats() != nullptr;
  QString note;
  if (!m)
    note = tr("Open a model folder first (Model step).");
  else if (!fp)
    note = tr("%1 is a quantized checkpoint: quantizing needs the FP model folder.").arg(m->display_name());
  else if (!stats)
    note = tr("Quantizing needs channel statistics of %1: calibrate it or load a statistics file (Calibrate step).")
               .arg(m->display_name());
  note_->setText(note);
  note_->setVisible(!note.isEmpty());
  if (!running()) {
    set_running(false);
    if (note.isEmpty() && session_->quantized_in_use()) {
      if (!waiting_) status_before_wait_ = status_->text();
      waiting_ = true;
      const QString user = session_->quantized_user();
      status_->setText(tr("%1 is using the quantized model; Quantize is available again when it finishes.")
                           .arg(user.left(1).toUpper() + user.mid(1)));
      return;
    }
    if (waiting_) {
      status_->setText(status_before_wait_);
      waiting_ = false;
    }
    if (note.isEmpty() && !session_->quantized())
      status_->setText(tr("Ready to quantize %1 with the statistics %2.")
                           .arg(m->display_name(), QFileInfo(session_->stats_path()).fileName()));
    else if (!note.isEmpty())
      status_->clear();
  }
}

void QuantizePage::set_running(bool on) {
  const bool usable = session_->fp_model() && session_->stats();
  // Re-quantizing replaces the quantized model: not while a comparison, generation or export reads it.
  run_->setEnabled(!on && usable && !session_->quantized_in_use());
  cancel_->setEnabled(on);
  for (QWidget* w : inputs_) w->setEnabled(!on && usable);
  const bool custom = preset_->currentData().toString() == kCustom;
  for (QComboBox* c : {wbits_, abits_, kvbits_}) c->setEnabled(!on && usable && custom);
  const bool serving = serving_->currentData().toInt() != static_cast<int>(rptq::ServeTarget::None);
  group_->setEnabled(!on && usable && serving);
  scale_dtype_->setEnabled(!on && usable && serving);
  for (int r : {1, 2, 4}) clusters_spin(r)->setEnabled(!on && usable && !serving);
}

void QuantizePage::start() {
  if (running() || session_->quantized_in_use()) return;
  auto model = session_->model_ptr();
  auto stats = session_->stats_ptr();
  if (!model || !model->model || !stats) return;
  QuantizeRequest r;
  try {
    r.config = config();
  } catch (const std::exception& e) {
    show_error(window(), tr("Cannot quantize"), QString::fromStdString(e.what()));
    return;
  }
  QSettings s;
  s.setValue(QStringLiteral("quantize/method"), method_->currentIndex());
  s.setValue(QStringLiteral("quantize/sequential"), sequential_->isChecked());
  r.model_dir = model->path;
  r.stats = stats;
  r.stats_path = session_->stats_path();
  r.sequential = sequential_->isChecked();
  r.exec = device_->execution();
  r.fp_weight_bytes = model->model->weight_bytes();
  session_->clear_quantized();
  bar_->setValue(0);
  status_->setText(tr("Loading a second copy of %1 to quantize%2\u2026")
                       .arg(model->display_name(), r.exec.device == rptq::Device::CUDA ? tr(" on the GPU") : QString()));
  set_running(true);
  job_->start(r);
  Q_EMIT running_changed(true);  // running() is true from here
}

void QuantizePage::cancel() {
  if (!running()) return;
  status_->setText(tr("Cancelling\u2026"));
  cancel_->setEnabled(false);
  job_->cancel();
}

void QuantizePage::progressed(const QuantizeProgress& p) {
  bar_->setValue(qRound(p.fraction() * 1000));
  if (!cancel_->isEnabled()) return;  // "Cancelling..." stays
  if (p.stage == QuantizeProgress::Stage::Quantizing && p.layers.layers > 0)
    status_->setText(tr("Quantizing layer %1 of %2 (window %3 of %4), %5 elapsed")
                         .arg(p.layers.layer + 1)
                         .arg(p.layers.layers)
                         .arg(p.layers.sample)
                         .arg(p.layers.samples)
                         .arg(human_seconds(job_->elapsed_seconds())));
}

void QuantizePage::finished(std::shared_ptr<rptq::QuantizedModel> q, std::shared_ptr<const QuantizationSummary> s) {
  set_running(false);
  Q_EMIT running_changed(false);
  bar_->setValue(1000);
  // The model or statistics may have changed while it ran: the result then belongs to neither.
  if (!session_->stats() || s->stats_path != session_->stats_path() || !session_->model() ||
      s->model_path != session_->model()->path) {
    status_->setText(tr("The quantization finished for a model or statistics no longer open; it was dropped."));
    return;
  }
  status_->setText(tr("Quantized in %1.").arg(human_seconds(job_->elapsed_seconds())));
  rptq::RunRecord rec = rptq::new_run_record("quantize", s->model_path.toStdString(), s->stats_path.toStdString(),
                                             s->config);
  rec.options = {{"sequential", s->sequential},
                 {"stat", rptq::range_stat_name(s->stat)},
                 {"kmeans_seed", s->kmeans_seed},
                 {"device", device_->execution().device == rptq::Device::CUDA ? "cuda" : "cpu"}};
  rec.results = {{"quantize_seconds", s->seconds},
                 {"fp_weight_bytes", s->fp_weight_bytes},
                 {"quantized_weight_bytes", s->quantized_weight_bytes}};
  session_->set_quantized(std::move(q), std::move(s));
  session_->record_run(rec);
}

void QuantizePage::cancelled() {
  set_running(false);
  Q_EMIT running_changed(false);
  bar_->setValue(0);
  status_->setText(tr("Cancelled. Nothing was quantized."));
}

void QuantizePage::failed(const TaskError& e) {
  set_running(false);
  Q_EMIT running_changed(false);
  bar_->setValue(0);
  status_->setText(tr("Quantization failed: %1").arg(e.message));
  show_task_error(window(), tr("Quantization failed"), e);
}

void QuantizePage::show_summary() {
  const QuantizationSummary* s = session_->quantization_summary();
  compare_->setEnabled(s != nullptr);
  layers_->setRowCount(0);
  if (!s) {
    summary_->setText(tr("Nothing quantized yet."));
    return;
  }
  const double ratio = s->quantized_weight_bytes > 0
                           ? static_cast<double>(s->fp_weight_bytes) / static_cast<double>(s->quantized_weight_bytes)
                           : 0.0;
  summary_->setText(tr("<b>%1</b>: %2<br>%3 layers quantized in %4 with the statistics %5. Weight memory: %6 (FP, "
                       "float32 in memory) \u2192 <b>%7</b> quantized (%8\u00d7 smaller).")
                        .arg(QString::fromStdString(s->config.name).toHtmlEscaped(), s->description.toHtmlEscaped())
                        .arg(s->layers.size())
                        .arg(human_seconds(s->seconds), QFileInfo(s->stats_path).fileName().toHtmlEscaped(),
                             human_bytes(s->fp_weight_bytes), human_bytes(s->quantized_weight_bytes))
                        .arg(ratio, 0, 'f', 1));
  layers_->setRowCount(static_cast<int>(s->layers.size()));
  for (int i = 0; i < static_cast<int>(s->layers.size()); ++i) {
    layers_->setItem(i, 0, new QTableWidgetItem(QString::number(i)));
    layers_->setItem(i, 1, new QTableWidgetItem(s->linears_text(i)));
    layers_->setItem(i, 2, new QTableWidgetItem(s->taps_text(i)));
  }
  layers_->resizeRowsToContents();
}

}  // namespace rptq::ui
