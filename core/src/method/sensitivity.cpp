#include "rptq/method/sensitivity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "rptq/base/error.h"
#include "rptq/io/files.h"
#include "rptq/io/safetensors_writer.h"
#include "rptq/model/model.h"

namespace rptq {

namespace {

constexpr const char* kSoftmax = "softmax";

// The quantized model's hook at one (layer, tap) only.
class OneTapHook : public ActivationHook {
 public:
  OneTapHook(ActivationHook& inner, int layer, Tap tap) : inner_(inner), layer_(layer), tap_(tap) {}
  void on_activation(int layer, Tap tap, const ActivationView& act) override {
    if (layer == layer_ && tap == tap_) inner_.on_activation(layer, tap, act);
  }

 private:
  ActivationHook& inner_;
  int layer_;
  Tap tap_;
};

}  // namespace

SensitivityCell SensitivityResult::layer_sum(int layer) const {
  SensitivityCell s;
  for (std::size_t t = 0; t < taps.size(); ++t) {
    const SensitivityCell& c = cell(layer, t);
    s.kl += c.kl;
    s.ppl += c.ppl - ppl_fp;
    s.top1_agreement += 1.0 - c.top1_agreement;
  }
  return s;
}

SensitivityCell SensitivityResult::tap_sum(std::size_t tap) const {
  SensitivityCell s;
  for (int l = 0; l < layers; ++l) {
    const SensitivityCell& c = cell(l, tap);
    s.kl += c.kl;
    s.ppl += c.ppl - ppl_fp;
    s.top1_agreement += 1.0 - c.top1_agreement;
  }
  return s;
}

std::unique_ptr<QuantizedModel> quantize_for_sensitivity(std::unique_ptr<Model> model, const ChannelStats& stats,
                                                         QuantConfig cfg, RangeStat stat, std::uint64_t kmeans_seed) {
  cfg.wbits = kFullPrecisionBits;
  cfg.weight_method = WeightMethod::RTN;
  cfg.act_order = false;
  for (TapOverride& o : cfg.overrides) o.wbits = 0;  // the weights stay FP: a weight-bit override has nothing to set
  QuantizeOptions o;
  o.stat = stat;
  o.seed = kmeans_seed;
  o.sequential = false;
  return quantize(std::move(model), stats, cfg, o);
}

SensitivityResult activation_sensitivity(QuantizedModel& q, std::span<const std::int32_t> ids,
                                         const PerplexityOptions& opts,
                                         const std::function<bool(std::int64_t, std::int64_t)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  Model& model = q.model();
  const ModelConfig& m = model.config();
  const QuantConfig& cfg = q.config();
  const int L = static_cast<int>(m.layers);

  // The probes: every tap the setting quantizes, then the softmax probabilities.
  struct Probe {
    Tap tap = Tap::AttnInput;
    bool softmax = false;
  };
  std::vector<Probe> probes;
  SensitivityResult res;
  for (Tap t : kAllTaps)
    if (cfg.quantizes(t)) {
      probes.push_back({t, false});
      res.taps.emplace_back(tap_name(t));
    }
  if (cfg.softmax_bits < kFullPrecisionBits) {
    probes.push_back({Tap::AttnInput, true});
    res.taps.emplace_back(kSoftmax);
  }
  if (probes.empty()) throw InputError("the setting quantizes no activation: there is nothing to probe");
  res.layers = L;

  // The softmax flags are the model's: all off for the FP reference, one on per softmax probe; restored at the end.
  std::vector<bool> softmax_was(static_cast<std::size_t>(L));
  for (int l = 0; l < L; ++l) {
    softmax_was[static_cast<std::size_t>(l)] = model.layer(l).quantize_softmax;
    model.layer(l).quantize_softmax = false;
  }
  struct Restore {
    Model& model;
    const std::vector<bool>& was;
    ~Restore() {
      for (std::size_t l = 0; l < was.size(); ++l) model.layer(static_cast<int>(l)).quantize_softmax = was[l];
    }
  } restore{model, softmax_was};

  const std::size_t P = probes.size();
  std::vector<CompareAccumulator> acc;
  acc.reserve(static_cast<std::size_t>(L) * P);
  for (std::size_t i = 0; i < static_cast<std::size_t>(L) * P; ++i) acc.emplace_back(ids, opts, m.vocab, m.vocab);
  const std::int64_t windows = acc.front().windows(), T = opts.seqlen, rows = T - 1;
  const std::int64_t total = windows * L * static_cast<std::int64_t>(P);
  std::int64_t done = 0;

  std::vector<Tensor> fp_in(static_cast<std::size_t>(L));  // the FP hidden state entering each layer
  Tensor fp_logits, lq;
  for (std::int64_t w = 0; w < windows; ++w) {
    const auto win = acc.front().window(w);
    Tensor h = model.embed(win, 1);
    for (int l = 0; l < L; ++l) {
      fp_in[static_cast<std::size_t>(l)] = h;
      model.layer_forward(l, h, 1);
    }
    model.head(h.data(), rows, fp_logits);
    for (int l = 0; l < L; ++l) {
      for (std::size_t p = 0; p < P; ++p) {
        Tensor x = fp_in[static_cast<std::size_t>(l)];
        OneTapHook one(*q.hook(), l, probes[p].tap);
        ActivationHook* hook = probes[p].softmax ? nullptr : &one;
        if (probes[p].softmax) model.layer(l).quantize_softmax = true;
        model.layer_forward(l, x, 1, nullptr, hook);
        model.layer(l).quantize_softmax = false;
        for (int k = l + 1; k < L; ++k) model.layer_forward(k, x, 1);
        model.head(x.data(), rows, lq);
        CompareAccumulator& a = acc[static_cast<std::size_t>(l) * P + p];
        a.add_rows(w, fp_logits.data(), lq.data(), 0, rows);
        a.end_window(0, 0);
        if (progress && !progress(++done, total)) throw Cancelled();
      }
    }
  }
  res.cells.resize(acc.size());
  for (std::size_t i = 0; i < acc.size(); ++i) {
    const CompareResult r = acc[i].finish(0);
    res.cells[i] = {r.kl, r.q.ppl, r.top1_agreement};
    res.ppl_fp = r.fp.ppl;
    res.windows = r.fp.windows;
    res.seqlen = r.fp.seqlen;
    res.positions = r.positions;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return res;
}

// ---- Saved results -----------------------------------------------------------------------------------------------

namespace {

using json = nlohmann::json;
constexpr const char* kFormat = "rptq-sensitivity";
constexpr int kVersion = 1;

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// A damaged file's field: what is wrong, said once by the caller with the file's name.
struct Bad : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "\"key\"" (appended piece by piece: GCC 12 warns wrongly (-Wrestrict) about "\"" + std::string(key)).
std::string quoted(const char* key) {
  std::string q = "\"";
  q += key;
  q += '"';
  return q;
}

std::string index_name(int r) {  // "R1".."R5"
  std::string n = "R";
  n += std::to_string(r);
  return n;
}

const json& field(const json& j, const char* key) {
  if (!j.is_object()) throw Bad("expected an object holding " + quoted(key));
  const auto it = j.find(key);
  if (it == j.end()) throw Bad(quoted(key) + " is missing");
  return *it;
}
std::string get_string(const json& j, const char* key) {
  const json& v = field(j, key);
  if (!v.is_string()) throw Bad(quoted(key) + " is not a string");
  return v.get<std::string>();
}
std::int64_t get_int(const json& j, const char* key, std::int64_t lo, std::int64_t hi) {
  const json& v = field(j, key);
  if (!v.is_number_integer()) throw Bad(quoted(key) + " is not an integer");
  const std::int64_t x = v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi)
                             ? hi + 1
                             : v.get<std::int64_t>();
  if (x < lo || x > hi) throw Bad(quoted(key) + " = " + v.dump() + " is out of range");
  return x;
}
double as_double(const json& v, const std::string& what) {
  if (v.is_null()) return std::numeric_limits<double>::quiet_NaN();
  if (!v.is_number()) throw Bad(what + " is not a number");
  return v.get<double>();
}
double get_double(const json& j, const char* key) { return as_double(field(j, key), quoted(key)); }

int get_bits(const json& j, const char* key) {
  const int b = static_cast<int>(get_int(j, key, 2, kFullPrecisionBits));
  if (b > 8 && b != kFullPrecisionBits) throw Bad(quoted(key) + " = " + std::to_string(b) + " is not 2..8 or 16");
  return b;
}

json setting_json(const SensitivitySetting& s) {
  json abits = json::object();
  for (Tap t : kAllTaps) abits[tap_name(t)] = s.abits[static_cast<std::size_t>(t)];
  json clusters = json::object();
  for (int r = 1; r <= kReorderIndices; ++r) clusters[index_name(r)] = s.clusters[static_cast<std::size_t>(r - 1)];
  return {{"preset", s.preset},
          {"description", s.description},
          {"abits", abits},
          {"softmax_bits", s.softmax_bits},
          {"clusters", clusters},
          {"grid", grid_name(s.grid)},
          {"ranges", s.range_mode == RangeMode::Static ? "static" : "dynamic"},
          {"fp_prefix", s.fp_prefix},
          {"overrides", s.overrides},
          {"stat", range_stat_name(s.stat)},
          {"seed", s.seed},
          {"stats", s.stats_path},
          {"stats_created", s.stats_created},
          {"model_config_sha256", s.model_config_sha256},
          {"data", s.data_path},
          {"data_sha256", s.data_sha256},
          {"seqlen", s.seqlen},
          {"max_windows", s.max_windows}};
}

SensitivitySetting setting_from(const json& j) {
  SensitivitySetting s;
  s.preset = get_string(j, "preset");
  s.description = get_string(j, "description");
  const json& abits = field(j, "abits");
  for (Tap t : kAllTaps) s.abits[static_cast<std::size_t>(t)] = get_bits(abits, tap_name(t));
  s.softmax_bits = get_bits(j, "softmax_bits");
  const json& clusters = field(j, "clusters");
  for (int r = 1; r <= kReorderIndices; ++r)
    s.clusters[static_cast<std::size_t>(r - 1)] =
        static_cast<int>(get_int(clusters, index_name(r).c_str(), 1, 1 << 30));
  try {
    s.grid = parse_grid(get_string(j, "grid"));
    s.stat = parse_range_stat(get_string(j, "stat"));
  } catch (const InputError& e) {
    throw Bad(e.what());
  }
  const std::string ranges = get_string(j, "ranges");
  if (ranges != "static" && ranges != "dynamic") throw Bad("\"ranges\" is neither static nor dynamic");
  s.range_mode = ranges == "static" ? RangeMode::Static : RangeMode::Dynamic;
  s.fp_prefix = static_cast<int>(get_int(j, "fp_prefix", 0, 1 << 20));
  const json& ov = field(j, "overrides");
  if (!ov.is_array()) throw Bad("\"overrides\" is not a list");
  for (const json& o : ov) {
    if (!o.is_string()) throw Bad("an override is not a string");
    s.overrides.push_back(o.get<std::string>());
  }
  const json& seed = field(j, "seed");
  if (!seed.is_number_unsigned()) throw Bad("\"seed\" is not an integer >= 0");
  s.seed = seed.get<std::uint64_t>();
  s.stats_path = get_string(j, "stats");
  s.stats_created = get_string(j, "stats_created");
  s.model_config_sha256 = get_string(j, "model_config_sha256");
  s.data_path = get_string(j, "data");
  s.data_sha256 = get_string(j, "data_sha256");
  s.seqlen = get_int(j, "seqlen", 2, std::int64_t{1} << 40);
  s.max_windows = get_int(j, "max_windows", 0, std::int64_t{1} << 40);
  return s;
}

json result_json(const SensitivityResult& r) {
  json cells = json::array();
  for (int l = 0; l < r.layers; ++l) {
    json row = json::array();
    for (std::size_t t = 0; t < r.taps.size(); ++t) {
      const SensitivityCell& c = r.cell(l, t);
      row.push_back(json::array({number(c.kl), number(c.ppl), number(c.top1_agreement)}));
    }
    cells.push_back(std::move(row));
  }
  return {{"taps", r.taps},         {"layers", r.layers},       {"ppl_fp", number(r.ppl_fp)},
          {"windows", r.windows},   {"seqlen", r.seqlen},       {"positions", r.positions},
          {"seconds", number(r.seconds)}, {"cells", std::move(cells)}};
}

SensitivityResult result_from(const json& j) {
  SensitivityResult r;
  const json& taps = field(j, "taps");
  if (!taps.is_array() || taps.empty() || taps.size() > kTapCount + 1)
    throw Bad("\"taps\" is not a list of 1..8 names");
  for (const json& t : taps) {
    if (!t.is_string()) throw Bad("a tap name is not a string");
    const std::string name = t.get<std::string>();
    bool known = name == kSoftmax;
    for (Tap k : kAllTaps) known = known || name == tap_name(k);
    if (!known) throw Bad("\"" + name + "\" is not a tap name");
    if (std::find(r.taps.begin(), r.taps.end(), name) != r.taps.end()) throw Bad("tap \"" + name + "\" repeats");
    r.taps.push_back(name);
  }
  r.layers = static_cast<int>(get_int(j, "layers", 1, 1 << 16));
  r.ppl_fp = get_double(j, "ppl_fp");
  r.windows = get_int(j, "windows", 1, std::int64_t{1} << 40);
  r.seqlen = get_int(j, "seqlen", 2, std::int64_t{1} << 40);
  r.positions = get_int(j, "positions", 1, std::int64_t{1} << 50);
  r.seconds = get_double(j, "seconds");
  const json& cells = field(j, "cells");
  if (!cells.is_array() || cells.size() != static_cast<std::size_t>(r.layers))
    throw Bad("\"cells\" does not hold one row per layer (" + std::to_string(r.layers) + ")");
  r.cells.reserve(static_cast<std::size_t>(r.layers) * r.taps.size());
  for (const json& row : cells) {
    if (!row.is_array() || row.size() != r.taps.size())
      throw Bad("a row of \"cells\" does not hold one cell per tap (" + std::to_string(r.taps.size()) + ")");
    for (const json& c : row) {
      if (!c.is_array() || c.size() != 3) throw Bad("a cell is not [kl, ppl, top1_agreement]");
      r.cells.push_back({as_double(c[0], "a cell's kl"), as_double(c[1], "a cell's ppl"),
                         as_double(c[2], "a cell's top1_agreement")});
    }
  }
  return r;
}

std::vector<SensitivityRecord> records_from(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Bad(std::string("not JSON (") + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("format") || j["format"] != kFormat)
    throw Bad("not a sensitivity file (no \"format\": \"rptq-sensitivity\")");
  const json& v = field(j, "version");
  if (!v.is_number_integer()) throw Bad("\"version\" is not an integer");
  if (v.get<std::int64_t>() != kVersion)
    throw Bad("version " + v.dump() + " (this rptq reads version " + std::to_string(kVersion) + ")");
  const json& recs = field(j, "records");
  if (!recs.is_array()) throw Bad("\"records\" is not a list");
  std::vector<SensitivityRecord> out;
  for (const json& rj : recs) {
    SensitivityRecord rec;
    rec.created = get_string(rj, "created");
    rec.setting = setting_from(field(rj, "setting"));
    rec.result = result_from(field(rj, "result"));
    out.push_back(std::move(rec));
  }
  return out;
}

}  // namespace

bool SensitivitySetting::same_measurement(const SensitivitySetting& o) const {
  return abits == o.abits && softmax_bits == o.softmax_bits && clusters == o.clusters && grid == o.grid &&
         range_mode == o.range_mode && fp_prefix == o.fp_prefix && overrides == o.overrides && stat == o.stat &&
         seed == o.seed && stats_created == o.stats_created && model_config_sha256 == o.model_config_sha256 &&
         data_sha256 == o.data_sha256 && seqlen == o.seqlen && max_windows == o.max_windows;
}

SensitivitySetting make_sensitivity_setting(const QuantConfig& cfg, RangeStat stat, std::uint64_t seed,
                                            const ChannelStats& stats, const std::string& stats_path,
                                            const std::string& data_path, const std::string& data_sha256,
                                            const PerplexityOptions& opts) {
  SensitivitySetting s;
  s.preset = cfg.name;
  s.description = cfg.describe();
  s.abits = cfg.abits;
  s.softmax_bits = cfg.softmax_bits;
  s.clusters = cfg.clusters;
  s.grid = cfg.grid;
  s.range_mode = cfg.range_mode;
  s.fp_prefix = cfg.fp_prefix;
  for (const TapOverride& o : cfg.overrides) s.overrides.push_back(o.spec);
  s.stat = stat;
  s.seed = seed;
  s.stats_path = stats_path;
  s.stats_created = stats.created;
  s.model_config_sha256 = stats.config_sha256;
  s.data_path = data_path;
  s.data_sha256 = data_sha256;
  s.seqlen = opts.seqlen;
  s.max_windows = opts.max_windows;
  return s;
}

std::filesystem::path sensitivity_file_for(const std::filesystem::path& stats_path) {
  std::filesystem::path p = stats_path;
  if (p.extension() == ".h5") p.replace_extension();
  p += ".sensitivity.json";
  return p;
}

std::vector<SensitivityRecord> load_sensitivity_file(const std::filesystem::path& file) {
  const std::string text = read_file(file, std::uint64_t{1} << 30);  // InputError "FILE: ..." when unreadable
  try {
    return records_from(text);
  } catch (const Bad& e) {
    throw InputError(file.string() + ": " + e.what());
  } catch (const json::exception& e) {
    throw InputError(file.string() + ": damaged (" + e.what() + ")");
  }
}

const SensitivityRecord* find_sensitivity(const std::vector<SensitivityRecord>& records,
                                          const SensitivitySetting& setting) {
  for (const SensitivityRecord& r : records)
    if (r.setting.same_measurement(setting)) return &r;
  return nullptr;
}

void save_sensitivity(const std::filesystem::path& file, SensitivityRecord rec) {
  if (rec.created.empty()) rec.created = utc_now();
  std::vector<SensitivityRecord> records;
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) records = load_sensitivity_file(file);  // a damaged file stays as it is
  check_output_target(file, true);
  // Keep the other measurements of this statistics file; drop the one replaced and those of an earlier file.
  std::erase_if(records, [&](const SensitivityRecord& r) {
    return r.setting.same_measurement(rec.setting) || r.setting.stats_created != rec.setting.stats_created ||
           r.setting.model_config_sha256 != rec.setting.model_config_sha256;
  });
  records.push_back(std::move(rec));
  json recs = json::array();
  for (const SensitivityRecord& r : records)
    recs.push_back({{"created", r.created}, {"setting", setting_json(r.setting)}, {"result", result_json(r.result)}});
  const json j = {{"format", kFormat}, {"version", kVersion}, {"records", std::move(recs)}};
  // One line (the cells make an indented file long); invalid UTF-8 in a path is replaced rather than thrown on.
  write_file_atomic(file, j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

// ---- The mixed-precision suggestion ------------------------------------------------------------------------------

SensitivitySuggestion suggest_overrides(const SensitivityResult& r, const QuantConfig& cfg, int n, int bits) {
  if (n < 0) throw InputError("the number of taps to keep must be >= 0; got " + std::to_string(n));
  if (bits != kFullPrecisionBits && (bits < 2 || bits > 8))
    throw InputError("the bits to keep them at must be 2..8 or 16; got " + std::to_string(bits));
  SensitivitySuggestion s;
  s.bits = bits;
  std::vector<SensitivitySuggestion::Probe> eligible;
  for (std::size_t c = 0; c < r.taps.size(); ++c) {
    if (r.taps[c] == kSoftmax) continue;  // QuantConfig::softmax_bits: one setting for every layer
    const Tap* tap = nullptr;
    for (const Tap& t : kAllTaps)
      if (r.taps[c] == tap_name(t)) tap = &t;
    if (!tap) throw InputError("sensitivity result: \"" + r.taps[c] + "\" is not a tap name");
    if (*tap == Tap::K || *tap == Tap::V) continue;  // the KV cache: one layout for every layer
    for (int l = 0; l < r.layers; ++l) {
      const int from = cfg.bits(l, *tap);
      if (from >= bits) continue;
      eligible.push_back({l, *tap, r.cell(l, c).kl, from});
    }
  }
  // Largest KL first (NaN counts as the largest: something broke there); ties by layer, then tap.
  auto key = [](double kl) { return std::isnan(kl) ? std::numeric_limits<double>::infinity() : kl; };
  std::sort(eligible.begin(), eligible.end(), [&](const auto& a, const auto& b) {
    if (key(a.kl) != key(b.kl)) return key(a.kl) > key(b.kl);
    return a.layer != b.layer ? a.layer < b.layer : static_cast<int>(a.tap) < static_cast<int>(b.tap);
  });
  if (eligible.size() > static_cast<std::size_t>(n)) eligible.resize(static_cast<std::size_t>(n));
  s.kept = eligible;
  std::map<int, std::vector<int>> layers_of;  // tap -> layers
  for (const auto& p : s.kept) layers_of[static_cast<int>(p.tap)].push_back(p.layer);
  for (auto& [t, layers] : layers_of) {
    std::sort(layers.begin(), layers.end());
    std::string spec = "layers=";
    for (std::size_t i = 0; i < layers.size(); ++i) {
      if (i) spec += '+';
      spec += std::to_string(layers[i]);
    }
    spec += std::string(",") + tap_name(static_cast<Tap>(t)) + ":abits=" + std::to_string(bits);
    s.overrides.push_back(std::move(spec));
  }
  return s;
}

QuantConfig apply_suggestion(QuantConfig cfg, const SensitivitySuggestion& s) {
  for (const std::string& spec : s.overrides) cfg.overrides.push_back(parse_override(spec));
  cfg.validate();
  return cfg;
}

SuggestionMemory suggestion_memory(const ModelConfig& model, const QuantConfig& cfg, const SensitivitySuggestion& s,
                                   std::int64_t batch, std::int64_t seqlen) {
  return {estimate_memory(model, cfg, batch, seqlen), estimate_memory(model, apply_suggestion(cfg, s), batch, seqlen)};
}

}  // namespace rptq
