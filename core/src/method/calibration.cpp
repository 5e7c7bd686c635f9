#include "rptq/method/calibration.h"

#include <openssl/evp.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "rptq/model/blas.h"
#include "rptq/base/error.h"
#include "rptq/io/files.h"
#include "rptq/version_info.h"

namespace rptq {

namespace {
constexpr float kEmaMomentum = 0.99f;  // the reference's act_scales EMA: v = 0.99 v + 0.01 new
constexpr float kEmaNew = 0.01f;

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string utc_now_iso8601() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}
}  // namespace

void TapRanges::add_sample(std::span<const float> smax, std::span<const float> smin, bool keep_sample) {
  const std::size_t n = smax.size();
  if (smin.size() != n) throw std::logic_error("TapRanges: sample max and min differ in length");
  if (samples == 0) {
    ema_max.assign(smax.begin(), smax.end());
    ema_min.assign(smin.begin(), smin.end());
    max = ema_max;
    min = ema_min;
    sample_max.clear();
    sample_min.clear();
  } else {
    if (n != max.size()) throw std::logic_error("TapRanges: channel count changed between samples");
    for (std::size_t c = 0; c < n; ++c) {
      ema_max[c] = kEmaMomentum * ema_max[c] + kEmaNew * smax[c];
      ema_min[c] = kEmaMomentum * ema_min[c] + kEmaNew * smin[c];
      max[c] = std::max(max[c], smax[c]);
      min[c] = std::min(min[c], smin[c]);
    }
  }
  if (keep_sample) {
    sample_max.insert(sample_max.end(), smax.begin(), smax.end());
    sample_min.insert(sample_min.end(), smin.begin(), smin.end());
  }
  ++samples;
}

void TapRanges::cluster_range(RangeStat stat, std::span<const std::int32_t> chans, float& lo, float& hi) const {
  lo = hi = 0.0f;
  if (chans.empty()) return;
  const std::size_t n = max.size();
  for (std::int32_t c : chans)
    if (c < 0 || static_cast<std::size_t>(c) >= n)
      throw std::logic_error("TapRanges::cluster_range: channel " + std::to_string(c) + " out of range");
  if (stat == RangeStat::MinMax) {
    lo = INFINITY;
    hi = -INFINITY;
    for (std::int32_t c : chans) {
      lo = std::min(lo, min[static_cast<std::size_t>(c)]);
      hi = std::max(hi, max[static_cast<std::size_t>(c)]);
    }
    return;
  }
  if (!has_samples())
    throw InputError("the EMA range of a cluster needs every calibration sample's ranges, which these statistics "
                     "do not hold (written before format version 2): calibrate again, or use the minmax statistic");
  for (std::int64_t s = 0; s < samples; ++s) {
    const float* smx = sample_max.data() + static_cast<std::size_t>(s) * n;
    const float* smn = sample_min.data() + static_cast<std::size_t>(s) * n;
    float x_hi = -INFINITY, x_lo = INFINITY;
    for (std::int32_t c : chans) {
      x_hi = std::max(x_hi, smx[c]);
      x_lo = std::min(x_lo, smn[c]);
    }
    if (s == 0) {
      hi = x_hi;
      lo = x_lo;
    } else {
      hi = kEmaMomentum * hi + kEmaNew * x_hi;
      lo = kEmaMomentum * lo + kEmaNew * x_lo;
    }
  }
}

std::vector<std::int32_t> calibration_windows(std::span<const std::int32_t> ids, std::int64_t samples,
                                              std::int64_t seqlen, std::uint64_t seed) {
  if (samples < 1 || seqlen < 2) throw InputError("calibration needs at least 1 sample of at least 2 tokens");
  const std::int64_t n = static_cast<std::int64_t>(ids.size());
  if (n < seqlen + 1)
    throw InputError("the calibration text has " + std::to_string(n) + " tokens, fewer than one window of " +
                     std::to_string(seqlen) + " + 1");
  // Start offsets uniform in [0, n - seqlen - 1], as the GPTQ/RPTQ data loaders draw them (their generator is
  // Python's; ours is splitmix64, so the windows differ from theirs but are reproducible here).
  const std::uint64_t span = static_cast<std::uint64_t>(n - seqlen);
  std::uint64_t state = seed;
  std::vector<std::int32_t> out(static_cast<std::size_t>(samples * seqlen));
  for (std::int64_t s = 0; s < samples; ++s) {
    const std::int64_t start = static_cast<std::int64_t>(splitmix64(state) % span);
    std::copy_n(ids.begin() + start, seqlen, out.begin() + s * seqlen);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

LayerwiseRunner::LayerwiseRunner(const Model& model, std::span<const std::int32_t> tokens, std::int64_t samples,
                                 std::int64_t seqlen)
    : model_(model), samples_(samples), seqlen_(seqlen) {
  if (samples < 1 || seqlen < 1 || static_cast<std::int64_t>(tokens.size()) != samples * seqlen)
    throw InputError("calibration tokens: " + std::to_string(tokens.size()) + " ids cannot be " +
                     std::to_string(samples) + " windows of " + std::to_string(seqlen));
  hidden_.reserve(static_cast<std::size_t>(samples));
  for (std::int64_t i = 0; i < samples; ++i)
    hidden_.push_back(model.embed(tokens.subspan(static_cast<std::size_t>(i * seqlen), seqlen), 1));
}

void LayerwiseRunner::run(bool keep, ActivationHook* hook, const LayerwiseCallback& progress) {
  const int layers = static_cast<int>(model_.config().layers);
  if (next_layer_ >= layers) throw std::logic_error("LayerwiseRunner: every layer has run");
  LayerwiseProgress p;
  p.layer = next_layer_;
  p.layers = layers;
  p.samples = samples_;
  p.total = static_cast<std::int64_t>(layers) * passes_per_layer_ * samples_;
  // Several windows per layer_forward (about kBatchRows rows): larger GEMMs and fewer parallel regions. The hooks
  // see them as sequences of seqlen rows (ActivationView::seq), one calibration sample each.
  const std::int64_t per = std::max<std::int64_t>(1, kBatchRows / seqlen_);
  const std::int64_t d = model_.config().hidden;
  const auto window_bytes = static_cast<std::size_t>(seqlen_ * d) * sizeof(float);
  Tensor batch;
  for (std::int64_t i = 0; i < samples_;) {
    const std::int64_t nb = std::min(per, samples_ - i);
    if (nb == 1 && keep) {
      model_.layer_forward(next_layer_, hidden_[static_cast<std::size_t>(i)], 1, nullptr, hook);
    } else {
      if (batch.numel() != nb * seqlen_ * d) batch = Tensor::uninitialized({nb * seqlen_, d});
      for (std::int64_t b = 0; b < nb; ++b)
        std::memcpy(batch.data() + b * seqlen_ * d, hidden_[static_cast<std::size_t>(i + b)].data(), window_bytes);
      model_.layer_forward(next_layer_, batch, nb, nullptr, hook, /*taps_only=*/!keep);
      if (keep)
        for (std::int64_t b = 0; b < nb; ++b)
          std::memcpy(hidden_[static_cast<std::size_t>(i + b)].data(), batch.data() + b * seqlen_ * d, window_bytes);
    }
    for (std::int64_t b = 0; b < nb; ++b) {
      p.sample = ++i;
      p.done = ++steps_done_;
      if (progress && !progress(p)) throw Cancelled();
    }
  }
  if (keep) ++next_layer_;
}

void LayerwiseRunner::observe(ActivationHook* hook, const LayerwiseCallback& progress) { run(false, hook, progress); }
void LayerwiseRunner::advance(ActivationHook* hook, const LayerwiseCallback& progress) { run(true, hook, progress); }

// ---------------------------------------------------------------------------------------------------------------

void channel_max_min(const ActivationView& act, std::vector<float>& mx, std::vector<float>& mn) {
  const std::int64_t cols = act.cols;
  mx.assign(static_cast<std::size_t>(cols), -INFINITY);
  mn.assign(static_cast<std::size_t>(cols), INFINITY);
  // Column blocks in parallel; rows streamed inside a block so the inner loop vectorises.
  constexpr std::int64_t kCols = 256;
  const std::int64_t blocks = (cols + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (act.rows * cols > (1 << 16))
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t c0 = b * kCols, c1 = std::min(cols, c0 + kCols);
    float* hi = mx.data();
    float* lo = mn.data();
    for (std::int64_t r = 0; r < act.rows; ++r) {
      const float* x = act.row(r);
#pragma omp simd
      for (std::int64_t c = c0; c < c1; ++c) {
        hi[c] = x[c] > hi[c] ? x[c] : hi[c];
        lo[c] = x[c] < lo[c] ? x[c] : lo[c];
      }
    }
  }
}

void attention_score_range(const ModelConfig& cfg, const ActivationView& q_tap, const ActivationView& k_tap,
                           std::vector<float>& hmax, std::vector<float>& hmin) {
  // The softmax input of each head: scaled q k^T over the causal (and windowed) entries of this one sequence,
  // tiled as ops::attention: blocks of queries against the keys they see only (no T x T matrix).
  constexpr std::int64_t kBlock = 64;
  const std::int64_t T = k_tap.rows, hd = cfg.head_dim, heads = cfg.heads;
  const std::int64_t group = cfg.heads / cfg.kv_heads;
  const std::int64_t window = cfg.sliding_window;
  // OPT's Q tap is already scaled by head_dim^-0.5; LLaMA's attention scales the product.
  const float scale = cfg.arch == Architecture::OPT ? 1.0f : 1.0f / std::sqrt(static_cast<float>(hd));
  const std::int64_t blocks = (T + kBlock - 1) / kBlock, tasks = heads * blocks;
  std::vector<float> tmax(static_cast<std::size_t>(tasks)), tmin(static_cast<std::size_t>(tasks));
#pragma omp parallel if (tasks > 1 && T * T * heads > (1 << 16))
  {
    std::vector<float> sc;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t task = 0; task < tasks; ++task) {
      const std::int64_t blk = blocks - 1 - task % blocks, h = task / blocks;
      const std::int64_t i0 = blk * kBlock, i1 = std::min(T, i0 + kBlock), m = i1 - i0;
      const std::int64_t key_begin = window > 0 ? std::max<std::int64_t>(0, i0 - window + 1) : 0;
      const std::int64_t nk = i1 - key_begin;
      sc.resize(static_cast<std::size_t>(m * nk));
      const float* q = q_tap.row(i0) + h * hd;
      const float* k = k_tap.row(key_begin) + (h / group) * hd;
      blas::sgemm(false, true, m, nk, hd, scale, q, q_tap.ld, k, k_tap.ld, 0.0f, sc.data(), nk);
      float hi = -INFINITY, lo = INFINITY;
      for (std::int64_t r = 0; r < m; ++r) {
        const std::int64_t i = i0 + r;
        const float* row = sc.data() + r * nk - key_begin;
        const std::int64_t j0 = window > 0 ? std::max<std::int64_t>(0, i - window + 1) : 0;
        for (std::int64_t j = j0; j <= i; ++j) {
          hi = row[j] > hi ? row[j] : hi;
          lo = row[j] < lo ? row[j] : lo;
        }
      }
      tmax[static_cast<std::size_t>(task)] = hi;
      tmin[static_cast<std::size_t>(task)] = lo;
    }
  }
  hmax.assign(static_cast<std::size_t>(heads), -INFINITY);
  hmin.assign(static_cast<std::size_t>(heads), INFINITY);
  for (std::int64_t task = 0; task < tasks; ++task) {
    const auto h = static_cast<std::size_t>(task / blocks);
    hmax[h] = std::max(hmax[h], tmax[static_cast<std::size_t>(task)]);
    hmin[h] = std::min(hmin[h], tmin[static_cast<std::size_t>(task)]);
  }
}

RangeRecorder::RangeRecorder(const ModelConfig& cfg, std::vector<LayerRanges>& ranges) : cfg_(cfg), ranges_(ranges) {
  if (ranges_.size() < static_cast<std::size_t>(cfg.layers)) ranges_.resize(static_cast<std::size_t>(cfg.layers));
}

void RangeRecorder::on_activation(int layer, Tap tap, const ActivationView& act) {
  LayerRanges& lr = ranges_.at(static_cast<std::size_t>(layer));
  // One sample per sequence (a window), in order.
  const std::int64_t seq = act.seq > 0 ? act.seq : act.rows;
  if (seq < 1 || act.rows % seq != 0) throw std::logic_error("RangeRecorder: the rows are not whole sequences");
  auto sequence = [&](const ActivationView& v, std::int64_t r0) {
    ActivationView one = v;
    one.data = v.row(r0);
    one.rows = seq;
    one.seq = seq;
    return one;
  };
  const std::int64_t skip = std::clamp<std::int64_t>(skip_prefix_ - act.past, 0, seq);
  if (skip >= seq)
    throw InputError("calibration windows of " + std::to_string(seq) + " tokens leave nothing beside a " +
                     std::to_string(skip_prefix_) + "-token full-precision prefix");
  std::vector<float> mx, mn;
  for (std::int64_t r0 = 0; r0 < act.rows; r0 += seq) {
    ActivationView tail = sequence(act, r0);
    tail.data = tail.row(skip);
    tail.rows = seq - skip;
    tail.past = act.past + skip;
    channel_max_min(tail, mx, mn);
    lr.tap(tap).add_sample(mx, mn);
  }

  if (tap == Tap::Q) {
    last_q_ = act;
    last_q_layer_ = layer;
  } else if (tap == Tap::K && last_q_layer_ == layer) {
    if (last_q_.rows != act.rows) throw std::logic_error("RangeRecorder: Q and K of different lengths");
    std::vector<float> hmax, hmin;
    for (std::int64_t r0 = 0; r0 < act.rows; r0 += seq) {
      attention_score_range(cfg_, sequence(last_q_, r0), sequence(act, r0), hmax, hmin);
      lr.scores.add_sample(hmax, hmin, /*keep_sample=*/false);
    }
    last_q_layer_ = -1;
  }
}

const TapRanges& ChannelStats::tap(int layer, Tap t) const {
  if (layer < 0 || layer >= static_cast<int>(ranges.size()))
    throw InputError("layer " + std::to_string(layer) + " is out of range: the statistics have " +
                     std::to_string(ranges.size()) + " layers (0.." + std::to_string(ranges.size() - 1) + ")");
  return ranges[static_cast<std::size_t>(layer)].tap(t);
}

ModelConfig ChannelStats::model_shape() const {
  ModelConfig c;
  c.model_type = model_type;
  c.arch = model_type == "opt" ? Architecture::OPT : Architecture::Llama;
  c.layers = layers;
  c.hidden = hidden;
  c.heads = heads;
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.intermediate = intermediate;
  return c;
}

ChannelStats calibration_start(const Model& model, const std::string& model_dir, std::span<const std::int32_t> text_ids,
                               const std::string& data_path, const std::string& data_sha256,
                               const CalibrationSettings& settings) {
  const ModelConfig& cfg = model.config();
  // OPT has no embeddings past its positions; a LLaMA-family model was not trained on them (and attention's cost
  // grows with the square of the window).
  if (settings.seqlen > cfg.max_positions)
    throw InputError("calibration windows of " + std::to_string(settings.seqlen) + " tokens are longer than the " +
                     "model's " + std::to_string(cfg.max_positions) + " positions (max_position_embeddings)");
  ChannelStats st;
  st.model_path = model_dir;
  st.model_type = cfg.model_type;
  st.architecture = cfg.arch_name();
  const std::filesystem::path config_json = std::filesystem::path(model_dir) / "config.json";
  if (!model_dir.empty() && std::filesystem::exists(config_json)) st.config_sha256 = sha256_file(config_json);
  st.layers = cfg.layers;
  st.hidden = cfg.hidden;
  st.heads = cfg.heads;
  st.kv_heads = cfg.kv_heads;
  st.head_dim = cfg.head_dim;
  st.intermediate = cfg.intermediate;
  st.data_path = data_path;
  st.data_sha256 = data_sha256;
  st.settings = settings;
  st.tool_version = RPTQ_VERSION_STRING;
  st.created = utc_now_iso8601();
  st.tokens = calibration_windows(text_ids, settings.samples, settings.seqlen, settings.seed);
  return st;
}

ChannelStats calibrate(const Model& model, const std::string& model_dir, std::span<const std::int32_t> text_ids,
                       const std::string& data_path, const std::string& data_sha256,
                       const CalibrationSettings& settings, const LayerwiseCallback& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& cfg = model.config();
  ChannelStats st = calibration_start(model, model_dir, text_ids, data_path, data_sha256, settings);
  st.ranges.resize(static_cast<std::size_t>(cfg.layers));

  LayerwiseRunner runner(model, st.tokens, settings.samples, settings.seqlen);
  RangeRecorder rec(cfg, st.ranges);
  for (int l = 0; l < cfg.layers; ++l) runner.advance(&rec, progress);
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

// ---------------------------------------------------------------------------------------------------------------

namespace {
std::string to_hex(const unsigned char* md, unsigned int len) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}
}  // namespace

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr))
    throw std::runtime_error("SHA-256 failed (OpenSSL)");
  return to_hex(md, len);
}

std::string sha256_file(const std::string& path) {
  // read_file: a regular file only (a FIFO or device is refused without blocking), bounded in size.
  return sha256_hex(read_file(path));
}

}  // namespace rptq
