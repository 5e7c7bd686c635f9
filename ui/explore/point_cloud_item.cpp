#include "explore/point_cloud_item.h"

#include <QChart>
#include <QPainter>
#include <QSet>
#include <QValueAxis>

#include <cmath>

namespace rptq::ui {

PointCloudItem::PointCloudItem(QChart* chart, QValueAxis* x, QValueAxis* y)
    : QGraphicsObject(chart), chart_(chart), xa_(x), ya_(y) {
  setZValue(1000);  // above the grid and series; clipped to the plot area, so never over the legend or axes
  setAcceptedMouseButtons(Qt::NoButton);
  setAcceptHoverEvents(false);
  connect(chart, &QChart::plotAreaChanged, this, &PointCloudItem::geometry_changed);
  connect(x, &QValueAxis::rangeChanged, this, [this] { update(); });
  connect(y, &QValueAxis::rangeChanged, this, [this] { update(); });
  geometry_changed();
}

void PointCloudItem::geometry_changed() {
  prepareGeometryChange();
  rect_ = chart_->plotArea();
  update();
}

QRectF PointCloudItem::boundingRect() const { return rect_; }

void PointCloudItem::set_points(std::vector<float> x, std::vector<float> y, std::vector<std::int32_t> color_index,
                                const std::vector<QColor>& colors, qreal marker_size) {
  x_ = std::move(x);
  y_ = std::move(y);
  c_ = std::move(color_index);
  size_ = marker_size;
  highlight_ = -1;
  // One antialiased marker per colour, at twice the resolution so it stays crisp in 2x exports.
  markers_.clear();
  const qreal dpr = 2.0;
  const int px = static_cast<int>(std::ceil((marker_size + 2) * dpr));
  for (const QColor& col : colors) {
    QPixmap pm(px, px);
    pm.setDevicePixelRatio(dpr);
    pm.fill(Qt::transparent);
    QPainter p(&pm);
    p.setRenderHint(QPainter::Antialiasing);
    p.setPen(QPen(col.darker(140), 0.8));
    p.setBrush(col);
    p.drawEllipse(QRectF(1, 1, marker_size, marker_size));
    markers_.push_back(pm);
  }
  colors_ = colors;
  used_.assign(colors.size(), false);
  for (std::int32_t c : c_)
    if (c >= 0 && static_cast<std::size_t>(c) < used_.size()) used_[static_cast<std::size_t>(c)] = true;
  update();
}

void PointCloudItem::clear() {
  x_.clear();
  y_.clear();
  c_.clear();
  used_.clear();
  highlight_ = -1;
  update();
}

int PointCloudItem::distinct_colors() const {
  QSet<QRgb> seen;
  for (std::size_t i = 0; i < used_.size(); ++i)
    if (used_[i]) seen.insert(colors_[i].rgba());
  return static_cast<int>(seen.size());
}

void PointCloudItem::set_highlight(int point) {
  if (point == highlight_) return;
  highlight_ = point;
  update();
}

void PointCloudItem::paint(QPainter* painter, const QStyleOptionGraphicsItem*, QWidget*) {
  if (x_.empty()) return;
  const QRectF plot = chart_->plotArea();
  const double x0 = xa_->min(), x1 = xa_->max(), y0 = ya_->min(), y1 = ya_->max();
  if (!(x1 > x0) || !(y1 > y0)) return;
  const double sx = plot.width() / (x1 - x0), sy = plot.height() / (y1 - y0);
  const double half = (size_ + 2) / 2;
  painter->save();
  painter->setClipRect(plot);
  for (std::size_t i = 0; i < x_.size(); ++i) {
    const auto c = static_cast<std::size_t>(c_[i]);
    if (c >= markers_.size()) continue;
    const double px = plot.left() + (x_[i] - x0) * sx, py = plot.bottom() - (y_[i] - y0) * sy;
    if (px < plot.left() - half || px > plot.right() + half || py < plot.top() - half || py > plot.bottom() + half)
      continue;
    painter->drawPixmap(QPointF(px - half, py - half), markers_[c]);
  }
  if (highlight_ >= 0 && static_cast<std::size_t>(highlight_) < x_.size()) {
    const auto i = static_cast<std::size_t>(highlight_);
    painter->setRenderHint(QPainter::Antialiasing);
    painter->setPen(QPen(Qt::black, 1.5));
    painter->setBrush(Qt::NoBrush);
    painter->drawEllipse(QPointF(plot.left() + (x_[i] - x0) * sx, plot.bottom() - (y_[i] - y0) * sy), 7, 7);
  }
  painter->restore();
}

}  // namespace rptq::ui
