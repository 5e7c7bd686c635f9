#pragma once
// The state a long job shares with the UI: a cancel flag the worker polls between layers/windows, and its latest
// progress, which the UI reads on a timer (so the worker never touches a QObject, and a closed window never
// receives a late signal). Held by shared_ptr on both sides.
#include <QMutex>
#include <QMutexLocker>
#include <QString>

#include <atomic>

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

// Progress of loading something: a fraction and what is being done.
struct LoadProgress {
  double fraction = 0;
  QString what;
};

}  // namespace rptq::ui
