#pragma once
// Errors reach the user as dialogs, never as a crash. The dialog is window-modal and opened without a nested event
// loop (QMessageBox::open), so workers and timers keep running behind it.
#include <QString>

class QWidget;

namespace rptq::ui {

struct TaskError;

// "Cannot open model" + the engine's message (which names the file and the problem).
void show_error(QWidget* parent, const QString& what, const QString& message);
// The same for a failed task; an internal error says so, and a cancelled task shows nothing.
void show_task_error(QWidget* parent, const QString& what, const TaskError& error);

}  // namespace rptq::ui
