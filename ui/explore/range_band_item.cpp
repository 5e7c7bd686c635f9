#include "explore/range_band_item.h"

#include <QChart>
#include <QPainter>
#include <QValueAxis>

namespace rptq::ui {

RangeBandItem::RangeBandItem(QChart* chart, QValueAxis* x, QValueAxis* y)
    : QGraphicsObject(chart), chart_(chart), xa_(x), ya_(y) {
  setZValue(1000);  // above the grid; clipped to the plot area, so never over the axes or the title
  setAcceptedMouseButtons(Qt::NoButton);
  connect(chart, &QChart::plotAreaChanged, this, &RangeBandItem::geometry_changed);
  connect(x, &QValueAxis::rangeChanged, this, [this] { update(); });
  connect(y, &QValueAxis::rangeChanged, this, [this] { update(); });
  geometry_changed();
}

void RangeBandItem::geometry_changed() {
  prepareGeometryChange();
  rect_ = chart_->plotArea();
  update();
}

QRectF RangeBandItem::boundingRect() const { return rect_; }

void RangeBandItem::set_bands(std::vector<Band> bands) {
  bands_ = std::move(bands);
  update();
}

void RangeBandItem::paint(QPainter* painter, const QStyleOptionGraphicsItem*, QWidget*) {
  if (bands_.empty()) return;
  const QRectF plot = chart_->plotArea();
  const double x0 = xa_->min(), x1 = xa_->max(), y0 = ya_->min(), y1 = ya_->max();
  if (!(x1 > x0) || !(y1 > y0)) return;
  // value -> plot area, linearly (as the chart maps its own series)
  QTransform map;
  map.translate(plot.left(), plot.bottom());
  map.scale(plot.width() / (x1 - x0), -plot.height() / (y1 - y0));
  map.translate(-x0, -y0);
  painter->save();
  painter->setClipRect(plot);
  painter->setRenderHint(QPainter::Antialiasing);
  for (const Band& b : bands_) {
    QPen pen(b.color.darker(125));
    pen.setWidthF(0.6);
    painter->setPen(pen);
    painter->setBrush(b.color);
    painter->drawPolygon(map.map(b.outline));
  }
  painter->restore();
}

}  // namespace rptq::ui
