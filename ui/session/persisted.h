#pragma once
// What the workbench remembers between runs (QSettings): recently opened models, and the statistics file last
// calibrated or loaded for each model, so re-opening a model can offer it.
#include <QString>
#include <QStringList>

namespace rptq::ui {

constexpr int kMaxRecentModels = 10;

QStringList recent_models();               // most recent first; only paths that still exist
void add_recent_model(const QString& path);
void clear_recent_models();

QString last_model();                      // the model open when the workbench last closed ("" on first start)
void set_last_model(const QString& path);
bool first_start();                        // nothing was ever opened (the demo model opens)

QString last_stats_for(const QString& model_path);  // "" when none or the file is gone
void remember_stats_for(const QString& model_path, const QString& stats_path);

}  // namespace rptq::ui
