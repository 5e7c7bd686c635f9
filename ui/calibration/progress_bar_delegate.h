#pragma once
// Draws a progress bar in a table cell from the model's fraction role.
#include <QStyledItemDelegate>

namespace rptq::ui {

class ProgressBarDelegate : public QStyledItemDelegate {
  Q_OBJECT
 public:
  ProgressBarDelegate(int fraction_role, QObject* parent = nullptr)
      : QStyledItemDelegate(parent), role_(fraction_role) {}
  void paint(QPainter* painter, const QStyleOptionViewItem& option, const QModelIndex& index) const override;

 private:
  int role_;
};

}  // namespace rptq::ui
