#pragma once
// The workbench's current work: the opened model, the channel statistics being explored and the model quantized
// with them. Pages read it and react to its signals; only the pages' jobs and MainWindow change it.
#include <QObject>
#include <QString>
#include <QStringList>

#include <memory>

#include "rptq/io/run_history.h"
#include "rptq/method/calibration.h"
#include "rptq/method/quantize.h"
#include "session/loaded_model.h"
#include "session/quantization_summary.h"

namespace rptq::ui {

class Session : public QObject {
  Q_OBJECT
 public:
  explicit Session(QObject* parent = nullptr) : QObject(parent) {}

  const LoadedModel* model() const { return model_.get(); }
  std::shared_ptr<const LoadedModel> model_ptr() const { return model_; }
  // The FP model, when a model folder is open (null for a checkpoint or nothing).
  std::shared_ptr<const rptq::Model> fp_model() const { return model_ ? model_->model : nullptr; }
  void set_model(std::shared_ptr<const LoadedModel> m);  // clears the statistics (and so the quantized model)

  const rptq::ChannelStats* stats() const { return stats_.get(); }
  std::shared_ptr<const rptq::ChannelStats> stats_ptr() const { return stats_; }
  QString stats_path() const { return stats_path_; }
  void set_stats(std::shared_ptr<const rptq::ChannelStats> stats, const QString& path);
  void clear_stats();  // clears the quantized model too

  // The model quantized from the open FP model with the current statistics (null until the Quantize step ran). It
  // is not const: its hook() is what runs the activation quantizers. One job at a time uses it.
  rptq::QuantizedModel* quantized() const { return quantized_.get(); }
  std::shared_ptr<rptq::QuantizedModel> quantized_ptr() const { return quantized_; }
  const QuantizationSummary* quantization_summary() const { return summary_.get(); }
  void set_quantized(std::shared_ptr<rptq::QuantizedModel> q, std::shared_ptr<const QuantizationSummary> summary);
  void clear_quantized();

  // Jobs that read the quantized model (a comparison, a generation, an export) hold a use of it for as long as they
  // run. While one is held the Quantize step does not replace the model (an export would otherwise write the old
  // model under the new setting's name, and the two would run at once on the 2 cores), and the other jobs wait, so
  // the model's hook() runs on one job at a time. `what` names the job in the pages' notes ("the export").
  void begin_quantized_use(const QString& what);
  void end_quantized_use(const QString& what);
  bool quantized_in_use() const { return !quantized_users_.isEmpty(); }
  QString quantized_user() const { return quantized_users_.isEmpty() ? QString() : quantized_users_.front(); }

  // The run history (rptq/io/run_history.h), history.json in the application data folder, the file `rptq` records
  // into too (RPTQ_HISTORY names another file; "off" records nothing and history_file() is empty). Each
  // quantization, comparison and sweep of the pages is recorded; the History step lists them.
  QString history_file() const;
  rptq::RunHistory history() const { return rptq::RunHistory(history_file().toStdString()); }
  // Appends r; a history that cannot be written never fails the run: the reason is kept in history_error().
  void record_run(const rptq::RunRecord& r);
  QString history_error() const { return history_error_; }

 Q_SIGNALS:
  void model_changed();
  void stats_changed();
  void quantized_changed();
  void quantized_use_changed();
  void run_recorded();  // a run was added to the history (or recording it failed: history_error())

 private:
  std::shared_ptr<const LoadedModel> model_;
  std::shared_ptr<const rptq::ChannelStats> stats_;
  QString stats_path_;
  std::shared_ptr<rptq::QuantizedModel> quantized_;
  std::shared_ptr<const QuantizationSummary> summary_;
  QStringList quantized_users_;
  QString history_error_;
};

}  // namespace rptq::ui
