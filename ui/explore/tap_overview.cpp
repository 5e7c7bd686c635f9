#include "explore/tap_overview.h"

#include <algorithm>

namespace rptq::ui {

TapOverview make_tap_overview(const rptq::ChannelStats& stats, rptq::RangeStat stat) {
  TapOverview o;
  o.stat = stat;
  o.layers.resize(stats.ranges.size());
  std::vector<double> widths;
  for (std::size_t l = 0; l < stats.ranges.size(); ++l)
    for (rptq::Tap t : rptq::kAllTaps) {
      const rptq::TapRanges& tr = stats.ranges[l].tap(t);
      const auto& hi = tr.hi(stat);
      const auto& lo = tr.lo(stat);
      TapWidth& w = o.layers[l][static_cast<std::size_t>(t)];
      w.channels = static_cast<std::int64_t>(std::min(hi.size(), lo.size()));
      if (w.channels == 0) continue;
      widths.resize(static_cast<std::size_t>(w.channels));
      for (std::int64_t c = 0; c < w.channels; ++c) {
        const auto i = static_cast<std::size_t>(c);
        widths[i] = static_cast<double>(hi[i]) - static_cast<double>(lo[i]);
        if (w.widest_channel < 0 || widths[i] > w.widest) {
          w.widest = widths[i];
          w.widest_channel = c;
          w.widest_min = lo[i];
          w.widest_max = hi[i];
        }
      }
      auto mid = widths.begin() + static_cast<std::ptrdiff_t>(widths.size() / 2);
      std::nth_element(widths.begin(), mid, widths.end());
      w.median = *mid;
    }
  return o;
}

}  // namespace rptq::ui
