#pragma once
// Where the ranges are widest: for every layer and tap, the channel with the widest calibration range (max - min)
// and how it compares with the median channel (the outlier ratio that makes one per-tensor quantizer so coarse).
// A presentation summary of the statistics file, computed once per file on a worker thread.
#include <array>
#include <cstdint>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/method/quant_config.h"
#include "rptq/model/tap.h"

namespace rptq::ui {

struct TapWidth {
  std::int64_t channels = 0;
  std::int64_t widest_channel = -1;
  float widest_min = 0, widest_max = 0;
  double widest = 0;        // max - min of the widest channel
  double median = 0;        // median of max - min over the channels
  double ratio() const { return median > 0 ? widest / median : 0.0; }
};

struct TapOverview {
  rptq::RangeStat stat = rptq::RangeStat::Ema;
  std::vector<std::array<TapWidth, rptq::kTapCount>> layers;  // [layer][tap]
};

TapOverview make_tap_overview(const rptq::ChannelStats& stats, rptq::RangeStat stat);

}  // namespace rptq::ui
