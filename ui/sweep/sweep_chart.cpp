#include "sweep/sweep_chart.h"

#include <QChart>
#include <QHBoxLayout>
#include <QLineSeries>
#include <QLogValueAxis>
#include <QPen>
#include <QScatterSeries>
#include <QValueAxis>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/chart_view.h"

namespace rptq::ui {

namespace {
const QColor kColours[SweepChart::MetricCount] = {QColor(0x5b, 0x8d, 0xd6), QColor(0xd0, 0x5a, 0x3c),
                                                  QColor(0x4c, 0x9a, 0x5a)};
}  // namespace

SweepChart::SweepChart(QWidget* parent) : QWidget(parent) {
  auto* row = new QHBoxLayout(this);
  row->setContentsMargins(0, 0, 0, 0);
  const QString titles[MetricCount] = {tr("Perplexity"), tr("KL (nats / token)"), tr("Top-1 agreement (%)")};
  const QString names[MetricCount] = {QStringLiteral("sweepPplChart"), QStringLiteral("sweepKlChart"),
                                      QStringLiteral("sweepTop1Chart")};
  for (int m = 0; m < MetricCount; ++m) {
    Curve& c = curves_[static_cast<std::size_t>(m)];
    c.chart = new QChart;
    c.chart->setTitle(titles[m]);
    c.chart->setMargins(QMargins(2, 2, 2, 2));
    c.line = new QLineSeries;
    c.line->setPen(QPen(kColours[m], 2));
    c.marks = new QScatterSeries;
    c.marks->setColor(kColours[m]);
    c.marks->setBorderColor(kColours[m]);
    c.marks->setMarkerSize(8);
    c.chart->addSeries(c.line);
    c.chart->addSeries(c.marks);
    auto* y = new QValueAxis;
    y->setLabelFormat(m == Kl ? QStringLiteral("%.3g") : QStringLiteral("%.4g"));
    c.chart->addAxis(y, Qt::AlignLeft);
    c.line->attachAxis(y);
    c.marks->attachAxis(y);
    c.y = y;
    if (m == Ppl) {
      fp_line_ = new QLineSeries;
      fp_line_->setName(tr("FP"));
      QPen pen(QColor(0x60, 0x60, 0x60), 1.5, Qt::DashLine);
      fp_line_->setPen(pen);
      c.chart->addSeries(fp_line_);
      fp_line_->attachAxis(y);
    }
    c.chart->legend()->hide();
    auto* v = new ChartView(c.chart);
    v->setObjectName(names[m]);
    v->set_export_name(names[m]);
    v->setMinimumSize(220, 200);
    views_[static_cast<std::size_t>(m)] = v;
    row->addWidget(v, 1);
  }
  reset(tr("clusters"), true);
}

void SweepChart::reset(const QString& label, bool log2_x) {
  label_ = label;
  log2_x_ = log2_x;
  for (int m = 0; m < MetricCount; ++m) {
    Curve& c = curves_[static_cast<std::size_t>(m)];
    if (c.x) {
      c.chart->removeAxis(c.x);
      delete c.x;
    }
    QAbstractAxis* x = nullptr;
    if (log2_x) {
      auto* a = new QLogValueAxis;
      a->setBase(2.0);
      a->setLabelFormat(QStringLiteral("%g"));
      a->setMinorTickCount(0);
      x = a;
    } else {
      auto* a = new QValueAxis;
      a->setLabelFormat(QStringLiteral("%d"));
      x = a;
    }
    x->setTitleText(label);
    c.chart->addAxis(x, Qt::AlignBottom);
    c.line->attachAxis(x);
    c.marks->attachAxis(x);
    if (m == Ppl) fp_line_->attachAxis(x);
    c.x = x;
  }
  clear_points();
}

void SweepChart::set_fp_ppl(double ppl_fp) {
  fp_ppl_ = ppl_fp;
  fit_axes();
}

void SweepChart::clear_points() {
  for (Curve& c : curves_) {
    c.line->clear();
    c.marks->clear();
  }
  fp_ppl_ = -1;
  fit_axes();
}

void SweepChart::add_point(int x, double ppl, double kl, double top1) {
  const double ys[MetricCount] = {ppl, kl, 100.0 * top1};
  for (int m = 0; m < MetricCount; ++m) {
    Curve& c = curves_[static_cast<std::size_t>(m)];
    c.line->append(x, ys[m]);
    c.marks->append(x, ys[m]);
  }
  fit_axes();
}

QList<QPointF> SweepChart::points(Metric m) const { return curves_[static_cast<std::size_t>(m)].marks->points(); }

void SweepChart::fit_axes() {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0;
  for (const QPointF& p : curves_[0].marks->points()) {
    x0 = std::min(x0, p.x());
    x1 = std::max(x1, p.x());
  }
  if (!std::isfinite(x0)) x0 = x1 = log2_x_ ? 1 : 2;
  // Room beside the outer points: a factor of 2^0.25 on the log axis, half a bit on the linear one.
  const double lo = log2_x_ ? x0 / std::pow(2.0, 0.25) : x0 - 0.5, hi = log2_x_ ? x1 * std::pow(2.0, 0.25) : x1 + 0.5;
  for (int m = 0; m < MetricCount; ++m) {
    Curve& c = curves_[static_cast<std::size_t>(m)];
    c.x->setRange(lo, hi);
    if (!log2_x_) {
      auto* a = static_cast<QValueAxis*>(c.x);
      a->setTickType(QValueAxis::TicksDynamic);
      a->setTickAnchor(0);
      a->setTickInterval(x1 - x0 > 8 ? 2 : 1);
    }
    double y0 = std::numeric_limits<double>::infinity(), y1 = -y0;
    for (const QPointF& p : c.marks->points())
      if (std::isfinite(p.y())) {
        y0 = std::min(y0, p.y());
        y1 = std::max(y1, p.y());
      }
    if (m == Ppl && fp_ppl_ > 0) {
      y0 = std::min(y0, fp_ppl_);
      y1 = std::max(y1, fp_ppl_);
    }
    if (!std::isfinite(y0)) {
      y0 = 0;
      y1 = 1;
    }
    const double pad = y1 > y0 ? 0.06 * (y1 - y0) : std::max(1e-6, 0.05 * std::abs(y1));
    double lo_y = y0 - pad, hi_y = y1 + pad;
    if (m != Ppl && y0 >= 0) lo_y = std::max(0.0, lo_y);  // KL and agreement are never negative
    if (m == Top1) hi_y = std::min(100.0, hi_y) > y1 ? std::min(100.0, hi_y) : hi_y;
    c.y->setRange(lo_y, hi_y);
    static_cast<QValueAxis*>(c.y)->applyNiceNumbers();  // round tick labels
  }
  fp_line_->clear();
  if (fp_ppl_ > 0) {
    fp_line_->append(lo, fp_ppl_);
    fp_line_->append(hi, fp_ppl_);
  }
}

}  // namespace rptq::ui
