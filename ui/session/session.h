#pragma once
// The workbench's current work: the opened model and the channel statistics being explored. Pages read it and
// react to its signals; only MainWindow's jobs change it.
#include <QObject>
#include <QString>

#include <memory>

#include "rptq/calibration.h"
#include "session/loaded_model.h"

namespace rptq::ui {

class Session : public QObject {
  Q_OBJECT
 public:
  explicit Session(QObject* parent = nullptr) : QObject(parent) {}

  const LoadedModel* model() const { return model_.get(); }
  std::shared_ptr<const LoadedModel> model_ptr() const { return model_; }
  // The FP model, when a model folder is open (null for a checkpoint or nothing).
  std::shared_ptr<const rptq::Model> fp_model() const { return model_ ? model_->model : nullptr; }
  void set_model(std::shared_ptr<const LoadedModel> m);  // clears the statistics

  const rptq::ChannelStats* stats() const { return stats_.get(); }
  std::shared_ptr<const rptq::ChannelStats> stats_ptr() const { return stats_; }
  QString stats_path() const { return stats_path_; }
  void set_stats(std::shared_ptr<const rptq::ChannelStats> stats, const QString& path);
  void clear_stats();

 Q_SIGNALS:
  void model_changed();
  void stats_changed();

 private:
  std::shared_ptr<const LoadedModel> model_;
  std::shared_ptr<const rptq::ChannelStats> stats_;
  QString stats_path_;
};

}  // namespace rptq::ui
