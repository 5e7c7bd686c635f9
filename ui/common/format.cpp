#include "common/format.h"

#include <QLocale>

#include <cmath>

namespace rptq::ui {

QString human_bytes(std::uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? QStringLiteral("%1 B").arg(bytes) : QStringLiteral("%1 %2").arg(v, 0, 'f', 1).arg(units[u]);
}

QString human_count(std::int64_t n) {
  const double v = static_cast<double>(n);
  if (std::fabs(v) >= 1e9) return QStringLiteral("%1 G").arg(v / 1e9, 0, 'f', 2);
  if (std::fabs(v) >= 1e6) return QStringLiteral("%1 M").arg(v / 1e6, 0, 'f', 1);
  if (std::fabs(v) >= 1e4) return QStringLiteral("%1 K").arg(v / 1e3, 0, 'f', 0);
  return QString::number(n);
}

QString grouped(std::int64_t n) { return QLocale(QLocale::English).toString(static_cast<qlonglong>(n)); }

QString human_seconds(double s) {
  if (s < 0.01) return QStringLiteral("%1 ms").arg(s * 1000.0, 0, 'f', 1);  // "0.4 ms", not "0 ms"
  if (s < 1.0) return QStringLiteral("%1 ms").arg(std::lround(s * 1000.0));
  if (s < 60.0) return QStringLiteral("%1 s").arg(s, 0, 'f', 1);
  const long total = std::lround(s);
  if (total < 3600) return QStringLiteral("%1 min %2 s").arg(total / 60).arg(total % 60, 2, 10, QChar('0'));
  return QStringLiteral("%1 h %2 min").arg(total / 3600).arg((total % 3600) / 60, 2, 10, QChar('0'));
}

QString compact_number(double v, int digits) { return QString::number(v, 'g', digits); }

}  // namespace rptq::ui
