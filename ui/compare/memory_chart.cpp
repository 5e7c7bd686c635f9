#include "compare/memory_chart.h"

#include <QBarCategoryAxis>
#include <QBarSet>
#include <QChart>
#include <QComboBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHorizontalStackedBarSeries>
#include <QLabel>
#include <QSlider>
#include <QVBoxLayout>
#include <QValueAxis>

#include <algorithm>
#include <cmath>

#include "common/chart_view.h"
#include "common/format.h"

namespace rptq::ui {

namespace {
constexpr int kSeqlenStep = 64;  // the sequence length slider moves in steps of 64 tokens
const QString kLoaded = QStringLiteral("loaded");
}  // namespace

MemoryChart::MemoryChart(QWidget* parent) : QWidget(parent) {
  auto* root = new QVBoxLayout(this);
  root->setContentsMargins(0, 0, 0, 0);
  auto* grid = new QGridLayout;
  model_ = new QComboBox;
  model_->setObjectName(QStringLiteral("memoryModelCombo"));
  for (const std::string& n : rptq::opt_arch_names()) model_->addItem(QString::fromStdString(n), QString::fromStdString(n));
  grid->addWidget(new QLabel(tr("Model")), 0, 0);
  grid->addWidget(model_, 0, 1, 1, 2);
  batch_ = new QSlider(Qt::Horizontal);
  batch_->setObjectName(QStringLiteral("batchSlider"));
  batch_->setRange(1, 256);
  batch_->setValue(16);
  batch_label_ = new QLabel;
  batch_label_->setMinimumWidth(batch_label_->fontMetrics().horizontalAdvance(QStringLiteral("8192 tokens")));
  grid->addWidget(new QLabel(tr("Batch")), 1, 0);
  grid->addWidget(batch_, 1, 1);
  grid->addWidget(batch_label_, 1, 2);
  seqlen_ = new QSlider(Qt::Horizontal);
  seqlen_->setObjectName(QStringLiteral("seqlenSlider"));
  seqlen_->setRange(1, 8192 / kSeqlenStep);
  seqlen_->setValue(2048 / kSeqlenStep);
  seqlen_label_ = new QLabel;
  grid->addWidget(new QLabel(tr("Sequence")), 2, 0);
  grid->addWidget(seqlen_, 2, 1);
  grid->addWidget(seqlen_label_, 2, 2);
  grid->setColumnStretch(1, 1);
  root->addLayout(grid);

  weights_ = new QBarSet(tr("weights"));
  weights_->setColor(QColor(0x5b, 0x8d, 0xd6));
  kv_ = new QBarSet(tr("KV cache"));
  kv_->setColor(QColor(0xe0, 0x8a, 0x3c));
  activations_ = new QBarSet(tr("activations (one layer)"));
  activations_->setColor(QColor(0x8c, 0xb8, 0x6a));
  auto* series = new QHorizontalStackedBarSeries;
  series->append(weights_);
  series->append(kv_);
  series->append(activations_);
  series->setBarWidth(0.6);
  chart_ = new QChart;
  chart_->addSeries(series);
  categories_ = new QBarCategoryAxis;
  bytes_axis_ = new QValueAxis;
  bytes_axis_->setLabelFormat(QStringLiteral("%.3g"));
  chart_->addAxis(categories_, Qt::AlignLeft);
  chart_->addAxis(bytes_axis_, Qt::AlignBottom);
  series->attachAxis(categories_);
  series->attachAxis(bytes_axis_);
  chart_->legend()->setAlignment(Qt::AlignBottom);
  chart_->setMargins(QMargins(4, 4, 4, 4));
  view_ = new ChartView(chart_);
  view_->setObjectName(QStringLiteral("memoryChart"));
  view_->set_export_name(QStringLiteral("memory"));
  view_->setMinimumHeight(190);
  root->addWidget(view_, 1);
  totals_ = new QLabel;
  totals_->setObjectName(QStringLiteral("memoryTotals"));
  totals_->setWordWrap(true);
  root->addWidget(totals_);

  connect(model_, &QComboBox::currentIndexChanged, this, &MemoryChart::update_chart);
  connect(batch_, &QSlider::valueChanged, this, &MemoryChart::update_chart);
  connect(seqlen_, &QSlider::valueChanged, this, &MemoryChart::update_chart);
  update_chart();
}

std::int64_t MemoryChart::batch() const { return batch_->value(); }
std::int64_t MemoryChart::seqlen() const { return static_cast<std::int64_t>(seqlen_->value()) * kSeqlenStep; }

void MemoryChart::set_loaded_model(const QString& name, std::optional<rptq::ModelConfig> config) {
  loaded_ = std::move(config);
  QSignalBlocker block(model_);
  if (model_->itemData(0).toString() == kLoaded) model_->removeItem(0);
  if (loaded_) model_->insertItem(0, tr("%1 (open)").arg(name), kLoaded);
  if (loaded_) model_->setCurrentIndex(0);  // a newly opened model is what the chart shows
  update_chart();
}

void MemoryChart::set_quant_config(const rptq::QuantConfig& config) {
  quant_ = config;
  update_chart();
}

void MemoryChart::update_chart() {
  batch_label_->setText(QString::number(batch()));
  seqlen_label_->setText(tr("%1 tokens").arg(seqlen()));
  fp_.reset();
  q_.reset();
  weights_->remove(0, weights_->count());
  kv_->remove(0, kv_->count());
  activations_->remove(0, activations_->count());
  try {
    const QString which = model_->currentData().toString();
    const rptq::ModelConfig cfg =
        which == kLoaded && loaded_ ? *loaded_ : rptq::opt_arch(which.toStdString());
    fp_ = rptq::estimate_memory(cfg, rptq::QuantConfig::preset("W16A16"), batch(), seqlen());
    q_ = rptq::estimate_memory(cfg, quant_, batch(), seqlen());
  } catch (const std::exception& e) {
    totals_->setText(QStringLiteral("<span style='color:#c62828'>%1</span>")
                         .arg(QString::fromStdString(e.what()).toHtmlEscaped()));
    return;
  }
  // One unit for both bars: MiB below a GiB, else GiB.
  const std::uint64_t top = std::max(fp_->total_bytes, q_->total_bytes);
  const bool gib = top >= (1ull << 30);
  const double unit = gib ? 1024.0 * 1024.0 * 1024.0 : 1024.0 * 1024.0;
  bytes_axis_->setTitleText(gib ? tr("GiB") : tr("MiB"));
  const QString qname = QString::fromStdString(quant_.name);
  // Horizontal bars list their categories bottom-up: the quantization first puts FP16 on top.
  categories_->clear();
  categories_->append({qname, QStringLiteral("FP16")});
  for (const rptq::MemoryEstimate* e : {&*q_, &*fp_}) {
    weights_->append(static_cast<double>(e->weights_bytes) / unit);
    kv_->append(static_cast<double>(e->kv_cache_bytes) / unit);
    activations_->append(static_cast<double>(e->activation_bytes) / unit);
  }
  bytes_axis_->setRange(0, static_cast<double>(top) / unit * 1.05);
  bytes_axis_->applyNiceNumbers();
  const double saved = fp_->total_bytes > 0 ? 100.0 * (1.0 - static_cast<double>(q_->total_bytes) /
                                                                   static_cast<double>(fp_->total_bytes))
                                            : 0.0;
  totals_->setText(tr("FP16 %1 (KV cache %2) \u2192 %3 %4 (KV cache %5): %6% less.")
                       .arg(human_bytes(fp_->total_bytes), human_bytes(fp_->kv_cache_bytes), qname.toHtmlEscaped(),
                            human_bytes(q_->total_bytes), human_bytes(q_->kv_cache_bytes))
                       .arg(saved, 0, 'f', 1));
}

}  // namespace rptq::ui
