#include "explore/range_order_chart.h"

#include <QChart>
#include <QLegend>
#include <QLineSeries>
#include <QPolygonF>
#include <QVBoxLayout>
#include <QValueAxis>

#include <algorithm>
#include <cmath>

#include "common/chart_view.h"
#include "common/cluster_palette.h"
#include "explore/range_band_item.h"

namespace rptq::ui {

namespace {
// Up to this many channels each is drawn as a flat step of width 1; beyond, positions are bucketed (each bucket's
// widest range: the envelope a plot this wide can show anyway), so tens of thousands of channels draw quickly.
constexpr std::int64_t kDetailedChannels = 2048;

// The band [lo, hi] over positions [first, last) of the channel sequence `ch` (channel at each position, or the
// identity), in buckets of `bucket` positions: each bucket a flat step at its widest range.
QPolygonF band_outline(const ClusterSnapshot& s, const std::vector<std::int32_t>* ch, std::int64_t first,
                       std::int64_t last, std::int64_t bucket) {
  const std::int64_t n = (last - first + bucket - 1) / bucket;
  QPolygonF up, lo;
  up.reserve(2 * n);
  lo.reserve(2 * n);
  for (std::int64_t b0 = first; b0 < last; b0 += bucket) {
    const std::int64_t b1 = std::min(last, b0 + bucket);
    float hi = -INFINITY, low = INFINITY;
    for (std::int64_t p = b0; p < b1; ++p) {
      const auto k = static_cast<std::size_t>(ch ? (*ch)[static_cast<std::size_t>(p)] : p);
      hi = std::max(hi, s.max[k]);
      low = std::min(low, s.min[k]);
    }
    up << QPointF(b0, hi) << QPointF(b1, hi);
    lo << QPointF(b0, low) << QPointF(b1, low);
  }
  std::reverse(lo.begin(), lo.end());
  return up << lo;
}

}  // namespace

RangeOrderChart::Pane::Pane(const QString& title) {
  auto* c = new QChart;
  c->setTitle(title);
  c->legend()->hide();
  c->setMargins(QMargins(4, 2, 4, 2));
  QFont f = c->titleFont();
  f.setPointSizeF(f.pointSizeF() * 0.95);
  c->setTitleFont(f);
  x = new QValueAxis;
  y = new QValueAxis;
  x->setLabelFormat(QStringLiteral("%d"));
  y->setLabelFormat(QStringLiteral("%.3g"));
  y->setTitleText(QStringLiteral("range"));
  c->addAxis(x, Qt::AlignBottom);
  c->addAxis(y, Qt::AlignLeft);
  // An empty series on the axes: Qt Charts zooms and pans through the domains of attached series.
  auto* anchor = new QLineSeries;
  c->addSeries(anchor);
  anchor->attachAxis(x);
  anchor->attachAxis(y);
  bands = new RangeBandItem(c, x, y);
  view = new ChartView(c);
}

void RangeOrderChart::Pane::set_axes(const ClusterSnapshot& s, const QString& xtitle) {
  view->chart()->zoomReset();
  x->setTitleText(xtitle);
  x->setRange(0, static_cast<double>(std::max<std::int64_t>(1, s.channels())));
  const double lo = s.tensor_min, hi = s.tensor_max;
  const double m = std::max(1e-3, (hi - lo) * 0.05);
  y->setRange(lo - m, hi + m);
  y->setTickCount(5);
  y->applyNiceNumbers();
}

RangeOrderChart::RangeOrderChart(QWidget* parent)
    : QWidget(parent),
      original_(tr("Channel ranges in the original order")),
      reordered_(tr("Channel ranges reordered by cluster (RPTQ)")) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(2);
  original_.view->set_export_name(QStringLiteral("ranges-original-order"));
  reordered_.view->set_export_name(QStringLiteral("ranges-reordered"));
  original_.view->setObjectName(QStringLiteral("rangesOriginal"));
  reordered_.view->setObjectName(QStringLiteral("rangesReordered"));
  original_.view->setMinimumHeight(150);
  reordered_.view->setMinimumHeight(150);
  layout->addWidget(original_.view);
  layout->addWidget(reordered_.view);
  clear();
}

void RangeOrderChart::clear() {
  original_.bands->clear();
  reordered_.bands->clear();
  for (Pane* p : {&original_, &reordered_}) {
    p->view->chart()->zoomReset();
    p->x->setRange(0, 1);
    p->y->setRange(-1, 1);
  }
  s_.reset();
  runs_ = 0;
}

void RangeOrderChart::set_snapshot(std::shared_ptr<const ClusterSnapshot> sp) {
  if (!sp || sp->channels() == 0) return clear();
  const ClusterSnapshot& s = *sp;
  // Only the clustering changed (same statistics, layer, index and statistic): the original order, the axes and
  // the zoom stay; only the reordered bands are redrawn.
  const bool same_data = s_ && s_->request.stats == s.request.stats && s_->request.layer == s.request.layer &&
                         s_->request.index == s.request.index && s_->request.stat == s.request.stat &&
                         s_->channels() == s.channels();
  s_ = sp;
  const std::int64_t bucket = std::max<std::int64_t>(1, (s.channels() + kDetailedChannels - 1) / kDetailedChannels);
  if (!same_data) {
    original_.set_axes(s, tr("channel"));
    reordered_.set_axes(s, s.per_head ? tr("position (reordered within each head)") : tr("position"));
    original_.bands->set_bands({{QColor(0x6b, 0x7f, 0x99), band_outline(s, nullptr, 0, s.channels(), bucket)}});
  }
  // One band per run of positions whose channels share a cluster (per head for R2/R3: a cluster per head).
  std::vector<RangeBandItem::Band> runs;
  std::int64_t start = 0;
  const auto label_at = [&](std::int64_t p) {
    return s.labels[static_cast<std::size_t>(s.order[static_cast<std::size_t>(p)])];
  };
  for (std::int64_t p = 1; p <= s.channels(); ++p) {
    if (p < s.channels() && label_at(p) == label_at(start)) continue;
    runs.push_back({cluster_color(label_at(start)), band_outline(s, &s.order, start, p, bucket)});
    start = p;
  }
  runs_ = static_cast<int>(runs.size());
  reordered_.bands->set_bands(std::move(runs));
}

}  // namespace rptq::ui
