#pragma once
// The History step: the runs recorded for the open model (quantizations and comparisons from this window, and
// everything `rptq` recorded: sweeps, sensitivity runs, exports), newest first and sortable by any column; two
// selected runs side by side, field by field, with the differences marked; a run's setting re-opened in the Quantize
// step. The records live in the run history file (rptq/io/run_history.h), shared with `rptq history`.
#include <QString>
#include <QWidget>

#include <vector>

#include "rptq/io/run_history.h"

class QLabel;
class QPushButton;
class QTableWidget;

namespace rptq::ui {

class Session;

class HistoryPage : public QWidget {
  Q_OBJECT
 public:
  explicit HistoryPage(Session* session, QWidget* parent = nullptr);

  // The runs listed (the open model's), oldest first as stored; the table shows them sorted as the user chose.
  const std::vector<rptq::RunRecord>& runs() const { return runs_; }
  QTableWidget* runs_table() const { return table_; }
  QTableWidget* side_by_side() const { return pair_; }
  QPushButton* reopen_button() const { return reopen_; }
  QPushButton* delete_button() const { return delete_; }
  QLabel* status_label() const { return status_; }
  // The record of table row `row` as currently sorted.
  const rptq::RunRecord* run_at_row(int row) const;
  // Selects the table rows of these runs (by index into runs()).
  void select_runs(const std::vector<int>& indices);

 public Q_SLOTS:
  void reload();

 Q_SIGNALS:
  // "Re-open settings": the Quantize step should show this setting.
  void reopen_requested(const rptq::QuantConfig& setting);
  void runs_changed();  // reload() listed the runs anew

 private:
  void show_pair();
  std::vector<const rptq::RunRecord*> selected() const;

  Session* session_;
  QLabel* status_;
  QTableWidget* table_;
  QTableWidget* pair_;
  QPushButton* reopen_;
  QPushButton* delete_;
  std::vector<rptq::RunRecord> runs_;
};

}  // namespace rptq::ui
