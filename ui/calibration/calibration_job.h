#pragma once
// Calibration off the UI thread: read and tokenize the text, run rptq::calibrate (or rptq::calibrate_gpu) layer by
// layer, save the statistics file. Progress reaches the UI on a timer (at most 20 updates a second); cancel() is honoured at the
// next calibration window, so it stops within a layer.
#include <QObject>
#include <QString>

#include <memory>

#include "common/job_progress.h"
#include "common/task.h"
#include "rptq/method/calibration.h"
#include "rptq/execution.h"
#include "session/loaded_model.h"

namespace rptq::ui {

struct CalibrationRequest {
  std::shared_ptr<const LoadedModel> model;  // a model folder with its FP model loaded
  QString data_path;                         // calibration text
  QString out_path;                          // statistics file to write (replaced when it exists)
  rptq::CalibrationSettings settings;
  int threads = 0;                           // rptq::set_num_threads (0: all cores)
  rptq::Execution exec;                      // where the forward passes run
};

struct CalibrationProgress {
  enum class Stage { Idle, Tokenizing, Calibrating, Saving };
  Stage stage = Stage::Idle;
  rptq::LayerwiseProgress layers;  // (layer, sample) steps done
  double calibrate_seconds = 0;    // time spent in the layer-by-layer pass so far
  std::int64_t tokens = 0;         // tokens of the calibration text
  // Estimated seconds left (from the pass's rate so far); < 0 while unknown.
  double eta_seconds() const;
};

class CalibrationJob : public QObject {
  Q_OBJECT
 public:
  explicit CalibrationJob(QObject* parent = nullptr);
  ~CalibrationJob() override;

  bool running() const { return running_; }
  // Starts a calibration; ignored while one runs.
  void start(const CalibrationRequest& request);
  CalibrationProgress progress() const;
  double elapsed_seconds() const;

 public Q_SLOTS:
  void cancel();

 Q_SIGNALS:
  void progressed(const rptq::ui::CalibrationProgress& p);
  void finished(std::shared_ptr<const rptq::ChannelStats> stats, const QString& path);
  void cancelled();
  void failed(const rptq::ui::TaskError& error);
  void running_changed(bool running);

 private:

  ProgressPoll<CalibrationProgress> poll_;
  bool running_ = false;
};

}  // namespace rptq::ui
