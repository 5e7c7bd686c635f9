#pragma once
// Filled bands [lower(x), upper(x)] drawn by one graphics item that follows a chart's axes (zoom and pan), clipped
// to the plot area. RangeOrderChart draws each run of same-cluster channels as one band; with a Qt Charts
// QAreaSeries per run (two line series each, re-created on every re-clustering) a k change took tens of
// milliseconds at 36,864 channels, here the item only gets new polygons.
#include <QColor>
#include <QGraphicsObject>
#include <QPolygonF>

#include <vector>

class QChart;
class QValueAxis;

namespace rptq::ui {

class RangeBandItem : public QGraphicsObject {
  Q_OBJECT
 public:
  // In data coordinates: `outline` runs along the upper edge left to right, then along the lower edge back.
  struct Band {
    QColor color;
    QPolygonF outline;
  };
  RangeBandItem(QChart* chart, QValueAxis* x, QValueAxis* y);

  void set_bands(std::vector<Band> bands);
  void clear() { set_bands({}); }
  int count() const { return static_cast<int>(bands_.size()); }

  QRectF boundingRect() const override;
  void paint(QPainter* painter, const QStyleOptionGraphicsItem* option, QWidget* widget) override;

 private:
  void geometry_changed();

  QChart* chart_;
  QValueAxis* xa_;
  QValueAxis* ya_;
  std::vector<Band> bands_;
  QRectF rect_;
};

}  // namespace rptq::ui
