#include "common/task.h"

#include <exception>
#include <new>

#include "rptq/base/error.h"

namespace rptq::ui {

TaskError current_task_error() {
  TaskError e;
  try {
    throw;
  } catch (const rptq::Cancelled&) {
    e.kind = TaskError::Kind::Cancelled;
    e.message = QStringLiteral("Cancelled.");
  } catch (const rptq::InputError& x) {
    e.kind = TaskError::Kind::Input;
    e.message = QString::fromStdString(x.what());
  } catch (const std::bad_alloc&) {
    e.kind = TaskError::Kind::OutOfMemory;
    e.message = QStringLiteral("Out of memory.");
  } catch (const std::exception& x) {
    e.kind = TaskError::Kind::Internal;
    e.message = QString::fromStdString(x.what());
  } catch (...) {
    e.kind = TaskError::Kind::Internal;
    e.message = QStringLiteral("unknown error");
  }
  return e;
}

}  // namespace rptq::ui
