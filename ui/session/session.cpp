#include "session/session.h"

#include <QStandardPaths>

namespace rptq::ui {

void Session::set_model(std::shared_ptr<const LoadedModel> m) {
  model_ = std::move(m);
  Q_EMIT model_changed();
  clear_stats();
}

void Session::set_stats(std::shared_ptr<const rptq::ChannelStats> stats, const QString& path) {
  clear_quantized();  // it was made with the statistics being replaced
  stats_ = std::move(stats);
  stats_path_ = path;
  Q_EMIT stats_changed();
}

void Session::clear_stats() {
  clear_quantized();
  if (!stats_ && stats_path_.isEmpty()) return;
  stats_.reset();
  stats_path_.clear();
  Q_EMIT stats_changed();
}

void Session::set_quantized(std::shared_ptr<rptq::QuantizedModel> q,
                            std::shared_ptr<const QuantizationSummary> summary) {
  quantized_ = std::move(q);
  summary_ = std::move(summary);
  Q_EMIT quantized_changed();
}

void Session::clear_quantized() {
  if (!quantized_ && !summary_) return;
  quantized_.reset();
  summary_.reset();
  Q_EMIT quantized_changed();
}

void Session::begin_quantized_use(const QString& what) {
  quantized_users_.push_back(what);
  Q_EMIT quantized_use_changed();
}

QString Session::history_file() const {
  // As rptq: RPTQ_HISTORY names another file, or turns the history off.
  if (qEnvironmentVariableIsSet("RPTQ_HISTORY")) {
    const QString h = qEnvironmentVariable("RPTQ_HISTORY");
    return h == QLatin1String("off") ? QString() : h;
  }
  return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/history.json");
}

void Session::record_run(const rptq::RunRecord& r) {
  if (history_file().isEmpty()) return;  // RPTQ_HISTORY=off
  try {
    history().append(r);
    history_error_.clear();
  } catch (const std::exception& e) {
    history_error_ = QString::fromStdString(e.what());
  }
  Q_EMIT run_recorded();
}

void Session::end_quantized_use(const QString& what) {
  if (quantized_users_.removeOne(what)) Q_EMIT quantized_use_changed();
}

}  // namespace rptq::ui
