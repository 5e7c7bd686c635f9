#pragma once
// The models in the local Hugging Face cache: every snapshot HUB/models--ORG--NAME/snapshots/REV that holds a
// config.json. HUB is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub (huggingface_hub's own order).
#include <QList>
#include <QString>

#include <cstdint>

namespace rptq::ui {

struct CachedModel {
  QString repo;      // "facebook/opt-125m"
  QString revision;  // snapshot folder name (a commit hash)
  QString path;      // the snapshot folder
  std::uint64_t bytes = 0;  // files in the snapshot (following the cache's symlinks to blobs)
};

QString hf_hub_cache_dir();
// Reads the folders (no model is opened); safe to call off the UI thread.
QList<CachedModel> scan_hf_cache(const QString& hub_dir);

}  // namespace rptq::ui
