#pragma once
// How numbers are written in the UI.
#include <QString>

#include <cstdint>

namespace rptq::ui {

QString human_bytes(std::uint64_t bytes);        // "31.0 MiB"
QString human_count(std::int64_t n);              // "16.2 M", "260 K", "512"
QString grouped(std::int64_t n);                  // "16,229,632"
QString human_seconds(double seconds);            // "0.4 ms", "850 ms", "12.3 s", "4 min 05 s"
QString compact_number(double v, int digits = 4);  // "-12.35", "1.2e+04"

}  // namespace rptq::ui
