#include "explore/cluster_worker.h"

namespace rptq::ui {

ClusterWorker::ClusterWorker(QObject* parent) : QObject(parent) { pool_.setMaxThreadCount(1); }

ClusterWorker::~ClusterWorker() { pool_.waitForDone(); }

std::uint64_t ClusterWorker::request(ClusterRequest r) {
  r.id = ++next_id_;
  if (running_)
    pending_ = std::move(r);
  else
    launch(std::move(r));
  return next_id_;
}

void ClusterWorker::launch(ClusterRequest r) {
  running_ = true;
  const std::uint64_t id = r.id;
  auto after = [this] {
    running_ = false;
    if (pending_) {
      ClusterRequest next = std::move(*pending_);
      pending_.reset();
      launch(std::move(next));
    } else {
      Q_EMIT idle();
    }
  };
  run_task(
      this, &pool_, [r = std::move(r)] { return std::make_shared<const ClusterSnapshot>(make_cluster_snapshot(r)); },
      [this, after](std::shared_ptr<const ClusterSnapshot> s) {
        Q_EMIT ready(std::move(s));
        after();
      },
      [this, after, id](const TaskError& e) {
        Q_EMIT failed(e, id);
        after();
      });
}

}  // namespace rptq::ui
