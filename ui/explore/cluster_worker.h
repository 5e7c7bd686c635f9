#pragma once
// Re-clustering on a background thread that never blocks the UI, restartable in the way of Qt's Mandelbrot
// example: while one clustering runs, only the newest request waits; older waiting ones are dropped. Every finished
// clustering is shown (so a moving slider gives live feedback) and the newest request always runs last.
// rptq::kmeans has no cancel hook, so a running clustering ends before the next starts (milliseconds for the
// widths of real models: 36,864 channels, k = 32, take about 8 ms).
#include <QObject>
#include <QThreadPool>

#include <memory>
#include <optional>

#include "common/task.h"
#include "explore/cluster_snapshot.h"

namespace rptq::ui {

class ClusterWorker : public QObject {
  Q_OBJECT
 public:
  explicit ClusterWorker(QObject* parent = nullptr);
  ~ClusterWorker() override;

  // Numbers the request and runs it (now, or after the running one); returns its id.
  std::uint64_t request(ClusterRequest r);
  bool busy() const { return running_ || pending_.has_value(); }
  std::uint64_t last_requested() const { return next_id_; }

 Q_SIGNALS:
  void ready(std::shared_ptr<const rptq::ui::ClusterSnapshot> snapshot);
  void failed(const rptq::ui::TaskError& error, std::uint64_t id);
  void idle();

 private:
  void launch(ClusterRequest r);

  QThreadPool pool_;  // one thread of its own, so a long calibration never delays re-clustering
  std::optional<ClusterRequest> pending_;
  bool running_ = false;
  std::uint64_t next_id_ = 0;
};

}  // namespace rptq::ui
