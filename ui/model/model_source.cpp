#include "model/model_source.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>

#include "rptq/base/error.h"
#include "rptq/export/qcheckpoint.h"
#include "rptq/export/stats_file.h"

namespace rptq::ui {

std::shared_ptr<const rptq::ChannelStats> read_statistics_file(const QString& path) {
  return std::make_shared<const rptq::ChannelStats>(rptq::load_stats(path.toStdString()));
}

OpenedSource open_source(const QString& path_in, const std::shared_ptr<JobProgress<LoadProgress>>& progress) {
  QElapsedTimer timer;
  timer.start();
  const QFileInfo fi(path_in);
  const QString path = fi.absoluteFilePath();
  const std::string p = path.toStdString();
  OpenedSource out;
  out.path = path;
  if (!fi.exists()) throw rptq::InputError(p + ": does not exist");
  if (fi.isFile()) {
    if (!rptq::is_hdf5_file(p))
      throw rptq::InputError(p + ": not a model folder, an RPTQ checkpoint (.h5) or a statistics file (.h5)");
    progress->set({0.1, QStringLiteral("reading %1").arg(fi.fileName())});
    // Which RPTQ file it is decides which reader's error is the useful one.
    const std::string format = rptq::hdf5_format(p);
    if (format == "rptq-channel-stats") {
      out.stats = read_statistics_file(path);
      return out;
    }
    if (format != "rptq-quantized-checkpoint")
      throw rptq::InputError(p + ": an HDF5 file, but neither an RPTQ checkpoint nor a statistics file");
    auto m = std::make_shared<LoadedModel>();
    m->kind = LoadedModel::Kind::Checkpoint;
    m->path = path;
    m->checkpoint = rptq::inspect_checkpoint(p);
    m->load_seconds = timer.nsecsElapsed() / 1e9;
    out.model = std::move(m);
    return out;
  }
  progress->set({0.0, QStringLiteral("inspecting %1").arg(fi.fileName())});
  auto m = std::make_shared<LoadedModel>();
  m->kind = LoadedModel::Kind::Folder;
  m->path = path;
  m->info = rptq::inspect_model(p);
  rptq::LoadOptions lo;
  lo.progress = [progress](double f, const std::string& what) {
    progress->set({f, QStringLiteral("loading %1").arg(QString::fromStdString(what))});
    return !progress->cancelled();
  };
  m->model = rptq::Model::load(p, lo);
  m->load_seconds = timer.nsecsElapsed() / 1e9;
  out.model = std::move(m);
  return out;
}

}  // namespace rptq::ui
