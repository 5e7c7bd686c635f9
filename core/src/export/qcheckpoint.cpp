#include "rptq/export/qcheckpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <fstream>

#include "io/hdf5_util.h"
#include "rptq/base/bitpack.h"
#include "rptq/io/checkpoint.h"
#include "rptq/base/dtype.h"
#include "rptq/base/error.h"
#include "rptq/version_info.h"
#include "rptq/model/packed_weight.h"

namespace rptq {

namespace {

constexpr const char* kFormat = "rptq-quantized-checkpoint";
// Files of a Hugging Face folder a checkpoint carries so it runs on its own.
// The largest linear dimension a checkpoint may declare (2^24: far above any model's; the product stays in int64).
constexpr std::int64_t kMaxFeatures = std::int64_t{1} << 24;

constexpr const char* kCarriedFiles[] = {"config.json",          "generation_config.json", "tokenizer.json",
                                         "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                                         "merges.txt",           "tokenizer.model"};

std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw InputError(p.string() + ": cannot be read");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// An unquantized tensor: FP16 when every value is exactly representable (the source was FP16, or the values
// happen to be), else float32, so a loaded checkpoint computes with exactly the in-memory values.
void write_plain(h5::Writer& w, const std::string& path, const Tensor& t) {
  if (t.empty()) return;
  std::vector<std::uint16_t> h(static_cast<std::size_t>(t.numel()));
  bool exact = true;
  for (std::int64_t i = 0; i < t.numel() && exact; ++i) {
    h[static_cast<std::size_t>(i)] = float_to_half(t[i]);
    exact = half_to_float(h[static_cast<std::size_t>(i)]) == t[i] || (std::isnan(t[i]));
  }
  if (exact)
    w.write_f16(path, t.shape(), h.data(), /*compress=*/t.numel() > 4096);
  else
    w.write_f32(path, t.shape(), t.data(), /*compress=*/t.numel() > 4096);
}

void write_norm(h5::Writer& w, const std::string& g, const NormWeights& n) {
  w.group(g);
  write_plain(w, g + "/gamma", n.gamma);
  write_plain(w, g + "/beta", n.beta);
  if (!n.gather.empty()) w.write_i32(g + "/gather", {static_cast<std::int64_t>(n.gather.size())}, n.gather.data());
}

std::vector<std::int32_t> to_i32(const std::vector<std::int64_t>& v) { return {v.begin(), v.end()}; }

// Scales as FP16 relative to a power of two per row (packed_weight.h: the quantizer keeps them on that grid), so
// 2 bytes each instead of 4; float32 when some scale is not on it (a model quantized by other means).
void write_scales(h5::Writer& w, const std::string& g, const PackedWeight& qw) {
  const std::int64_t groups = qw.groups();
  std::vector<std::uint16_t> h(qw.scales.size());
  std::vector<std::int16_t> e(static_cast<std::size_t>(qw.out));
  // The row's exponent as the quantizer chose it: from its largest scale before rounding, which may have rounded
  // up into the next power of two (then one less than the rounded maximum's).
  auto try_row = [&](std::int64_t r, int er) {
    if (er < INT16_MIN || er > INT16_MAX) return false;
    e[static_cast<std::size_t>(r)] = static_cast<std::int16_t>(er);
    const float* sr = qw.scales.data() + r * groups;
    for (std::int64_t k = 0; k < groups; ++k) {
      const std::uint16_t hk = float_to_half(std::ldexp(sr[k], -er));
      h[static_cast<std::size_t>(r * groups + k)] = hk;
      if (!(sr[k] > 0.0f) || std::ldexp(half_to_float(hk), er) != sr[k]) return false;
    }
    return true;
  };
  bool exact = true;
  for (std::int64_t r = 0; r < qw.out && exact; ++r) {
    const float* sr = qw.scales.data() + r * groups;
    const int er = weight_scale_exponent(*std::max_element(sr, sr + groups));
    exact = try_row(r, er) || try_row(r, er - 1);
  }
  if (exact) {
    w.write_f16(g + "/scales", {qw.out, groups}, h.data());
    w.write_i16(g + "/scale_exponents", {qw.out}, e.data());
  } else {
    w.write_f32(g + "/scales", {qw.out, groups}, qw.scales.data());
  }
}

// Zero points are integers, nearly all in a narrow window: each is stored as (zero_point - zero_point_offset) packed
// to zero_point_bits bits (bitpack.h layout), the all-ones code marking an exception whose value is listed in
// zero_point_exceptions (flat index into [out, groups], int32) and zero_point_exception_values (float32). The
// window and width are those of fewest bytes. A linear with a zero point that is not an integer stores them all
// as float32 [out, groups].
void write_zero_points(h5::Writer& w, const std::string& g, const PackedWeight& qw) {
  const auto& z = qw.zero_points;
  const auto n = static_cast<std::int64_t>(z.size());
  bool integral = true;
  for (float v : z) integral = integral && v == std::nearbyint(v) && std::abs(v) < 1e9f;
  if (!integral) return w.write_f32(g + "/zero_points", {qw.out, qw.groups()}, z.data());
  // Histogram of the values in [-kSpan, kSpan): the windows worth considering lie there.
  constexpr std::int64_t kSpan = 512;
  std::vector<std::int64_t> hist(2 * kSpan + 1, 0);  // prefix sums after the loop
  for (float v : z)
    if (v >= -kSpan && v < kSpan) ++hist[static_cast<std::size_t>(static_cast<std::int64_t>(v) + kSpan + 1)];
  for (std::size_t i = 1; i < hist.size(); ++i) hist[i] += hist[i - 1];
  int best_bits = 8;
  std::int64_t best_lo = -kSpan, best_cost = INT64_MAX;
  for (int bits = 2; bits <= 8; ++bits) {
    const std::int64_t width = (std::int64_t{1} << bits) - 1;  // the all-ones code is the escape
    for (std::int64_t lo = -kSpan; lo + width <= kSpan; ++lo) {
      const std::int64_t inside = hist[static_cast<std::size_t>(lo + width + kSpan)] - hist[static_cast<std::size_t>(lo + kSpan)];
      const std::int64_t cost = (n * bits + 7) / 8 + (n - inside) * 8;
      if (cost < best_cost) {
        best_cost = cost;
        best_bits = bits;
        best_lo = lo;
      }
    }
  }
  const std::int64_t escape = (std::int64_t{1} << best_bits) - 1;
  std::vector<std::uint8_t> u(z.size());
  std::vector<std::int32_t> ex_index;
  std::vector<float> ex_value;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t d = static_cast<std::int64_t>(z[static_cast<std::size_t>(i)]) - best_lo;
    if (d >= 0 && d < escape) {
      u[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(d);
    } else {
      u[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(escape);
      ex_index.push_back(static_cast<std::int32_t>(i));
      ex_value.push_back(z[static_cast<std::size_t>(i)]);
    }
  }
  std::vector<std::uint8_t> packed(packed_bytes(n, best_bits));
  pack_bits(u.data(), n, best_bits, packed.data());
  w.write_u8(g + "/zero_points", {static_cast<std::int64_t>(packed.size())}, packed.data());
  w.attr(g, "zero_point_bits", std::int64_t{best_bits});
  w.attr(g, "zero_point_offset", best_lo);
  const auto ne = static_cast<std::int64_t>(ex_index.size());
  w.write_i32(g + "/zero_point_exceptions", {ne}, ex_index.data());
  w.write_f32(g + "/zero_point_exception_values", {ne}, ex_value.data());
}

void write_linear(h5::Writer& w, const std::string& g, const PackedWeight& qw, const LinearWeights& lw) {
  w.group(g);
  w.attr(g, "bits", std::int64_t{qw.bits});
  w.attr(g, "out_features", qw.out);
  w.attr(g, "in_features", qw.in);
  // The model's packed codes are the file's: the same stream (bitpack.h), code + 2^(bits-1), LSB first.
  w.write_u8(g + "/codes", {static_cast<std::int64_t>(qw.codes.size())}, qw.codes.data());
  const auto gb = to_i32(qw.group_boundaries);
  w.write_i32(g + "/group_boundaries", {static_cast<std::int64_t>(gb.size())}, gb.data());
  write_scales(w, g, qw);
  write_zero_points(w, g, qw);
  write_plain(w, g + "/bias", lw.bias);
}

void write_linear_fp(h5::Writer& w, const std::string& g, const LinearWeights& lw) {
  w.group(g);
  w.attr(g, "bits", std::int64_t{16});
  w.attr(g, "out_features", lw.out());
  w.attr(g, "in_features", lw.in());
  write_plain(w, g + "/weight", lw.weight);
  write_plain(w, g + "/bias", lw.bias);
}

}  // namespace

bool is_hdf5_file(const std::filesystem::path& path) {
  // A regular file only, opened without blocking: a FIFO is not an HDF5 file, and must not hang the caller.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  struct stat st {};
  char sig[8] = {};
  const bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::pread(fd, sig, 8, 0) == 8;
  ::close(fd);
  return ok && std::string(sig, 8) == std::string("\x89HDF\r\n\x1a\n", 8);
}

std::string hdf5_format(const std::filesystem::path& path) {
  return h5::guarded(path, [&] {
    const h5::Reader f(path);
    return f.has_attr("/", "format") ? f.attr_string("/", "format") : std::string();
  });
}

void export_checkpoint(const QuantizedModel& q, const ChannelStats& stats, const std::filesystem::path& source_dir,
                       const std::filesystem::path& out, const ExportOptions& opts) {
  const Model& model = q.model();
  const ModelConfig& m = model.config();
  const QuantConfig& c = q.config();
  const int L = q.layers();
  auto progress = [&](double f, const std::string& what) {
    if (opts.progress && !opts.progress(f, what)) throw Cancelled();
  };
  if (c.target != ServeTarget::None)
    throw InputError(out.string() + ": a quantization made for the " + std::string(target_name(c.target)) +
                     " serving format is exported in that format (rptq export --format " + target_name(c.target) +
                     "), not as an RPTQ checkpoint");
  h5::Writer w(out, opts.overwrite);
  w.attr("/", "format", std::string(kFormat));
  w.attr("/", "format_version", std::int64_t{kCheckpointFormatVersion});
  w.attr("/", "tool_version", std::string(RPTQ_VERSION_STRING));
  {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    w.attr("/", "created", std::string(buf));
  }

  w.group("/source");
  w.attr("/source", "model_path", source_dir.string());
  w.attr("/source", "model_type", m.model_type);
  w.attr("/source", "architecture", m.arch_name());
  w.attr("/source", "config_sha256", stats.config_sha256);
  w.group("/calibration");
  w.attr("/calibration", "data_path", stats.data_path);
  w.attr("/calibration", "data_sha256", stats.data_sha256);
  w.attr("/calibration", "samples", stats.settings.samples);
  w.attr("/calibration", "seqlen", stats.settings.seqlen);
  w.attr("/calibration", "seed", static_cast<std::int64_t>(stats.settings.seed));
  w.attr("/calibration", "statistic", std::string(range_stat_name(stats.settings.stat)));

  w.group("/quantization");
  w.attr("/quantization", "preset", c.name);
  w.attr("/quantization", "description", c.describe());
  w.attr("/quantization", "wbits", std::int64_t{c.wbits});
  w.attr("/quantization", "weight_method", std::string(weight_method_name(c.weight_method)));
  w.attr("/quantization", "weight_group", std::int64_t{c.weight_group});
  w.attr("/quantization", "softmax_bits", std::int64_t{c.softmax_bits});
  w.attr("/quantization", "fp_prefix", std::int64_t{c.fp_prefix});
  w.attr("/quantization", "weight_clip", std::string(weight_clip_name(c.weight_clip)));
  w.attr("/quantization", "act_order", std::int64_t{c.act_order ? 1 : 0});
  w.attr("/quantization", "overrides", c.overrides_spec());
  w.attr("/quantization", "grid", std::string(grid_name(c.grid)));
  w.attr("/quantization", "ranges", std::string(c.range_mode == RangeMode::Static ? "static" : "dynamic"));
  for (int i = 0; i < kReorderIndices; ++i)
    w.attr("/quantization", "clusters_R" + std::to_string(i + 1), std::int64_t{c.clusters[static_cast<std::size_t>(i)]});
  for (int t = 0; t < kTapCount; ++t)
    w.attr("/quantization", std::string("abits_") + tap_name(static_cast<Tap>(t)),
           std::int64_t{c.abits[static_cast<std::size_t>(t)]});

  w.group("/files");
  for (const char* f : kCarriedFiles) {
    const auto p = source_dir / f;
    if (!std::filesystem::exists(p)) continue;
    const std::string bytes = read_bytes(p);
    w.write_u8(std::string("/files/") + f, {static_cast<std::int64_t>(bytes.size())},
               reinterpret_cast<const std::uint8_t*>(bytes.data()), /*compress=*/bytes.size() > 4096);
  }
  progress(0.02, "metadata");

  const Model::OuterWeights top = model.outer_weights();
  w.group("/model");
  write_plain(w, "/model/embed_tokens", top.embed_tokens);
  write_plain(w, "/model/embed_positions", top.embed_positions);
  write_plain(w, "/model/project_in", top.project_in.weight);
  write_plain(w, "/model/project_out", top.project_out.weight);
  write_norm(w, "/model/final_norm", top.final_norm);
  write_plain(w, "/model/lm_head", top.lm_head);
  progress(0.1, "embeddings");

  for (int l = 0; l < L; ++l) {
    const std::string g = "/layers/" + std::to_string(l);
    const LayerQuantization& lq = q.layer(l);
    const DecoderLayerWeights& lw = model.layer(l);
    w.group(g);
    w.attr(g, "quantize_softmax", std::int64_t{lw.quantize_softmax ? 1 : 0});
    write_norm(w, g + "/attn_norm", lw.attn_norm);
    write_norm(w, g + "/ffn_norm", lw.ffn_norm);
    if (!lw.rope_index.empty())
      w.write_i32(g + "/rope_index", {static_cast<std::int64_t>(lw.rope_index.size())}, lw.rope_index.data());
    for (int r = 1; r <= kReorderIndices; ++r) {
      const ReorderIndex& idx = lq.reorder.index(r);
      const std::string rg = g + "/reorder/R" + std::to_string(r);
      w.group(rg);
      w.write_i32(rg + "/order", {idx.channels()}, idx.order.data());
      const auto b = to_i32(idx.boundaries);
      w.write_i32(rg + "/boundaries", {static_cast<std::int64_t>(b.size())}, b.data());
    }
    for (int t = 0; t < kTapCount; ++t) {
      const TapQuantizer& tq = lq.taps[static_cast<std::size_t>(t)];
      if (!tq.active()) continue;
      const std::string tg = g + "/activations/" + tap_name(static_cast<Tap>(t));
      w.group(tg);
      w.attr(tg, "bits", std::int64_t{tq.bits});
      w.attr(tg, "dynamic", std::int64_t{tq.dynamic ? 1 : 0});
      w.attr(tg, "per_token", std::int64_t{tq.per_token ? 1 : 0});
      w.attr(tg, "grid", std::string(grid_name(tq.grid)));
      const auto b = to_i32(tq.boundaries);
      w.write_i32(tg + "/boundaries", {static_cast<std::int64_t>(b.size())}, b.data());
      if (!tq.dynamic) {
        std::vector<float> sc, zp;
        for (const QuantParams& p : tq.params) {
          sc.push_back(p.scale);
          zp.push_back(p.zero_point);
        }
        w.write_f32(tg + "/scale", {static_cast<std::int64_t>(sc.size())}, sc.data());
        w.write_f32(tg + "/zero_point", {static_cast<std::int64_t>(zp.size())}, zp.data());
      }
    }
    // Linears: packed when quantized, else as plain tensors.
    for (const NamedLinear& n : layer_linears(m, lw)) {
      if (n.weights->packed)
        write_linear(w, g + "/linear/" + n.name, *n.weights->packed, *n.weights);
      else
        write_linear_fp(w, g + "/linear/" + n.name, *n.weights);
    }
    progress(0.1 + 0.88 * (l + 1) / L, "layer " + std::to_string(l));
  }
  w.commit();
  progress(1.0, "done");
}

namespace {

CheckpointInfo read_info(const h5::Reader& f, const std::filesystem::path& path) {
  CheckpointInfo info;
  info.format_version = static_cast<int>(f.check_format(kFormat, kCheckpointFormatVersion, "RPTQ quantized checkpoint"));
  info.tool_version = f.attr_string("/", "tool_version");
  info.created = f.attr_string("/", "created");
  info.model_type = f.attr_string("/source", "model_type");
  info.architecture = f.attr_string("/source", "architecture");
  info.source_path = f.attr_string("/source", "model_path");
  info.config_sha256 = f.attr_string("/source", "config_sha256");
  info.data_sha256 = f.attr_string("/calibration", "data_sha256");
  info.preset = f.attr_string("/quantization", "preset");
  info.description = f.attr_string("/quantization", "description");
  info.wbits = static_cast<int>(f.attr_int("/quantization", "wbits"));
  info.kv_bits = static_cast<int>(std::min(f.attr_int("/quantization", "abits_k"), f.attr_int("/quantization", "abits_v")));
  for (int i = 1; i <= kReorderIndices; ++i)
    info.clusters.push_back(static_cast<int>(f.attr_int("/quantization", "clusters_R" + std::to_string(i))));
  if (!f.exists("/files/config.json")) f.fail("missing /files/config.json");
  while (f.exists("/layers/" + std::to_string(info.layers))) ++info.layers;
  if (info.layers == 0) f.fail("no /layers");
  for (std::int64_t l = 0; l < info.layers; ++l) {
    for (const char* n : {"q", "k", "v", "o", "fc1", "fc2", "gate", "up", "down"}) {
      const std::string g = "/layers/" + std::to_string(l) + "/linear/" + n;
      if (!f.exists(g)) continue;
      CheckpointInfo::Linear li;
      li.name = "layers." + std::to_string(l) + "." + n;
      li.bits = static_cast<int>(f.attr_int(g, "bits"));
      li.out = f.attr_int(g, "out_features");
      li.in = f.attr_int(g, "in_features");
      // Before any arithmetic on them (out x in of untrusted values could overflow).
      if (li.out < 1 || li.out > kMaxFeatures || li.in < 1 || li.in > kMaxFeatures)
        f.fail(g + ": implausible shape " + std::to_string(li.out) + " x " + std::to_string(li.in));
      if (li.bits < kFullPrecisionBits) {
        if (li.bits < 2 || li.bits > 8) f.fail(g + ": bits " + std::to_string(li.bits) + " outside 2..8");
        const auto shape = f.shape(g + "/codes");
        if (shape.size() != 1 || static_cast<std::uint64_t>(shape[0]) != packed_bytes(li.out * li.in, li.bits))
          f.fail(g + "/codes: " + std::to_string(shape.empty() ? 0 : shape[0]) + " bytes do not hold " +
                 std::to_string(li.out) + " x " + std::to_string(li.in) + " " + std::to_string(li.bits) +
                 "-bit codes");
        const auto gb = f.shape(g + "/group_boundaries");
        if (gb.size() != 1 || gb[0] < 2 || gb[0] > li.in + 1)
          f.fail(g + "/group_boundaries is not one list of 2.." + std::to_string(li.in + 1) + " boundaries");
        li.groups = gb[0] - 1;
        li.packed_bytes = static_cast<std::uint64_t>(shape[0]);  // the codes themselves (checked above)
        li.param_bytes = 0;
        for (const char* d : {"scales", "scale_exponents", "zero_points", "zero_point_exceptions",
                              "zero_point_exception_values"})
          if (f.exists(g + "/" + d)) li.param_bytes += f.storage_bytes(g + "/" + d);
        info.linear_packed_bytes += li.packed_bytes;
        info.linear_param_bytes += li.param_bytes;
      } else {
        info.other_bytes += f.storage_bytes(g + "/weight");
      }
      info.linear_fp16_bytes += li.fp16_bytes();
      info.linears.push_back(li);
    }
  }
  for (const char* t : {"embed_tokens", "embed_positions", "project_in", "project_out", "lm_head"})
    if (f.exists(std::string("/model/") + t)) info.other_bytes += f.storage_bytes(std::string("/model/") + t);
  std::error_code ec;
  info.file_bytes = std::filesystem::file_size(path, ec);
  return info;
}

}  // namespace

CheckpointInfo inspect_checkpoint(const std::filesystem::path& path) {
  return h5::guarded(path, [&] {
    const h5::Reader f(path);
    return read_info(f, path);
  });
}


// ---------------------------------------------------------------------------------------------------------------
// Reading a checkpoint back

std::unique_ptr<Tokenizer> load_checkpoint_tokenizer(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path tmp = fs::temp_directory_path(ec);
  if (ec) throw std::runtime_error("no temporary directory for the checkpoint's tokenizer: " + ec.message());
  // Folders of processes that were killed while loading: rptq-checkpoint-PID-XXXXXX whose PID no longer runs.
  for (const auto& e : fs::directory_iterator(tmp, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("rptq-checkpoint-", 0) != 0) continue;
    const std::size_t dash = n.find('-', 16);
    if (dash == std::string::npos) continue;
    const std::string pid = n.substr(16, dash - 16);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
  }
  std::string tmpl = (tmp / ("rptq-checkpoint-" + std::to_string(::getpid()) + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary folder in " + tmp.string());
  const fs::path dir(tmpl);
  struct Remove {
    fs::path d;
    ~Remove() {
      std::error_code e;
      fs::remove_all(d, e);
    }
  } remove{dir};
  extract_checkpoint_files(path, dir);
  try {
    return Tokenizer::load(dir);
  } catch (const InputError& e) {
    // Name the checkpoint, not the folder that is about to disappear.
    std::string m = e.what();
    const std::string from = dir.string(), to = path.string() + ":/files";
    for (std::size_t at = m.find(from); at != std::string::npos; at = m.find(from, at + to.size()))
      m.replace(at, from.size(), to);
    if (m.find(path.string()) == std::string::npos) m = path.string() + ": tokenizer: " + m;
    throw InputError(m);
  }
}

namespace {

std::string text_of(const h5::Reader& f, const std::string& ds) {
  const auto b = f.read_u8(ds);
  return {b.begin(), b.end()};
}

// A float32 RawTensor owning `values`, for Model::from_checkpoint.
RawTensor raw(const std::string& name, std::vector<std::int64_t> shape, std::vector<float> values,
              const std::string& file) {
  auto owner = std::make_shared<std::vector<float>>(std::move(values));
  RawTensor t;
  t.name = name;
  t.dtype = DType::F32;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const std::byte*>(owner->data());
  t.owner = owner;
  t.file = file;
  return t;
}

std::shared_ptr<const PackedWeight> read_packed(const h5::Reader& f, const std::string& g, int bits, std::int64_t out,
                                                std::int64_t in) {
  auto qw = std::make_shared<PackedWeight>();
  qw->out = out;
  qw->in = in;
  qw->bits = bits;
  const auto gb = f.read_i32(g + "/group_boundaries");
  qw->group_boundaries.assign(gb.begin(), gb.end());
  if (qw->group_boundaries.size() < 2 || qw->group_boundaries.front() != 0 || qw->group_boundaries.back() != in)
    f.fail(g + "/group_boundaries do not span the " + std::to_string(in) + " input columns");
  for (std::size_t i = 1; i < qw->group_boundaries.size(); ++i)
    if (qw->group_boundaries[i] < qw->group_boundaries[i - 1]) f.fail(g + "/group_boundaries decrease");
  const std::int64_t groups = qw->groups();
  qw->scales = f.read_f32(g + "/scales", {out, groups});  // FP16 (format 2) or float32
  if (f.exists(g + "/scale_exponents")) {
    const auto e = f.read_i32(g + "/scale_exponents", {out});
    for (std::int64_t r = 0; r < out; ++r) {
      if (e[static_cast<std::size_t>(r)] < -300 || e[static_cast<std::size_t>(r)] > 300)
        f.fail(g + "/scale_exponents: " + std::to_string(e[static_cast<std::size_t>(r)]) + " is out of range");
      for (std::int64_t k = 0; k < groups; ++k) {
        float& sk = qw->scales[static_cast<std::size_t>(r * groups + k)];
        sk = std::ldexp(sk, e[static_cast<std::size_t>(r)]);
      }
    }
  }
  for (float sk : qw->scales)
    if (!(sk > 0.0f) || !std::isfinite(sk)) f.fail(g + "/scales: a scale is not a positive finite number");
  if (f.has_attr(g, "zero_point_bits")) {
    const std::int64_t zb = f.attr_int(g, "zero_point_bits"), offset = f.attr_int(g, "zero_point_offset");
    if (zb < 2 || zb > 8) f.fail(g + ": zero_point_bits " + std::to_string(zb) + " outside 2..8");
    const std::int64_t n = out * groups;
    const auto packed = f.read_u8(g + "/zero_points", {static_cast<std::int64_t>(packed_bytes(n, static_cast<int>(zb)))});
    std::vector<std::uint8_t> u(static_cast<std::size_t>(n));
    unpack_bits(packed.data(), n, static_cast<int>(zb), u.data());
    const std::uint8_t escape = static_cast<std::uint8_t>((1 << zb) - 1);
    qw->zero_points.resize(u.size());
    for (std::size_t i = 0; i < u.size(); ++i)
      qw->zero_points[i] = u[i] == escape ? std::nanf("") : static_cast<float>(offset + u[i]);
    const auto idx = f.read_i32(g + "/zero_point_exceptions");
    const auto val = f.read_f32(g + "/zero_point_exception_values", {static_cast<std::int64_t>(idx.size())});
    for (std::size_t i = 0; i < idx.size(); ++i) {
      if (idx[i] < 0 || idx[i] >= n || u[static_cast<std::size_t>(idx[i])] != escape)
        f.fail(g + "/zero_point_exceptions: index " + std::to_string(idx[i]) + " is not an escaped zero point");
      qw->zero_points[static_cast<std::size_t>(idx[i])] = val[i];
    }
    for (float zp : qw->zero_points)
      if (!std::isfinite(zp)) f.fail(g + "/zero_points: an escaped zero point has no listed value");
  } else {
    qw->zero_points = f.read_f32(g + "/zero_points", {out, groups});  // int8/int16/float32 (format 1), int16/float32
  }
  qw->codes = f.read_u8(g + "/codes", {static_cast<std::int64_t>(packed_bytes(out * in, bits))});
  try {
    qw->check(g);
  } catch (const InputError& e) {
    f.fail(e.what());
  }
  return qw;
}

std::vector<std::int32_t> read_index(const h5::Reader& f, const std::string& ds, std::int64_t n) {
  auto v = f.read_i32(ds, {n});
  for (auto x : v)
    if (x < 0 || x >= n) f.fail(ds + ": index " + std::to_string(x) + " outside 0.." + std::to_string(n - 1));
  return v;
}

}  // namespace

void extract_checkpoint_files(const std::filesystem::path& path, const std::filesystem::path& dir) {
  const auto files = h5::guarded(path, [&] {
    const h5::Reader f(path);
    std::vector<std::pair<std::string, std::string>> out;
    for (const char* name : kCarriedFiles) {
      const std::string ds = std::string("/files/") + name;
      if (f.exists(ds)) out.emplace_back(name, text_of(f, ds));
    }
    return out;
  });
  std::filesystem::create_directories(dir);
  for (const auto& [name, t] : files) {
    std::ofstream o(dir / name, std::ios::binary | std::ios::trunc);
    o.write(t.data(), static_cast<std::streamsize>(t.size()));
    if (!o) throw InputError((dir / name).string() + ": cannot be written");
  }
}

// Read in a child process first (h5::guarded): a damaged file crashes or hangs the child, not the caller. (The
// reading is a lambda here, not a function of its own, so it keeps this friend's access to QuantizedModel.)
std::unique_ptr<QuantizedModel> load_checkpoint(const std::filesystem::path& path) {
  return h5::guarded(path, [&]() -> std::unique_ptr<QuantizedModel> {
    const h5::Reader f(path);
    read_info(f, path);  // format, version and the packed sizes are validated there
    const ModelConfig cfg = ModelConfig::parse(text_of(f, "/files/config.json"), path.string() + ":/files/config.json");
    const bool opt = cfg.arch == Architecture::OPT;
    const std::string file = path.string();
    std::map<std::string, RawTensor> tensors;
    auto plain = [&](const std::string& ds, const std::string& name) {
      if (!f.exists(ds)) return;
      tensors[name] = raw(name, f.shape(ds), f.read_f32(ds), file);
    };
    plain("/model/embed_tokens", "embed_tokens.weight");
    plain("/model/embed_positions", "embed_positions.weight");
    plain("/model/project_in", "project_in.weight");
    plain("/model/project_out", "project_out.weight");
    plain("/model/lm_head", "lm_head.weight");
    const std::string fn = opt ? "final_layer_norm" : "norm";
    plain("/model/final_norm/gamma", fn + ".weight");
    plain("/model/final_norm/beta", fn + ".bias");

    LoadOptions packed;  // the quantized linears, kept packed
    const std::vector<std::pair<std::string, std::string>> names =
        opt ? std::vector<std::pair<std::string, std::string>>{{"q", "self_attn.q_proj"}, {"k", "self_attn.k_proj"},
                                                               {"v", "self_attn.v_proj"}, {"o", "self_attn.out_proj"},
                                                               {"fc1", "fc1"}, {"fc2", "fc2"}}
            : std::vector<std::pair<std::string, std::string>>{{"q", "self_attn.q_proj"}, {"k", "self_attn.k_proj"},
                                                               {"v", "self_attn.v_proj"}, {"o", "self_attn.o_proj"},
                                                               {"gate", "mlp.gate_proj"}, {"up", "mlp.up_proj"},
                                                               {"down", "mlp.down_proj"}};
    for (std::int64_t l = 0; l < cfg.layers; ++l) {
      const std::string g = "/layers/" + std::to_string(l);
      const std::string hf = "layers." + std::to_string(l) + ".";
      if (!f.exists(g)) f.fail("missing " + g + " (config.json says " + std::to_string(cfg.layers) + " layers)");
      const std::string an = opt ? "self_attn_layer_norm" : "input_layernorm";
      const std::string fnn = opt ? "final_layer_norm" : "post_attention_layernorm";
      plain(g + "/attn_norm/gamma", hf + an + ".weight");
      plain(g + "/attn_norm/beta", hf + an + ".bias");
      plain(g + "/ffn_norm/gamma", hf + fnn + ".weight");
      plain(g + "/ffn_norm/beta", hf + fnn + ".bias");
      for (const auto& [short_name, hf_name] : names) {
        const std::string lg = g + "/linear/" + short_name;
        if (!f.exists(lg)) f.fail("missing " + lg);
        const int bits = static_cast<int>(f.attr_int(lg, "bits"));
        const std::int64_t out = f.attr_int(lg, "out_features"), in = f.attr_int(lg, "in_features");
        if (out < 1 || out > kMaxFeatures || in < 1 || in > kMaxFeatures)
          f.fail(lg + ": implausible shape " + std::to_string(out) + " x " + std::to_string(in));
        if (bits < kFullPrecisionBits) {
          if (bits < 2) f.fail(lg + ": bits " + std::to_string(bits) + " (2..8 or 16)");
          packed.packed[hf + hf_name + ".weight"] = read_packed(f, lg, bits, out, in);
        } else {
          plain(lg + "/weight", hf + hf_name + ".weight");
        }
        plain(lg + "/bias", hf + hf_name + ".bias");
      }
    }
    const Checkpoint ckpt = Checkpoint::from_tensors(path, std::move(tensors), "rptq checkpoint");
    std::unique_ptr<QuantizedModel> q(new QuantizedModel());
    q->model_ = Model::from_checkpoint(cfg, ckpt, packed);
    Model& m = *q->model_;

    // The quantization settings.
    QuantConfig& c = q->cfg_;
    c.name = f.attr_string("/quantization", "preset");
    c.wbits = static_cast<int>(f.attr_int("/quantization", "wbits"));
    // A setting's parser names only the bad value: say where it is.
    auto parsed = [&](auto parse, const std::string& object, const char* attr) {
      try {
        return parse(f.attr_string(object, attr));
      } catch (const InputError& e) {
        f.fail(object + " " + attr + ": " + e.what());
      }
    };
    c.weight_method = parsed(parse_weight_method, "/quantization", "weight_method");
    c.weight_group = static_cast<int>(f.attr_int("/quantization", "weight_group"));
    c.softmax_bits = static_cast<int>(f.attr_int("/quantization", "softmax_bits"));
    if (f.has_attr("/quantization", "fp_prefix")) {  // written since the remedy exists; 0 before
      const std::int64_t n = f.attr_int("/quantization", "fp_prefix");
      if (n < 0 || n > (1 << 20)) f.fail("/quantization fp_prefix " + std::to_string(n) + " is out of range");
      c.fp_prefix = static_cast<int>(n);
    }
    if (f.has_attr("/quantization", "weight_clip")) {  // how the weights were quantized; informative only
      const std::string clip = f.attr_string("/quantization", "weight_clip");
      if (clip != "minmax" && clip != "mse") f.fail("/quantization weight_clip \"" + clip + "\" is unknown");
      c.weight_clip = parse_weight_clip(clip);
    }
    if (f.has_attr("/quantization", "act_order")) c.act_order = f.attr_int("/quantization", "act_order") != 0;
    c.grid = parsed(parse_grid, "/quantization", "grid");
    c.range_mode = f.attr_string("/quantization", "ranges") == "dynamic" ? RangeMode::Dynamic : RangeMode::Static;
    for (int i = 0; i < kReorderIndices; ++i)
      c.clusters[static_cast<std::size_t>(i)] = static_cast<int>(f.attr_int("/quantization", "clusters_R" + std::to_string(i + 1)));
    for (int t = 0; t < kTapCount; ++t)
      c.abits[static_cast<std::size_t>(t)] =
          static_cast<int>(f.attr_int("/quantization", std::string("abits_") + tap_name(static_cast<Tap>(t))));
    try {
      if (f.has_attr("/quantization", "overrides")) {  // written since overrides exist (the taps hold their effect)
        const std::string all = f.attr_string("/quantization", "overrides");
        for (std::size_t a = 0; a < all.size();) {
          const std::size_t b = std::min(all.find(';', a), all.size());
          c.overrides.push_back(parse_override(all.substr(a, b - a)));
          a = b + 1;
        }
      }
      c.validate();
    } catch (const InputError& e) {
      f.fail(std::string("/quantization: ") + e.what());
    }

    q->layers_.resize(static_cast<std::size_t>(cfg.layers));
    const std::int64_t widths[] = {cfg.hidden, cfg.kv_dim(), cfg.kv_dim(), cfg.hidden, cfg.intermediate};
    for (std::int64_t l = 0; l < cfg.layers; ++l) {
      const std::string g = "/layers/" + std::to_string(l);
      LayerQuantization& lq = q->layers_[static_cast<std::size_t>(l)];
      DecoderLayerWeights& w = m.layer(static_cast<int>(l));
      w.quantize_softmax = f.attr_int(g, "quantize_softmax") != 0;
      if (f.exists(g + "/attn_norm/gather")) w.attn_norm.gather = read_index(f, g + "/attn_norm/gather", cfg.hidden);
      if (f.exists(g + "/ffn_norm/gather")) w.ffn_norm.gather = read_index(f, g + "/ffn_norm/gather", cfg.hidden);
      if (f.exists(g + "/rope_index"))
        w.rope_index = read_index(f, g + "/rope_index", cfg.kv_heads * cfg.head_dim / 2);
      for (int r = 1; r <= kReorderIndices; ++r) {
        const std::string rg = g + "/reorder/R" + std::to_string(r);
        ReorderIndex idx;
        idx.order = read_index(f, rg + "/order", widths[r - 1]);
        const auto b = f.read_i32(rg + "/boundaries");
        idx.boundaries.assign(b.begin(), b.end());
        try {
          idx.check(rg.c_str());
        } catch (const std::logic_error& e) {
          f.fail(e.what());
        }
        (r == 1 ? lq.reorder.r1 : r == 2 ? lq.reorder.r2 : r == 3 ? lq.reorder.r3 : r == 4 ? lq.reorder.r4 : lq.reorder.r5) =
            std::move(idx);
      }
      for (int t = 0; t < kTapCount; ++t) {
        const Tap tap = static_cast<Tap>(t);
        TapQuantizer& tq = lq.taps[static_cast<std::size_t>(t)];
        const std::string tg = g + "/activations/" + tap_name(tap);
        tq.grid = c.grid;
        if (!f.exists(tg)) continue;
        tq.bits = static_cast<int>(f.attr_int(tg, "bits"));
        tq.dynamic = f.attr_int(tg, "dynamic") != 0;
        tq.per_token = tq.dynamic && f.has_attr(tg, "per_token") && f.attr_int(tg, "per_token") != 0;
        tq.grid = parsed(parse_grid, tg, "grid");
        const auto b = f.read_i32(tg + "/boundaries");
        tq.boundaries.assign(b.begin(), b.end());
        const std::int64_t width = tap_channels(cfg, tap);
        bool ok = tq.bits >= 2 && tq.bits <= 8 && tq.boundaries.size() >= 2 && tq.boundaries.front() == 0 &&
                  tq.boundaries.back() == width;
        for (std::size_t i = 1; ok && i < tq.boundaries.size(); ++i) ok = tq.boundaries[i] >= tq.boundaries[i - 1];
        if (!ok) f.fail(tg + ": bits or cluster boundaries do not fit the tap's " + std::to_string(width) + " channels");
        if (!tq.dynamic) {
          const std::int64_t k = static_cast<std::int64_t>(tq.boundaries.size()) - 1;
          const auto sc = f.read_f32(tg + "/scale", {k});
          const auto zp = f.read_f32(tg + "/zero_point", {k});
          for (std::int64_t i = 0; i < k; ++i) {
            const float s = sc[static_cast<std::size_t>(i)], z = zp[static_cast<std::size_t>(i)];
            // What the quantizer needs, checked here rather than in the forward pass far from the file.
            if (!(s > 0.0f) || !std::isfinite(s))
              f.fail(tg + "/scale: cluster " + std::to_string(i) + "'s scale " + std::to_string(s) +
                     " is not a positive finite number");
            if (!std::isfinite(z)) f.fail(tg + "/zero_point: cluster " + std::to_string(i) + "'s zero point is not finite");
            tq.params.push_back({s, z, tq.bits});
          }
        }
      }
    }
    return q;
  });
}

}  // namespace rptq
