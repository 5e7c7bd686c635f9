#pragma once
// The Explore step: one layer's channels of one reorder index as a (max, min) scatter coloured by k-means
// cluster, re-clustered live on a background worker as k changes; the channel ranges in original and reordered
// order; per cluster the quantizer step and rounding error at the chosen bits; and a layer-by-tap heat map of
// where the ranges are widest.
#include <QWidget>

#include <memory>

#include "explore/cluster_snapshot.h"

class QComboBox;
class QLabel;
class QSlider;
class QSpinBox;
class QSplitter;
class QStackedWidget;
class QTableView;
class QTabWidget;

namespace rptq::ui {

class ClusterTableModel;
class ClusterWorker;
class RangeOrderChart;
class ScatterChart;
class Session;
class TapOverviewModel;
struct TapOverview;

class ExplorePage : public QWidget {
  Q_OBJECT
 public:
  explicit ExplorePage(Session* session, QWidget* parent = nullptr);
  ~ExplorePage() override;

  ScatterChart* scatter() const { return scatter_; }
  RangeOrderChart* ranges() const { return ranges_; }
  ClusterTableModel* cluster_model() const { return cluster_model_; }
  TapOverviewModel* overview_model() const { return overview_model_; }
  QTableView* overview_view() const { return overview_view_; }
  QSpinBox* k_spin() const { return k_spin_; }
  QSlider* k_slider() const { return k_slider_; }
  QSpinBox* layer_spin() const { return layer_spin_; }
  QComboBox* index_combo() const { return index_combo_; }
  QSpinBox* bits_spin() const { return bits_spin_; }
  QTabWidget* tabs() const { return tabs_; }
  QComboBox* source_combo() const { return source_combo_; }
  // The applied view is chosen and the session's quantized model has its ranges.
  bool showing_applied() const;

  // Selects what to show (index 1..5); re-clusters.
  void select(int layer, int index, int k);
  // The shown clustering answers the latest request, nothing is running, and the overview is ready.
  bool up_to_date() const;
  const ClusterSnapshot* shown() const;

 Q_SIGNALS:
  void calibrate_requested();
  void load_stats_requested();
  void snapshot_shown(std::uint64_t request_id);  // a clustering is now in the charts and table (not yet painted)

 public Q_SLOTS:
  void export_scatter();
  void save_state() const;

 private Q_SLOTS:
  void stats_changed();
  void quantized_changed();
  void index_changed();
  void request_clusters();
  void show_snapshot(std::shared_ptr<const rptq::ui::ClusterSnapshot> s);

 private:
  void update_k_range();
  void update_source_controls();
  void compute_overview();
  std::shared_ptr<const rptq::ChannelStats> applied_stats() const;
  rptq::RangeStat stat() const;

  Session* session_;
  ClusterWorker* worker_;
  QStackedWidget* stack_;
  QSpinBox* layer_spin_;
  QComboBox* index_combo_;
  QComboBox* stat_combo_;
  QComboBox* source_combo_;
  QSpinBox* k_spin_;
  QSlider* k_slider_;
  QSpinBox* bits_spin_;
  QComboBox* grid_combo_;
  QLabel* info_;
  QLabel* busy_;
  QLabel* tensor_note_;
  ScatterChart* scatter_;
  RangeOrderChart* ranges_;
  ClusterTableModel* cluster_model_;
  QTableView* cluster_view_;
  TapOverviewModel* overview_model_;
  QTableView* overview_view_;
  QTabWidget* tabs_ = nullptr;
  QSplitter* main_split_;
  QSplitter* top_split_;
  std::shared_ptr<const ClusterSnapshot> shown_;
  std::uint64_t wanted_ = 0;  // id of the latest request
  int overview_running_ = 0;
  bool updating_controls_ = false;
};

}  // namespace rptq::ui
