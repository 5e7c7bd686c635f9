#include "sensitivity/sensitivity_model.h"

#include <QColor>
#include <QFont>

#include <algorithm>
#include <cmath>

#include "common/format.h"

namespace rptq::ui {

namespace {

// White (nothing) through amber to red (the scale's top), on log10(value) over three decades below the top.
QColor heat(double v, double top) {
  if (!(v > 0) || !(top > 0)) return QColor(0xff, 0xff, 0xff);
  if (!std::isfinite(v)) return QColor(0xd7, 0x30, 0x1f);
  constexpr double kDecades = 3;
  const double t = std::clamp(1.0 + std::log10(v / top) / kDecades, 0.0, 1.0);
  const QColor lo(0xff, 0xff, 0xff), mid(0xfd, 0xd4, 0x9e), hi(0xd7, 0x30, 0x1f);
  auto mix = [](const QColor& a, const QColor& b, double f) {
    return QColor::fromRgbF(static_cast<float>(a.redF() + (b.redF() - a.redF()) * f),
                            static_cast<float>(a.greenF() + (b.greenF() - a.greenF()) * f),
                            static_cast<float>(a.blueF() + (b.blueF() - a.blueF()) * f));
  };
  return t < 0.5 ? mix(lo, mid, t * 2) : mix(mid, hi, (t - 0.5) * 2);
}

bool dark(double v, double top) { return v > 0 && top > 0 && (!std::isfinite(v) || v / top > 0.3); }

}  // namespace

double SensitivityModel::value_of(const rptq::SensitivityCell& c, double ppl_fp, Metric m) {
  switch (m) {
    case Kl: return c.kl;
    case PplIncrease: return c.ppl - ppl_fp;
    case Top1Changed: return 1.0 - c.top1_agreement;
  }
  return 0;
}

double SensitivityModel::value_of_sum(const rptq::SensitivityCell& s, Metric m) {
  switch (m) {
    case Kl: return s.kl;
    case PplIncrease: return s.ppl;
    case Top1Changed: return s.top1_agreement;
  }
  return 0;
}

QString SensitivityModel::format(double v, Metric m) {
  if (std::isnan(v)) return QStringLiteral("\u2014");
  switch (m) {
    case Kl: return v != 0 && std::abs(v) < 1e-3 ? QString::number(v, 'e', 1) : QString::number(v, 'f', 4);
    case PplIncrease:
      return (v >= 0 ? QStringLiteral("+") : QString()) +
             (v != 0 && std::abs(v) < 1e-3 ? QString::number(v, 'e', 1) : QString::number(v, 'f', 3));
    case Top1Changed: return QStringLiteral("%1%").arg(100.0 * v, 0, 'f', 2);
  }
  return {};
}

QString SensitivityModel::metric_name(Metric m) {
  switch (m) {
    case Kl: return tr("KL(FP \u2016 probe), nats/token");
    case PplIncrease: return tr("perplexity increase over FP");
    case Top1Changed: return tr("top-1 changed");
  }
  return {};
}

void SensitivityModel::set_result(std::shared_ptr<const rptq::SensitivityResult> r) {
  beginResetModel();
  r_ = std::move(r);
  update_scales();
  endResetModel();
}

void SensitivityModel::set_metric(Metric m) {
  if (m == metric_) return;
  metric_ = m;
  update_scales();
  if (rowCount() > 0 && columnCount() > 0) Q_EMIT dataChanged(index(0, 0), index(rowCount() - 1, columnCount() - 1));
  Q_EMIT headerDataChanged(Qt::Horizontal, 0, std::max(0, columnCount() - 1));
}

void SensitivityModel::update_scales() {
  max_cell_ = max_layer_ = max_tap_ = 0;
  if (!r_) return;
  auto top = [](double& m, double v) {
    if (std::isfinite(v)) m = std::max(m, v);
  };
  for (int l = 0; l < r_->layers; ++l) {
    for (std::size_t t = 0; t < r_->taps.size(); ++t) top(max_cell_, value_of(r_->cell(l, t), r_->ppl_fp, metric_));
    top(max_layer_, value_of_sum(r_->layer_sum(l), metric_));
  }
  for (std::size_t t = 0; t < r_->taps.size(); ++t) top(max_tap_, value_of_sum(r_->tap_sum(t), metric_));
}

QString SensitivityModel::tap_of_column(int column) const {
  if (!r_ || column < 0 || column >= static_cast<int>(r_->taps.size())) return {};
  return QString::fromStdString(r_->taps[static_cast<std::size_t>(column)]);
}

int SensitivityModel::reorder_index_of_column(int column) const {
  const QString name = tap_of_column(column);
  for (rptq::Tap t : rptq::kAllTaps)
    if (name == QLatin1String(rptq::tap_name(t))) return rptq::tap_reorder_index(t);
  return 0;
}

int SensitivityModel::rowCount(const QModelIndex& parent) const { return parent.isValid() || !r_ ? 0 : r_->layers + 1; }

int SensitivityModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() || !r_ ? 0 : static_cast<int>(r_->taps.size()) + 1;
}

double SensitivityModel::value(int row, int column) const {
  const bool total_row = is_total_row(row), total_col = is_total_column(column);
  if (total_row && total_col) {
    double s = 0;
    for (int l = 0; l < r_->layers; ++l) s += value_of_sum(r_->layer_sum(l), metric_);
    return s;
  }
  if (total_col) return value_of_sum(r_->layer_sum(row), metric_);
  if (total_row) return value_of_sum(r_->tap_sum(static_cast<std::size_t>(column)), metric_);
  return value_of(r_->cell(row, static_cast<std::size_t>(column)), r_->ppl_fp, metric_);
}

QVariant SensitivityModel::data(const QModelIndex& index, int role) const {
  if (!r_ || !index.isValid() || index.row() >= rowCount() || index.column() >= columnCount()) return {};
  const int row = index.row(), col = index.column();
  const bool total_row = is_total_row(row), total_col = is_total_column(col);
  const bool probe = !total_row && !total_col;
  const double v = value(row, col);
  const double top = probe ? max_cell_ : total_col && !total_row ? max_layer_ : total_row && !total_col ? max_tap_ : 0;
  switch (role) {
    case Qt::DisplayRole: return format(v, metric_);
    case Qt::TextAlignmentRole: return QVariant(Qt::AlignCenter);
    case Qt::BackgroundRole:
      if (total_row && total_col) return QColor(0xee, 0xee, 0xee);
      return heat(v, top);
    case Qt::ForegroundRole: return dark(v, top) ? QColor(Qt::white) : QColor(Qt::black);
    case Qt::FontRole: {
      if (probe) return {};
      QFont f;
      f.setBold(true);
      return f;
    }
    case ValueRole: return v;
    case KlRole:
    case PplRole:
    case Top1AgreementRole: {
      if (!probe) return {};
      const rptq::SensitivityCell& c = r_->cell(row, static_cast<std::size_t>(col));
      return role == KlRole ? c.kl : role == PplRole ? c.ppl : c.top1_agreement;
    }
    case Qt::ToolTipRole: {
      if (total_row && total_col)
        return tr("All probes: %1 (a sum of probes each alone, for ranking; not the loss "
                  "of the whole setting)")
            .arg(format(v, metric_));
      if (total_row || total_col) {
        const rptq::SensitivityCell s = total_col ? r_->layer_sum(row) : r_->tap_sum(static_cast<std::size_t>(col));
        const QString what =
            total_col ? tr("Layer %1, all its probes").arg(row) : tr("%1, all layers").arg(tap_of_column(col));
        return tr("%1 (each alone, summed)\nKL %2 nats/token\nperplexity increase %3\ntop-1 changed %4")
            .arg(what, format(s.kl, Kl), format(s.ppl, PplIncrease), format(s.top1_agreement, Top1Changed));
      }
      const rptq::SensitivityCell& c = r_->cell(row, static_cast<std::size_t>(col));
      const int ri = reorder_index_of_column(col);
      return tr("Layer %1, %2%3 quantized alone\nKL %4 nats/token\nperplexity %5 (%6 over FP %7)\ntop-1 "
                "agreement %8 (%9 changed)%10")
          .arg(row)
          .arg(tap_of_column(col), ri > 0 ? tr(" (R%1)").arg(ri) : QString())
          .arg(format(c.kl, Kl), QString::number(c.ppl, 'f', 4), format(c.ppl - r_->ppl_fp, PplIncrease),
               QString::number(r_->ppl_fp, 'f', 4))
          .arg(QStringLiteral("%1%").arg(100.0 * c.top1_agreement, 0, 'f', 2),
               format(1.0 - c.top1_agreement, Top1Changed),
               ri > 0 ? tr("\nDouble-click to explore layer %1's R%2 clusters").arg(row).arg(ri) : QString());
    }
  }
  return {};
}

QVariant SensitivityModel::headerData(int section, Qt::Orientation o, int role) const {
  if (!r_ || (role != Qt::DisplayRole && role != Qt::ToolTipRole && role != Qt::FontRole)) return {};
  const bool total = o == Qt::Vertical ? is_total_row(section) : is_total_column(section);
  if (role == Qt::FontRole) {
    if (!total) return {};
    QFont f;
    f.setBold(true);
    return f;
  }
  if (o == Qt::Vertical) {
    if (role == Qt::ToolTipRole) return total ? QVariant(tr("Each tap's probes summed over the layers")) : QVariant();
    return total ? tr("total") : tr("layer %1").arg(section);
  }
  if (total) return role == Qt::DisplayRole ? tr("total") : tr("Each layer's probes summed over the taps");
  const QString name = tap_of_column(section);
  const int ri = reorder_index_of_column(section);
  if (role == Qt::ToolTipRole)
    return ri > 0 ? tr("%1: quantized with the R%2 clusters").arg(name).arg(ri)
                  : tr("softmax: the attention probabilities (QuantConfig::softmax_bits, one setting for all layers)");
  return ri > 0 ? QStringLiteral("R%1\n%2").arg(ri).arg(name) : QStringLiteral("\n%1").arg(name);
}

}  // namespace rptq::ui
