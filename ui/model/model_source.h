#pragma once
// Opening what the user points at (runs on a worker thread): a Hugging Face model folder is inspected, then its
// weights are loaded; an .h5 file is an RPTQ checkpoint (inspected) or a channel statistics file.
#include <QString>

#include <memory>

#include "common/job_progress.h"
#include "rptq/method/calibration.h"
#include "session/loaded_model.h"

namespace rptq::ui {

struct OpenedSource {
  std::shared_ptr<const LoadedModel> model;         // a model folder or checkpoint, or
  std::shared_ptr<const rptq::ChannelStats> stats;  // a statistics file
  QString path;
};

// Throws rptq::InputError naming the file and the problem; rptq::Cancelled when progress->cancel() was called.
OpenedSource open_source(const QString& path, const std::shared_ptr<JobProgress<LoadProgress>>& progress);

// Loads a statistics file (throws InputError).
std::shared_ptr<const rptq::ChannelStats> read_statistics_file(const QString& path);

}  // namespace rptq::ui
