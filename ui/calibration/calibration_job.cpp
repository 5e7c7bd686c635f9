#include "calibration/calibration_job.h"

#include <QDir>
#include <QFileInfo>

#include <chrono>

#include "rptq/engine.h"
#include "rptq/base/error.h"
#include "rptq/model/model_info.h"
#include "rptq/export/stats_file.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::ui {

double CalibrationProgress::eta_seconds() const {
  const double f = layers.fraction();
  if (stage != Stage::Calibrating || layers.done < 1 || f <= 0 || calibrate_seconds < 0.2) return -1;
  return calibrate_seconds * (1.0 - f) / f;
}

CalibrationJob::CalibrationJob(QObject* parent)
    : QObject(parent), poll_(this, [this](const CalibrationProgress& p) { Q_EMIT progressed(p); }) {}

CalibrationJob::~CalibrationJob() = default;  // the poll cancels a running worker

CalibrationProgress CalibrationJob::progress() const { return poll_.progress(); }

double CalibrationJob::elapsed_seconds() const { return poll_.elapsed_seconds(); }

void CalibrationJob::cancel() { poll_.cancel(); }

void CalibrationJob::start(const CalibrationRequest& request) {
  if (running_) return;
  auto shared = poll_.begin();
  running_ = true;
  Q_EMIT running_changed(true);
  run_task(
      this, nullptr,
      [request, shared]() -> std::shared_ptr<const rptq::ChannelStats> {
        if (!request.model || !request.model->model)
          throw rptq::InputError("calibration needs a model folder with its weights loaded");
        rptq::set_num_threads(request.threads);
        CalibrationProgress p;
        p.stage = CalibrationProgress::Stage::Tokenizing;
        shared->set(p);
        const std::string data = request.data_path.toStdString();
        const std::string model_dir = request.model->path.toStdString();
        const std::string text = rptq::read_text_file(data);
        const std::string sha = rptq::sha256_hex(text);
        const auto tok = rptq::Tokenizer::load(model_dir);
        const std::vector<std::int32_t> ids = tok->encode(text, true);
        if (shared->cancelled()) throw rptq::Cancelled();
        p.stage = CalibrationProgress::Stage::Calibrating;
        p.tokens = static_cast<std::int64_t>(ids.size());
        shared->set(p);
        const auto t0 = std::chrono::steady_clock::now();
        const rptq::LayerwiseCallback progress = [&](const rptq::LayerwiseProgress& lp) {
          p.layers = lp;
          p.calibrate_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          shared->set(p);
          return !shared->cancelled();
        };
        rptq::ChannelStats st =
            rptq::calibrate(*request.model->model, model_dir, ids, data, sha, request.settings, progress, request.exec);
        if (shared->cancelled()) throw rptq::Cancelled();
        p.stage = CalibrationProgress::Stage::Saving;
        shared->set(p);
        const QString dir = QFileInfo(request.out_path).absolutePath();
        if (!QDir().mkpath(dir)) throw rptq::InputError(dir.toStdString() + ": cannot create the folder");
        rptq::save_stats(request.out_path.toStdString(), st, /*overwrite=*/true);
        return std::make_shared<const rptq::ChannelStats>(std::move(st));
      },
      [this, path = request.out_path](std::shared_ptr<const rptq::ChannelStats> st) {
        poll_.end();
        running_ = false;
        Q_EMIT running_changed(false);
        Q_EMIT finished(std::move(st), path);
      },
      [this](const TaskError& e) {
        poll_.end();
        running_ = false;
        Q_EMIT running_changed(false);
        if (e.cancelled())
          Q_EMIT cancelled();
        else
          Q_EMIT failed(e);
      });
}

}  // namespace rptq::ui
