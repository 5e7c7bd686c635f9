#include "model/model_page.h"

#include <QDir>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QTreeWidget>
#include <QVBoxLayout>

#include "common/format.h"
#include "common/page_heading.h"
#include "common/resources.h"
#include "common/task.h"
#include "session/session.h"

namespace rptq::ui {

ModelPage::ModelPage(Session* session, QWidget* parent) : QWidget(parent), session_(session) {
  auto* root = new QVBoxLayout(this);
  root->addWidget(page_heading(tr("Model")));
  auto* intro = new QLabel(tr("Open a Hugging Face model folder (OPT or LLaMA family) to calibrate, or an exported RPTQ "
                              "checkpoint (.h5) to inspect. You can also drop a folder or .h5 file on the window."));
  intro->setWordWrap(true);
  root->addWidget(intro);

  auto* buttons = new QHBoxLayout;
  auto* open_folder = new QPushButton(tr("Open Model Folder..."));
  open_folder->setObjectName(QStringLiteral("openFolderButton"));
  auto* open_ckpt = new QPushButton(tr("Open Checkpoint..."));
  auto* open_demo = new QPushButton(tr("Open Demo Model"));
  open_demo->setToolTip(tr("tiny-opt-16m: a 16M-parameter OPT model whose activations have OPT's outlier channels"));
  buttons->addWidget(open_folder);
  buttons->addWidget(open_ckpt);
  buttons->addWidget(open_demo);
  buttons->addStretch(1);
  busy_ = new QLabel;
  busy_->setObjectName(QStringLiteral("modelBusy"));
  buttons->addWidget(busy_);
  root->addLayout(buttons);
  connect(open_folder, &QPushButton::clicked, this, &ModelPage::open_folder_dialog_requested);
  connect(open_ckpt, &QPushButton::clicked, this, &ModelPage::open_checkpoint_dialog_requested);
  connect(open_demo, &QPushButton::clicked, this, [this] { Q_EMIT open_requested(demo_model_dir()); });

  auto* body = new QHBoxLayout;
  auto* info_box = new QGroupBox(tr("Opened"));
  auto* info_layout = new QVBoxLayout(info_box);
  title_ = new QLabel;
  QFont tf = title_->font();
  tf.setBold(true);
  tf.setPointSizeF(tf.pointSizeF() * 1.2);
  title_->setFont(tf);
  subtitle_ = new QLabel;
  subtitle_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  subtitle_->setWordWrap(true);
  info_layout->addWidget(title_);
  info_layout->addWidget(subtitle_);
  form_ = new QFormLayout;
  form_->setLabelAlignment(Qt::AlignRight);
  form_->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
  info_layout->addLayout(form_);
  info_layout->addStretch(1);
  body->addWidget(info_box, 3);

  auto* cache_box = new QGroupBox(tr("Hugging Face cache"));
  auto* cache_layout = new QVBoxLayout(cache_box);
  hub_label_ = new QLabel;
  hub_label_->setWordWrap(true);
  hub_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  cache_layout->addWidget(hub_label_);
  cache_ = new QTreeWidget;
  cache_->setObjectName(QStringLiteral("hfCacheList"));
  cache_->setHeaderLabels({tr("Model"), tr("Revision"), tr("Size")});
  cache_->setRootIsDecorated(false);
  cache_->setUniformRowHeights(true);
  cache_->header()->setSectionResizeMode(0, QHeaderView::Stretch);
  cache_->header()->setStretchLastSection(false);
  cache_layout->addWidget(cache_, 1);
  auto* cache_buttons = new QHBoxLayout;
  auto* refresh = new QPushButton(tr("Refresh"));
  open_cached_ = new QPushButton(tr("Open"));
  open_cached_->setEnabled(false);
  cache_buttons->addWidget(refresh);
  cache_buttons->addStretch(1);
  cache_buttons->addWidget(open_cached_);
  cache_layout->addLayout(cache_buttons);
  body->addWidget(cache_box, 2);
  root->addLayout(body, 1);

  connect(refresh, &QPushButton::clicked, this, &ModelPage::refresh_cache);
  connect(open_cached_, &QPushButton::clicked, this, [this] { open_selected_cached(); });
  connect(cache_, &QTreeWidget::itemActivated, this, [this](QTreeWidgetItem* item, int) { open_selected_cached(item); });
  connect(cache_, &QTreeWidget::itemSelectionChanged, this,
          [this] { open_cached_->setEnabled(!cache_->selectedItems().isEmpty()); });
  connect(session_, &Session::model_changed, this, &ModelPage::show_model);
  show_model();
  refresh_cache();
}

void ModelPage::set_busy(bool busy, const QString& what) { busy_->setText(busy ? what : QString()); }

void ModelPage::clear_rows() {
  while (form_->rowCount() > 0) form_->removeRow(0);
}

void ModelPage::add_row(const QString& key, const QString& label, const QString& value, const QString& tip) {
  auto* v = new QLabel(value);
  v->setObjectName(QStringLiteral("info_") + key);
  v->setTextInteractionFlags(Qt::TextSelectableByMouse);
  v->setWordWrap(true);
  if (!tip.isEmpty()) v->setToolTip(tip);
  form_->addRow(label, v);
}

QString ModelPage::info_value(const QString& key) const {
  auto* l = findChild<QLabel*>(QStringLiteral("info_") + key);
  return l ? l->text() : QString();
}

void ModelPage::show_model() {
  clear_rows();
  const LoadedModel* m = session_->model();
  if (!m) {
    title_->setText(tr("No model open"));
    subtitle_->setText(tr("Open a model folder, a checkpoint, or the demo model."));
    return;
  }
  title_->setText(m->display_name());
  subtitle_->setText(QDir::toNativeSeparators(m->path));
  if (m->is_folder() && m->info) {
    const rptq::ModelInfo& i = *m->info;
    const rptq::ModelConfig& c = i.config;
    add_row("architecture", tr("Architecture"),
            QStringLiteral("%1  (model_type %2)").arg(QString::fromStdString(c.arch_name()),
                                                      QString::fromStdString(c.model_type)));
    add_row("layers", tr("Decoder layers"), QString::number(c.layers));
    add_row("dimensions", tr("Dimensions"),
            tr("hidden %1, FFN %2").arg(c.hidden).arg(c.intermediate));
    add_row("heads", tr("Attention heads"),
            tr("%1 heads (%2 KV heads) of %3 channels").arg(c.heads).arg(c.kv_heads).arg(c.head_dim));
    add_row("vocabulary", tr("Vocabulary"),
            tr("%1 tokens, %2 positions, output head %3")
                .arg(grouped(c.vocab), grouped(c.max_positions),
                     c.tie_embeddings ? tr("tied to the embedding") : tr("separate")));
    add_row("parameters", tr("Parameters"),
            QStringLiteral("%1  (%2 in %3 tensors)").arg(human_count(i.parameters), grouped(i.parameters)).arg(i.tensors));
    QStringList dtypes;
    for (const auto& [name, n] : i.dtype_parameters)
      dtypes << QStringLiteral("%1 %2%").arg(QString::fromStdString(name))
                    .arg(100.0 * static_cast<double>(n) / static_cast<double>(std::max<std::int64_t>(1, i.parameters)),
                         0, 'f', 1);
    add_row("dtypes", tr("Stored as"), dtypes.join(QStringLiteral(", ")));
    add_row("format", tr("Format"),
            tr("%1: %n file(s)", "", static_cast<int>(i.weight_files.size())).arg(QString::fromStdString(i.format)));
    QStringList files;
    for (const auto& f : i.weight_files) files << QString::fromStdString(f);
    add_row("size", tr("Size on disk"),
            tr("%1 of weights, %2 folder").arg(human_bytes(i.weight_bytes), human_bytes(i.folder_bytes)),
            files.join(QLatin1Char('\n')));
    const QString tok = QString::fromStdString(i.tokenizer);
    add_row("tokenizer", tr("Tokenizer"),
            i.tokenizer_ok ? QStringLiteral("\u2714 %1, %2 tokens").arg(tok, grouped(i.tokenizer_vocab))
                           : QStringLiteral("\u2718 not usable: %1").arg(tok));
    if (auto* l = findChild<QLabel*>(QStringLiteral("info_tokenizer")))
      l->setStyleSheet(i.tokenizer_ok ? QStringLiteral("color: #2e7d32;") : QStringLiteral("color: #c62828;"));
    if (m->model)
      add_row("loaded", tr("In memory"),
              tr("%1 as float32 on the CPU, loaded in %2")
                  .arg(human_bytes(m->model->weight_bytes()), human_seconds(m->load_seconds)));
  } else if (m->checkpoint) {
    const rptq::CheckpointInfo& c = *m->checkpoint;
    add_row("architecture", tr("Architecture"),
            QStringLiteral("%1  (model_type %2)").arg(QString::fromStdString(c.architecture),
                                                      QString::fromStdString(c.model_type)));
    add_row("layers", tr("Decoder layers"), QString::number(c.layers));
    add_row("preset", tr("Quantization"), QString::fromStdString(c.description));
    QStringList cl;
    for (std::size_t r = 0; r < c.clusters.size(); ++r) cl << QStringLiteral("R%1=%2").arg(r + 1).arg(c.clusters[r]);
    add_row("clusters", tr("Clusters"), cl.join(QStringLiteral(", ")) + tr(" (R2/R3 per head)"));
    const double ratio = c.linear_fp16_bytes ? static_cast<double>(c.linear_packed_bytes + c.linear_param_bytes) /
                                                   static_cast<double>(c.linear_fp16_bytes)
                                             : 0.0;
    add_row("packed", tr("Linear layers"),
            tr("%1 packed + %2 scales = %3% of FP16 (%4)")
                .arg(human_bytes(c.linear_packed_bytes), human_bytes(c.linear_param_bytes))
                .arg(100.0 * ratio, 0, 'f', 1)
                .arg(human_bytes(c.linear_fp16_bytes)));
    add_row("size", tr("File"), human_bytes(c.file_bytes));
    add_row("source", tr("Quantized from"), QString::fromStdString(c.source_path));
    add_row("created", tr("Written"),
            tr("%1 by rptq %2").arg(QString::fromStdString(c.created), QString::fromStdString(c.tool_version)));
  }
}

void ModelPage::refresh_cache() {
  const QString hub = hf_hub_cache_dir();
  hub_label_->setText(tr("Snapshots in %1").arg(QDir::toNativeSeparators(hub)));
  cache_->clear();
  run_task(
      this, nullptr, [hub] { return scan_hf_cache(hub); },
      [this](QList<CachedModel> models) {
        cache_->clear();
        for (const CachedModel& m : models) {
          auto* item = new QTreeWidgetItem({m.repo, m.revision.left(12), human_bytes(m.bytes)});
          item->setData(0, Qt::UserRole, m.path);
          item->setToolTip(0, m.path);
          cache_->addTopLevelItem(item);
        }
        if (models.isEmpty()) {
          auto* item = new QTreeWidgetItem({tr("(no models found)")});
          item->setFlags(Qt::NoItemFlags);
          cache_->addTopLevelItem(item);
        }
        cache_->resizeColumnToContents(1);
        cache_->resizeColumnToContents(2);
      },
      [](const TaskError&) {});
}

void ModelPage::open_selected_cached(QTreeWidgetItem* item) {
  if (!item) {
    const auto sel = cache_->selectedItems();
    if (sel.isEmpty()) return;
    item = sel.front();
  }
  const QString path = item->data(0, Qt::UserRole).toString();
  if (!path.isEmpty()) Q_EMIT open_requested(path);
}

}  // namespace rptq::ui
