#pragma once
// Colours of channel clusters: distinct, stable for a cluster id (cluster ids are ordered by centroid, so the same
// k gives the same colours for the same ranges), readable on white.
#include <QColor>

namespace rptq::ui {

QColor cluster_color(int cluster);

}  // namespace rptq::ui
