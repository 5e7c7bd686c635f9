#include "rptq/method/sweep.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "rptq/base/error.h"
#include "rptq/engine.h"
#include "rptq/io/files.h"
#include "rptq/method/quant_config_json.h"
#include "rptq/model/model.h"

namespace rptq {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "rptq-sweep";
constexpr int kVersion = 1;
constexpr int kMaxClusters = 65536;
constexpr std::uint64_t kMaxFileBytes = std::uint64_t{64} << 20;  // a sweep file is a few kB per point

// The activation taps a bits sweep may target: every tap but K and V (the kvbits axis).
constexpr Tap kActivationTaps[] = {Tap::AttnInput, Tap::Q, Tap::AttnOutput, Tap::FfnInput, Tap::FfnHidden};

// "R1".."R5" (built by append: GCC 12 warns falsely, -Wrestrict, on "R" + std::string).
std::string index_name(int r) { return std::string("R").append(std::to_string(r)); }

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string trim(const std::string& s) {
  std::size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

bool is_bits_axis(SweepAxis a) { return a != SweepAxis::Clusters; }

// The reorder index 1..5 a clusters target names ("R1".."R5"), 0 for "all".
int target_index(const std::string& target) {
  if (target.size() == 2 && (target[0] == 'R' || target[0] == 'r') && target[1] >= '1' && target[1] <= '5')
    return target[1] - '0';
  return 0;
}

// The tap a bits target names, or false for "all".
bool target_tap(const std::string& target, Tap& tap) {
  for (Tap t : kAllTaps)
    if (target == tap_name(t)) {
      tap = t;
      return true;
    }
  return false;
}

// Why `v` is not a value of the axis, or "" when it is.
std::string bad_value(SweepAxis axis, long long v) {
  if (is_bits_axis(axis)) {
    if (v == kFullPrecisionBits || (v >= 2 && v <= 8)) return "";
    return std::to_string(v) + " is not a bit width (2..8, or 16 for full precision)";
  }
  if (v >= 1 && v <= kMaxClusters) return "";
  return std::to_string(v) + " is not a cluster count (1.." + std::to_string(kMaxClusters) + ")";
}

// R1..R5: the largest number of clusters any layer's reorder index has (R2/R3 per KV head; R2 of rotary models
// clusters channel pairs, each cluster two runs of positions, so its runs count half).
std::array<int, kReorderIndices> clusters_used(const QuantizedModel& q) {
  const ModelConfig& m = q.model().config();
  std::array<int, kReorderIndices> used{};
  for (int l = 0; l < q.layers(); ++l)
    for (int r = 1; r <= kReorderIndices; ++r) {
      const ReorderIndex& idx = q.layer(l).reorder.index(r);
      if (idx.boundaries.size() < 2) continue;
      int k = idx.clusters();
      if (r == 2 || r == 3) {
        k = 0;
        for (std::int64_t g = 0; g < m.kv_heads; ++g) {
          const std::int64_t lo = g * m.head_dim, hi = (g + 1) * m.head_dim;
          int runs = 0;
          for (std::int64_t b : idx.boundaries) runs += b > lo && b <= hi;
          if (r == 2 && m.arch != Architecture::OPT) runs /= 2;
          k = std::max(k, runs);
        }
      }
      int& u = used[static_cast<std::size_t>(r - 1)];
      u = std::max(u, k);
    }
  return used;
}

// ---- JSON ----

[[noreturn]] void bad_file(const std::string& source, const std::string& why) {
  throw InputError(source + ": not a valid rptq sweep file (" + why + ")");
}

const json& member(const json& j, const char* key, const std::string& where) {
  if (!j.is_object()) bad_file(where, "expected an object");
  const auto it = j.find(key);
  if (it == j.end()) bad_file(where, std::string("\"") + key + "\" is missing");
  return *it;
}
std::int64_t get_int(const json& j, const char* key, const std::string& where, std::int64_t lo, std::int64_t hi) {
  const json& v = member(j, key, where);
  if (!v.is_number_integer()) bad_file(where, std::string("\"") + key + "\" is not an integer");
  std::int64_t x = 0;
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      bad_file(where, std::string("\"") + key + "\" is out of range");
    x = static_cast<std::int64_t>(u);
  } else {
    x = v.get<std::int64_t>();
  }
  if (x < lo || x > hi)
    bad_file(where, std::string("\"") + key + "\" = " + std::to_string(x) + " is outside " + std::to_string(lo) +
                        ".." + std::to_string(hi));
  return x;
}
int get_int32(const json& j, const char* key, const std::string& where, int lo, int hi) {
  return static_cast<int>(get_int(j, key, where, lo, hi));
}
double get_double(const json& j, const char* key, const std::string& where) {
  const json& v = member(j, key, where);
  if (v.is_null()) return std::numeric_limits<double>::quiet_NaN();  // how a non-finite number was written
  if (!v.is_number()) bad_file(where, std::string("\"") + key + "\" is not a number");
  return v.get<double>();
}
double optional_double(const json& j, const char* key, const std::string& where) {
  return j.contains(key) ? get_double(j, key, where) : std::numeric_limits<double>::quiet_NaN();
}
std::string get_string(const json& j, const char* key, const std::string& where) {
  const json& v = member(j, key, where);
  if (!v.is_string()) bad_file(where, std::string("\"") + key + "\" is not a string");
  return v.get<std::string>();
}
bool get_bool(const json& j, const char* key, const std::string& where) {
  const json& v = member(j, key, where);
  if (!v.is_boolean()) bad_file(where, std::string("\"") + key + "\" is not true or false");
  return v.get<bool>();
}
std::uint64_t get_uint64(const json& j, const char* key, const std::string& where) {
  const json& v = member(j, key, where);
  if (!v.is_number_unsigned()) bad_file(where, std::string("\"") + key + "\" is not an unsigned integer");
  return v.get<std::uint64_t>();
}

json number(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

// "text" as one CSV field: quoted when it holds a comma, a quote or a line break (quotes doubled).
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}
std::string exact(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

}  // namespace

const char* sweep_axis_name(SweepAxis a) {
  switch (a) {
    case SweepAxis::Clusters: return "clusters";
    case SweepAxis::ActivationBits: return "abits";
    case SweepAxis::KvBits: return "kvbits";
    case SweepAxis::WeightBits: return "wbits";
  }
  return "?";
}

SweepAxis parse_sweep_axis(const std::string& name) {
  const std::string l = lower(trim(name));
  for (SweepAxis a : {SweepAxis::Clusters, SweepAxis::ActivationBits, SweepAxis::KvBits, SweepAxis::WeightBits})
    if (l == sweep_axis_name(a)) return a;
  throw InputError("unknown sweep axis \"" + name + "\" (clusters, abits, kvbits or wbits)");
}

void SweepSpec::validate() const {
  const std::string axis_name = sweep_axis_name(axis);
  switch (axis) {
    case SweepAxis::Clusters:
      if (target != "all" && target_index(target) == 0)
        throw InputError("sweep target \"" + target + "\" is not R1..R5 or all (the clusters axis)");
      break;
    case SweepAxis::ActivationBits: {
      Tap t{};
      if (target == "all") break;
      if (!target_tap(target, t))
        throw InputError("sweep target \"" + target +
                         "\" is not a tap name (attn_input, q, attn_output, ffn_input, ffn_hidden) or all (the abits "
                         "axis)");
      if (t == Tap::K || t == Tap::V)
        throw InputError("sweep target \"" + target + "\" is the KV cache: sweep it with the kvbits axis");
      break;
    }
    case SweepAxis::KvBits:
    case SweepAxis::WeightBits:
      if (target != "all")
        throw InputError("sweep target \"" + target + "\": the " + axis_name + " axis has one target, all");
      break;
  }
  if (values.empty()) throw InputError("a sweep needs at least one value");
  if (values.size() > static_cast<std::size_t>(kMaxSweepPoints))
    throw InputError("a sweep of " + std::to_string(values.size()) + " values is more than the " +
                     std::to_string(kMaxSweepPoints) + " allowed");
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::string why = bad_value(axis, values[i]);
    if (!why.empty()) throw InputError("sweep value " + why);
    if (i > 0 && values[i] <= values[i - 1]) throw InputError("sweep values must ascend, each once");
  }
}

std::string SweepSpec::setting(int value) const {
  const std::string v = std::to_string(value);
  switch (axis) {
    case SweepAxis::Clusters: return (target == "all" ? std::string("clusters") : target) + "=" + v;
    case SweepAxis::ActivationBits: return (target == "all" ? std::string("abits") : target) + "=" + v;
    case SweepAxis::KvBits: return "kvbits=" + v;
    case SweepAxis::WeightBits: return "wbits=" + v;
  }
  return v;
}

std::string SweepSpec::axis_label() const {
  switch (axis) {
    case SweepAxis::Clusters: return "clusters of " + (target == "all" ? std::string("R1..R5") : target);
    case SweepAxis::ActivationBits: return target == "all" ? "activation bits" : "bits of " + target;
    case SweepAxis::KvBits: return "KV-cache bits";
    case SweepAxis::WeightBits: return "weight bits";
  }
  return "";
}

QuantConfig SweepSpec::apply(const QuantConfig& base, int value) const {
  QuantConfig c = base;
  c.name = base.name + " " + setting(value);
  switch (axis) {
    case SweepAxis::Clusters: {
      const int r = target_index(target);
      if (r == 0)
        c.clusters.fill(value);
      else
        c.clusters[static_cast<std::size_t>(r - 1)] = value;
      break;
    }
    case SweepAxis::ActivationBits: {
      Tap t{};
      if (target_tap(target, t)) {
        c.abits[static_cast<std::size_t>(t)] = value;
      } else {
        for (Tap a : kActivationTaps) c.abits[static_cast<std::size_t>(a)] = value;
      }
      break;
    }
    case SweepAxis::KvBits:
      c.abits[static_cast<std::size_t>(Tap::K)] = value;
      c.abits[static_cast<std::size_t>(Tap::V)] = value;
      break;
    case SweepAxis::WeightBits: c.wbits = value; break;
  }
  return c;
}

std::vector<int> parse_sweep_values(const std::string& spec, SweepAxis axis) {
  auto bad = [&](const std::string& part, const std::string& why) {
    return InputError("sweep values \"" + spec + "\": \"" + part + "\" " + why);
  };
  // A plain number of at most 9 digits (no sign, no overflow).
  auto to_int = [&](const std::string& s, const std::string& part) {
    if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw bad(part, "is not N, A-B (every integer from A to B) or A..B (A, 2A, 4A, ... up to B)");
    return std::stoll(s);
  };
  std::vector<long long> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = spec.find(',', start);
    const std::string part = trim(spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (part.empty()) throw InputError("sweep values \"" + spec + "\": an empty item (N, A-B or A..B)");
    const std::size_t first = out.size();
    const std::size_t dots = part.find("..");
    const std::size_t dash = part.find('-');
    if (dots != std::string::npos) {
      const long long a = to_int(trim(part.substr(0, dots)), part), b = to_int(trim(part.substr(dots + 2)), part);
      if (a < 1) throw bad(part, "doubles from " + std::to_string(a) + ": it must start at 1 or more");
      if (b < a) throw bad(part, "runs backwards");
      for (long long v = a; v <= b; v *= 2) out.push_back(v);
    } else if (dash != std::string::npos) {
      const long long a = to_int(trim(part.substr(0, dash)), part), b = to_int(trim(part.substr(dash + 1)), part);
      if (b < a) throw bad(part, "runs backwards");
      if (b - a >= kMaxSweepPoints)
        throw bad(part, "has more than the " + std::to_string(kMaxSweepPoints) + " values a sweep may have");
      for (long long v = a; v <= b; ++v) out.push_back(v);
    } else {
      out.push_back(to_int(part, part));
    }
    for (std::size_t i = first; i < out.size(); ++i) {
      const std::string why = bad_value(axis, out[i]);
      if (!why.empty()) throw bad(part, "holds " + why);
    }
    if (out.size() > static_cast<std::size_t>(4 * kMaxSweepPoints))
      throw InputError("sweep values \"" + spec + "\": more than the " + std::to_string(kMaxSweepPoints) +
                       " values a sweep may have");
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > static_cast<std::size_t>(kMaxSweepPoints))
    throw InputError("sweep values \"" + spec + "\": " + std::to_string(out.size()) + " values, more than the " +
                     std::to_string(kMaxSweepPoints) + " a sweep may have");
  return {out.begin(), out.end()};
}

std::vector<int> default_sweep_values(SweepAxis axis) {
  if (axis == SweepAxis::Clusters) return {1, 2, 4, 8, 16, 32, 64};
  return {2, 3, 4, 5, 6, 7, 8, kFullPrecisionBits};
}

SweepSpec make_sweep_spec(const std::string& axis, const std::string& target, const std::string& values) {
  SweepSpec s;
  s.axis = parse_sweep_axis(axis);
  const std::string t = trim(target);
  s.target = t.empty() ? "all" : lower(t);
  if (s.axis == SweepAxis::Clusters && target_index(s.target) != 0) s.target[0] = 'R';
  s.values = trim(values).empty() ? default_sweep_values(s.axis) : parse_sweep_values(values, s.axis);
  try {
    s.validate();
  } catch (const InputError& e) {
    // Name the target as the user wrote it, not as normalised.
    std::string msg = e.what();
    const std::string quoted = std::string("\"").append(s.target).append("\"");
    const auto at = msg.find(quoted);
    if (at != std::string::npos) msg.replace(at, quoted.size(), std::string("\"").append(t).append("\""));
    throw InputError(msg);
  }
  return s;
}

double SweepProgress::fraction() const {
  if (points <= 0) return 1.0;
  double within = 0;
  const double share = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0.0;
  switch (phase) {
    case Phase::Quantize: within = 0.5 * share; break;
    case Phase::Compare: within = 0.5 + 0.5 * share; break;
    case Phase::PointDone: within = 1.0; break;
  }
  return std::clamp((point + within) / points, 0.0, 1.0);
}

SweepResult run_sweep(const SweepSpec& spec, const QuantConfig& base, const QuantizeOptions& opts, const Model& fp,
                      const ModelFactory& fresh_model, const ChannelStats& stats, std::span<const std::int32_t> ids,
                      const PerplexityOptions& po, const Execution& exec, const SweepCallback& progress) {
  const auto start = std::chrono::steady_clock::now();
  spec.validate();
  if (opts.reorder_only)
    throw InputError("a reorder-only setting quantizes nothing: there is nothing to sweep");
  if (!fresh_model) throw InputError("a sweep needs a way to make a fresh copy of the model for each point");
  // Every point's setting, checked before anything runs.
  std::vector<QuantConfig> configs;
  for (int v : spec.values) {
    QuantConfig c = spec.apply(base, v);
    try {
      c.validate();
    } catch (const InputError& e) {
      throw InputError("sweep point " + spec.setting(v) + ": " + e.what());
    }
    configs.push_back(std::move(c));
  }
  PerplexityOptions eval = po;
  eval.progress = {};
  perplexity_windows(ids, eval);  // a text too short for one window fails now, not after the first quantization

  SweepResult res;
  res.spec = spec;
  res.base = base;
  res.stat = opts.stat;
  res.sequential = opts.sequential;
  res.kmeans_seed = opts.seed;
  res.device = exec.describe();

  SweepProgress sp;
  sp.points = static_cast<int>(spec.values.size());
  auto report = [&]() { return !progress || progress(sp); };
  for (std::size_t i = 0; i < spec.values.size(); ++i) {
    sp.point = static_cast<int>(i);
    sp.value = spec.values[i];
    sp.phase = SweepProgress::Phase::Quantize;
    sp.done = 0;
    sp.total = 0;
    if (!report()) throw Cancelled();
    QuantizeOptions qo = opts;
    qo.progress = [&](const LayerwiseProgress& lp) {
      sp.done = lp.done;
      sp.total = lp.total;
      return report();
    };
    std::unique_ptr<Model> copy = fresh_model();
    if (!copy) throw InputError("the sweep's model factory made no model");
    const std::unique_ptr<QuantizedModel> q = quantize(std::move(copy), stats, configs[i], qo, exec);

    sp.phase = SweepProgress::Phase::Compare;
    sp.done = 0;
    sp.total = 0;
    if (!report()) throw Cancelled();
    PerplexityOptions co = eval;
    co.progress = [&](std::int64_t done, std::int64_t total) {
      sp.done = done;
      sp.total = total;
      return report();
    };
    const CompareResult c = compare_models(fp, nullptr, q->model(), q.get(), ids, co, exec);

    SweepPoint p;
    p.value = spec.values[i];
    p.name = configs[i].name;
    p.description = configs[i].describe();
    p.clusters_used = clusters_used(*q);
    p.ppl_q = c.q.ppl;
    p.kl = c.kl;
    p.kl_p50 = c.kl_p50;
    p.kl_p90 = c.kl_p90;
    p.kl_p99 = c.kl_p99;
    p.kl_max = c.kl_max;
    p.top1_agreement = c.top1_agreement;
    p.top1_changed = c.top1_changed;
    p.quantize_seconds = q->seconds;
    p.compare_seconds = c.seconds;
    if (i == 0) {
      res.ppl_fp = c.fp.ppl;
      res.windows = c.fp.windows;
      res.seqlen = c.fp.seqlen;
      res.positions = c.positions;
    }
    res.points.push_back(std::move(p));
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    sp.phase = SweepProgress::Phase::PointDone;
    sp.done = sp.total = 1;
    sp.finished = &res.points.back();
    const bool go_on = report();
    sp.finished = nullptr;
    if (!go_on) throw Cancelled();
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return res;
}

std::string sweep_to_json(const SweepResult& r, int indent) {
  json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["axis"] = sweep_axis_name(r.spec.axis);
  j["target"] = r.spec.target;
  j["axis_label"] = r.spec.axis_label();
  j["values"] = r.spec.values;
  j["base"] = quant_config_json(r.base);
  j["stat"] = range_stat_name(r.stat);
  j["sequential"] = r.sequential;
  j["kmeans_seed"] = r.kmeans_seed;
  j["device"] = r.device;
  j["model"] = r.model;
  j["stats"] = r.stats;
  j["data"] = r.data;
  j["windows"] = r.windows;
  j["seqlen"] = r.seqlen;
  j["positions"] = r.positions;
  j["ppl_fp"] = number(r.ppl_fp);
  j["complete"] = r.complete();
  j["seconds"] = number(r.seconds);
  json points = json::array();
  for (const SweepPoint& p : r.points) {
    json jp;
    jp["value"] = p.value;
    jp["name"] = p.name;
    jp["description"] = p.description;
    json used = json::object();
    for (int k = 0; k < kReorderIndices; ++k) used[index_name(k + 1)] = p.clusters_used[static_cast<std::size_t>(k)];
    jp["clusters_used"] = std::move(used);
    jp["ppl_q"] = number(p.ppl_q);
    jp["kl"] = number(p.kl);
    jp["kl_p50"] = number(p.kl_p50);
    jp["kl_p90"] = number(p.kl_p90);
    jp["kl_p99"] = number(p.kl_p99);
    jp["kl_max"] = number(p.kl_max);
    jp["top1_agreement"] = number(p.top1_agreement);
    jp["top1_changed"] = number(p.top1_changed);
    jp["quantize_seconds"] = number(p.quantize_seconds);
    jp["compare_seconds"] = number(p.compare_seconds);
    points.push_back(std::move(jp));
  }
  j["points"] = std::move(points);
  // Paths and descriptions may hold bytes that are not UTF-8: replaced (U+FFFD) rather than failing.
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

SweepResult sweep_from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    bad_file(source, std::string("not JSON: ") + e.what());
  }
  try {
    if (!j.is_object() || !j.contains("format") || !j["format"].is_string() || j["format"] != kFormat)
      bad_file(source, std::string("no \"format\": \"") + kFormat + "\"");
    const std::int64_t version = get_int(j, "version", source, 1, std::numeric_limits<std::int64_t>::max());
    if (version > kVersion)
      throw InputError(source + ": a sweep file of version " + std::to_string(version) +
                       ", newer than this rptq reads (" + std::to_string(kVersion) + ")");
    SweepResult r;
    r.spec.axis = parse_sweep_axis(get_string(j, "axis", source));
    r.spec.target = get_string(j, "target", source);
    const json& values = member(j, "values", source);
    if (!values.is_array()) bad_file(source, "\"values\" is not a list");
    if (values.size() > static_cast<std::size_t>(kMaxSweepPoints)) bad_file(source, "too many values");
    for (const json& v : values) {
      if (!v.is_number_integer()) bad_file(source, "a value is not an integer");
      const auto x = v.get<long long>();
      if (x < 0 || x > kMaxClusters) bad_file(source, "a value is out of range");
      r.spec.values.push_back(static_cast<int>(x));
    }
    r.spec.validate();
    r.base = quant_config_from_json(member(j, "base", source), source);
    r.stat = parse_range_stat(get_string(j, "stat", source));
    r.sequential = get_bool(j, "sequential", source);
    r.kmeans_seed = get_uint64(j, "kmeans_seed", source);
    r.device = get_string(j, "device", source);
    r.model = get_string(j, "model", source);
    r.stats = get_string(j, "stats", source);
    r.data = get_string(j, "data", source);
    constexpr std::int64_t kBig = std::int64_t{1} << 50;
    r.windows = get_int(j, "windows", source, 0, kBig);
    r.seqlen = get_int(j, "seqlen", source, 0, kBig);
    r.positions = get_int(j, "positions", source, 0, kBig);
    r.ppl_fp = get_double(j, "ppl_fp", source);
    r.seconds = get_double(j, "seconds", source);
    const json& points = member(j, "points", source);
    if (!points.is_array()) bad_file(source, "\"points\" is not a list");
    if (points.size() > r.spec.values.size()) bad_file(source, "more points than values");
    for (std::size_t i = 0; i < points.size(); ++i) {
      const std::string where = source + " point " + std::to_string(i);
      const json& jp = points[i];
      SweepPoint p;
      p.value = get_int32(jp, "value", where, 0, kMaxClusters);
      if (p.value != r.spec.values[i])
        bad_file(source, "point " + std::to_string(i) + " has value " + std::to_string(p.value) + ", not " +
                             std::to_string(r.spec.values[i]));
      p.name = get_string(jp, "name", where);
      p.description = get_string(jp, "description", where);
      const json& used = member(jp, "clusters_used", where);
      for (int k = 0; k < kReorderIndices; ++k)
        p.clusters_used[static_cast<std::size_t>(k)] =
            get_int32(used, index_name(k + 1).c_str(), where + " clusters_used", 0, 1 << 30);
      p.ppl_q = get_double(jp, "ppl_q", where);
      p.kl = get_double(jp, "kl", where);
      p.top1_agreement = get_double(jp, "top1_agreement", where);
      // Recorded since the KL percentiles were added to the comparison: NaN in older files.
      p.kl_p50 = optional_double(jp, "kl_p50", where);
      p.kl_p90 = optional_double(jp, "kl_p90", where);
      p.kl_p99 = optional_double(jp, "kl_p99", where);
      p.kl_max = optional_double(jp, "kl_max", where);
      p.top1_changed = optional_double(jp, "top1_changed", where);
      p.quantize_seconds = get_double(jp, "quantize_seconds", where);
      p.compare_seconds = get_double(jp, "compare_seconds", where);
      r.points.push_back(std::move(p));
    }
    return r;
  } catch (const json::exception& e) {
    bad_file(source, e.what());
  } catch (const InputError& e) {
    // Errors of the parsers it reuses (an unknown axis, a bad override) name no file: add it.
    const std::string what = e.what();
    if (what.rfind(source, 0) == 0) throw;
    throw InputError(source + ": " + what);
  }
}

std::string sweep_to_csv(const SweepResult& r) {
  std::string s =
      "axis,target,value,setting,ppl_fp,ppl_q,kl,kl_p50,kl_p90,kl_p99,kl_max,top1_agreement,top1_changed,"
      "quantize_seconds,compare_seconds,"
      "clusters_used_R1,clusters_used_R2,clusters_used_R3,clusters_used_R4,clusters_used_R5,description\n";
  for (const SweepPoint& p : r.points) {
    // Built by append: GCC 12 warns falsely (-Wrestrict) on "," + std::string.
    std::vector<std::string> fields = {sweep_axis_name(r.spec.axis), csv_field(r.spec.target),
                                       std::to_string(p.value),      csv_field(p.name)};
    for (double x : {r.ppl_fp, p.ppl_q, p.kl, p.kl_p50, p.kl_p90, p.kl_p99, p.kl_max, p.top1_agreement,
                     p.top1_changed, p.quantize_seconds, p.compare_seconds})
      fields.push_back(exact(x));
    for (int k : p.clusters_used) fields.push_back(std::to_string(k));
    fields.push_back(csv_field(p.description));
    for (std::size_t f = 0; f < fields.size(); ++f) s.append(f ? "," : "").append(fields[f]);
    s.append("\n");
  }
  return s;
}

void save_sweep(const fs::path& path, const SweepResult& r, bool overwrite) {
  write_file_atomic(path, sweep_to_json(r) + "\n", overwrite);
}

void save_sweep_csv(const fs::path& path, const SweepResult& r, bool overwrite) {
  write_file_atomic(path, sweep_to_csv(r), overwrite);
}

SweepResult load_sweep(const fs::path& path) {
  return sweep_from_json(read_file(path, kMaxFileBytes), path.string());
}

}  // namespace rptq
