#pragma once
// The channel statistics file (HDF5): everything calibration measured, the model's identity and the calibration
// settings, so a model is calibrated once and quantized many times. Layout: docs/stats-format.md.
#include <filesystem>

#include "rptq/method/calibration.h"

namespace rptq {

// 2: per-sample ranges of every tap. 3: the same objects in the checksummed HDF5 layout (io/hdf5_util.h: 1.10 file
// format, fixed-length strings, Fletcher-32 on every dataset). 1 and 2 are still read.
constexpr int kStatsFormatVersion = 3;

// Writes atomically (a temporary file beside `path`, renamed into place when complete and synced). An existing
// file is replaced only with overwrite; otherwise InputError.
void save_stats(const std::filesystem::path& path, const ChannelStats& stats, bool overwrite = false);

// Throws InputError naming the file and the problem: missing, not HDF5, truncated, not a statistics file, a
// format version newer than this tool, missing or mis-shaped datasets.
ChannelStats load_stats(const std::filesystem::path& path);

}  // namespace rptq
