#include "common/cluster_palette.h"

#include <QList>

#include <cmath>

namespace rptq::ui {

QColor cluster_color(int cluster) {
  // Tableau 10, then its light companions; beyond 20, hues stepped by the golden angle at alternating lightness.
  static const QList<QColor> base = {
      QColor(0x4e79a7), QColor(0xf28e2b), QColor(0xe15759), QColor(0x76b7b2), QColor(0x59a14f),
      QColor(0xedc948), QColor(0xb07aa1), QColor(0xff9da7), QColor(0x9c755f), QColor(0x79706e),
      QColor(0xa0cbe8), QColor(0xffbe7d), QColor(0xff9d9a), QColor(0x86bcb6), QColor(0x8cd17d),
      QColor(0xf1ce63), QColor(0xd4a6c8), QColor(0xfabfd2), QColor(0xd7b5a6), QColor(0xbab0ac)};
  if (cluster >= 0 && cluster < base.size()) return base[cluster];
  const int i = cluster - static_cast<int>(base.size());
  const double hue = std::fmod(0.11 + i * 0.618033988749895, 1.0);
  const int level = i % 3;
  // Hue in 1/3600 steps plus the level make every id's colour distinct.
  return QColor::fromHsvF(static_cast<float>(hue), level == 1 ? 0.45f : 0.75f, level == 2 ? 0.62f : 0.86f);
}

}  // namespace rptq::ui
