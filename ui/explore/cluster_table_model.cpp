#include "explore/cluster_table_model.h"

#include "common/cluster_palette.h"
#include "common/format.h"

namespace rptq::ui {

void ClusterTableModel::set_snapshot(std::shared_ptr<const ClusterSnapshot> s) {
  beginResetModel();
  s_ = std::move(s);
  endResetModel();
}

int ClusterTableModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() || !s_ ? 0 : static_cast<int>(s_->quantizers.size());
}
int ClusterTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : Columns; }

QVariant ClusterTableModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= rowCount()) return {};
  const ClusterQuantizer& q = s_->quantizers[static_cast<std::size_t>(index.row())];
  if (role == Qt::DecorationRole && index.column() == Cluster) return cluster_color(q.cluster);
  if (role == Qt::TextAlignmentRole)
    return index.column() == Cluster ? QVariant(Qt::AlignLeft | Qt::AlignVCenter)
                                     : QVariant(Qt::AlignRight | Qt::AlignVCenter);
  if (role == Qt::ToolTipRole && index.column() == Finer)
    return tr("One %1-bit quantizer over the whole tensor [%2, %3] has step %4")
        .arg(s_->request.bits)
        .arg(compact_number(s_->tensor_min), compact_number(s_->tensor_max), compact_number(s_->tensor_step));
  if (role == Qt::UserRole) {  // raw values, for sorting and tests
    switch (index.column()) {
      case Cluster: return q.cluster;
      case Channels: return static_cast<qlonglong>(q.channels);
      case Range: return q.max - q.min;
      case Step: return q.step;
      case MaxError: return q.max_error;
      case RmsError: return q.rms_error;
      case Finer: return q.finer;
    }
  }
  if (role != Qt::DisplayRole) return {};
  switch (index.column()) {
    case Cluster: return QString::number(q.cluster);
    case Channels: return static_cast<qlonglong>(q.channels);
    case Range: return QStringLiteral("[%1, %2]").arg(compact_number(q.min, 3), compact_number(q.max, 3));
    case Step: return compact_number(q.step, 3);
    case MaxError: return compact_number(q.max_error, 3);
    case RmsError: return compact_number(q.rms_error, 3);
    case Finer: return QStringLiteral("%1\u00d7").arg(q.finer, 0, 'f', q.finer < 10 ? 1 : 0);
  }
  return {};
}

QVariant ClusterTableModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal) return {};
  if (role == Qt::ToolTipRole) {
    switch (section) {
      case Range: return tr("[min, max] over the cluster's channels: the range its one quantizer covers");
      case Step: return tr("Quantization step (scale) of the cluster's asymmetric quantizer");
      case MaxError: return tr("Worst rounding error inside the cluster's range (exact grid: half a step; "
                               "reference grid: up to 1.5 steps at the top)");
      case RmsError: return tr("RMS rounding error of values spread evenly over the range: step / \u221a12");
      case Finer: return tr("How many times finer than one quantizer for the whole tensor");
    }
    return {};
  }
  if (role != Qt::DisplayRole) return {};
  switch (section) {
    case Cluster: return tr("Cluster");
    case Channels: return tr("Channels");
    case Range: return tr("Range");
    case Step: return tr("Step");
    case MaxError: return tr("Max error");
    case RmsError: return tr("RMS error");
    case Finer: return tr("vs tensor");
  }
  return {};
}

}  // namespace rptq::ui
