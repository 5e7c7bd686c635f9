#include "quantize/quantize_job.h"

#include "rptq/engine.h"
#include "rptq/base/error.h"
#include "rptq/model/model.h"

namespace rptq::ui {

double QuantizeProgress::fraction() const {
  if (stage == Stage::Loading) return 0.1 * load_fraction;
  if (stage == Stage::Quantizing) return 0.1 + 0.9 * layers.fraction();
  return 0;
}

QuantizeJob::QuantizeJob(QObject* parent)
    : QObject(parent), poll_(this, [this](const QuantizeProgress& p) { Q_EMIT progressed(p); }) {}

QuantizeJob::~QuantizeJob() = default;  // the poll cancels a running worker

QuantizeProgress QuantizeJob::progress() const { return poll_.progress(); }

double QuantizeJob::elapsed_seconds() const { return poll_.elapsed_seconds(); }

void QuantizeJob::cancel() { poll_.cancel(); }

void QuantizeJob::stop() {
  poll_.end();
  running_ = false;
  Q_EMIT running_changed(false);
}

void QuantizeJob::start(const QuantizeRequest& request) {
  if (running_) return;
  auto shared = poll_.begin();
  running_ = true;
  Q_EMIT running_changed(true);
  using Result = std::pair<std::shared_ptr<rptq::QuantizedModel>, std::shared_ptr<const QuantizationSummary>>;
  run_task(
      this, nullptr,
      [request, shared]() -> Result {
        if (!request.stats) throw rptq::InputError("quantization needs channel statistics");
        request.config.validate();
        QuantizeProgress p;
        p.stage = QuantizeProgress::Stage::Loading;
        shared->set(p);
        rptq::LoadOptions lo;
        lo.progress = [&](double f, const std::string&) {
          p.load_fraction = f;
          shared->set(p);
          return !shared->cancelled();
        };
        auto model = rptq::Model::load(request.model_dir.toStdString(), lo);
        rptq::check_stats_match(*request.stats, model->config(), request.stats_path.toStdString());
        if (shared->cancelled()) throw rptq::Cancelled();
        p.stage = QuantizeProgress::Stage::Quantizing;
        shared->set(p);
        rptq::QuantizeOptions o;
        o.stat = request.stats->settings.stat;
        o.sequential = request.sequential;
        o.progress = [&](const rptq::LayerwiseProgress& lp) {
          p.layers = lp;
          shared->set(p);
          return !shared->cancelled();
        };
        std::shared_ptr<rptq::QuantizedModel> q =
            rptq::quantize(std::move(model), *request.stats, request.config, o, request.exec);
        if (shared->cancelled()) throw rptq::Cancelled();
        auto summary = std::make_shared<QuantizationSummary>(summarize_quantization(*q, request.fp_weight_bytes));
        summary->model_path = request.model_dir;
        summary->stats_path = request.stats_path;
        summary->applied = std::make_shared<const rptq::ChannelStats>(rptq::applied_stats(*q, *request.stats));
        return {std::move(q), std::move(summary)};
      },
      [this](Result r) {
        stop();
        Q_EMIT finished(std::move(r.first), std::move(r.second));
      },
      [this](const TaskError& e) {
        stop();
        if (e.cancelled())
          Q_EMIT cancelled();
        else
          Q_EMIT failed(e);
      });
}

}  // namespace rptq::ui
