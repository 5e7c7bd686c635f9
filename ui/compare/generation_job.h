#pragma once
// Side-by-side generation: the FP and the quantized model continue the same prompt with the same greedy decoding.
// On the CPU each side runs on a worker of its own, both at once; on the GPU the FP side runs first and the
// quantized side after it (one runner on the device at a time; each side's runner is made for its run). Every
// token reaches the UI thread as soon as it is chosen, by a queued signal of a relay object that lives on the UI
// thread (so a worker never touches a widget); stop() ends both at their next token.
#include <QObject>
#include <QString>

#include <atomic>
#include <memory>

#include "common/task.h"
#include "rptq/execution.h"
#include "rptq/eval/generate.h"
#include "rptq/model/model.h"
#include "rptq/method/quantize.h"

namespace rptq::ui {

struct GenerationRequest {
  QString tokenizer_dir;                        // the FP model folder (its tokenizer)
  std::shared_ptr<const rptq::Model> fp;
  std::shared_ptr<rptq::QuantizedModel> quantized;
  QString prompt;
  std::int64_t max_new_tokens = 32;
  rptq::Execution exec;    // on the GPU both sides run one after the other
  bool on_gpu() const { return exec.device == rptq::Device::CUDA; }
};

class GenerationJob : public QObject {
  Q_OBJECT
 public:
  enum Side { FP = 0, Quantized = 1 };
  explicit GenerationJob(QObject* parent = nullptr);
  ~GenerationJob() override;

  bool running() const { return running_ > 0; }
  void start(const GenerationRequest& request);  // ignored while one runs

 public Q_SLOTS:
  void stop();

 Q_SIGNALS:
  // A new token of `side` and the text it completed (may be empty while a UTF-8 character is incomplete).
  void token(int side, int id, const QString& text);
  void side_finished(int side, const rptq::GenerateResult& result);
  void side_failed(int side, const rptq::ui::TaskError& error);
  void running_changed(bool running);

 private:
  void side_done();
  // Runs one side on a worker; on the GPU the FP side's end starts the quantized side.
  void start_side(const GenerationRequest& r, int side, const std::shared_ptr<std::atomic<bool>>& stop,
                  const std::shared_ptr<QObject>& relay);

  std::shared_ptr<std::atomic<bool>> stop_;
  int running_ = 0;
};

}  // namespace rptq::ui
