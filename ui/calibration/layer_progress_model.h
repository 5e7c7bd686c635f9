#pragma once
// One row per decoder layer: how far calibration is through it and how long it took.
#include <QAbstractTableModel>

#include <vector>

#include "rptq/method/calibration.h"

namespace rptq::ui {

class LayerProgressModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Column { Layer, Progress, Time, Columns };
  static constexpr int kFractionRole = Qt::UserRole + 1;  // double in [0, 1] for the Progress column

  explicit LayerProgressModel(QObject* parent = nullptr) : QAbstractTableModel(parent) {}
  void reset(int layers);
  // From the pass's counters: layers before lp.layer are done, lp.layer is at lp.sample / lp.samples.
  void update(const rptq::LayerwiseProgress& lp, double seconds);
  void mark_all_done(double seconds);
  void mark_stopped();  // cancelled or failed: the layer in progress says so
  double fraction(int layer) const { return rows_.at(static_cast<std::size_t>(layer)).fraction; }

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;

 private:
  struct Row {
    double fraction = 0;
    double started = -1, finished = -1;  // seconds into the pass
  };
  std::vector<Row> rows_;
  bool stopped_ = false;
};

}  // namespace rptq::ui
