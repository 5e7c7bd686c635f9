#include "explore/range_order_chart.h"

#include <QAreaSeries>
#include <QChart>
#include <QLegend>
#include <QLineSeries>
#include <QPen>
#include <QVBoxLayout>
#include <QValueAxis>

#include <algorithm>
#include <cmath>

#include "common/chart_view.h"
#include "common/cluster_palette.h"

namespace rptq::ui {

namespace {
// Up to this many channels each is drawn as a flat step of width 1; beyond, positions are bucketed (each bucket's
// widest range: the envelope a plot this wide can show anyway), so tens of thousands of channels draw quickly.
constexpr std::int64_t kDetailedChannels = 2048;

QChart* make_chart(const QString& title) {
  auto* c = new QChart;
  c->setTitle(title);
  c->legend()->hide();
  c->setMargins(QMargins(4, 2, 4, 2));
  QFont f = c->titleFont();
  f.setPointSizeF(f.pointSizeF() * 0.95);
  c->setTitleFont(f);
  return c;
}

void clear_chart(QChart* c) {
  c->removeAllSeries();
  for (QAbstractAxis* a : c->axes()) {
    c->removeAxis(a);
    delete a;
  }
}

// Adds the band [lo, hi] over positions [first, last) of the channel sequence `ch` (channel at each position, or
// the identity), in buckets of `bucket` positions.
void add_band(QChart* c, QValueAxis* x, QValueAxis* y, const ClusterSnapshot& s, const std::vector<std::int32_t>* ch,
              std::int64_t first, std::int64_t last, std::int64_t bucket, const QColor& color) {
  auto* upper = new QLineSeries;
  auto* lower = new QLineSeries;
  QList<QPointF> up, lo;
  const std::int64_t n = (last - first + bucket - 1) / bucket;
  up.reserve(2 * n);
  lo.reserve(2 * n);
  for (std::int64_t b0 = first; b0 < last; b0 += bucket) {
    const std::int64_t b1 = std::min(last, b0 + bucket);
    double hi = -INFINITY, low = INFINITY;
    for (std::int64_t p = b0; p < b1; ++p) {
      const auto k = static_cast<std::size_t>(ch ? (*ch)[static_cast<std::size_t>(p)] : p);
      hi = std::max<double>(hi, s.max[k]);
      low = std::min<double>(low, s.min[k]);
    }
    up << QPointF(b0, hi) << QPointF(b1, hi);
    lo << QPointF(b0, low) << QPointF(b1, low);
  }
  upper->replace(up);
  lower->replace(lo);
  auto* area = new QAreaSeries(upper, lower);
  area->setColor(color);
  QPen pen(color.darker(125));
  pen.setWidthF(0.6);
  area->setPen(pen);
  c->addSeries(area);
  area->attachAxis(x);
  area->attachAxis(y);
}

std::pair<QValueAxis*, QValueAxis*> add_axes(QChart* c, const ClusterSnapshot& s, const QString& xtitle) {
  auto* x = new QValueAxis;
  auto* y = new QValueAxis;
  x->setTitleText(xtitle);
  x->setLabelFormat(QStringLiteral("%d"));
  y->setLabelFormat(QStringLiteral("%.3g"));
  y->setTitleText(QStringLiteral("range"));
  c->addAxis(x, Qt::AlignBottom);
  c->addAxis(y, Qt::AlignLeft);
  x->setRange(0, static_cast<double>(std::max<std::int64_t>(1, s.channels())));
  double lo = s.tensor_min, hi = s.tensor_max;
  const double m = std::max(1e-3, (hi - lo) * 0.05);
  y->setRange(lo - m, hi + m);
  y->setTickCount(5);
  y->applyNiceNumbers();
  return {x, y};
}
}  // namespace

RangeOrderChart::RangeOrderChart(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(2);
  original_ = new ChartView(make_chart(tr("Channel ranges in the original order")));
  reordered_ = new ChartView(make_chart(tr("Channel ranges reordered by cluster (RPTQ)")));
  original_->set_export_name(QStringLiteral("ranges-original-order"));
  reordered_->set_export_name(QStringLiteral("ranges-reordered"));
  original_->setObjectName(QStringLiteral("rangesOriginal"));
  reordered_->setObjectName(QStringLiteral("rangesReordered"));
  original_->setMinimumHeight(150);
  reordered_->setMinimumHeight(150);
  layout->addWidget(original_);
  layout->addWidget(reordered_);
}

void RangeOrderChart::clear() {
  clear_chart(original_->chart());
  clear_chart(reordered_->chart());
  runs_ = 0;
}

void RangeOrderChart::set_snapshot(std::shared_ptr<const ClusterSnapshot> sp) {
  clear();
  if (!sp || sp->channels() == 0) return;
  const ClusterSnapshot& s = *sp;
  const std::int64_t bucket = std::max<std::int64_t>(1, (s.channels() + kDetailedChannels - 1) / kDetailedChannels);
  {
    QChart* c = original_->chart();
    c->zoomReset();
    auto [x, y] = add_axes(c, s, tr("channel"));
    add_band(c, x, y, s, nullptr, 0, s.channels(), bucket, QColor(0x6b, 0x7f, 0x99));
  }
  {
    QChart* c = reordered_->chart();
    c->zoomReset();
    auto [x, y] = add_axes(c, s, s.per_head ? tr("position (reordered within each head)") : tr("position"));
    // One band per run of positions whose channels share a cluster (per head for R2/R3: a cluster per head).
    std::int64_t start = 0;
    const auto label_at = [&](std::int64_t p) {
      return s.labels[static_cast<std::size_t>(s.order[static_cast<std::size_t>(p)])];
    };
    for (std::int64_t p = 1; p <= s.channels(); ++p) {
      if (p < s.channels() && label_at(p) == label_at(start)) continue;
      add_band(c, x, y, s, &s.order, start, p, bucket, cluster_color(label_at(start)));
      ++runs_;
      start = p;
    }
  }
}

}  // namespace rptq::ui
