// GPU benchmark: evaluation and calibration tokens/s of rptq's GPU path (rptq::GpuRunner), and its GEMMs and packed
// GEMV against cuBLAS / cuBLASLt and the device's measured memory ceilings. Built only with the CUDA kernels.
//
//   bench_cuda MODEL_DIR [--precisions fp32,fp16,bf16] [--eval-seqlen 2048] [--eval-windows 8] [--eval-batch 8]
//              [--calib-samples 16] [--calib-seqlen 2048] [--calib-batch 8] [--warmup 1] [--repeats 3]
//              [--calib-warmup 0] [--calib-repeats 2] [--seed 1234] [--no-eval] [--no-calib] [--no-overlap]
//              [--check-cpu] [--check-windows 1] [--check-samples 2] [--gen-prompt 128] [--gen-tokens 0]
//              [--label NAME]
//   bench_cuda --gemm MODEL_DIR [--rows 2048] [--head-rows 512] [--precisions fp32,fp16,bf16] [--min-ms 20]
//              [--samples 5] [--lt-algos 8] [--bw-mib 1024] [--gemv-bits 4] [--gemv-group 128]
//              [--gemv-pool-mib 256] [--no-gemm] [--no-bandwidth] [--no-gemv] [--label NAME]
//   bench_cuda --device-info
//
// Model mode loads MODEL_DIR (Model::load; only config.json is read in --gemm mode) and, per GEMM precision of
// GpuOptions, builds one GpuRunner and times
//   * evaluation: GpuRunner::perplexity() over `eval-windows` windows of `eval-seqlen` seeded random token ids,
//     `eval-batch` windows per forward (the logits of every position and the NLL, as `rptq eval --device cuda`);
//   * calibration: GpuRunner::calibration_ranges() over `calib-samples` windows of `calib-seqlen` tokens, every
//     tap's per-channel ranges and the attention score ranges, `calib-batch` windows per layer step (what
//     `rptq calibrate --device cuda` runs after drawing its windows);
//   * generation (--gen-tokens > 0): GpuRunner::generate() of --gen-tokens greedy tokens after a --gen-prompt token
//     prompt, the KV cache on the device; decode tokens/s over the steps after the first token, and the prefill;
// wall time per call, `warmup` untimed calls first, median and min of the timed ones, tokens/s, useful TFLOP/s
// (analytic count, see model_flops), the runner's peak device memory and its decoder layers' placement, resident or
// streamed (GpuRunner::memory(); "layers" in the JSON and the table), and the device's used memory
// (cudaMemGetInfo). --check-cpu runs the first --check-windows windows and --check-samples calibration windows on
// the CPU engine too and reports the perplexity and range differences (FP32 runner only).
// Token ids: id_i = splitmix64 output i of state `seed` (eval) or `seed + 1` (calibration), modulo the vocabulary;
// bench/torch_cuda.py draws the very same ids, so perplexities and range checksums compare across engines.
//
// --gemm times, at the model's GEMM shapes (y[M, N] = x[M, K] * w[N, K]^T, M = --rows tokens; the LM head at
// --head-rows, the runner's head chunk, FP32 only as the runner computes it), rptq's kernels/gemm.cuh (gemm_xwt:
// the product alone; linear: with the bias, as the layers call it; for 16-bit also linear on float x, which rounds
// x into scratch first) against cublasGemmEx and cublasLt (every algorithm of the heuristic's top --lt-algos timed,
// the fastest kept), in TFLOP/s. Variants are tagged by what they compute: "same" (our contract: inputs of the
// precision, float32 accumulation and output), "tf32" (float32 inputs rounded to TF32 on the tensor cores: not
// our FP32 contract) and "out16" (16-bit output). Each variant's output is poisoned (NaN) before its first call,
// then checked for unwritten entries and against a float64 reference on sampled entries. It also measures the
// memory ceilings (device-to-device cudaMemcpy, counting bytes read + written, and a float4 read kernel) and the
// packed GEMV of kernels/packed_gemm.cuh at decode shape (M = 1, --gemv-bits, groups of --gemv-group columns)
// over a pool of weight copies larger than the L2 cache, in GB/s against those ceilings, with cuBLAS's dense
// FP16 M = 1 product beside it.
//
// Timing: every timed region ends with cudaStreamSynchronize and is read from the host clock; a region repeats an
// op until it lasts --min-ms, and the per-op time of --samples such regions gives median and best.
// Every CUDA / cuBLAS call is checked: a failure of our own code throws (rptq::CudaError, with the call's name);
// a cuBLAS variant that the library refuses (e.g. no TF32 here) is reported with its status and skipped.
// Output: one JSON line per result (starting with '{'), then a human-readable table.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_cuda_kernels.h"
#include "cuda_check.cuh"
#include "device.cuh"
#include "gemm.cuh"
#include "packed_gemm.cuh"
#include "rptq/base/bitpack.h"
#include "rptq/method/calibration.h"
#include "cuda/cuda_runner.h"
#include "rptq/device.h"
#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/model/model_config.h"
#include "rptq/eval/perplexity.h"
#include "rptq/model/tap.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using rptq::cuda::DeviceBuffer;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
double min_of(const std::vector<double>& v) { return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end()); }

void emit(const json& j) { std::cout << j.dump() << std::endl; }

// ---------------------------------------------------------------------------------------------------------------
// Arguments

struct Args {
  std::string model_dir, label;
  bool gemm_mode = false, device_info_only = false;
  std::vector<std::string> precisions = {"fp32", "fp16", "bf16"};
  std::uint64_t seed = 1234;
  // model mode
  std::int64_t eval_seqlen = 2048, eval_windows = 8, eval_batch = 8;
  std::int64_t calib_samples = 16, calib_seqlen = 2048, calib_batch = 8;
  int warmup = 1, repeats = 3, calib_warmup = 0, calib_repeats = 2;
  bool eval = true, calib = true, overlap = true, check_cpu = false;
  std::int64_t check_windows = 1, check_samples = 2;
  std::int64_t gen_prompt = 128, gen_tokens = 0;  // generation phase (0 tokens: none)
  // gemm mode
  std::vector<std::int64_t> rows = {2048};
  std::int64_t head_rows = 512;
  double min_ms = 20.0;
  int samples = 5, lt_algos = 8;
  std::int64_t bw_mib = 1024, gemv_pool_mib = 256, gemv_group = 128;
  std::vector<int> gemv_bits = {4};
  bool gemm = true, bandwidth = true, gemv = true;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "%s\nusage: bench_cuda MODEL_DIR [--precisions fp32,fp16,bf16] [--eval-seqlen 2048] "
               "[--eval-windows 8] [--eval-batch 8] [--calib-samples 16] [--calib-seqlen 2048] [--calib-batch 8] "
               "[--warmup 1] [--repeats 3] [--calib-warmup 0] [--calib-repeats 2] [--seed 1234] [--no-eval] "
               "[--no-calib] [--no-overlap] [--check-cpu] [--check-windows 1] [--check-samples 2] [--gen-prompt 128] "
               "[--gen-tokens 0] [--label NAME]\n"
               "       bench_cuda --gemm MODEL_DIR [--rows 2048[,16384]] [--head-rows 512] [--precisions ...] "
               "[--min-ms 20] [--samples 5] [--lt-algos 8] [--bw-mib 1024] [--gemv-bits 4[,3]] [--gemv-group 128] "
               "[--gemv-pool-mib 256] [--no-gemm] [--no-bandwidth] [--no-gemv] [--label NAME]\n"
               "       bench_cuda --device-info\n",
               why.c_str());
  std::exit(2);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value after " + s);
      return argv[++i];
    };
    try {
      if (s == "--gemm") a.gemm_mode = true;
      else if (s == "--device-info") a.device_info_only = true;
      else if (s == "--precisions") a.precisions = split(value());
      else if (s == "--seed") a.seed = std::stoull(value());
      else if (s == "--label") a.label = value();
      else if (s == "--eval-seqlen") a.eval_seqlen = std::stoll(value());
      else if (s == "--eval-windows") a.eval_windows = std::stoll(value());
      else if (s == "--eval-batch") a.eval_batch = std::stoll(value());
      else if (s == "--calib-samples") a.calib_samples = std::stoll(value());
      else if (s == "--calib-seqlen") a.calib_seqlen = std::stoll(value());
      else if (s == "--calib-batch") a.calib_batch = std::stoll(value());
      else if (s == "--warmup") a.warmup = std::stoi(value());
      else if (s == "--repeats") a.repeats = std::stoi(value());
      else if (s == "--calib-warmup") a.calib_warmup = std::stoi(value());
      else if (s == "--calib-repeats") a.calib_repeats = std::stoi(value());
      else if (s == "--no-eval") a.eval = false;
      else if (s == "--no-calib") a.calib = false;
      else if (s == "--no-overlap") a.overlap = false;
      else if (s == "--check-cpu") a.check_cpu = true;
      else if (s == "--check-windows") a.check_windows = std::stoll(value());
      else if (s == "--check-samples") a.check_samples = std::stoll(value());
      else if (s == "--gen-prompt") a.gen_prompt = std::stoll(value());
      else if (s == "--gen-tokens") a.gen_tokens = std::stoll(value());
      else if (s == "--rows") {
        a.rows.clear();
        for (const auto& r : split(value())) a.rows.push_back(std::stoll(r));
      } else if (s == "--head-rows") a.head_rows = std::stoll(value());
      else if (s == "--min-ms") a.min_ms = std::stod(value());
      else if (s == "--samples") a.samples = std::stoi(value());
      else if (s == "--lt-algos") a.lt_algos = std::stoi(value());
      else if (s == "--bw-mib") a.bw_mib = std::stoll(value());
      else if (s == "--gemv-pool-mib") a.gemv_pool_mib = std::stoll(value());
      else if (s == "--gemv-group") a.gemv_group = std::stoll(value());
      else if (s == "--gemv-bits") {
        a.gemv_bits.clear();
        for (const auto& b : split(value())) a.gemv_bits.push_back(std::stoi(b));
      } else if (s == "--no-gemm") a.gemm = false;
      else if (s == "--no-bandwidth") a.bandwidth = false;
      else if (s == "--no-gemv") a.gemv = false;
      else if (s == "-h" || s == "--help") usage("");
      else if (!s.empty() && s[0] == '-') usage("unknown option " + s);
      else if (a.model_dir.empty()) a.model_dir = s;
      else usage("unexpected argument " + s);
    } catch (const std::logic_error&) {
      usage("bad value for " + s);
    }
  }
  if (!a.device_info_only && a.model_dir.empty()) usage("missing MODEL_DIR");
  for (const auto& p : a.precisions)
    if (p != "fp32" && p != "fp16" && p != "bf16") usage("unknown precision " + p + " (fp32, fp16, bf16)");
  if (a.precisions.empty()) usage("--precisions is empty");
  if (a.eval_seqlen < 2 || a.eval_windows < 1 || a.eval_batch < 1 || a.calib_samples < 1 || a.calib_seqlen < 2 ||
      a.calib_batch < 1 || a.warmup < 0 || a.repeats < 1 || a.calib_warmup < 0 || a.calib_repeats < 1 ||
      a.check_windows < 1 || a.check_samples < 1)
    usage("sizes and repeats must be positive (warm-ups >= 0)");
  if (a.rows.empty() || a.head_rows < 1 || a.min_ms <= 0 || a.samples < 1 || a.lt_algos < 1 || a.bw_mib < 1 ||
      a.gemv_pool_mib < 1 || a.gemv_group < 1)
    usage("gemm sizes must be positive");
  for (std::int64_t r : a.rows)
    if (r < 1) usage("--rows must be positive");
  for (int b : a.gemv_bits)
    if (b < 2 || b > 8) usage("--gemv-bits must be 2..8");
  return a;
}

// ---------------------------------------------------------------------------------------------------------------
// Token ids shared with torch_cuda.py: output i of splitmix64 from state `seed`, modulo the vocabulary.

std::vector<std::int32_t> bench_ids(std::int64_t n, std::int64_t vocab, std::uint64_t seed) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  std::uint64_t state = seed;
  for (auto& id : ids) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    id = static_cast<std::int32_t>(z % static_cast<std::uint64_t>(vocab));
  }
  return ids;
}

// Seeded uniform values in [-1, 1), cheap enough for hundreds of MB.
std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<std::int32_t>(s >> 40) - (1 << 23)) * (1.0f / (1 << 23));
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// Device

struct DeviceFacts {
  std::string name;
  int sms = 0, cc_major = 0, cc_minor = 0, clock_khz = 0, mem_clock_khz = 0, bus_bits = 0, l2_bytes = 0;
  int driver = 0, runtime = 0;
  std::size_t total_bytes = 0;
  // Datasheet-style DRAM bandwidth from the memory clock and bus width (2 transfers per clock); 0 when the
  // driver does not report them.
  double theoretical_gbs() const { return 2.0 * mem_clock_khz * 1e3 * (bus_bits / 8.0) * 1e-9; }
};

DeviceFacts device_facts(int dev) {
  DeviceFacts f;
  cudaDeviceProp p{};
  RPTQ_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  f.name = p.name;
  f.total_bytes = p.totalGlobalMem;
  f.cc_major = p.major;
  f.cc_minor = p.minor;
  RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&f.sms, cudaDevAttrMultiProcessorCount, dev));
  RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&f.clock_khz, cudaDevAttrClockRate, dev));
  RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&f.mem_clock_khz, cudaDevAttrMemoryClockRate, dev));
  RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&f.bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev));
  RPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&f.l2_bytes, cudaDevAttrL2CacheSize, dev));
  RPTQ_CUDA_CHECK(cudaDriverGetVersion(&f.driver));
  RPTQ_CUDA_CHECK(cudaRuntimeGetVersion(&f.runtime));
  if (f.sms <= 0) f.sms = p.multiProcessorCount;
  return f;
}

json device_json(const DeviceFacts& f) {
  const rptq::DeviceInfo info = rptq::device_info();
  return {{"kind", "device"},
          {"name", f.name},
          {"rptq_device", info.description},
          {"compute_capability", std::to_string(f.cc_major) + "." + std::to_string(f.cc_minor)},
          {"sms", f.sms},
          {"sm_clock_mhz", f.clock_khz / 1000.0},
          {"memory_clock_mhz", f.mem_clock_khz / 1000.0},
          {"bus_width_bits", f.bus_bits},
          {"theoretical_dram_gbs", f.theoretical_gbs()},
          {"l2_bytes", f.l2_bytes},
          {"total_bytes", f.total_bytes},
          {"driver_version", f.driver},
          {"runtime_version", f.runtime},
          {"cublas_compiled_version", CUBLAS_VERSION},
          {"cublaslt_version", cublasLtGetVersion()}};
}

std::size_t device_used_bytes() {
  std::size_t free_b = 0, total_b = 0;
  RPTQ_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return total_b - free_b;
}

// Fails with a clear message, before anything else, when there is no usable GPU.
void require_gpu() {
  const rptq::DeviceInfo info = rptq::device_info();
  if (info.cuda_devices <= 0) throw rptq::InputError("no usable GPU: " + info.unavailable_reason);
}

// ---------------------------------------------------------------------------------------------------------------
// Model mode

rptq::GpuPrecision precision_of(const std::string& p) {
  return p == "fp16" ? rptq::GpuPrecision::FP16 : p == "bf16" ? rptq::GpuPrecision::BF16 : rptq::GpuPrecision::FP32;
}

// Useful FLOPs, 2 * M * N * K per product: the layers' projections and FFN over every token, attention over the
// exact causal triangle (QK^T and PV), and (evaluation) the LM head over the seqlen - 1 positions that predict a
// token, as GpuRunner::perplexity computes it. Not counted: norms, softmax, bias, activation, embeddings, and the
// attention score ranges calibration computes on the host.
struct ModelFlops {
  double layers = 0, attention = 0, head = 0;
  double total() const { return layers + attention + head; }
};

ModelFlops model_flops(const rptq::ModelConfig& c, std::int64_t windows, std::int64_t T, bool with_head) {
  ModelFlops f;
  const double rows = static_cast<double>(windows) * T, d = c.hidden, L = c.layers;
  const double qd = c.q_dim(), kvd = c.kv_dim(), ff = c.intermediate;
  const double e = c.embed_dim ? c.embed_dim : c.hidden;
  const double ffn_mats = c.arch == rptq::Architecture::OPT ? 2 : 3;
  f.layers = L * 2 * rows * (d * qd + 2 * d * kvd + qd * d + ffn_mats * d * ff);
  double entries = static_cast<double>(T) * (T + 1) / 2;
  if (c.sliding_window > 0 && c.sliding_window < T) {
    const double w = static_cast<double>(c.sliding_window);
    entries = w * (w + 1) / 2 + (T - w) * w;
  }
  f.attention = L * windows * 4.0 * c.head_dim * c.heads * entries;
  if (with_head) {
    f.head = 2.0 * windows * (T - 1) * e * c.vocab;
    if (c.arch == rptq::Architecture::OPT && c.embed_dim != c.hidden) f.head += 2.0 * windows * (T - 1) * d * e;
  }
  return f;
}

json memory_json(const rptq::GpuMemoryStats& m) {
  return {{"layers", rptq::gpu_layer_placement_name(m.layers)},
          {"outer_bytes", m.outer_bytes},           {"layer_slot_bytes", m.layer_slot_bytes},
          {"layer_slots", m.layer_slots},           {"model_layer_bytes", m.model_layer_bytes},
          {"upload_scratch_bytes", m.upload_scratch_bytes},
          {"activation_bytes", m.activation_bytes}, {"kv_cache_bytes", m.kv_cache_bytes},
          {"peak_bytes", m.peak_bytes}};
}

// Sums over layers and channels of every tap's ranges (and the score ranges): a fingerprint that torch_cuda.py
// prints too, so two engines' calibrations can be compared without dumping them.
json ranges_checksum(const std::vector<rptq::LayerRanges>& ranges) {
  json out = json::object();
  auto add = [&](const std::string& name, const rptq::TapRanges& r) {
    json& j = out[name];
    if (j.is_null()) j = {{"sum_max", 0.0}, {"sum_min", 0.0}, {"sum_ema_max", 0.0}, {"sum_ema_min", 0.0}};
    double smax = 0, smin = 0, semax = 0, semin = 0;
    for (float v : r.max) smax += v;
    for (float v : r.min) smin += v;
    for (float v : r.ema_max) semax += v;
    for (float v : r.ema_min) semin += v;
    j["sum_max"] = j["sum_max"].get<double>() + smax;
    j["sum_min"] = j["sum_min"].get<double>() + smin;
    j["sum_ema_max"] = j["sum_ema_max"].get<double>() + semax;
    j["sum_ema_min"] = j["sum_ema_min"].get<double>() + semin;
  };
  for (const auto& lr : ranges) {
    for (rptq::Tap t : rptq::kAllTaps) add(rptq::tap_name(t), lr.tap(t));
    add("scores", lr.scores);
  }
  return out;
}

// max over every tap, layer and channel (and the scores) of |a - b| / (1 + |b|), for max, min and both EMAs.
double ranges_max_rel_diff(const std::vector<rptq::LayerRanges>& a, const std::vector<rptq::LayerRanges>& b) {
  double worst = 0.0;
  auto cmp = [&](const std::vector<float>& x, const std::vector<float>& y) {
    if (x.size() != y.size()) {
      worst = INFINITY;
      return;
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double d = std::fabs(static_cast<double>(x[i]) - y[i]) / (1.0 + std::fabs(static_cast<double>(y[i])));
      worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    }
  };
  if (a.size() != b.size()) return INFINITY;
  for (std::size_t l = 0; l < a.size(); ++l) {
    auto both = [&](const rptq::TapRanges& x, const rptq::TapRanges& y) {
      cmp(x.max, y.max);
      cmp(x.min, y.min);
      cmp(x.ema_max, y.ema_max);
      cmp(x.ema_min, y.ema_min);
    };
    for (rptq::Tap t : rptq::kAllTaps) both(a[l].tap(t), b[l].tap(t));
    both(a[l].scores, b[l].scores);
  }
  return worst;
}

struct PhaseResult {
  std::string precision, phase;
  double median_s = 0, min_s = 0, tokens = 0, flops = 0;
  double ppl = 0;
  std::size_t peak_bytes = 0;
  std::string layers = "-";  // the runner's layer placement (GpuMemoryStats::layers)
  std::string error;
};

// One timed phase as a JSON line: `base`, the phase's own fields, then what every phase reports.
json phase_json(const json& base, const PhaseResult& r, const std::vector<double>& times,
                const rptq::GpuRunner& runner, json fields) {
  json j = base;
  j.update(fields);
  j.update({{"kind", r.phase},
            {"tokens", r.tokens},
            {"times_s", times},
            {"median_s", r.median_s},
            {"min_s", r.min_s},
            {"tokens_per_s_median", r.tokens / r.median_s},
            {"tokens_per_s_best", r.tokens / r.min_s},
            {"flops", r.flops},
            {"tflops_median", r.flops / r.median_s * 1e-12},
            {"memory", memory_json(runner.memory())},
            {"device_used_bytes", device_used_bytes()}});
  return j;
}

void emit_error(const json& base, const std::string& phase, const std::exception& e) {
  json j = base;
  j.update({{"kind", "error"}, {"phase", phase}, {"error", e.what()}});
  emit(j);
}

int run_model_mode(const Args& a) {
  require_gpu();
  const DeviceFacts dev = device_facts(0);
  emit(device_json(dev));

  const auto t_load = Clock::now();
  std::unique_ptr<rptq::Model> model = rptq::Model::load(a.model_dir);
  const double load_s = seconds_since(t_load);
  const rptq::ModelConfig& c = model->config();
  const std::string label = a.label.empty() ? std::filesystem::path(a.model_dir).filename().string() : a.label;
  const json common = {{"engine", "rptq"},        {"model", label},      {"model_dir", a.model_dir},
                       {"arch", c.arch_name()},   {"hidden", c.hidden},  {"layers", c.layers},
                       {"heads", c.heads},        {"ffn", c.intermediate}, {"vocab", c.vocab},
                       {"device", dev.name}};
  {
    json j = common;
    j.update({{"kind", "load"}, {"load_s", load_s}, {"parameters", model->parameter_count()},
              {"weight_bytes_host", model->weight_bytes()}});
    emit(j);
  }
  if (c.arch == rptq::Architecture::OPT && (a.eval_seqlen > c.max_positions || a.calib_seqlen > c.max_positions))
    throw rptq::InputError("sequence length above the model's " + std::to_string(c.max_positions) + " positions");

  const std::vector<std::int32_t> eval_ids = bench_ids(a.eval_windows * a.eval_seqlen, c.vocab, a.seed);
  const std::vector<std::int32_t> calib_ids = bench_ids(a.calib_samples * a.calib_seqlen, c.vocab, a.seed + 1);
  const ModelFlops eval_fl = model_flops(c, a.eval_windows, a.eval_seqlen, true);
  const ModelFlops calib_fl = model_flops(c, a.calib_samples, a.calib_seqlen, false);
  std::vector<PhaseResult> results;

  for (const std::string& pname : a.precisions) {
    rptq::GpuOptions opts;
    opts.precision = precision_of(pname);
    opts.overlap_upload = a.overlap;
    json base = common;
    base["precision"] = pname;
    base["overlap_upload"] = a.overlap;
    std::unique_ptr<rptq::GpuRunner> runner;
    const std::size_t used_before = device_used_bytes();
    try {
      const auto t0 = Clock::now();
      runner = std::make_unique<rptq::GpuRunner>(*model, nullptr, opts);
      json j = base;
      j.update({{"kind", "setup"}, {"setup_s", seconds_since(t0)}, {"memory", memory_json(runner->memory())},
                {"layers", rptq::gpu_layer_placement_name(runner->memory().layers)},
                {"device_description", runner->device_description()},
                {"device_used_bytes_before", used_before}, {"device_used_bytes", device_used_bytes()}});
      emit(j);
    } catch (const std::exception& e) {
      emit_error(base, "setup", e);
      PhaseResult r;
      r.precision = pname;
      r.phase = "setup";
      r.error = e.what();
      results.push_back(r);
      continue;
    }

    if (a.eval) {
      PhaseResult r;
      r.precision = pname;
      r.phase = "eval";
      try {
        rptq::PerplexityOptions po;
        po.seqlen = a.eval_seqlen;
        po.batch = a.eval_batch;
        po.max_windows = a.eval_windows;
        std::vector<double> times, runner_times, ppls;
        for (int i = 0; i < a.warmup + a.repeats; ++i) {
          const auto t0 = Clock::now();
          const rptq::PerplexityResult res = runner->perplexity(eval_ids, po);
          const double s = seconds_since(t0);
          if (i < a.warmup) continue;
          times.push_back(s);
          runner_times.push_back(res.seconds);
          ppls.push_back(res.ppl);
        }
        r.median_s = median(times);
        r.min_s = min_of(times);
        r.tokens = static_cast<double>(a.eval_windows * a.eval_seqlen);
        r.flops = eval_fl.total();
        r.ppl = ppls.back();
        r.peak_bytes = runner->memory().peak_bytes;
        r.layers = rptq::gpu_layer_placement_name(runner->memory().layers);
        const double spread = *std::max_element(ppls.begin(), ppls.end()) - *std::min_element(ppls.begin(), ppls.end());
        emit(phase_json(base, r, times, *runner,
                        {{"seqlen", a.eval_seqlen},
                         {"windows", a.eval_windows},
                         {"batch", a.eval_batch},
                         {"warmup", a.warmup},
                         {"repeats", a.repeats},
                         {"runner_seconds", runner_times},
                         {"flops_breakdown", {{"layers", eval_fl.layers}, {"attention_causal", eval_fl.attention},
                                              {"lm_head", eval_fl.head}}},
                         {"ppl", r.ppl},
                         {"ppl_spread_over_repeats", spread}}));
      } catch (const std::exception& e) {
        r.error = e.what();
        emit_error(base, "eval", e);
      }
      results.push_back(r);
    }

    if (a.calib) {
      PhaseResult r;
      r.precision = pname;
      r.phase = "calib";
      try {
        std::vector<double> times;
        std::vector<rptq::LayerRanges> ranges;
        for (int i = 0; i < a.calib_warmup + a.calib_repeats; ++i) {
          const auto t0 = Clock::now();
          ranges = runner->calibration_ranges(calib_ids, a.calib_samples, a.calib_seqlen, a.calib_batch);
          const double s = seconds_since(t0);
          if (i >= a.calib_warmup) times.push_back(s);
        }
        r.median_s = median(times);
        r.min_s = min_of(times);
        r.tokens = static_cast<double>(a.calib_samples * a.calib_seqlen);
        r.flops = calib_fl.total();
        r.peak_bytes = runner->memory().peak_bytes;
        r.layers = rptq::gpu_layer_placement_name(runner->memory().layers);
        emit(phase_json(base, r, times, *runner,
                        {{"seqlen", a.calib_seqlen},
                         {"samples", a.calib_samples},
                         {"batch", a.calib_batch},
                         {"warmup", a.calib_warmup},
                         {"repeats", a.calib_repeats},
                         {"ranges_checksum", ranges_checksum(ranges)}}));
      } catch (const std::exception& e) {
        r.error = e.what();
        emit_error(base, "calib", e);
      }
      results.push_back(r);
    }

    // Generation: a --gen-prompt token prompt (the evaluation ids) prefilled, then --gen-tokens greedy steps with
    // the KV cache on the device (GpuRunner::generate); decode tokens/s from the steps after the first token.
    if (a.gen_tokens > 0) {
      PhaseResult r;
      r.precision = pname;
      r.phase = "generate";
      try {
        const std::int64_t np = std::min<std::int64_t>(a.gen_prompt, static_cast<std::int64_t>(eval_ids.size()));
        const std::span<const std::int32_t> prompt(eval_ids.data(), static_cast<std::size_t>(np));
        rptq::GenerateOptions go;
        go.max_new_tokens = a.gen_tokens;
        go.stop_at_eos = false;
        std::vector<double> times, prefill;
        for (int i = 0; i < a.warmup + a.repeats; ++i) {
          const rptq::GenerateResult g = runner->generate(prompt, go);
          if (i < a.warmup) continue;
          times.push_back(g.decode_seconds);
          prefill.push_back(g.prefill_seconds);
        }
        r.median_s = median(times);
        r.min_s = min_of(times);
        r.tokens = static_cast<double>(a.gen_tokens - 1);  // decode steps (the first token comes from the prefill)
        r.peak_bytes = runner->memory().peak_bytes;
        r.layers = rptq::gpu_layer_placement_name(runner->memory().layers);
        emit(phase_json(base, r, times, *runner,
                        {{"prompt_tokens", np},
                         {"new_tokens", a.gen_tokens},
                         {"prefill_s", prefill},
                         {"warmup", a.warmup},
                         {"repeats", a.repeats}}));
      } catch (const std::exception& e) {
        r.error = e.what();
        emit_error(base, "generate", e);
      }
      results.push_back(r);
    }

    // The CPU engine on a prefix of the same inputs: the GPU numbers are only worth timing if they are right.
    if (a.check_cpu && opts.precision == rptq::GpuPrecision::FP32) {
      json j = base;
      j["kind"] = "cpu_check";
      try {
        const std::int64_t nw = std::min(a.check_windows, a.eval_windows);
        const std::span<const std::int32_t> ids(eval_ids.data(), static_cast<std::size_t>(nw * a.eval_seqlen));
        rptq::PerplexityOptions po;
        po.seqlen = a.eval_seqlen;
        po.batch = std::min(nw, a.eval_batch);
        po.max_windows = nw;
        const rptq::PerplexityResult g = runner->perplexity(ids, po);
        const auto t0 = Clock::now();
        const rptq::PerplexityResult cpu = rptq::perplexity(*model, ids, po);
        const double cpu_s = seconds_since(t0);
        const double rel = std::fabs(g.ppl - cpu.ppl) / cpu.ppl;
        j.update({{"eval_windows", nw}, {"seqlen", a.eval_seqlen}, {"ppl_gpu", g.ppl}, {"ppl_cpu", cpu.ppl},
                  {"ppl_rel_diff", rel}, {"cpu_eval_s", cpu_s}, {"ppl_ok", rel <= 1e-3}});

        const std::int64_t ns = std::min(a.check_samples, a.calib_samples);
        const std::span<const std::int32_t> cids(calib_ids.data(), static_cast<std::size_t>(ns * a.calib_seqlen));
        const std::vector<rptq::LayerRanges> gr =
            runner->calibration_ranges(cids, ns, a.calib_seqlen, std::min(ns, a.calib_batch));
        const auto t1 = Clock::now();
        std::vector<rptq::LayerRanges> cr(static_cast<std::size_t>(c.layers));
        rptq::LayerwiseRunner lw(*model, cids, ns, a.calib_seqlen);
        rptq::RangeRecorder rec(c, cr);
        for (int l = 0; l < c.layers; ++l) lw.advance(&rec);
        const double cpu_calib_s = seconds_since(t1);
        const double rd = ranges_max_rel_diff(gr, cr);
        j.update({{"calib_samples", ns}, {"calib_seqlen", a.calib_seqlen}, {"ranges_max_rel_diff", rd},
                  {"ranges_ok", rd <= 1e-4}, {"cpu_calib_s", cpu_calib_s},
                  {"ranges_checksum_gpu", ranges_checksum(gr)}, {"ranges_checksum_cpu", ranges_checksum(cr)}});
      } catch (const std::exception& e) {
        j["error"] = e.what();
      }
      emit(j);
    }
    runner.reset();
  }

  // ---- table
  std::printf("\n== rptq GPU path: %s on %s (hidden %lld, %lld layers, ffn %lld, vocab %lld); eval %lld x %lld "
              "tokens (batch %lld), calibration %lld x %lld (batch %lld)\n",
              label.c_str(), dev.name.c_str(), static_cast<long long>(c.hidden), static_cast<long long>(c.layers),
              static_cast<long long>(c.intermediate), static_cast<long long>(c.vocab),
              static_cast<long long>(a.eval_windows), static_cast<long long>(a.eval_seqlen),
              static_cast<long long>(a.eval_batch), static_cast<long long>(a.calib_samples),
              static_cast<long long>(a.calib_seqlen), static_cast<long long>(a.calib_batch));
  std::printf("   %-6s %-6s %10s %10s %12s %9s %12s %10s %-8s\n", "prec", "phase", "median s", "min s", "tokens/s",
              "TFLOP/s", "ppl", "peak MiB", "layers");
  for (const PhaseResult& r : results) {
    if (!r.error.empty()) {
      std::printf("   %-6s %-6s error: %s\n", r.precision.c_str(), r.phase.c_str(), r.error.c_str());
      continue;
    }
    std::printf("   %-6s %-6s %10.4f %10.4f %12.0f %9.2f %12s %10.1f %-8s\n", r.precision.c_str(), r.phase.c_str(),
                r.median_s, r.min_s, r.tokens / r.median_s, r.flops / r.median_s * 1e-12,
                r.phase == "eval" ? std::to_string(r.ppl).c_str() : "-", r.peak_bytes / 1048576.0, r.layers.c_str());
  }
  std::fflush(stdout);
  return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// GEMM mode: timing

struct Timing {
  double best_s = 0, median_s = 0;
  int ops_per_sample = 0, samples = 0;
  std::vector<double> per_op_s;
};

void sync(cudaStream_t s) { RPTQ_CUDA_CHECK(cudaStreamSynchronize(s)); }

// op() was already called once (the warm-up / correctness call). Finds how many calls last min_s, then times
// `samples` regions of that many calls.
Timing time_op(const std::function<void()>& op, cudaStream_t stream, double min_s, int samples) {
  Timing t;
  int n = 1;
  for (;;) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) op();
    sync(stream);
    const double dt = seconds_since(t0);
    if (dt >= min_s || n >= (1 << 16)) break;
    const double want = dt > 0 ? 1.2 * min_s / dt * n : 2.0 * n;
    n = static_cast<int>(std::clamp(want, 2.0 * n, 16.0 * n));
    n = std::min(n, 1 << 16);
  }
  for (int s = 0; s < samples; ++s) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) op();
    sync(stream);
    t.per_op_s.push_back(seconds_since(t0) / n);
  }
  t.ops_per_sample = n;
  t.samples = samples;
  t.best_s = min_of(t.per_op_s);
  t.median_s = median(t.per_op_s);
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// GEMM mode: cuBLASLt with its heuristic's algorithms

cublasStatus_t lt_ok(cublasStatus_t s, cublasStatus_t& first_error) {
  if (s != CUBLAS_STATUS_SUCCESS && first_error == CUBLAS_STATUS_SUCCESS) first_error = s;
  return s;
}

// y^T[N, M] = w[N, K] * x^T (column-major view of row-major y = x w^T), as cuBLASLt descriptors.
class LtGemm {
 public:
  LtGemm(cublasLtHandle_t lt, cublasComputeType_t compute, cudaDataType_t in_type, cudaDataType_t out_type,
         std::int64_t M, std::int64_t N, std::int64_t K, std::size_t workspace_bytes)
      : lt_(lt), workspace_bytes_(workspace_bytes) {
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    if (lt_ok(cublasLtMatmulDescCreate(&op_, compute, CUDA_R_32F), status_)) return;
    if (lt_ok(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), status_)) return;
    if (lt_ok(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), status_)) return;
    if (lt_ok(cublasLtMatrixLayoutCreate(&a_, in_type, K, N, K), status_)) return;
    if (lt_ok(cublasLtMatrixLayoutCreate(&b_, in_type, K, M, K), status_)) return;
    if (lt_ok(cublasLtMatrixLayoutCreate(&c_, out_type, N, M, N), status_)) return;
    if (lt_ok(cublasLtMatmulPreferenceCreate(&pref_), status_)) return;
    lt_ok(cublasLtMatmulPreferenceSetAttribute(pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_,
                                               sizeof workspace_bytes_),
          status_);
  }
  ~LtGemm() {  // statuses dropped: a destructor must not throw (a failed create left the handle null)
    if (pref_) cublasLtMatmulPreferenceDestroy(pref_);
    if (c_) cublasLtMatrixLayoutDestroy(c_);
    if (b_) cublasLtMatrixLayoutDestroy(b_);
    if (a_) cublasLtMatrixLayoutDestroy(a_);
    if (op_) cublasLtMatmulDescDestroy(op_);
  }
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  cublasStatus_t status() const { return status_; }
  std::vector<cublasLtMatmulHeuristicResult_t> algorithms(int requested) {
    std::vector<cublasLtMatmulHeuristicResult_t> r(static_cast<std::size_t>(requested));
    int returned = 0;
    if (status_ != CUBLAS_STATUS_SUCCESS) return {};
    if (lt_ok(cublasLtMatmulAlgoGetHeuristic(lt_, op_, a_, b_, c_, c_, pref_, requested, r.data(), &returned),
              status_))
      return {};
    r.resize(static_cast<std::size_t>(std::max(returned, 0)));
    std::vector<cublasLtMatmulHeuristicResult_t> usable;
    for (const auto& h : r)
      if (h.state == CUBLAS_STATUS_SUCCESS && h.workspaceSize <= workspace_bytes_) usable.push_back(h);
    return usable;
  }
  cublasStatus_t run(const cublasLtMatmulAlgo_t& algo, const void* w, const void* x, void* y, void* workspace,
                     cudaStream_t stream) const {
    const float alpha = 1.0f, beta = 0.0f;
    return cublasLtMatmul(lt_, op_, &alpha, w, a_, x, b_, &beta, y, c_, y, c_, &algo, workspace, workspace_bytes_,
                          stream);
  }

 private:
  cublasLtHandle_t lt_;
  std::size_t workspace_bytes_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
  cublasStatus_t status_ = CUBLAS_STATUS_SUCCESS;
};

// ---------------------------------------------------------------------------------------------------------------
// GEMM mode: one shape at one precision

enum class Prec { FP32, FP16, BF16 };
const char* prec_name(Prec p) { return p == Prec::FP16 ? "fp16" : p == Prec::BF16 ? "bf16" : "fp32"; }
cudaDataType_t cuda_type(Prec p) { return p == Prec::FP16 ? CUDA_R_16F : p == Prec::BF16 ? CUDA_R_16BF : CUDA_R_32F; }
rptq::cuda::GemmInputs gemm_inputs(Prec p) {
  return p == Prec::FP16 ? rptq::cuda::GemmInputs::FP16
         : p == Prec::BF16 ? rptq::cuda::GemmInputs::BF16
                           : rptq::cuda::GemmInputs::FP32;
}
std::size_t elem_bytes(Prec p) { return p == Prec::FP32 ? 4 : 2; }

struct Shape {
  std::string name;
  std::int64_t M, N, K;
  double weight = 0;  // how many such products one forward layer step runs (q, k, v, o: 4), for weighting
};

struct VariantResult {
  std::string name, contract;  // contract: same | tf32 | out16
  bool ok = false;
  std::string status;
  Timing t;
  double tflops = 0, rel_err = 0;
  std::int64_t unwritten = 0;
  int algos_tried = 0, best_algo = -1;
};

// Host copies of the (rounded) inputs and sampled float64 reference entries of y = x w^T (+ bias).
struct Reference {
  std::vector<std::int64_t> i, j;
  std::vector<double> y;  // without bias
};

std::vector<float> to_host_float(const void* dev, std::size_t n, Prec p) {
  std::vector<float> out(n);
  if (p == Prec::FP32) {
    RPTQ_CUDA_CHECK(cudaMemcpy(out.data(), dev, n * 4, cudaMemcpyDeviceToHost));
    return out;
  }
  std::vector<std::uint16_t> raw(n);
  RPTQ_CUDA_CHECK(cudaMemcpy(raw.data(), dev, n * 2, cudaMemcpyDeviceToHost));
  for (std::size_t k = 0; k < n; ++k) {
    if (p == Prec::FP16) {
      __half_raw hr;
      hr.x = raw[k];
      out[k] = __half2float(__half(hr));
    } else {
      const std::uint32_t bits = static_cast<std::uint32_t>(raw[k]) << 16;
      std::memcpy(&out[k], &bits, 4);
    }
  }
  return out;
}

Reference make_reference(const void* x, const void* w, Prec p, const Shape& s, std::uint64_t seed) {
  const std::vector<float> hx = to_host_float(x, static_cast<std::size_t>(s.M * s.K), p);
  const std::vector<float> hw = to_host_float(w, static_cast<std::size_t>(s.N * s.K), p);
  Reference r;
  std::mt19937_64 rng(seed);
  for (int n = 0; n < 64; ++n) {
    const std::int64_t i = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(s.M));
    const std::int64_t j = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(s.N));
    double acc = 0.0;
    for (std::int64_t k = 0; k < s.K; ++k) acc += static_cast<double>(hx[i * s.K + k]) * hw[j * s.K + k];
    r.i.push_back(i);
    r.j.push_back(j);
    r.y.push_back(acc);
  }
  return r;
}

// Unwritten (non-finite: the output was poisoned with NaN) entries of y, and the relative error of the sampled
// entries against the reference (+ bias when given).
void check_output(const void* y, Prec out_prec, const Shape& s, const Reference& ref, const std::vector<float>* bias,
                  VariantResult& v) {
  const std::vector<float> hy = to_host_float(y, static_cast<std::size_t>(s.M * s.N), out_prec);
  v.unwritten = 0;
  for (float f : hy)
    if (!std::isfinite(f)) ++v.unwritten;
  double num = 0, den = 0;
  for (std::size_t n = 0; n < ref.y.size(); ++n) {
    const double want = ref.y[n] + (bias ? (*bias)[static_cast<std::size_t>(ref.j[n])] : 0.0);
    const double got = hy[static_cast<std::size_t>(ref.i[n] * s.N + ref.j[n])];
    num += (got - want) * (got - want);
    den += want * want;
  }
  v.rel_err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

const char* cublas_status(cublasStatus_t s) { return cublasGetStatusName(s); }

struct GemmContext {
  cudaStream_t stream = nullptr;
  rptq::cuda::BlasHandle* blas = nullptr;  // rptq's handle (default math, as the runner's)
  cublasHandle_t cublas = nullptr;         // ours, for cublasGemmEx variants
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  double min_s = 0.02;
  int samples = 5, lt_algos = 8;
  std::uint64_t seed = 1;
};

std::vector<VariantResult> bench_shape(GemmContext& g, const Shape& s, Prec p) {
  std::vector<VariantResult> out;
  const std::size_t nx = static_cast<std::size_t>(s.M * s.K), nw = static_cast<std::size_t>(s.N * s.K),
                    ny = static_cast<std::size_t>(s.M * s.N);
  // Inputs: float on the device, rounded to the 16-bit type by rptq's own conversion for FP16 / BF16.
  DeviceBuffer<float> x32(random_floats(nx, g.seed));
  DeviceBuffer<float> w32(random_floats(nw, g.seed + 1));
  const std::vector<float> bias = random_floats(static_cast<std::size_t>(s.N), g.seed + 2);
  DeviceBuffer<float> dbias(bias);
  DeviceBuffer<std::uint8_t> x16, w16;
  const void* x = x32.data();
  const void* w = w32.data();
  if (p != Prec::FP32) {
    x16 = DeviceBuffer<std::uint8_t>(nx * 2);
    w16 = DeviceBuffer<std::uint8_t>(nw * 2);
    if (p == Prec::FP16) {
      rptq::cuda::convert(x32.data(), reinterpret_cast<__half*>(x16.data()), static_cast<std::int64_t>(nx), g.stream);
      rptq::cuda::convert(w32.data(), reinterpret_cast<__half*>(w16.data()), static_cast<std::int64_t>(nw), g.stream);
    } else {
      rptq::cuda::convert(x32.data(), reinterpret_cast<__nv_bfloat16*>(x16.data()), static_cast<std::int64_t>(nx),
                          g.stream);
      rptq::cuda::convert(w32.data(), reinterpret_cast<__nv_bfloat16*>(w16.data()), static_cast<std::int64_t>(nw),
                          g.stream);
    }
    sync(g.stream);
    x = x16.data();
    w = w16.data();
  }
  DeviceBuffer<float> y(ny);
  DeviceBuffer<std::uint8_t> y16(p == Prec::FP32 ? 0 : ny * 2);
  const Reference ref = make_reference(x, w, p, s, g.seed + 3);
  const double flops = 2.0 * s.M * s.N * s.K;

  // Runs one variant: poison, first call (status checked), output check, then timing.
  auto variant = [&](const std::string& name, const std::string& contract, void* yout, Prec out_prec,
                     const std::vector<float>* with_bias, const std::function<cublasStatus_t()>& call) {
    VariantResult v;
    v.name = name;
    v.contract = contract;
    RPTQ_CUDA_CHECK(cudaMemsetAsync(yout, 0xFF, ny * elem_bytes(out_prec), g.stream));
    const cublasStatus_t st = call();
    if (st != CUBLAS_STATUS_SUCCESS) {
      v.status = cublas_status(st);
      sync(g.stream);
      cudaGetLastError();
      out.push_back(v);
      return;
    }
    sync(g.stream);
    check_output(yout, out_prec, s, ref, with_bias, v);
    v.t = time_op([&] {
      const cublasStatus_t again = call();
      if (again != CUBLAS_STATUS_SUCCESS) ::rptq::throw_cublas_error(again, name.c_str(), __FILE__, __LINE__);
    }, g.stream, g.min_s, g.samples);
    v.ok = true;
    v.status = "ok";
    v.tflops = flops / v.t.best_s * 1e-12;
    out.push_back(v);
  };
  const rptq::cuda::GemmInputs gi = gemm_inputs(p);
  const int M = static_cast<int>(s.M), N = static_cast<int>(s.N), K = static_cast<int>(s.K);

  // ---- rptq (kernels/gemm.cuh)
  variant("rptq gemm_xwt", "same", y.data(), Prec::FP32, nullptr, [&] {
    rptq::cuda::gemm_xwt(*g.blas, gi, x, s.K, s.M, s.K, w, s.K, s.N, y.data(), s.N, false);
    return CUBLAS_STATUS_SUCCESS;
  });
  variant("rptq linear (+bias)", "same", y.data(), Prec::FP32, &bias, [&] {
    if (p == Prec::FP32)
      rptq::cuda::linear(*g.blas, x32.data(), s.K, s.M, s.K, w32.data(), dbias.data(), s.N, y.data());
    else if (p == Prec::FP16)
      rptq::cuda::linear(*g.blas, static_cast<const __half*>(x), s.K, s.M, s.K, static_cast<const __half*>(w),
                         dbias.data(), s.N, y.data());
    else
      rptq::cuda::linear(*g.blas, static_cast<const __nv_bfloat16*>(x), s.K, s.M, s.K,
                         static_cast<const __nv_bfloat16*>(w), dbias.data(), s.N, y.data());
    return CUBLAS_STATUS_SUCCESS;
  });
  if (p != Prec::FP32) {
    // Float x rounded into the handle's scratch on every call, then the 16-bit product: the conversion is part of
    // what the runner pays per linear (it rounds x once per layer input).
    variant("rptq linear (float x, +bias)", "same", y.data(), Prec::FP32, &bias, [&] {
      if (p == Prec::FP16)
        rptq::cuda::linear(*g.blas, x32.data(), s.K, s.M, s.K, static_cast<const __half*>(w), dbias.data(), s.N,
                           y.data());
      else
        rptq::cuda::linear(*g.blas, x32.data(), s.K, s.M, s.K, static_cast<const __nv_bfloat16*>(w), dbias.data(),
                           s.N, y.data());
      return CUBLAS_STATUS_SUCCESS;
    });
  }

  // ---- cublasGemmEx
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t t = cuda_type(p);
  variant("cublasGemmEx 32F", "same", y.data(), Prec::FP32, nullptr, [&] {
    return cublasGemmEx(g.cublas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, t, K, x, t, K, &beta, y.data(),
                        CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  });
  if (p == Prec::FP32) {
    variant("cublasGemmEx 32F_FAST_TF32", "tf32", y.data(), Prec::FP32, nullptr, [&] {
      return cublasGemmEx(g.cublas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, t, K, x, t, K, &beta, y.data(),
                          CUDA_R_32F, N, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
    });
  }

  // ---- cublasLt: every algorithm of the heuristic's top lt_algos, the fastest kept
  auto lt_variant = [&](const std::string& name, const std::string& contract, cublasComputeType_t compute,
                        Prec out_prec, void* yout) {
    LtGemm op(g.lt, compute, t, cuda_type(out_prec), s.M, s.N, s.K, g.workspace_bytes);
    std::vector<cublasLtMatmulHeuristicResult_t> algos = op.algorithms(g.lt_algos);
    if (algos.empty()) {
      VariantResult v;
      v.name = name;
      v.contract = contract;
      v.status = op.status() != CUBLAS_STATUS_SUCCESS ? cublas_status(op.status()) : "no algorithm";
      out.push_back(v);
      return;
    }
    std::optional<VariantResult> best;
    int tried = 0;
    for (std::size_t k = 0; k < algos.size(); ++k) {
      const std::size_t before = out.size();
      variant(name, contract, yout, out_prec, nullptr,
              [&] { return op.run(algos[k].algo, w, x, yout, g.workspace, g.stream); });
      VariantResult v = out.back();
      out.resize(before);
      ++tried;
      // An algorithm that runs but computes garbage is not a contender.
      if (v.ok && v.unwritten == 0 && v.rel_err < 0.05 && (!best || v.t.best_s < best->t.best_s)) {
        v.best_algo = static_cast<int>(k);
        best = v;
      } else if (!best && k + 1 == algos.size()) {
        best = v;  // none good: report the last one's failure
      }
    }
    best->algos_tried = tried;
    out.push_back(*best);
  };
  lt_variant("cublasLt 32F (best of heuristic)", "same", CUBLAS_COMPUTE_32F, Prec::FP32, y.data());
  if (p == Prec::FP32)
    lt_variant("cublasLt 32F_FAST_TF32 (best of heuristic)", "tf32", CUBLAS_COMPUTE_32F_FAST_TF32, Prec::FP32,
               y.data());
  else
    lt_variant("cublasLt 32F, 16-bit output (best of heuristic)", "out16", CUBLAS_COMPUTE_32F, p, y16.data());
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// GEMM mode: memory ceilings and the packed GEMV

struct Bandwidth {
  double copy_gbs = 0, read_gbs = 0;
  std::string read_config;
};

Bandwidth bench_bandwidth(GemmContext& g, const DeviceFacts& dev, std::int64_t mib) {
  Bandwidth bw;
  const std::size_t n = static_cast<std::size_t>(mib) << 18;  // floats in mib MiB
  DeviceBuffer<float> a(random_floats(n, g.seed + 10));
  DeviceBuffer<float> b(n);
  DeviceBuffer<float> sink(1);
  const std::size_t bytes = n * 4;
  // Copy: bytes read + bytes written.
  RPTQ_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, g.stream));
  sync(g.stream);
  const Timing tc = time_op([&] {
    RPTQ_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, g.stream));
  }, g.stream, g.min_s, g.samples);
  bw.copy_gbs = 2.0 * bytes / tc.best_s * 1e-9;
  json jc = {{"kind", "bandwidth"}, {"what", "cudaMemcpy device to device"}, {"bytes_per_op", 2 * bytes},
             {"counting", "bytes read + bytes written"}, {"best_s", tc.best_s}, {"median_s", tc.median_s},
             {"ops_per_sample", tc.ops_per_sample}, {"samples", tc.samples}, {"gbs_best", bw.copy_gbs},
             {"gbs_median", 2.0 * bytes / tc.median_s * 1e-9}};
  if (dev.theoretical_gbs() > 0) jc["fraction_of_theoretical"] = bw.copy_gbs / dev.theoretical_gbs();
  emit(jc);
  // Read kernel: a few launch shapes, the best kept.
  for (unsigned per_sm : {4u, 8u, 16u}) {
    for (unsigned threads : {256u, 512u}) {
      const unsigned blocks = static_cast<unsigned>(dev.sms) * per_sm;
      RPTQ_CUDA_CHECK(rptq::bench::launch_read(a.data(), n, sink.data(), 12345.678f, blocks, threads, g.stream));
      sync(g.stream);
      const Timing tr = time_op([&] {
        RPTQ_CUDA_CHECK(rptq::bench::launch_read(a.data(), n, sink.data(), 12345.678f, blocks, threads, g.stream));
      }, g.stream, g.min_s, g.samples);
      const double gbs = bytes / tr.best_s * 1e-9;
      const std::string cfg = std::to_string(blocks) + " blocks x " + std::to_string(threads) + " threads";
      json jr = {{"kind", "bandwidth"}, {"what", "read kernel (float4 loads)"}, {"config", cfg},
                 {"bytes_per_op", bytes}, {"counting", "bytes read"}, {"best_s", tr.best_s},
                 {"median_s", tr.median_s}, {"gbs_best", gbs}, {"gbs_median", bytes / tr.median_s * 1e-9}};
      if (dev.theoretical_gbs() > 0) jr["fraction_of_theoretical"] = gbs / dev.theoretical_gbs();
      emit(jr);
      if (gbs > bw.read_gbs) {
        bw.read_gbs = gbs;
        bw.read_config = cfg;
      }
    }
  }
  return bw;
}

struct GemvResult {
  std::string shape;
  int bits = 0;
  std::int64_t out = 0, in = 0;
  double packed_gbs = 0, packed_us = 0, dense_gbs = 0, dense_us = 0, rel_err = 0;
};

// One packed weight [out, in] at `bits`, groups of `group` columns, with random codes, scales and zero points; the
// host copy of its dequantized values for the reference.
struct HostPacked {
  std::vector<std::uint8_t> packed;
  std::vector<std::int64_t> boundaries;
  std::vector<float> scales, zeros, dequantized;
};

HostPacked make_packed(std::int64_t out, std::int64_t in, int bits, std::int64_t group, std::uint64_t seed) {
  HostPacked h;
  std::mt19937_64 rng(seed);
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  std::uniform_int_distribution<int> code(lo, hi);
  std::uniform_real_distribution<float> scale(0.001f, 0.02f), zero(-1.0f, 1.0f);
  std::vector<std::int8_t> codes(static_cast<std::size_t>(out * in));
  for (auto& c : codes) c = static_cast<std::int8_t>(code(rng));
  h.packed.resize(rptq::packed_bytes(out * in, bits));
  rptq::pack_signed(codes.data(), out * in, bits, h.packed.data());
  for (std::int64_t c = 0; c < in; c += group) h.boundaries.push_back(c);
  h.boundaries.push_back(in);
  const std::int64_t groups = static_cast<std::int64_t>(h.boundaries.size()) - 1;
  h.scales.resize(static_cast<std::size_t>(out * groups));
  h.zeros.resize(static_cast<std::size_t>(out * groups));
  for (auto& s : h.scales) s = scale(rng);
  for (auto& z : h.zeros) z = zero(rng);
  h.dequantized.resize(static_cast<std::size_t>(out * in));
  for (std::int64_t r = 0; r < out; ++r)
    for (std::int64_t g = 0; g < groups; ++g)
      for (std::int64_t c = h.boundaries[static_cast<std::size_t>(g)];
           c < h.boundaries[static_cast<std::size_t>(g + 1)]; ++c) {
        const std::size_t k = static_cast<std::size_t>(r * groups + g);
        h.dequantized[static_cast<std::size_t>(r * in + c)] =
            rptq::cuda::packed_weight_value(static_cast<std::uint32_t>(codes[static_cast<std::size_t>(r * in + c)] -
                                                                       lo),
                                            h.scales[k], h.zeros[k], bits);
      }
  return h;
}

GemvResult bench_gemv(GemmContext& g, const std::string& name, std::int64_t out, std::int64_t in, int bits,
                      std::int64_t group, std::int64_t pool_mib) {
  GemvResult r;
  r.shape = name;
  r.bits = bits;
  r.out = out;
  r.in = in;
  const HostPacked h = make_packed(out, in, bits, group, g.seed + 20 + static_cast<std::uint64_t>(bits));
  const std::int64_t groups = static_cast<std::int64_t>(h.boundaries.size()) - 1;
  const std::size_t wbytes = h.packed.size() + static_cast<std::size_t>(out * groups) * 8 +
                             h.boundaries.size() * 4;
  const std::size_t pool_bytes = static_cast<std::size_t>(pool_mib) << 20;
  const std::size_t copies = std::clamp<std::size_t>((pool_bytes + wbytes - 1) / wbytes, 1, 4096);
  std::vector<rptq::cuda::PackedWeight> pool;
  pool.reserve(copies);
  for (std::size_t k = 0; k < copies; ++k)
    pool.push_back(rptq::cuda::upload_packed_weight(h.packed, out, in, bits, h.boundaries, h.scales, h.zeros));
  std::vector<rptq::cuda::PackedWeightView> views;
  for (const auto& p : pool) views.push_back(p.view());
  const std::vector<float> hx = random_floats(static_cast<std::size_t>(in), g.seed + 30);
  DeviceBuffer<float> x(hx);
  DeviceBuffer<float> y(static_cast<std::size_t>(out));
  // Correctness on the first copy against the host's dequantized weight.
  RPTQ_CUDA_CHECK(cudaMemsetAsync(y.data(), 0xFF, y.bytes(), g.stream));
  rptq::cuda::packed_gemv(x.data(), in, 1, views[0], nullptr, y.data(), false, g.stream);
  sync(g.stream);
  const std::vector<float> hy = y.to_host();
  double num = 0, den = 0;
  for (std::int64_t o = 0; o < out; ++o) {
    double want = 0;
    for (std::int64_t c = 0; c < in; ++c)
      want += static_cast<double>(h.dequantized[static_cast<std::size_t>(o * in + c)]) *
              hx[static_cast<std::size_t>(c)];
    const double got = hy[static_cast<std::size_t>(o)];
    num += (got - want) * (got - want);
    den += want * want;
  }
  r.rel_err = std::isfinite(num) ? std::sqrt(num / std::max(den, 1e-300)) : INFINITY;
  std::size_t next = 0;
  const Timing tp = time_op([&] {
    rptq::cuda::packed_gemv(x.data(), in, 1, views[next], nullptr, y.data(), false, g.stream);
    next = (next + 1) % views.size();
  }, g.stream, g.min_s, g.samples);
  const double bytes = static_cast<double>(wbytes) + 4.0 * in + 4.0 * out;
  r.packed_us = tp.best_s * 1e6;
  r.packed_gbs = bytes / tp.best_s * 1e-9;
  pool.clear();
  views.clear();

  // cuBLAS's dense FP16 product at M = 1 (gemm_xwt), over a pool of the same size in bytes: the 16-bit baseline
  // a 4-bit decode step competes with.
  const std::size_t dbytes = static_cast<std::size_t>(out * in) * 2;
  const std::size_t dcopies = std::clamp<std::size_t>((pool_bytes + dbytes - 1) / dbytes, 1, 4096);
  std::vector<DeviceBuffer<__half>> dense;
  {
    DeviceBuffer<float> w32(h.dequantized);
    for (std::size_t k = 0; k < dcopies; ++k) {
      dense.emplace_back(static_cast<std::size_t>(out * in));
      rptq::cuda::convert(w32.data(), dense.back().data(), out * in, g.stream);
    }
    DeviceBuffer<__half> xh(static_cast<std::size_t>(in));
    rptq::cuda::convert(x.data(), xh.data(), in, g.stream);
    sync(g.stream);
    std::size_t k = 0;
    rptq::cuda::gemm_xwt(*g.blas, rptq::cuda::GemmInputs::FP16, xh.data(), in, 1, in, dense[0].data(), in, out,
                         y.data(), out, false);
    sync(g.stream);
    const Timing td = time_op([&] {
      rptq::cuda::gemm_xwt(*g.blas, rptq::cuda::GemmInputs::FP16, xh.data(), in, 1, in, dense[k].data(), in, out,
                           y.data(), out, false);
      k = (k + 1) % dense.size();
    }, g.stream, g.min_s, g.samples);
    const double db = static_cast<double>(dbytes) + 2.0 * in + 4.0 * out;
    r.dense_us = td.best_s * 1e6;
    r.dense_gbs = db / td.best_s * 1e-9;
  }
  json j = {{"kind", "gemv"},
            {"shape", name},
            {"rows", 1},
            {"out", out},
            {"in", in},
            {"bits", bits},
            {"group", group},
            {"weight_bytes", wbytes},
            {"pool_copies", copies},
            {"bytes_per_call", bytes},
            {"packed_best_us", r.packed_us},
            {"packed_median_us", tp.median_s * 1e6},
            {"packed_gbs", r.packed_gbs},
            {"packed_rel_err", r.rel_err},
            {"dense_fp16_best_us", r.dense_us},
            {"dense_fp16_gbs", r.dense_gbs},
            {"dense_pool_copies", dcopies},
            {"speedup_packed_vs_dense_fp16", r.dense_us / r.packed_us}};
  emit(j);
  return r;
}

int run_gemm_mode(const Args& a) {
  require_gpu();
  const DeviceFacts dev = device_facts(0);
  emit(device_json(dev));
  const rptq::ModelConfig c = rptq::ModelConfig::load(a.model_dir);
  const std::string label = a.label.empty() ? std::filesystem::path(a.model_dir).filename().string() : a.label;

  GemmContext g;
  RPTQ_CUDA_CHECK(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking));
  rptq::cuda::BlasHandle blas(g.stream);
  g.blas = &blas;
  RPTQ_CUBLAS_CHECK(cublasCreate(&g.cublas));
  RPTQ_CUBLAS_CHECK(cublasSetStream(g.cublas, g.stream));
  RPTQ_CUBLAS_CHECK(cublasLtCreate(&g.lt));
  g.workspace_bytes = std::size_t{32} << 20;  // what NVIDIA recommends for Hopper
  RPTQ_CUDA_CHECK(cudaMalloc(&g.workspace, g.workspace_bytes));
  g.min_s = a.min_ms * 1e-3;
  g.samples = a.samples;
  g.lt_algos = a.lt_algos;
  g.seed = a.seed;
  struct Cleanup {  // on an exception only: the normal path releases (checked) at the end
    GemmContext& g;
    ~Cleanup() {
      if (g.workspace) cudaFree(g.workspace);
      if (g.lt) cublasLtDestroy(g.lt);
      if (g.cublas) cublasDestroy(g.cublas);
      cudaGetLastError();
    }
  } cleanup{g};

  // ---- GEMMs
  struct Row {
    std::string shape, prec;
    std::int64_t M = 0, N = 0, K = 0;
    double ours = 0, ours_linear = 0, best_same = 0, best_any = 0;
    std::string best_same_name, best_any_name;
    double ours_rel_err = 0;
  };
  std::vector<Row> table;
  auto make_row = [](const Shape& s, const std::string& prec) {
    Row r;
    r.shape = s.name;
    r.prec = prec;
    r.M = s.M;
    r.N = s.N;
    r.K = s.K;
    return r;
  };
  std::vector<Prec> precs;
  for (const auto& p : a.precisions) precs.push_back(p == "fp16" ? Prec::FP16 : p == "bf16" ? Prec::BF16 : Prec::FP32);
  struct Weighted {
    double flops = 0, ours_s = 0, best_s = 0;
  };
  std::map<std::string, Weighted> weighted;  // per "precision rows": the layer step's GEMMs, FLOP-weighted
  if (a.gemm) {
    const std::int64_t d = c.hidden, f = c.intermediate, qd = c.q_dim(), kvd = c.kv_dim();
    const std::int64_t e = c.embed_dim ? c.embed_dim : c.hidden;
    const bool opt = c.arch == rptq::Architecture::OPT;
    for (std::int64_t M : a.rows) {
      std::vector<Shape> shapes = {{"q/o proj", M, qd, d, kvd == qd ? 4.0 : 2.0}};
      if (kvd != qd) shapes.push_back({"k/v proj", M, kvd, d, 2.0});
      shapes.push_back({opt ? "fc1" : "gate/up", M, f, d, opt ? 1.0 : 2.0});
      shapes.push_back({opt ? "fc2" : "down", M, d, f, 1.0});
      for (Prec p : precs) {
        for (const Shape& s : shapes) {
          const std::vector<VariantResult> vs = bench_shape(g, s, p);
          Row row = make_row(s, prec_name(p));
          for (const VariantResult& v : vs) {
            json j = {{"kind", "gemm"},   {"model", label},        {"shape", s.name},   {"M", s.M},
                      {"N", s.N},         {"K", s.K},              {"precision", prec_name(p)},
                      {"variant", v.name}, {"contract", v.contract}, {"status", v.status}};
            if (v.ok) {
              j.update({{"best_s", v.t.best_s}, {"median_s", v.t.median_s}, {"ops_per_sample", v.t.ops_per_sample},
                        {"samples", v.t.samples}, {"tflops_best", v.tflops},
                        {"tflops_median", 2.0 * s.M * s.N * s.K / v.t.median_s * 1e-12}, {"rel_err", v.rel_err},
                        {"unwritten", v.unwritten}});
              if (v.algos_tried) j.update({{"lt_algos_tried", v.algos_tried}, {"lt_best_index", v.best_algo}});
              if (v.name == "rptq gemm_xwt") {
                row.ours = v.tflops;
                row.ours_rel_err = v.rel_err;
              } else if (v.name == "rptq linear (+bias)") {
                row.ours_linear = v.tflops;
              } else if (v.name.rfind("cublas", 0) == 0) {
                const bool good = v.unwritten == 0 && v.rel_err < 0.05;
                if (good && v.contract == "same" && v.tflops > row.best_same) {
                  row.best_same = v.tflops;
                  row.best_same_name = v.name;
                }
                if (good && v.tflops > row.best_any) {
                  row.best_any = v.tflops;
                  row.best_any_name = v.name;
                }
              }
            }
            emit(j);
          }
          const double fl = 2.0 * s.M * s.N * s.K * s.weight;
          if (row.ours > 0 && row.best_same > 0) {
            Weighted& w = weighted[std::string(prec_name(p)) + " M=" + std::to_string(M)];
            w.flops += fl;
            w.ours_s += fl / (row.ours * 1e12);
            w.best_s += fl / (row.best_same * 1e12);
          }
          table.push_back(row);
        }
      }
    }
    // The LM head, FP32 as the runner runs it, at its chunk of rows.
    const Shape head{"lm head (fp32 always)", a.head_rows, c.vocab, e, 1.0};
    const std::vector<VariantResult> vs = bench_shape(g, head, Prec::FP32);
    Row row = make_row(head, "fp32");
    for (const VariantResult& v : vs) {
      json j = {{"kind", "gemm"},    {"model", label},         {"shape", head.name}, {"M", head.M},
                {"N", head.N},       {"K", head.K},            {"precision", "fp32"},
                {"variant", v.name}, {"contract", v.contract}, {"status", v.status}};
      if (v.ok) {
        j.update({{"best_s", v.t.best_s}, {"median_s", v.t.median_s}, {"tflops_best", v.tflops},
                  {"rel_err", v.rel_err}, {"unwritten", v.unwritten}});
        if (v.name == "rptq gemm_xwt") {
          row.ours = v.tflops;
          row.ours_rel_err = v.rel_err;
        } else if (v.name == "rptq linear (+bias)") {
          row.ours_linear = v.tflops;
        } else if (v.name.rfind("cublas", 0) == 0 && v.unwritten == 0 && v.rel_err < 0.05) {
          if (v.contract == "same" && v.tflops > row.best_same) {
            row.best_same = v.tflops;
            row.best_same_name = v.name;
          }
          if (v.tflops > row.best_any) {
            row.best_any = v.tflops;
            row.best_any_name = v.name;
          }
        }
      }
      emit(j);
    }
    table.push_back(row);
  }

  // ---- memory ceilings and the packed GEMV
  Bandwidth bw;
  if (a.bandwidth || a.gemv) bw = bench_bandwidth(g, dev, a.bw_mib);
  std::vector<GemvResult> gemvs;
  if (a.gemv) {
    const std::int64_t d = c.hidden, f = c.intermediate;
    for (int bits : a.gemv_bits) {
      gemvs.push_back(bench_gemv(g, "q/o proj", c.q_dim(), d, bits, a.gemv_group, a.gemv_pool_mib));
      gemvs.push_back(bench_gemv(g, "fc1 / up", f, d, bits, a.gemv_group, a.gemv_pool_mib));
      gemvs.push_back(bench_gemv(g, "fc2 / down", d, f, bits, a.gemv_group, a.gemv_pool_mib));
    }
  }

  // ---- summary
  json sum = {{"kind", "gemm_summary"}, {"model", label}, {"device", dev.name}};
  json ratios = json::array();
  double worst = INFINITY;
  for (const Row& r : table) {
    if (r.ours <= 0 || r.best_same <= 0) continue;
    ratios.push_back({{"shape", r.shape}, {"precision", r.prec}, {"M", r.M}, {"ours_tflops", r.ours},
                      {"ours_linear_tflops", r.ours_linear}, {"cublas_best_same_tflops", r.best_same},
                      {"cublas_best_same", r.best_same_name}, {"ratio_to_best_same", r.ours / r.best_same},
                      {"cublas_best_any_tflops", r.best_any}, {"cublas_best_any", r.best_any_name},
                      {"ratio_to_best_any", r.ours / r.best_any}});
    worst = std::min(worst, r.ours / r.best_same);
  }
  sum["per_shape"] = ratios;
  json wj = json::object();
  for (const auto& [k, w] : weighted)
    wj[k] = {{"ours_tflops", w.flops / w.ours_s * 1e-12}, {"cublas_best_same_tflops", w.flops / w.best_s * 1e-12},
             {"ratio", w.best_s / w.ours_s}};
  sum["layer_step_flop_weighted"] = wj;
  if (std::isfinite(worst)) {
    sum["worst_ratio_to_best_same"] = worst;
    sum["goal_80pct_met"] = worst >= 0.8;
  }
  if (bw.copy_gbs > 0) {
    sum["copy_gbs"] = bw.copy_gbs;
    sum["read_gbs"] = bw.read_gbs;
    sum["read_config"] = bw.read_config;
  }
  json gj = json::array();
  for (const GemvResult& r : gemvs)
    gj.push_back({{"shape", r.shape}, {"bits", r.bits}, {"packed_gbs", r.packed_gbs},
                  {"fraction_of_read", bw.read_gbs > 0 ? r.packed_gbs / bw.read_gbs : 0.0},
                  {"fraction_of_copy", bw.copy_gbs > 0 ? r.packed_gbs / bw.copy_gbs : 0.0},
                  {"dense_fp16_gbs", r.dense_gbs}, {"speedup_vs_dense_fp16", r.dense_us / r.packed_us},
                  {"rel_err", r.rel_err}});
  sum["gemv"] = gj;
  emit(sum);

  std::printf("\n== GEMMs at %s's shapes on %s: rptq kernels/gemm.cuh vs the best cuBLAS / cuBLASLt call (TFLOP/s, "
              "best of %d samples)\n",
              label.c_str(), dev.name.c_str(), a.samples);
  std::printf("   %-22s %-5s %6s %6s %6s %8s %8s %9s %6s %9s %6s  %s\n", "shape", "prec", "M", "N", "K", "ours",
              "linear", "best same", "ratio", "best any", "ratio", "best same = ");
  for (const Row& r : table)
    std::printf("   %-22s %-5s %6lld %6lld %6lld %8.2f %8.2f %9.2f %6.3f %9.2f %6.3f  %s\n", r.shape.c_str(),
                r.prec.c_str(), static_cast<long long>(r.M), static_cast<long long>(r.N), static_cast<long long>(r.K),
                r.ours, r.ours_linear, r.best_same, r.best_same > 0 ? r.ours / r.best_same : 0.0, r.best_any,
                r.best_any > 0 ? r.ours / r.best_any : 0.0, r.best_same_name.c_str());
  for (const auto& [k, w] : weighted)
    std::printf("   layer step (q/k/v/o, FFN; FLOP-weighted) %-16s ours %.2f TFLOP/s, cuBLAS best %.2f: ratio %.3f\n",
                k.c_str(), w.flops / w.ours_s * 1e-12, w.flops / w.best_s * 1e-12, w.best_s / w.ours_s);
  if (bw.copy_gbs > 0) {
    const std::string theory =
        dev.theoretical_gbs() > 0 ? ", theoretical " + std::to_string(static_cast<int>(dev.theoretical_gbs())) + " GB/s"
                                  : "";
    std::printf("   memory: D2D copy %.0f GB/s (read + write), read kernel %.0f GB/s (%s)%s\n", bw.copy_gbs,
                bw.read_gbs, bw.read_config.c_str(), theory.c_str());
  }
  for (const GemvResult& r : gemvs)
    std::printf("   packed GEMV M=1 %-11s [%5lld x %5lld] %d-bit: %8.2f us %7.0f GB/s (%.0f%% of read, %.0f%% of "
                "copy); dense fp16 %8.2f us %7.0f GB/s; rel err %.1e\n",
                r.shape.c_str(), static_cast<long long>(r.out), static_cast<long long>(r.in), r.bits, r.packed_us,
                r.packed_gbs, bw.read_gbs > 0 ? 100 * r.packed_gbs / bw.read_gbs : 0.0,
                bw.copy_gbs > 0 ? 100 * r.packed_gbs / bw.copy_gbs : 0.0, r.dense_us, r.dense_gbs, r.rel_err);
  std::fflush(stdout);
  RPTQ_CUDA_CHECK(cudaFree(std::exchange(g.workspace, nullptr)));
  RPTQ_CUBLAS_CHECK(cublasLtDestroy(std::exchange(g.lt, nullptr)));
  RPTQ_CUBLAS_CHECK(cublasDestroy(std::exchange(g.cublas, nullptr)));
  blas.close();
  RPTQ_CUDA_CHECK(cudaStreamDestroy(std::exchange(g.stream, nullptr)));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  try {
    if (a.device_info_only) {
      require_gpu();
      emit(device_json(device_facts(0)));
      return 0;
    }
    return a.gemm_mode ? run_gemm_mode(a) : run_model_mode(a);
  } catch (const rptq::InputError& e) {
    std::cerr << "bench_cuda: " << e.what() << "\n";
    emit({{"kind", "error"}, {"error", e.what()}});
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "bench_cuda: " << e.what() << "\n";
    emit({{"kind", "error"}, {"error", e.what()}});
    return 1;
  }
}
