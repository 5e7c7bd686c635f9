#include "explore/tap_overview_model.h"

#include <QColor>

#include <cmath>

#include "common/format.h"

namespace rptq::ui {

void TapOverviewModel::set_overview(TapOverview overview) {
  beginResetModel();
  o_ = std::move(overview);
  max_log_ratio_ = 1e-9;
  for (const auto& layer : o_.layers)
    for (const TapWidth& w : layer)
      if (w.ratio() > 1) max_log_ratio_ = std::max(max_log_ratio_, std::log10(w.ratio()));
  endResetModel();
}

void TapOverviewModel::clear() { set_overview({}); }

int TapOverviewModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(o_.layers.size());
}
int TapOverviewModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() || o_.layers.empty() ? 0 : rptq::kTapCount;
}

QVariant TapOverviewModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= rowCount() || index.column() >= columnCount()) return {};
  const TapWidth& w = o_.layers[static_cast<std::size_t>(index.row())][static_cast<std::size_t>(index.column())];
  switch (role) {
    case Qt::DisplayRole: return compact_number(w.widest, 3);
    case Qt::TextAlignmentRole: return QVariant(Qt::AlignCenter);
    case Qt::BackgroundRole: {
      // White (ratio 1) through amber to red (the table's widest outlier ratio).
      const double t = w.ratio() > 1 ? std::clamp(std::log10(w.ratio()) / max_log_ratio_, 0.0, 1.0) : 0.0;
      const QColor lo(0xff, 0xff, 0xff), mid(0xfd, 0xd4, 0x9e), hi(0xd7, 0x30, 0x1f);
      auto mix = [](const QColor& a, const QColor& b, double f) {
        return QColor::fromRgbF(static_cast<float>(a.redF() + (b.redF() - a.redF()) * f),
                                static_cast<float>(a.greenF() + (b.greenF() - a.greenF()) * f),
                                static_cast<float>(a.blueF() + (b.blueF() - a.blueF()) * f));
      };
      return t < 0.5 ? mix(lo, mid, t * 2) : mix(mid, hi, (t - 0.5) * 2);
    }
    case Qt::ForegroundRole: {
      const double t = w.ratio() > 1 ? std::log10(w.ratio()) / max_log_ratio_ : 0.0;
      return t > 0.75 ? QColor(Qt::white) : QColor(Qt::black);
    }
    case Qt::ToolTipRole:
      return tr("Layer %1, %2 (%3 channels, R%4)\nwidest channel %5: [%6, %7], width %8\nmedian width %9: "
                "the widest is %10\u00d7 the median")
          .arg(index.row())
          .arg(QString::fromLatin1(rptq::tap_name(tap_of_column(index.column()))))
          .arg(w.channels)
          .arg(rptq::tap_reorder_index(tap_of_column(index.column())))
          .arg(w.widest_channel)
          .arg(compact_number(w.widest_min), compact_number(w.widest_max), compact_number(w.widest),
               compact_number(w.median))
          .arg(compact_number(w.ratio(), 3));
    case Qt::UserRole: return w.ratio();
  }
  return {};
}

QVariant TapOverviewModel::headerData(int section, Qt::Orientation o, int role) const {
  if (role != Qt::DisplayRole && role != Qt::ToolTipRole) return {};
  if (o == Qt::Vertical) return role == Qt::DisplayRole ? tr("layer %1").arg(section) : QVariant();
  if (section < 0 || section >= rptq::kTapCount) return {};
  const rptq::Tap t = tap_of_column(section);
  if (role == Qt::ToolTipRole)
    return tr("%1: quantized with the R%2 clusters").arg(QString::fromLatin1(rptq::tap_name(t))).arg(rptq::tap_reorder_index(t));
  static const char* short_names[rptq::kTapCount] = {"attn in", "q", "k", "v", "attn out", "ffn in", "ffn hid"};
  return QStringLiteral("R%1\n%2").arg(rptq::tap_reorder_index(t)).arg(QLatin1String(short_names[section]));
}

}  // namespace rptq::ui
