#include "compare/generation_job.h"

#include "rptq/engine.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::ui {

namespace {
// Lives on the UI thread; workers emit its signal, which Qt queues to the UI thread. Workers hold it by shared_ptr,
// and the last holder hands it to its own thread's event loop for deletion.
class TokenRelay : public QObject {
  Q_OBJECT
 Q_SIGNALS:
  void token(int side, int id, const QString& text);
};
}  // namespace

GenerationJob::GenerationJob(QObject* parent) : QObject(parent) {}

GenerationJob::~GenerationJob() {
  if (stop_) stop_->store(true);
}

void GenerationJob::stop() {
  if (stop_) stop_->store(true);
}

void GenerationJob::side_done() {
  if (--running_ == 0) Q_EMIT running_changed(false);
}

void GenerationJob::start(const GenerationRequest& r) {
  if (running() || !r.fp || !r.quantized) return;
  auto stop = std::make_shared<std::atomic<bool>>(false);
  stop_ = stop;
  std::shared_ptr<TokenRelay> relay(new TokenRelay, [](TokenRelay* o) { o->deleteLater(); });
  connect(relay.get(), &TokenRelay::token, this, &GenerationJob::token, Qt::QueuedConnection);
  running_ = 2;
  Q_EMIT running_changed(true);
  start_side(r, FP, stop, relay);
  if (!r.on_gpu()) start_side(r, Quantized, stop, relay);
}

void GenerationJob::start_side(const GenerationRequest& r, int side, const std::shared_ptr<std::atomic<bool>>& stop,
                               const std::shared_ptr<QObject>& relay_object) {
  auto relay = std::static_pointer_cast<TokenRelay>(relay_object);
  // On the GPU the quantized side follows the FP side, however that one ended; after a stop it ends at once,
  // with no tokens.
  auto next = [this, r, side, stop, relay] {
    if (!r.on_gpu() || side != FP) return;
    if (stop->load()) {
      Q_EMIT side_finished(Quantized, rptq::GenerateResult());
      side_done();
      return;
    }
    start_side(r, Quantized, stop, relay);
  };
  run_task(
      this, nullptr,
      [r, side, stop, relay]() -> rptq::GenerateResult {
        // Each side has its own tokenizer and stream decoder: nothing is shared between the two workers but the
        // read-only FP weights.
        const auto tok = rptq::Tokenizer::load(r.tokenizer_dir.toStdString());
        const std::vector<std::int32_t> prompt = tok->encode(r.prompt.toStdString(), true);
        const rptq::Model& model = side == FP ? *r.fp : r.quantized->model();
        rptq::GenerateOptions go;
        go.max_new_tokens = r.max_new_tokens;
        go.temperature = 0.0f;  // greedy on both sides
        go.eos_id = tok->eos_id() >= 0 ? tok->eos_id() : model.config().eos_token;
        if (side == Quantized) {
          try {
            go.kv_quant = r.quantized->kv_quantization();
          } catch (const std::exception&) {
            go.kv_quant = nullptr;  // dynamic K/V ranges: the taps quantize them, the cache stays float
          }
        }
        rptq::StreamDecoder stream(*tok, /*at_text_start=*/false);
        const auto on_token = [&](std::int32_t id) {
          if (stop->load()) return false;
          const std::string piece = id == go.eos_id ? std::string() : stream.push(id);
          Q_EMIT relay->token(side, id, QString::fromStdString(piece));
          return true;
        };
        rptq::GenerateResult res =
            rptq::generate(model, side == Quantized ? r.quantized.get() : nullptr, prompt, go, on_token, r.exec);
        const std::string rest = stream.finish();
        if (!rest.empty()) Q_EMIT relay->token(side, -1, QString::fromStdString(rest));
        return res;
      },
      [this, side, next](rptq::GenerateResult res) {
        Q_EMIT side_finished(side, res);
        side_done();
        next();
      },
      [this, side, next](const TaskError& e) {
        Q_EMIT side_failed(side, e);
        side_done();
        next();
      });
}

}  // namespace rptq::ui

#include "generation_job.moc"
