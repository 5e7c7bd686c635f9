#pragma once
// The page of a workflow step that is planned but not built yet (Quantize, Compare, Export): says what it will do
// and which command-line tool does it today.
#include <QWidget>

namespace rptq::ui {

class PlannedPage : public QWidget {
  Q_OBJECT
 public:
  PlannedPage(const QString& title, const QString& what, const QString& cli, QWidget* parent = nullptr);
};

}  // namespace rptq::ui
