#pragma once
// The heart of the Explore step: every channel of one tap as a point (max, min), coloured by its k-means cluster,
// one series per cluster. Hovering shows the channel's index, max, min and cluster; zoom and pan as ChartView.
// Large point counts use OpenGL where the platform has it (ChartView::opengl_enabled).
#include <QList>

#include <memory>
#include <vector>

#include "common/chart_view.h"
#include "explore/cluster_snapshot.h"

class QScatterSeries;
class QValueAxis;

namespace rptq::ui {
class PointCloudItem;
}
class QValueAxis;

namespace rptq::ui {

class ScatterChart : public ChartView {
  Q_OBJECT
 public:
  explicit ScatterChart(QWidget* parent = nullptr);

  // Shows a clustering. When only the clustering changed (same stats, layer, index and statistic) the axes and
  // zoom stay where they are.
  void set_snapshot(std::shared_ptr<const ClusterSnapshot> s);
  void clear();
  const ClusterSnapshot* snapshot() const { return s_.get(); }

  // What is drawn: points over all cluster series, and the distinct colours of the series that have points.
  int point_count() const;
  int distinct_colors() const;
  bool uses_opengl() const;
  bool uses_point_cloud() const;

  // The channel nearest to a viewport position within a few pixels, or -1; and a channel's viewport position.
  int channel_at(const QPoint& viewport_pos) const;
  QPoint position_of(int channel) const;
  // The hover text for a channel ("channel 17\nmax ...\nmin ...\ncluster 3").
  QString describe_channel(int channel) const;

 Q_SIGNALS:
  void channel_hovered(int channel);  // -1 when the pointer leaves the channel
  void painted();                     // after each paint of the chart (tests and bench/ wait for the redraw)

 protected:
  void restore_home() override;
  void paintEvent(QPaintEvent* e) override;
  void mouseMoveEvent(QMouseEvent* e) override;
  void leaveEvent(QEvent* e) override;

 private:
  void set_hover(int channel, const QPoint& global_pos);

  std::shared_ptr<const ClusterSnapshot> s_;
  QList<QScatterSeries*> series_;  // one per cluster, index = cluster id
  QScatterSeries* highlight_ = nullptr;
  PointCloudItem* cloud_ = nullptr;  // draws large clusterings when OpenGL is off
  QValueAxis* x_ = nullptr;
  QValueAxis* y_ = nullptr;
  QRectF home_;  // x: max range, y: min range
  int hovered_ = -1;
};

}  // namespace rptq::ui
