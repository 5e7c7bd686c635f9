#pragma once
// Many scatter points drawn by one graphics item. Qt Charts' raster QScatterSeries makes a graphics item per
// point, which is slow at tens of thousands of points; without OpenGL (the offscreen platform, remote displays)
// ScatterChart draws large clusterings with this item instead: one pre-rendered marker per colour, blitted at each
// point, clipped to the plot area and following the chart's axes (zoom and pan).
#include <QColor>
#include <QGraphicsObject>
#include <QPixmap>

#include <vector>

class QChart;
class QValueAxis;

namespace rptq::ui {

class PointCloudItem : public QGraphicsObject {
  Q_OBJECT
 public:
  PointCloudItem(QChart* chart, QValueAxis* x, QValueAxis* y);

  // x, y and a colour index per point; colours[i] is colour index i.
  void set_points(std::vector<float> x, std::vector<float> y, std::vector<std::int32_t> color_index,
                  const std::vector<QColor>& colors, qreal marker_size);
  void clear();
  int count() const { return static_cast<int>(x_.size()); }
  int distinct_colors() const;
  void set_highlight(int point);  // a ring around one point (-1: none)

  QRectF boundingRect() const override;
  void paint(QPainter* painter, const QStyleOptionGraphicsItem* option, QWidget* widget) override;

 private:
  void geometry_changed();

  QChart* chart_;
  QValueAxis* xa_;
  QValueAxis* ya_;
  std::vector<float> x_, y_;
  std::vector<std::int32_t> c_;
  std::vector<QPixmap> markers_;
  std::vector<QColor> colors_;
  std::vector<bool> used_;
  qreal size_ = 6;
  int highlight_ = -1;
  QRectF rect_;
};

}  // namespace rptq::ui
