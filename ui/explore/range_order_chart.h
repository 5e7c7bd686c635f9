#pragma once
// Each channel's calibration range [min, max] along the channel axis, twice: in the model's original order, where
// a tap's outlier channels sit scattered among the rest, and in RPTQ's reordered order, where every cluster is a
// contiguous run (coloured as in the scatter) and so can share one quantizer.
#include <QWidget>

#include <memory>

#include "explore/cluster_snapshot.h"

class QChart;
class QValueAxis;

namespace rptq::ui {

class ChartView;
class RangeBandItem;

class RangeOrderChart : public QWidget {
  Q_OBJECT
 public:
  explicit RangeOrderChart(QWidget* parent = nullptr);
  void set_snapshot(std::shared_ptr<const ClusterSnapshot> s);
  void clear();

  ChartView* original_view() const { return original_.view; }
  ChartView* reordered_view() const { return reordered_.view; }
  int reordered_runs() const { return runs_; }  // contiguous same-cluster runs drawn in the reordered chart

 private:
  // One chart: its axes (kept across snapshots) and the item drawing its bands.
  struct Pane {
    explicit Pane(const QString& title);
    void set_axes(const ClusterSnapshot& s, const QString& xtitle);
    ChartView* view;
    QValueAxis* x;
    QValueAxis* y;
    RangeBandItem* bands;
  };
  Pane original_;
  Pane reordered_;
  std::shared_ptr<const ClusterSnapshot> s_;
  int runs_ = 0;
};

}  // namespace rptq::ui
