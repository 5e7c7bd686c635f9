#pragma once
// The layer-by-tap heat map: rows are layers, columns the seven taps; a cell shows the widest channel range and is
// coloured by its outlier ratio (widest / median channel), on a log scale shared by the whole table.
#include <QAbstractTableModel>

#include "explore/tap_overview.h"

namespace rptq::ui {

class TapOverviewModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  explicit TapOverviewModel(QObject* parent = nullptr) : QAbstractTableModel(parent) {}
  void set_overview(TapOverview overview);
  void clear();
  const TapOverview& overview() const { return o_; }
  static rptq::Tap tap_of_column(int column) { return rptq::kAllTaps[column]; }

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;

 private:
  TapOverview o_;
  double max_log_ratio_ = 1;
};

}  // namespace rptq::ui
