#include "rptq/export/stats_file.h"

#include <cmath>

#include "io/hdf5_util.h"
#include "rptq/base/error.h"

namespace rptq {

namespace {
constexpr const char* kFormat = "rptq-channel-stats";
constexpr const char* kFields[] = {"ema_max", "ema_min", "max", "min"};

std::vector<float>& field(TapRanges& r, int i) {
  switch (i) {
    case 0: return r.ema_max;
    case 1: return r.ema_min;
    case 2: return r.max;
    default: return r.min;
  }
}
const std::vector<float>& field(const TapRanges& r, int i) { return field(const_cast<TapRanges&>(r), i); }

void write_ranges(h5::Writer& w, const std::string& group, const TapRanges& r) {
  w.group(group);
  w.attr(group, "samples", r.samples);
  for (int i = 0; i < 4; ++i)
    w.write_f32(group + "/" + kFields[i], {r.channels()}, field(r, i).data());
  if (r.has_samples()) {
    w.write_f32(group + "/sample_max", {r.samples, r.channels()}, r.sample_max.data(), /*compress=*/true);
    w.write_f32(group + "/sample_min", {r.samples, r.channels()}, r.sample_min.data(), /*compress=*/true);
  }
}

// with_samples: read the per-sample ranges where the file has them (format version 2, a tap's group).
TapRanges read_ranges(const h5::Reader& f, const std::string& group, std::int64_t channels, bool with_samples) {
  TapRanges r;
  r.samples = f.attr_int(group, "samples");
  if (r.samples < 1 || r.samples > (1 << 24)) f.fail(group + ": implausible sample count " + std::to_string(r.samples));
  for (int i = 0; i < 4; ++i) field(r, i) = f.read_f32(group + "/" + kFields[i], {channels});
  if (with_samples && f.exists(group + "/sample_max")) {
    r.sample_max = f.read_f32(group + "/sample_max", {r.samples, channels});
    r.sample_min = f.read_f32(group + "/sample_min", {r.samples, channels});
  }
  // Ranges are finite, and no channel's maximum is below its minimum: k-means and the quantizers downstream would
  // otherwise fail far from the file (or silently quantize with NaN).
  auto check = [&](const std::vector<float>& hi, const std::vector<float>& lo, const char* hn, const char* ln) {
    for (std::size_t i = 0; i < hi.size(); ++i) {
      if (!std::isfinite(hi[i]) || !std::isfinite(lo[i]))
        f.fail(group + "/" + (std::isfinite(hi[i]) ? ln : hn) + ": value " + std::to_string(i) + " is not finite");
      if (hi[i] < lo[i])
        f.fail(group + ": " + hn + " " + std::to_string(hi[i]) + " is below " + ln + " " + std::to_string(lo[i]) +
               " at " + std::to_string(i));
    }
  };
  check(r.ema_max, r.ema_min, "ema_max", "ema_min");
  check(r.max, r.min, "max", "min");
  check(r.sample_max, r.sample_min, "sample_max", "sample_min");
  return r;
}
}  // namespace

void save_stats(const std::filesystem::path& path, const ChannelStats& s, bool overwrite) {
  // Everything is checked before the file is created.
  const std::string where = path.string() + ": cannot save statistics: ";
  if (static_cast<std::int64_t>(s.tokens.size()) != s.settings.samples * s.settings.seqlen)
    throw InputError(where + std::to_string(s.tokens.size()) + " calibration tokens for " +
                     std::to_string(s.settings.samples) + " x " + std::to_string(s.settings.seqlen));
  if (static_cast<std::int64_t>(s.ranges.size()) != s.layers)
    throw InputError(where + std::to_string(s.ranges.size()) + " layers of ranges for " + std::to_string(s.layers));
  for (std::size_t l = 0; l < s.ranges.size(); ++l) {
    auto check = [&](const TapRanges& r, std::int64_t n, const std::string& what) {
      for (int i = 0; i < 4; ++i)
        if (static_cast<std::int64_t>(field(r, i).size()) != n)
          throw InputError(where + "layer " + std::to_string(l) + " " + what + " " + kFields[i] + " has " +
                           std::to_string(field(r, i).size()) + " values, expected " + std::to_string(n));
    };
    for (int t = 0; t < kTapCount; ++t) {
      const TapRanges& r = s.ranges[l].taps[static_cast<std::size_t>(t)];
      check(r, tap_channels(s.model_shape(), static_cast<Tap>(t)), tap_name(static_cast<Tap>(t)));
    }
    check(s.ranges[l].scores, s.heads, "attn_scores");
  }
  h5::Writer w(path, overwrite);
  w.attr("/", "format", std::string(kFormat));
  w.attr("/", "format_version", std::int64_t{kStatsFormatVersion});
  w.attr("/", "tool_version", s.tool_version);
  w.attr("/", "created", s.created);

  w.group("/model");
  w.attr("/model", "path", s.model_path);
  w.attr("/model", "model_type", s.model_type);
  w.attr("/model", "architecture", s.architecture);
  w.attr("/model", "config_sha256", s.config_sha256);
  w.attr("/model", "layers", s.layers);
  w.attr("/model", "hidden_size", s.hidden);
  w.attr("/model", "heads", s.heads);
  w.attr("/model", "kv_heads", s.kv_heads);
  w.attr("/model", "head_dim", s.head_dim);
  w.attr("/model", "intermediate_size", s.intermediate);

  w.group("/calibration");
  w.attr("/calibration", "data_path", s.data_path);
  w.attr("/calibration", "data_sha256", s.data_sha256);
  w.attr("/calibration", "samples", s.settings.samples);
  w.attr("/calibration", "seqlen", s.settings.seqlen);
  w.attr("/calibration", "seed", static_cast<std::int64_t>(s.settings.seed));
  w.attr("/calibration", "seconds", s.seconds);
  w.attr("/calibration", "statistic", std::string(range_stat_name(s.settings.stat)));
  w.write_i32("/calibration/tokens", {s.settings.samples, s.settings.seqlen}, s.tokens.data(), /*compress=*/true);

  for (std::size_t l = 0; l < s.ranges.size(); ++l) {
    const std::string g = "/layers/" + std::to_string(l);
    w.group(g);
    for (int t = 0; t < kTapCount; ++t)
      write_ranges(w, g + "/" + tap_name(static_cast<Tap>(t)), s.ranges[l].taps[static_cast<std::size_t>(t)]);
    write_ranges(w, g + "/attn_scores", s.ranges[l].scores);
  }
  w.commit();
}

namespace {

ChannelStats read_stats(const std::filesystem::path& path) {
  const h5::Reader f(path);
  const std::int64_t version = f.check_format(kFormat, kStatsFormatVersion, "RPTQ channel statistics file");

  ChannelStats s;
  s.tool_version = f.attr_string("/", "tool_version");
  s.created = f.attr_string("/", "created");
  s.model_path = f.attr_string("/model", "path");
  s.model_type = f.attr_string("/model", "model_type");
  s.architecture = f.attr_string("/model", "architecture");
  s.config_sha256 = f.attr_string("/model", "config_sha256");
  s.layers = f.attr_int("/model", "layers");
  s.hidden = f.attr_int("/model", "hidden_size");
  s.heads = f.attr_int("/model", "heads");
  s.kv_heads = f.attr_int("/model", "kv_heads");
  s.head_dim = f.attr_int("/model", "head_dim");
  s.intermediate = f.attr_int("/model", "intermediate_size");
  auto sane = [&](std::int64_t v, const char* what, std::int64_t hi) {
    if (v < 1 || v > hi) f.fail(std::string("implausible ") + what + " " + std::to_string(v));
  };
  sane(s.layers, "layer count", 1 << 12);
  sane(s.hidden, "hidden size", 1 << 20);
  sane(s.heads, "head count", 1 << 14);
  sane(s.kv_heads, "KV head count", s.heads);
  sane(s.head_dim, "head size", 1 << 14);
  sane(s.intermediate, "intermediate size", 1 << 22);

  s.data_path = f.attr_string("/calibration", "data_path");
  s.data_sha256 = f.attr_string("/calibration", "data_sha256");
  s.settings.samples = f.attr_int("/calibration", "samples");
  s.settings.seqlen = f.attr_int("/calibration", "seqlen");
  s.settings.seed = static_cast<std::uint64_t>(f.attr_int("/calibration", "seed"));
  s.seconds = f.attr_double("/calibration", "seconds");
  try {
    s.settings.stat = parse_range_stat(f.attr_string("/calibration", "statistic"));
  } catch (const InputError& e) {
    f.fail(std::string("/calibration statistic: ") + e.what());
  }
  sane(s.settings.samples, "sample count", 1 << 24);
  sane(s.settings.seqlen, "sequence length", 1 << 24);
  s.tokens = f.read_i32("/calibration/tokens", {s.settings.samples, s.settings.seqlen});

  s.ranges.resize(static_cast<std::size_t>(s.layers));
  for (std::int64_t l = 0; l < s.layers; ++l) {
    const std::string g = "/layers/" + std::to_string(l);
    if (!f.exists(g)) f.fail("missing group " + g + " (the file says " + std::to_string(s.layers) + " layers)");
    for (int t = 0; t < kTapCount; ++t) {
      const Tap tap = static_cast<Tap>(t);
      s.ranges[static_cast<std::size_t>(l)].taps[static_cast<std::size_t>(t)] =
          read_ranges(f, g + "/" + tap_name(tap), tap_channels(s.model_shape(), tap), version >= 2);
    }
    s.ranges[static_cast<std::size_t>(l)].scores = read_ranges(f, g + "/attn_scores", s.heads, false);
  }
  return s;
}

}  // namespace

// Read in a child process first (h5::guarded): a damaged file crashes or hangs the child, not the caller.
ChannelStats load_stats(const std::filesystem::path& path) {
  return h5::guarded(path, [&] { return read_stats(path); });
}

}  // namespace rptq
