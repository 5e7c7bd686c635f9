#pragma once
// A sweep's three curves side by side: perplexity (with the FP model's as a dashed line), KL (nats per predicted
// position) and top-1 agreement (%), each against the swept value, one marker per measured point. Cluster counts
// go on a log2 axis (1, 2, 4, ... 64 evenly spaced), bits on a linear one. Points are added as they finish.
#include <QList>
#include <QPointF>
#include <QString>
#include <QWidget>

#include <array>

class QChart;
class QLineSeries;
class QScatterSeries;
class QAbstractAxis;

namespace rptq::ui {

class ChartView;

class SweepChart : public QWidget {
  Q_OBJECT
 public:
  enum Metric { Ppl, Kl, Top1, MetricCount };

  explicit SweepChart(QWidget* parent = nullptr);

  // Starts empty charts for an axis: `label` names the x axis, log2 for cluster counts; `ppl_fp` < 0 draws no FP
  // line (not known yet).
  void reset(const QString& label, bool log2_x);
  void set_fp_ppl(double ppl_fp);
  // One measured point: x the swept value, ppl the quantized perplexity, kl in nats, top1 a share 0..1 (shown as %).
  void add_point(int x, double ppl, double kl, double top1);
  void clear_points();

  // The points a metric's curve holds (x, the shown y: top-1 in %), in the order added.
  QList<QPointF> points(Metric m) const;
  double fp_ppl() const { return fp_ppl_; }
  ChartView* view(Metric m) const { return views_[static_cast<std::size_t>(m)]; }

 private:
  void fit_axes();

  struct Curve {
    QChart* chart = nullptr;
    QLineSeries* line = nullptr;
    QScatterSeries* marks = nullptr;
    QAbstractAxis* x = nullptr;
    QAbstractAxis* y = nullptr;
  };
  std::array<Curve, MetricCount> curves_{};
  std::array<ChartView*, MetricCount> views_{};
  QLineSeries* fp_line_ = nullptr;
  double fp_ppl_ = -1;
  bool log2_x_ = true;
  QString label_;
};

}  // namespace rptq::ui
