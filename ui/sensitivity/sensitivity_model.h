#pragma once
// The Sensitivity step's heat map: rows are the decoder layers, then a "total" row; columns the probed taps (and the
// softmax), then a "total" column. A cell shows one probe's metric (KL, perplexity increase or share of top-1
// changes: that (layer, tap) quantized alone) and is coloured on a log scale from the table's largest value down to
// 1/1000 of it; the totals (rptq::SensitivityResult::layer_sum / tap_sum) are coloured on scales of their own.
#include <QAbstractTableModel>

#include <memory>

#include "rptq/method/sensitivity.h"

namespace rptq::ui {

class SensitivityModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Metric {
    Kl,           // mean KL(P_fp || P_probe), nats per token
    PplIncrease,  // perplexity with the probe minus the FP perplexity
    Top1Changed,  // share of positions whose top-1 token is not the FP model's
  };
  // Data roles besides the display ones: the shown metric's value, and the probe's three numbers (probe cells only).
  enum Role { ValueRole = Qt::UserRole, KlRole, PplRole, Top1AgreementRole };

  explicit SensitivityModel(QObject* parent = nullptr) : QAbstractTableModel(parent) {}
  void set_result(std::shared_ptr<const rptq::SensitivityResult> r);
  const rptq::SensitivityResult* result() const { return r_.get(); }
  std::shared_ptr<const rptq::SensitivityResult> result_ptr() const { return r_; }
  void set_metric(Metric m);
  Metric metric() const { return metric_; }

  // The metric of a probe cell, or of a sum (layer_sum / tap_sum already hold increases and changes).
  static double value_of(const rptq::SensitivityCell& c, double ppl_fp, Metric m);
  static double value_of_sum(const rptq::SensitivityCell& s, Metric m);
  static QString format(double v, Metric m);
  static QString metric_name(Metric m);

  bool is_total_row(int row) const { return r_ && row == r_->layers; }
  bool is_total_column(int column) const { return r_ && column == static_cast<int>(r_->taps.size()); }
  // The tap name of a probe column ("ffn_hidden", "softmax"), empty for the total column.
  QString tap_of_column(int column) const;
  // The reorder index (1..5) that orders a probe column's channels, 0 for the softmax and the totals.
  int reorder_index_of_column(int column) const;

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;

 private:
  double value(int row, int column) const;
  void update_scales();

  std::shared_ptr<const rptq::SensitivityResult> r_;
  Metric metric_ = Kl;
  // The colour scales' tops: probe cells, layer totals (total column), tap totals (total row).
  double max_cell_ = 0, max_layer_ = 0, max_tap_ = 0;
};

}  // namespace rptq::ui
