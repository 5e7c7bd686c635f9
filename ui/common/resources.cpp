#include "common/resources.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>

namespace rptq::ui {

QString resources_dir() {
  const QString env = qEnvironmentVariable("RPTQ_RESOURCES_DIR");
  if (!env.isEmpty() && QFileInfo(env).isDir()) return QDir(env).absolutePath();
  const QString installed = QCoreApplication::applicationDirPath() + QStringLiteral("/../share/rptq-workbench/resources");
  if (QFileInfo(installed + QStringLiteral("/models")).isDir()) return QDir(installed).absolutePath();
  return QStringLiteral(RPTQ_RESOURCES_DIR);
}

QString demo_model_dir() { return resources_dir() + QStringLiteral("/models/tiny-opt-16m"); }
QString sample_text_path() { return resources_dir() + QStringLiteral("/data/c4-sample.txt"); }

}  // namespace rptq::ui
