#include "common/error_dialog.h"

#include <QMessageBox>

#include "common/task.h"

namespace rptq::ui {

void show_error(QWidget* parent, const QString& what, const QString& message) {
  auto* box = new QMessageBox(QMessageBox::Critical, what, what, QMessageBox::Ok, parent);
  box->setObjectName(QStringLiteral("errorDialog"));
  box->setInformativeText(message);
  // Engine messages name files by their full path: give them room instead of a narrow column.
  box->setStyleSheet(QStringLiteral("QLabel#qt_msgbox_informativelabel { min-width: 480px; }"));
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->open();
}

void show_task_error(QWidget* parent, const QString& what, const TaskError& error) {
  switch (error.kind) {
    case TaskError::Kind::Cancelled: return;
    case TaskError::Kind::Input: return show_error(parent, what, error.message);
    case TaskError::Kind::OutOfMemory:
      return show_error(parent, what, QStringLiteral("Out of memory. Try a smaller model or fewer samples."));
    case TaskError::Kind::Internal:
      return show_error(parent, what, QStringLiteral("Internal error (please report it): ") + error.message);
  }
}

}  // namespace rptq::ui
