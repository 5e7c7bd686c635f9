#pragma once
// Per cluster of the current clustering: its channels, range, and the quantizer it gets at the chosen bits (step,
// worst and RMS rounding error, and how much finer it is than one quantizer for the whole tensor).
#include <QAbstractTableModel>

#include <memory>

#include "explore/cluster_snapshot.h"

namespace rptq::ui {

class ClusterTableModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Column { Cluster, Channels, Range, Step, MaxError, RmsError, Finer, Columns };
  explicit ClusterTableModel(QObject* parent = nullptr) : QAbstractTableModel(parent) {}
  void set_snapshot(std::shared_ptr<const ClusterSnapshot> s);

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;

 private:
  std::shared_ptr<const ClusterSnapshot> s_;
};

}  // namespace rptq::ui
