#include "session/persisted.h"

#include <QCryptographicHash>
#include <QFileInfo>
#include <QSettings>

namespace rptq::ui {

namespace {
const char* kRecent = "models/recent";
const char* kLast = "models/last";

// Settings keys cannot hold arbitrary paths (slashes make groups): a model is keyed by its path's hash.
QString model_key(const QString& model_path) {
  const QString canonical = QFileInfo(model_path).canonicalFilePath();
  const QByteArray h = QCryptographicHash::hash((canonical.isEmpty() ? model_path : canonical).toUtf8(),
                                                QCryptographicHash::Sha1);
  return QStringLiteral("statistics/") + QString::fromLatin1(h.toHex().left(16));
}
}  // namespace

QStringList recent_models() {
  QStringList out;
  for (const QString& p : QSettings().value(kRecent).toStringList())
    if (QFileInfo::exists(p)) out << p;
  return out;
}

void add_recent_model(const QString& path) {
  QSettings s;
  QStringList list = s.value(kRecent).toStringList();
  list.removeAll(path);
  list.prepend(path);
  while (list.size() > kMaxRecentModels) list.removeLast();
  s.setValue(kRecent, list);
}

void clear_recent_models() { QSettings().remove(kRecent); }

QString last_model() { return QSettings().value(kLast).toString(); }
void set_last_model(const QString& path) { QSettings().setValue(kLast, path); }
bool first_start() { return !QSettings().contains(kLast); }

QString last_stats_for(const QString& model_path) {
  const QString p = QSettings().value(model_key(model_path)).toString();
  return !p.isEmpty() && QFileInfo::exists(p) ? p : QString();
}

void remember_stats_for(const QString& model_path, const QString& stats_path) {
  QSettings().setValue(model_key(model_path), stats_path);
}

}  // namespace rptq::ui
