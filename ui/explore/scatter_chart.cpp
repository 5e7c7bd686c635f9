#include "explore/scatter_chart.h"

#include <QChart>
#include <QLegend>
#include <QLegendMarker>
#include <QMouseEvent>
#include <QScatterSeries>
#include <QSet>
#include <QToolTip>
#include <QValueAxis>

#include <algorithm>
#include <cmath>

#include "common/cluster_palette.h"
#include "common/format.h"
#include "explore/point_cloud_item.h"

namespace rptq::ui {

namespace {
constexpr int kOpenGlPoints = 4000;  // above this many points, series draw through OpenGL when available, else
                                     // through one PointCloudItem (a raster series makes an item per point)
constexpr int kLegendClusters = 12;   // a legend entry per cluster up to this many

// The data's extent with a margin, never empty.
QRectF padded(double x0, double x1, double y0, double y1) {
  auto pad = [](double& a, double& b) {
    double m = (b - a) * 0.05;
    if (!(m > 0)) m = std::max(1e-3, std::fabs(a) * 0.05);
    a -= m;
    b += m;
  };
  pad(x0, x1);
  pad(y0, y1);
  return QRectF(QPointF(x0, y0), QPointF(x1, y1));
}
}  // namespace

ScatterChart::ScatterChart(QWidget* parent) : ChartView(new QChart, parent) {
  set_export_name(QStringLiteral("channel-scatter"));
  QChart* c = chart();
  c->setMargins(QMargins(6, 6, 6, 6));
  c->legend()->setAlignment(Qt::AlignRight);
  x_ = new QValueAxis;
  y_ = new QValueAxis;
  x_->setTitleText(tr("channel max"));
  y_->setTitleText(tr("channel min"));
  x_->setLabelFormat(QStringLiteral("%.3g"));
  y_->setLabelFormat(QStringLiteral("%.3g"));
  c->addAxis(x_, Qt::AlignBottom);
  c->addAxis(y_, Qt::AlignLeft);
  highlight_ = new QScatterSeries;
  highlight_->setMarkerShape(QScatterSeries::MarkerShapeCircle);
  highlight_->setMarkerSize(14);
  highlight_->setColor(Qt::transparent);
  highlight_->setBorderColor(Qt::black);
  highlight_->setName(QStringLiteral("hovered"));
  c->addSeries(highlight_);
  highlight_->attachAxis(x_);
  highlight_->attachAxis(y_);
  for (QLegendMarker* m : c->legend()->markers(highlight_)) m->setVisible(false);
  cloud_ = new PointCloudItem(c, x_, y_);
  clear();
}

void ScatterChart::clear() {
  for (QScatterSeries* s : series_) {
    chart()->removeSeries(s);
    delete s;
  }
  series_.clear();
  highlight_->clear();
  cloud_->clear();
  s_.reset();
  hovered_ = -1;
  chart()->setTitle(tr("No statistics: calibrate the model or load a statistics file"));
  home_ = QRectF(QPointF(0, -1), QPointF(1, 0));
  restore_home();
}

void ScatterChart::set_snapshot(std::shared_ptr<const ClusterSnapshot> s) {
  if (!s) return clear();
  const bool same_data = s_ && s_->request.stats == s->request.stats && s_->request.layer == s->request.layer &&
                         s_->request.index == s->request.index && s_->request.stat == s->request.stat;
  s_ = std::move(s);
  const ClusterSnapshot& sn = *s_;
  const int clusters = sn.clusters;
  const bool gl = opengl_enabled() && sn.channels() > kOpenGlPoints;
  const qreal marker = sn.channels() > 20000 ? 4 : sn.channels() > 4000 ? 5 : sn.channels() > 1000 ? 7 : 9;

  while (series_.size() > clusters) {
    QScatterSeries* last = series_.takeLast();
    chart()->removeSeries(last);
    delete last;
  }
  while (series_.size() < clusters) {
    auto* ser = new QScatterSeries;
    ser->setMarkerShape(QScatterSeries::MarkerShapeCircle);
    chart()->addSeries(ser);
    ser->attachAxis(x_);
    ser->attachAxis(y_);
    series_.push_back(ser);
  }
  const bool cloud = !gl && sn.channels() > kOpenGlPoints;
  std::vector<QList<QPointF>> points(static_cast<std::size_t>(clusters));
  std::vector<qsizetype> sizes(static_cast<std::size_t>(clusters), 0);
  for (std::int32_t l : sn.labels) ++sizes[static_cast<std::size_t>(l)];
  if (!cloud) {
    for (int c = 0; c < clusters; ++c) points[static_cast<std::size_t>(c)].reserve(sizes[static_cast<std::size_t>(c)]);
    for (std::int64_t c = 0; c < sn.channels(); ++c) {
      const auto i = static_cast<std::size_t>(c);
      points[static_cast<std::size_t>(sn.labels[i])].append(QPointF(sn.max[i], sn.min[i]));
    }
  }
  const bool legend = clusters <= kLegendClusters;
  std::vector<QColor> colors;
  for (int c = 0; c < clusters; ++c) {
    QScatterSeries* ser = series_[c];
    const QColor color = cluster_color(c);
    colors.push_back(color);
    ser->setUseOpenGL(gl);
    ser->setColor(color);
    ser->setBorderColor(sn.channels() > 4000 ? color : color.darker(140));
    ser->setMarkerSize(marker);
    ser->setName(tr("cluster %1 (%2)").arg(c).arg(sizes[static_cast<std::size_t>(c)]));
    ser->replace(points[static_cast<std::size_t>(c)]);  // empty when the point cloud draws them
    for (QLegendMarker* m : chart()->legend()->markers(ser)) m->setVisible(legend);
  }
  if (cloud)
    cloud_->set_points(sn.max, sn.min, sn.labels, colors, marker);
  else
    cloud_->clear();
  chart()->legend()->setVisible(legend);

  const ClusterRequest& r = sn.request;
  chart()->setTitle(tr("Layer %1 \u00b7 %2 \u00b7 %3: %4 channels in %5 clusters%6")
                        .arg(r.layer)
                        .arg(QStringLiteral("R%1").arg(r.index), sn.description_text())
                        .arg(sn.channels())
                        .arg(sn.clusters)
                        .arg(sn.per_head ? tr(" (%1 per head)").arg(r.k) : QString()));
  if (!same_data) {
    const auto [xlo, xhi] = std::minmax_element(sn.max.begin(), sn.max.end());
    const auto [ylo, yhi] = std::minmax_element(sn.min.begin(), sn.min.end());
    home_ = sn.channels() ? padded(*xlo, *xhi, *ylo, *yhi) : QRectF(QPointF(0, -1), QPointF(1, 0));
    chart()->zoomReset();
    restore_home();
    hovered_ = -1;
    highlight_->clear();
  } else if (hovered_ >= 0 && hovered_ < sn.channels()) {
    if (cloud)
      cloud_->set_highlight(hovered_);
    else
      highlight_->replace({QPointF(sn.max[static_cast<std::size_t>(hovered_)], sn.min[static_cast<std::size_t>(hovered_)])});
  }
}

void ScatterChart::restore_home() {
  x_->setRange(home_.left(), home_.right());
  y_->setRange(home_.top(), home_.bottom());
  x_->applyNiceNumbers();
  y_->applyNiceNumbers();
}

bool ScatterChart::uses_point_cloud() const { return cloud_->count() > 0; }

int ScatterChart::point_count() const {
  int n = cloud_->count();
  for (const QScatterSeries* s : series_) n += static_cast<int>(s->count());
  return n;
}

int ScatterChart::distinct_colors() const {
  if (uses_point_cloud()) return cloud_->distinct_colors();
  QSet<QRgb> colors;
  for (const QScatterSeries* s : series_)
    if (s->count() > 0) colors.insert(s->color().rgba());
  return static_cast<int>(colors.size());
}

bool ScatterChart::uses_opengl() const {
  return std::any_of(series_.begin(), series_.end(), [](const QScatterSeries* s) { return s->useOpenGL(); });
}

int ScatterChart::channel_at(const QPoint& viewport_pos) const {
  if (!s_ || s_->channels() == 0) return -1;
  const QRectF plot = chart()->plotArea();
  const QPointF p = chart()->mapFromScene(mapToScene(viewport_pos));
  if (!plot.adjusted(-8, -8, 8, 8).contains(p)) return -1;
  const double x0 = x_->min(), x1 = x_->max(), y0 = y_->min(), y1 = y_->max();
  if (!(x1 > x0) || !(y1 > y0)) return -1;
  const double sx = plot.width() / (x1 - x0), sy = plot.height() / (y1 - y0);
  // Nearest within 8 px; a linear scan is well under a millisecond for tens of thousands of channels.
  double best = 8.0 * 8.0;
  int found = -1;
  for (std::int64_t c = 0; c < s_->channels(); ++c) {
    const auto i = static_cast<std::size_t>(c);
    const double dx = plot.left() + (s_->max[i] - x0) * sx - p.x();
    const double dy = plot.bottom() - (s_->min[i] - y0) * sy - p.y();
    const double d = dx * dx + dy * dy;
    if (d < best) {
      best = d;
      found = static_cast<int>(c);
    }
  }
  return found;
}

QPoint ScatterChart::position_of(int channel) const {
  if (!s_ || channel < 0 || channel >= s_->channels()) return {};
  const auto i = static_cast<std::size_t>(channel);
  // The same mapping as channel_at and the point cloud: value -> plot area, linearly.
  const QRectF plot = chart()->plotArea();
  const double x0 = x_->min(), x1 = x_->max(), y0 = y_->min(), y1 = y_->max();
  if (!(x1 > x0) || !(y1 > y0)) return {};
  const QPointF in_chart(plot.left() + (s_->max[i] - x0) * plot.width() / (x1 - x0),
                         plot.bottom() - (s_->min[i] - y0) * plot.height() / (y1 - y0));
  return mapFromScene(chart()->mapToScene(in_chart));
}

QString ScatterChart::describe_channel(int channel) const {
  if (!s_ || channel < 0 || channel >= s_->channels()) return {};
  const auto i = static_cast<std::size_t>(channel);
  QString head;
  if (s_->per_head) {
    const std::int64_t hd = s_->channels() / std::max<std::int64_t>(1, s_->heads);
    head = tr(" (head %1, channel %2)").arg(channel / hd).arg(channel % hd);
  }
  return tr("channel %1%2\nmax %3\nmin %4\ncluster %5")
      .arg(channel)
      .arg(head, compact_number(s_->max[i], 5), compact_number(s_->min[i], 5))
      .arg(s_->labels[i]);
}

void ScatterChart::set_hover(int channel, const QPoint& global_pos) {
  if (channel == hovered_) return;
  hovered_ = channel;
  if (channel < 0) {
    highlight_->clear();
    cloud_->set_highlight(-1);
    QToolTip::hideText();
  } else {
    const auto i = static_cast<std::size_t>(channel);
    if (uses_point_cloud())
      cloud_->set_highlight(channel);
    else
      highlight_->replace({QPointF(s_->max[i], s_->min[i])});
    QToolTip::showText(global_pos, describe_channel(channel), this);
  }
  Q_EMIT channel_hovered(channel);
}

void ScatterChart::paintEvent(QPaintEvent* e) {
  ChartView::paintEvent(e);
  Q_EMIT painted();
}

void ScatterChart::mouseMoveEvent(QMouseEvent* e) {
  ChartView::mouseMoveEvent(e);
  if (e->buttons() == Qt::NoButton) set_hover(channel_at(e->pos()), e->globalPosition().toPoint());
}

void ScatterChart::leaveEvent(QEvent* e) {
  set_hover(-1, {});
  ChartView::leaveEvent(e);
}

}  // namespace rptq::ui
