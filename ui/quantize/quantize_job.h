#pragma once
// Quantization off the UI thread: load a second copy of the FP model (rptq::quantize consumes its model, and the
// session's FP model stays for Compare), check the statistics belong to it, run the RPTQ pipeline layer by layer
// and summarize the result. Progress reaches the UI on a timer; cancel() is honoured at the next calibration
// window of the layer being quantized.
#include <QObject>
#include <QString>

#include <memory>

#include "common/job_progress.h"
#include "common/task.h"
#include "rptq/method/calibration.h"
#include "rptq/execution.h"
#include "rptq/method/quantize.h"
#include "session/quantization_summary.h"

namespace rptq::ui {

struct QuantizeRequest {
  QString model_dir;                                // the FP model folder
  std::shared_ptr<const rptq::ChannelStats> stats;  // measured on that model
  QString stats_path;
  rptq::QuantConfig config;
  bool sequential = true;        // QuantizeOptions::sequential
  rptq::Execution exec;          // where the calibration passes run
  std::size_t fp_weight_bytes = 0;  // the session's FP model's Model::weight_bytes()
};

struct QuantizeProgress {
  enum class Stage { Idle, Loading, Quantizing };
  Stage stage = Stage::Idle;
  double load_fraction = 0;
  rptq::LayerwiseProgress layers;  // (layer, sample) steps done
  double fraction() const;         // of the whole job: loading counts as its first 10 %
};

class QuantizeJob : public QObject {
  Q_OBJECT
 public:
  explicit QuantizeJob(QObject* parent = nullptr);
  ~QuantizeJob() override;

  bool running() const { return running_; }
  void start(const QuantizeRequest& request);  // ignored while one runs
  QuantizeProgress progress() const;
  double elapsed_seconds() const;

 public Q_SLOTS:
  void cancel();

 Q_SIGNALS:
  void progressed(const rptq::ui::QuantizeProgress& p);
  void finished(std::shared_ptr<rptq::QuantizedModel> model, std::shared_ptr<const rptq::ui::QuantizationSummary> s);
  void cancelled();
  void failed(const rptq::ui::TaskError& error);
  void running_changed(bool running);

 private:
  void stop();

  ProgressPoll<QuantizeProgress> poll_;
  bool running_ = false;
};

}  // namespace rptq::ui
