#include "calibration/layer_progress_model.h"

#include "common/format.h"

namespace rptq::ui {

void LayerProgressModel::reset(int layers) {
  beginResetModel();
  rows_.assign(static_cast<std::size_t>(std::max(0, layers)), Row{});
  stopped_ = false;
  endResetModel();
}

void LayerProgressModel::update(const rptq::LayerwiseProgress& lp, double seconds) {
  if (lp.layers != static_cast<int>(rows_.size())) reset(lp.layers);
  if (rows_.empty()) return;
  int first = -1, last = -1;
  auto touch = [&](int i) {
    if (first < 0) first = i;
    last = i;
  };
  for (int i = 0; i < static_cast<int>(rows_.size()); ++i) {
    Row& r = rows_[static_cast<std::size_t>(i)];
    double f = i < lp.layer ? 1.0 : i == lp.layer ? (lp.samples ? double(lp.sample) / double(lp.samples) : 0.0) : 0.0;
    if (f == r.fraction) continue;
    if (r.started < 0 && f > 0) r.started = seconds;
    if (f >= 1.0 && r.finished < 0) r.finished = seconds;
    r.fraction = f;
    touch(i);
  }
  if (first >= 0) Q_EMIT dataChanged(index(first, 0), index(last, Columns - 1));
}

void LayerProgressModel::mark_all_done(double seconds) {
  for (Row& r : rows_) {
    if (r.fraction < 1.0) {
      r.fraction = 1.0;
      if (r.finished < 0) r.finished = seconds;
    }
  }
  if (!rows_.empty()) Q_EMIT dataChanged(index(0, 0), index(rowCount() - 1, Columns - 1));
}

void LayerProgressModel::mark_stopped() {
  stopped_ = true;
  if (!rows_.empty()) Q_EMIT dataChanged(index(0, Time), index(rowCount() - 1, Time));
}

int LayerProgressModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(rows_.size());
}
int LayerProgressModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : Columns; }

QVariant LayerProgressModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= rowCount()) return {};
  const Row& r = rows_[static_cast<std::size_t>(index.row())];
  if (index.column() == Progress && role == kFractionRole) return r.fraction;
  if (role == Qt::TextAlignmentRole)
    return index.column() == Time ? QVariant(Qt::AlignRight | Qt::AlignVCenter) : QVariant(Qt::AlignCenter);
  if (role != Qt::DisplayRole) return {};
  switch (index.column()) {
    case Layer: return index.row();
    case Progress: return QStringLiteral("%1%").arg(qRound(r.fraction * 100));
    case Time:
      if (r.started < 0) return QString();
      if (r.finished >= 0) return human_seconds(r.finished - r.started);
      return stopped_ ? tr("stopped") : QStringLiteral("\u2026");
  }
  return {};
}

QVariant LayerProgressModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case Layer: return tr("Layer");
    case Progress: return tr("Progress");
    case Time: return tr("Time");
  }
  return {};
}

}  // namespace rptq::ui
