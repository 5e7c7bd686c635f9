#include "explore/explore_page.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMenu>
#include <QPushButton>
#include <QSettings>
#include <QSignalBlocker>
#include <QSlider>
#include <QSpinBox>
#include <QSplitter>
#include <QStackedWidget>
#include <QStandardItemModel>
#include <QTabWidget>
#include <QTableView>
#include <QToolButton>
#include <QVBoxLayout>

#include "common/error_dialog.h"
#include "common/format.h"
#include "common/task.h"
#include "explore/cluster_table_model.h"
#include "explore/cluster_worker.h"
#include "explore/range_order_chart.h"
#include "explore/scatter_chart.h"
#include "explore/tap_overview.h"
#include "explore/tap_overview_model.h"
#include "session/session.h"

namespace rptq::ui {

namespace {
const int kDefaultK[6] = {0, 32, 4, 4, 32, 32};  // the reference's cluster counts, R1..R5 (R2/R3 per head)

QString k_key(int index) { return QStringLiteral("explore/k_R%1").arg(index); }

QLabel* small_label(const QString& text) {
  auto* l = new QLabel(text);
  l->setBuddy(nullptr);
  return l;
}
}  // namespace

ExplorePage::ExplorePage(Session* session, QWidget* parent)
    : QWidget(parent), session_(session), worker_(new ClusterWorker(this)) {
  auto* root = new QVBoxLayout(this);
  root->setContentsMargins(0, 0, 0, 0);
  stack_ = new QStackedWidget;
  root->addWidget(stack_);

  // Without statistics: say what to do.
  auto* empty = new QWidget;
  {
    auto* l = new QVBoxLayout(empty);
    l->addStretch(1);
    auto* msg = new QLabel(tr("<h2>No channel statistics yet</h2><p>Explore shows how RPTQ clusters and reorders the "
                              "channels of every activation. It needs the per-channel ranges that calibration "
                              "measures.</p>"));
    msg->setAlignment(Qt::AlignCenter);
    msg->setWordWrap(true);
    l->addWidget(msg);
    auto* row = new QHBoxLayout;
    row->addStretch(1);
    auto* calib = new QPushButton(tr("Calibrate the Model..."));
    auto* load = new QPushButton(tr("Load Statistics..."));
    row->addWidget(calib);
    row->addWidget(load);
    row->addStretch(1);
    l->addLayout(row);
    l->addStretch(2);
    connect(calib, &QPushButton::clicked, this, &ExplorePage::calibrate_requested);
    connect(load, &QPushButton::clicked, this, &ExplorePage::load_stats_requested);
  }
  stack_->addWidget(empty);

  auto* content = new QWidget;
  auto* cl = new QVBoxLayout(content);
  auto* controls = new QHBoxLayout;
  layer_spin_ = new QSpinBox;
  layer_spin_->setObjectName(QStringLiteral("layerSpin"));
  layer_spin_->setPrefix(tr("layer "));
  index_combo_ = new QComboBox;
  index_combo_->setObjectName(QStringLiteral("indexCombo"));
  for (int r = 1; r <= 5; ++r) index_combo_->addItem(index_title(r), r);
  stat_combo_ = new QComboBox;
  stat_combo_->addItem(tr("EMA (reference)"), static_cast<int>(rptq::RangeStat::Ema));
  stat_combo_->addItem(tr("min/max"), static_cast<int>(rptq::RangeStat::MinMax));
  stat_combo_->setToolTip(tr("The statistic of the cluster quantizers' ranges (EMA: the reference's EMA of each "
                              "cluster's per-sample range) and of the layers \u00d7 taps overview. The points are "
                              "each channel's plain max/min, on which the clusters are formed, as quantization "
                              "forms them."));
  source_combo_ = new QComboBox;
  source_combo_->setObjectName(QStringLiteral("sourceCombo"));
  source_combo_->addItem(tr("calibration"));
  source_combo_->addItem(tr("applied"));
  source_combo_->setToolTip(tr("calibration: the statistics file's ranges, clustered at the chosen k.\n"
                               "applied: the clusters, ranges and quantizers the quantized model "
                               "actually uses (each layer's ranges re-measured on the already quantized earlier "
                               "layers; k, seed and statistic of the quantization). Available after Quantize."));
  k_spin_ = new QSpinBox;
  k_spin_->setObjectName(QStringLiteral("kSpin"));
  k_spin_->setPrefix(tr("k = "));
  k_slider_ = new QSlider(Qt::Horizontal);
  k_slider_->setObjectName(QStringLiteral("kSlider"));
  k_slider_->setMinimumWidth(100);
  k_slider_->setToolTip(tr("Clusters: the channels of each cluster share one quantizer"));
  bits_spin_ = new QSpinBox;
  bits_spin_->setObjectName(QStringLiteral("bitsSpin"));
  bits_spin_->setRange(2, 8);
  bits_spin_->setSuffix(tr(" bits"));
  bits_spin_->setValue(QSettings().value(QStringLiteral("explore/bits"), 4).toInt());
  grid_combo_ = new QComboBox;
  grid_combo_->addItem(tr("exact grid"), static_cast<int>(rptq::QuantGrid::Exact));
  grid_combo_->addItem(tr("reference grid"), static_cast<int>(rptq::QuantGrid::Reference));
  grid_combo_->setToolTip(tr("exact: step = range / (2^n - 1); reference: range / 2^n, as the RPTQ code"));
  grid_combo_->setCurrentIndex(QSettings().value(QStringLiteral("explore/grid"), 0).toInt() == 1 ? 1 : 0);
  auto* export_button = new QToolButton;
  export_button->setText(tr("Export Chart"));
  export_button->setPopupMode(QToolButton::InstantPopup);
  auto* export_menu = new QMenu(export_button);
  export_button->setMenu(export_menu);
  controls->addWidget(source_combo_);
  controls->addWidget(layer_spin_);
  controls->addWidget(index_combo_);
  controls->addWidget(stat_combo_);
  controls->addSpacing(12);
  controls->addWidget(k_spin_);
  controls->addWidget(k_slider_, 1);
  controls->addSpacing(12);
  controls->addWidget(small_label(tr("Quantizer:")));
  controls->addWidget(bits_spin_);
  controls->addWidget(grid_combo_);
  controls->addStretch(0);
  controls->addWidget(export_button);
  cl->addLayout(controls);
  info_ = new QLabel;
  info_->setObjectName(QStringLiteral("exploreInfo"));
  info_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  busy_ = new QLabel(tr("clustering\u2026"));
  busy_->setObjectName(QStringLiteral("clusteringBusy"));
  busy_->setStyleSheet(QStringLiteral("color: #8a6d00;"));
  busy_->setVisible(false);
  auto* info_row = new QHBoxLayout;
  info_row->addWidget(info_, 1);
  info_row->addWidget(busy_);
  cl->addLayout(info_row);

  scatter_ = new ScatterChart;
  scatter_->setObjectName(QStringLiteral("scatter"));
  scatter_->setMinimumSize(360, 260);
  ranges_ = new RangeOrderChart;
  cluster_model_ = new ClusterTableModel(this);
  cluster_view_ = new QTableView;
  cluster_view_->setObjectName(QStringLiteral("clusterTable"));
  cluster_view_->setModel(cluster_model_);
  cluster_view_->verticalHeader()->hide();
  cluster_view_->setSelectionBehavior(QAbstractItemView::SelectRows);
  cluster_view_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  cluster_view_->verticalHeader()->setDefaultSectionSize(cluster_view_->fontMetrics().height() + 6);
  auto* cluster_tab = new QWidget;
  auto* ctl = new QVBoxLayout(cluster_tab);
  ctl->setContentsMargins(0, 0, 0, 0);
  ctl->addWidget(cluster_view_, 1);
  tensor_note_ = new QLabel;
  tensor_note_->setWordWrap(true);
  ctl->addWidget(tensor_note_);
  overview_model_ = new TapOverviewModel(this);
  overview_view_ = new QTableView;
  overview_view_->setObjectName(QStringLiteral("overviewTable"));
  overview_view_->setModel(overview_model_);
  overview_view_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  overview_view_->verticalHeader()->setDefaultSectionSize(overview_view_->fontMetrics().height() + 8);
  overview_view_->setSelectionMode(QAbstractItemView::SingleSelection);
  overview_view_->setWordWrap(true);
  auto* overview_tab = new QWidget;
  auto* otl = new QVBoxLayout(overview_tab);
  otl->setContentsMargins(0, 0, 0, 0);
  otl->addWidget(overview_view_, 1);
  auto* overview_note = new QLabel(tr("Widest channel range per layer and tap; colour: how many times wider than the "
                                      "median channel. Click a cell to explore it."));
  overview_note->setWordWrap(true);
  otl->addWidget(overview_note);
  auto* tabs = new QTabWidget;
  tabs->setObjectName(QStringLiteral("exploreTabs"));
  tabs->addTab(cluster_tab, tr("Clusters"));
  tabs->addTab(overview_tab, tr("Layers \u00d7 taps"));

  top_split_ = new QSplitter(Qt::Horizontal);
  top_split_->addWidget(scatter_);
  top_split_->addWidget(tabs);
  top_split_->setStretchFactor(0, 3);
  top_split_->setStretchFactor(1, 2);
  main_split_ = new QSplitter(Qt::Vertical);
  main_split_->addWidget(top_split_);
  main_split_->addWidget(ranges_);
  main_split_->setStretchFactor(0, 3);
  main_split_->setStretchFactor(1, 2);
  main_split_->setChildrenCollapsible(false);
  top_split_->setChildrenCollapsible(false);
  cl->addWidget(main_split_, 1);
  stack_->addWidget(content);
  QSettings s;
  top_split_->setSizes({600, 470});
  main_split_->setSizes({520, 360});
  top_split_->restoreState(s.value(QStringLiteral("explore/topSplit")).toByteArray());
  main_split_->restoreState(s.value(QStringLiteral("explore/mainSplit")).toByteArray());
  tabs_ = tabs;

  export_menu->addAction(tr("Channel Scatter..."), scatter_, &ChartView::export_interactively);
  export_menu->addAction(tr("Ranges, Original Order..."), ranges_->original_view(), &ChartView::export_interactively);
  export_menu->addAction(tr("Ranges, Reordered..."), ranges_->reordered_view(), &ChartView::export_interactively);

  connect(session_, &Session::stats_changed, this, &ExplorePage::stats_changed);
  connect(session_, &Session::quantized_changed, this, &ExplorePage::quantized_changed);
  connect(source_combo_, &QComboBox::currentIndexChanged, this, [this](int i) {
    if (i == 1 && !applied_stats()) {  // nothing quantized yet: the item is disabled, and so is choosing it
      source_combo_->setCurrentIndex(0);
      return;
    }
    update_source_controls();
    request_clusters();
  });
  connect(layer_spin_, &QSpinBox::valueChanged, this, &ExplorePage::request_clusters);
  connect(index_combo_, &QComboBox::currentIndexChanged, this, &ExplorePage::index_changed);
  connect(stat_combo_, &QComboBox::currentIndexChanged, this, [this] {
    request_clusters();
    compute_overview();
  });
  connect(bits_spin_, &QSpinBox::valueChanged, this, &ExplorePage::request_clusters);
  connect(grid_combo_, &QComboBox::currentIndexChanged, this, &ExplorePage::request_clusters);
  connect(k_spin_, &QSpinBox::valueChanged, this, [this](int k) {
    if (k_slider_->value() != k) k_slider_->setValue(k);
    if (!updating_controls_) QSettings().setValue(k_key(index_combo_->currentData().toInt()), k);
    request_clusters();
  });
  connect(k_slider_, &QSlider::valueChanged, k_spin_, &QSpinBox::setValue);
  connect(worker_, &ClusterWorker::ready, this, &ExplorePage::show_snapshot);
  connect(worker_, &ClusterWorker::failed, this, [this](const TaskError& e, std::uint64_t id) {
    if (id == wanted_) {
      info_->setText(tr("Clustering failed: %1").arg(e.message));
      show_task_error(window(), tr("Cannot cluster the channels"), e);
    }
  });
  connect(worker_, &ClusterWorker::idle, this, [this] { busy_->setVisible(false); });
  connect(overview_view_, &QTableView::clicked, this, [this](const QModelIndex& i) {
    if (!i.isValid()) return;
    const int r = rptq::tap_reorder_index(TapOverviewModel::tap_of_column(i.column()));
    layer_spin_->setValue(i.row());
    index_combo_->setCurrentIndex(r - 1);
  });
  stats_changed();
  quantized_changed();
}

ExplorePage::~ExplorePage() { save_state(); }

std::shared_ptr<const rptq::ChannelStats> ExplorePage::applied_stats() const {
  const QuantizationSummary* q = session_->quantization_summary();
  return q ? q->applied : nullptr;
}

bool ExplorePage::showing_applied() const { return source_combo_->currentIndex() == 1 && applied_stats(); }

void ExplorePage::quantized_changed() {
  const bool available = applied_stats() != nullptr;
  if (auto* m = qobject_cast<QStandardItemModel*>(source_combo_->model())) m->item(1)->setEnabled(available);
  if (!available && source_combo_->currentIndex() == 1) {
    source_combo_->setCurrentIndex(0);  // re-requests
    return;
  }
  update_source_controls();
  if (source_combo_->currentIndex() == 1) request_clusters();
}

void ExplorePage::update_source_controls() {
  const bool applied = showing_applied();
  k_spin_->setEnabled(!applied);
  k_slider_->setEnabled(!applied);
  stat_combo_->setEnabled(!applied);
  if (applied) {
    const QuantizationSummary* q = session_->quantization_summary();
    updating_controls_ = true;
    stat_combo_->setCurrentIndex(q->stat == rptq::RangeStat::MinMax ? 1 : 0);
    k_spin_->setValue(q->config.clusters_of(layer_spin_->value(), index_combo_->currentData().toInt()));
    updating_controls_ = false;
  } else {
    updating_controls_ = true;
    update_k_range();
    updating_controls_ = false;
  }
}

void ExplorePage::save_state() const {
  QSettings s;
  s.setValue(QStringLiteral("explore/topSplit"), top_split_->saveState());
  s.setValue(QStringLiteral("explore/mainSplit"), main_split_->saveState());
  s.setValue(QStringLiteral("explore/bits"), bits_spin_->value());
  s.setValue(QStringLiteral("explore/grid"), grid_combo_->currentIndex());
}

rptq::RangeStat ExplorePage::stat() const { return static_cast<rptq::RangeStat>(stat_combo_->currentData().toInt()); }

const ClusterSnapshot* ExplorePage::shown() const { return shown_.get(); }

bool ExplorePage::up_to_date() const {
  if (!session_->stats()) return true;
  return !worker_->busy() && shown_ && shown_->request.id == wanted_ && overview_running_ == 0;
}

void ExplorePage::select(int layer, int index, int k) {
  updating_controls_ = true;
  layer_spin_->setValue(layer);
  index_combo_->setCurrentIndex(std::clamp(index, 1, 5) - 1);
  updating_controls_ = false;
  if (showing_applied())
    update_source_controls();  // k is the quantization's
  else
    k_spin_->setValue(k);
  request_clusters();
}

void ExplorePage::stats_changed() {
  const rptq::ChannelStats* st = session_->stats();
  shown_.reset();
  scatter_->clear();
  ranges_->clear();
  cluster_model_->set_snapshot(nullptr);
  overview_model_->clear();
  if (!st) {
    stack_->setCurrentIndex(0);
    return;
  }
  stack_->setCurrentIndex(1);
  updating_controls_ = true;
  layer_spin_->setRange(0, static_cast<int>(std::max<std::int64_t>(1, st->layers) - 1));
  stat_combo_->setCurrentIndex(st->settings.stat == rptq::RangeStat::MinMax ? 1 : 0);
  update_k_range();
  updating_controls_ = false;
  compute_overview();
  request_clusters();
}

void ExplorePage::index_changed() {
  updating_controls_ = true;
  update_k_range();
  updating_controls_ = false;
  update_source_controls();
  request_clusters();
}

void ExplorePage::update_k_range() {
  const rptq::ChannelStats* st = session_->stats();
  const int r = index_combo_->currentData().toInt();
  int max_k = 64;
  if (st) {
    const rptq::ModelConfig shape = st->model_shape();
    const std::int64_t hd = shape.head_dim;
    // R2/R3 cluster within each head (R2 of a rotary model: channel pairs); others across the whole tap.
    const std::int64_t n = r == 2 ? (shape.arch == rptq::Architecture::OPT ? hd : hd / 2)
                           : r == 3 ? hd
                                    : rptq::tap_channels(shape, shown_tap(r));
    max_k = static_cast<int>(std::clamp<std::int64_t>(n, 1, 256));
  }
  const int k = QSettings().value(k_key(r), kDefaultK[r]).toInt();
  k_spin_->setRange(1, max_k);
  k_slider_->setRange(1, max_k);
  k_spin_->setValue(std::clamp(k, 1, max_k));
  k_slider_->setValue(k_spin_->value());
  k_spin_->setToolTip(r == 2 || r == 3 ? tr("Clusters per head (1..%1)").arg(max_k) : tr("Clusters (1..%1)").arg(max_k));
}

void ExplorePage::request_clusters() {
  if (updating_controls_) return;
  auto st = session_->stats_ptr();
  if (!st) return;
  ClusterRequest r;
  r.stats = st;
  r.layer = layer_spin_->value();
  r.index = index_combo_->currentData().toInt();
  r.k = k_spin_->value();
  r.stat = stat();
  if (showing_applied()) {
    // Exactly what quantization clustered: its ranges of this layer, its k, seed and statistic.
    const QuantizationSummary* q = session_->quantization_summary();
    r.stats = q->applied;
    r.k = q->config.clusters_of(r.layer, r.index);  // a cluster override gives some layers their own
    const QSignalBlocker block_spin(k_spin_), block_slider(k_slider_);  // show it without a second request
    k_spin_->setValue(r.k);
    k_slider_->setValue(r.k);
    r.seed = q->kmeans_seed;
    r.stat = q->stat;
    r.applied = true;
  }
  r.bits = bits_spin_->value();
  r.grid = static_cast<rptq::QuantGrid>(grid_combo_->currentData().toInt());
  wanted_ = worker_->request(std::move(r));
  busy_->setVisible(true);
}

void ExplorePage::show_snapshot(std::shared_ptr<const ClusterSnapshot> s) {
  if (!s || (s->request.stats != session_->stats_ptr() && s->request.stats != applied_stats()))
    return;  // statistics (or the quantized model) replaced meanwhile
  shown_ = s;
  scatter_->set_snapshot(s);
  ranges_->set_snapshot(s);
  cluster_model_->set_snapshot(s);
  const ClusterRequest& r = s->request;
  const QString source =
      r.applied ? (session_->quantization_summary() && session_->quantization_summary()->sequential && r.layer > 0
                       ? tr("Applied by quantization (ranges re-measured on quantized layers 0\u2013%1) \u00b7 ")
                             .arg(r.layer - 1)
                       : tr("Applied by quantization \u00b7 "))
                : QString();
  info_->setText(source + tr("R%1 \u00b7 %2 \u00b7 %3 channels \u00b7 %4 clusters%5 \u00b7 inertia %6 \u00b7 clustered in %7")
                     .arg(r.index)
                     .arg(s->description_text())
                     .arg(s->channels())
                     .arg(s->clusters)
                     .arg(s->per_head ? tr(" (%1 per head \u00d7 %2 heads)").arg(r.k).arg(s->heads) : QString())
                     .arg(compact_number(s->inertia, 4), human_seconds(s->seconds)));
  double finer = 0;
  for (const ClusterQuantizer& q : s->quantizers) finer += q.finer * static_cast<double>(q.channels);
  finer /= std::max<double>(1.0, static_cast<double>(s->channels()));
  tensor_note_->setText(tr("One %1-bit quantizer for the whole tensor [%2, %3] would have step %4; with these "
                           "clusters a channel's step is on average %5\u00d7 finer.")
                            .arg(r.bits)
                            .arg(compact_number(s->tensor_min), compact_number(s->tensor_max),
                                 compact_number(s->tensor_step, 3))
                            .arg(finer, 0, 'f', 1));
  Q_EMIT snapshot_shown(r.id);
}

void ExplorePage::compute_overview() {
  auto st = session_->stats_ptr();
  if (!st) return;
  ++overview_running_;
  const rptq::RangeStat s = stat();
  run_task(
      this, nullptr, [st, s] { return make_tap_overview(*st, s); },
      [this, st, s](TapOverview o) {
        --overview_running_;
        if (st == session_->stats_ptr() && s == stat()) overview_model_->set_overview(std::move(o));
      },
      [this](const TaskError& e) {
        --overview_running_;
        show_task_error(window(), tr("Cannot summarise the statistics"), e);
      });
}

void ExplorePage::export_scatter() { scatter_->export_interactively(); }

}  // namespace rptq::ui
