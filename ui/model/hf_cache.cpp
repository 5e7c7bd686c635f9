#include "model/hf_cache.h"

#include <QDir>
#include <QDirIterator>
#include <QFileInfo>

#include <algorithm>

namespace rptq::ui {

QString hf_hub_cache_dir() {
  const QString hub = qEnvironmentVariable("HF_HUB_CACHE");
  if (!hub.isEmpty()) return hub;
  const QString home = qEnvironmentVariable("HF_HOME");
  if (!home.isEmpty()) return home + QStringLiteral("/hub");
  const QString xdg = qEnvironmentVariable("XDG_CACHE_HOME");
  if (!xdg.isEmpty()) return xdg + QStringLiteral("/huggingface/hub");
  return QDir::homePath() + QStringLiteral("/.cache/huggingface/hub");
}

QList<CachedModel> scan_hf_cache(const QString& hub_dir) {
  QList<CachedModel> out;
  const QDir hub(hub_dir);
  for (const QFileInfo& repo : hub.entryInfoList({QStringLiteral("models--*")}, QDir::Dirs | QDir::NoDotAndDotDot)) {
    // models--ORG--NAME; a name without an organisation is models--NAME.
    const QString id = repo.fileName().mid(8).replace(QStringLiteral("--"), QStringLiteral("/"));
    const QDir snaps(repo.absoluteFilePath() + QStringLiteral("/snapshots"));
    for (const QFileInfo& snap : snaps.entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Time)) {
      if (!QFileInfo::exists(snap.absoluteFilePath() + QStringLiteral("/config.json"))) continue;
      CachedModel m;
      m.repo = id;
      m.revision = snap.fileName();
      m.path = snap.absoluteFilePath();
      QDirIterator it(m.path, QDir::Files, QDirIterator::Subdirectories);
      while (it.hasNext()) {
        it.next();
        m.bytes += static_cast<std::uint64_t>(QFileInfo(it.fileInfo().canonicalFilePath()).size());
      }
      out << m;
    }
  }
  std::sort(out.begin(), out.end(), [](const CachedModel& a, const CachedModel& b) {
    return a.repo.compare(b.repo, Qt::CaseInsensitive) < 0;
  });
  return out;
}

}  // namespace rptq::ui
