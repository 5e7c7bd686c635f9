#pragma once
// A small job runner: run a function off the UI thread (QtConcurrent on a thread pool) and get its value, or the
// error it threw, back on the UI thread. The function must own everything it touches (capture by value or by
// shared_ptr): its context object may be gone by the time it ends, and then the callbacks are simply not called.
#include <QFutureWatcher>
#include <QObject>
#include <QString>
#include <QThreadPool>
#include <QtConcurrent/QtConcurrentRun>

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace rptq::ui {

// What a failed task threw, in words fit for a dialog.
struct TaskError {
  enum class Kind {
    Input,        // rptq::InputError: the user's file or setting is wrong (the message says which)
    Cancelled,    // rptq::Cancelled: the user stopped it
    OutOfMemory,  // std::bad_alloc
    Internal,     // any other exception: a bug
  };
  Kind kind = Kind::Internal;
  QString message;
  bool cancelled() const { return kind == Kind::Cancelled; }
};

// Classifies the exception being handled (call inside a catch block).
TaskError current_task_error();

template <class T>
struct TaskOutcome {
  std::optional<T> value;
  TaskError error;
};

// Runs work() on `pool` (the global pool when null). On the UI thread, once it ends: done(value) or failed(error),
// both invoked in `context`'s thread and only while `context` lives. Returns the watcher (a child of context).
template <class Work, class Done, class Failed>
QFutureWatcher<void>* run_task(QObject* context, QThreadPool* pool, Work work, Done done, Failed failed) {
  using T = std::invoke_result_t<Work>;
  static_assert(!std::is_void_v<T>, "a task returns its result");
  auto outcome = std::make_shared<TaskOutcome<T>>();
  auto* watcher = new QFutureWatcher<void>(context);
  QObject::connect(watcher, &QFutureWatcherBase::finished, context,
                   [watcher, outcome, done = std::move(done), failed = std::move(failed)]() mutable {
                     watcher->deleteLater();
                     if (outcome->value)
                       done(std::move(*outcome->value));
                     else
                       failed(outcome->error);
                   });
  auto body = [outcome, work = std::move(work)]() mutable {
    try {
      outcome->value.emplace(work());
    } catch (...) {
      outcome->error = current_task_error();
    }
  };
  watcher->setFuture(pool ? QtConcurrent::run(pool, std::move(body)) : QtConcurrent::run(std::move(body)));
  return watcher;
}

}  // namespace rptq::ui
