#pragma once
// The state a long job shares with the UI: a cancel flag the worker polls between layers/windows, and its latest
// progress, which the UI reads on a timer (so the worker never touches a QObject, and a closed window never
// receives a late signal). Held by shared_ptr on both sides.
#include <QElapsedTimer>
#include <QMutex>
#include <QMutexLocker>
#include <QObject>
#include <QString>
#include <QTimer>

#include <atomic>
#include <functional>
#include <memory>

namespace rptq::ui {

template <class P>
class JobProgress {
 public:
  void cancel() { cancel_.store(true); }
  bool cancelled() const { return cancel_.load(); }

  void set(const P& p) {
    QMutexLocker lock(&mutex_);
    progress_ = p;
    ++version_;
  }
  // The latest progress, and whether it changed since `seen` (updated).
  P get(unsigned* seen = nullptr, bool* changed = nullptr) const {
    QMutexLocker lock(&mutex_);
    if (changed) *changed = seen && *seen != version_;
    if (seen) *seen = version_;
    return progress_;
  }

 private:
  std::atomic<bool> cancel_{false};
  mutable QMutex mutex_;
  P progress_{};
  unsigned version_ = 0;
};

// The UI side of a job's JobProgress: begin() hands the worker a fresh shared state and starts a 50 ms timer that
// calls `changed` (on the owner's thread) whenever the worker has set new progress; end() polls a last time and
// stops. Destroying it cancels the running worker, which owns its data and stops at its next check.
template <class P>
class ProgressPoll {
 public:
  ProgressPoll(QObject* owner, std::function<void(const P&)> changed) : changed_(std::move(changed)) {
    timer_.setInterval(50);
    QObject::connect(&timer_, &QTimer::timeout, owner, [this] { poll(); });
  }
  ~ProgressPoll() { cancel(); }
  ProgressPoll(const ProgressPoll&) = delete;
  ProgressPoll& operator=(const ProgressPoll&) = delete;

  std::shared_ptr<JobProgress<P>> begin() {
    shared_ = std::make_shared<JobProgress<P>>();
    seen_ = 0;
    clock_.start();
    timer_.start();
    return shared_;
  }
  void end() {
    poll();
    timer_.stop();
  }
  void cancel() {
    if (shared_) shared_->cancel();
  }
  P progress() const { return shared_ ? shared_->get() : P{}; }
  double elapsed_seconds() const { return clock_.isValid() ? clock_.nsecsElapsed() / 1e9 : 0.0; }

 private:
  void poll() {
    if (!shared_) return;
    bool changed = false;
    const P p = shared_->get(&seen_, &changed);
    if (changed) changed_(p);
  }

  std::function<void(const P&)> changed_;
  std::shared_ptr<JobProgress<P>> shared_;
  QTimer timer_;
  QElapsedTimer clock_;
  unsigned seen_ = 0;
};

// Progress of loading something: a fraction and what is being done.
struct LoadProgress {
  double fraction = 0;
  QString what;
};

}  // namespace rptq::ui
