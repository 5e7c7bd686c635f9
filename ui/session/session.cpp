#include "session/session.h"

namespace rptq::ui {

void Session::set_model(std::shared_ptr<const LoadedModel> m) {
  model_ = std::move(m);
  Q_EMIT model_changed();
  clear_stats();
}

void Session::set_stats(std::shared_ptr<const rptq::ChannelStats> stats, const QString& path) {
  stats_ = std::move(stats);
  stats_path_ = path;
  Q_EMIT stats_changed();
}

void Session::clear_stats() {
  if (!stats_ && stats_path_.isEmpty()) return;
  stats_.reset();
  stats_path_.clear();
  Q_EMIT stats_changed();
}

}  // namespace rptq::ui
