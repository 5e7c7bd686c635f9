#include "cuda/cuda_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <array>
#include <cstring>
#include <functional>
#include <type_traits>

#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/method/quantize.h"

namespace rptq {

const char* gpu_layer_placement_name(GpuLayerPlacement p) {
  switch (p) {
    case GpuLayerPlacement::Stream: return "stream";
    case GpuLayerPlacement::Resident: return "resident";
    default: return "auto";
  }
}

}  // namespace rptq

// The GPU runner; a CPU-only build gets cuda_runner_none.cpp instead.
#ifdef RPTQ_WITH_CUDA

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "attention.cuh"
#include "attention_scores.cuh"
#include "channel_range.cuh"
#include "compare_logits.cuh"
#include "cuda_check.cuh"
#include "device.cuh"
#include "elementwise.cuh"
#include "fake_quant.cuh"
#include "gemm.cuh"
#include "hessian.cuh"
#include "kv_pack.cuh"
#include "norm.cuh"
#include "packed_gemm.cuh"
#include "rotary.cuh"
#include "rptq/device.h"
#include "cuda/device_kv_cache.h"
#include "cuda/device_layers.h"
#include "cuda/device_range_recorder.h"
#include "model/decoder_layer.h"
#include "rptq/method/weight_quant.h"
#include "rptq/model/packed_weight.h"
#include "softmax.cuh"

namespace rptq {

namespace {

// Dequantized rows per packed-linear tile: at most 16 MiB of float32 weights in the cuBLAS scratch.
constexpr std::size_t kPackedTileBytes = std::size_t{16} << 20;
// Rows of the output head per step: bounds the [rows, vocab] logits buffer.
constexpr std::int64_t kHeadRows = 512;

std::string mib(std::size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / 1048576.0);
  return buf;
}

cuda::GemmInputs gemm_inputs(GpuPrecision p) {
  return p == GpuPrecision::FP16 ? cuda::GemmInputs::FP16
         : p == GpuPrecision::BF16 ? cuda::GemmInputs::BF16
                                   : cuda::GemmInputs::FP32;
}

}  // namespace

struct GpuRunner::Impl {
  const Model& model;
  const ModelConfig& cfg;
  const QuantizedModel* quantized;
  GpuOptions opts;
  DeviceLedger ledger;  // what all the runner's parts allocated, and the statistics
  GpuMemoryStats& mem = ledger.stats;
  std::size_t& held = ledger.held;  // bytes allocated now (tracked buffers and the cuBLAS scratch asked for)

  cudaStream_t compute = nullptr, upload = nullptr;
  cuda::BlasHandle blas;
  std::size_t blas_scratch = 0;  // what the handle's scratch has grown to (BlasHandle::scratch's rule)

  // Outer weights, uploaded once.
  cuda::DeviceBuffer<float> embed_tokens, embed_positions, project_in, project_out, final_gamma, final_beta, lm_head;
  // Activation quantizers per layer and tap (static: scales; dynamic: boundaries only) and the dynamic workspace.
  struct TapQ {
    bool active = false, dynamic = false;
    int bits = 8;
    cuda::Grid grid = cuda::Grid::Exact;
    std::int64_t cols = 0, clusters = 0;
    cuda::ClusterQuantizer q;  // static
    cuda::DeviceBuffer<std::int32_t> boundaries;  // dynamic
  };
  std::vector<std::array<TapQ, kTapCount>> tapq;
  cuda::DeviceBuffer<std::uint8_t> dyn_workspace;
  // Dynamic taps record their bad-channel word in DynBad ((layer * pass_chunks + chunk) * kTapCount + tap), read
  // once per pass (calibration: per layer) instead of once per tap.
  bool any_dynamic = false;
  std::int64_t pass_chunks = 1, chunk_index = 0;

  // The decoder layers' weights, resident or streamed (made by init(), once the streams exist).
  std::unique_ptr<DeviceLayers> layer_store;

  // Activations, grown as needed.
  enum Buf {
    H, X, Q, K, V, Attn, Hid, Up, XHalf, Ids, Pos, Logits, HeadX, HeadY, Targets, Nll, Total, Tmp, ScoreRange, DynBad,
    HCopy, kBufs
  };
  std::array<cuda::DeviceBuffer<std::uint8_t>, kBufs> bufs;

  // Calibration: while `recording`, every tap's ranges (and the attention scores') of the layer being run go to the
  // recorder (DeviceRangeRecorder), which the host reads with one copy per layer.
  bool recording = false;
  DeviceRangeRecorder recorder;
  std::int64_t sample0 = 0;  // index of the chunk's first window

  GpuTapObserver observer;
  Tensor observed_before, observed_after;

  // Generation: the KV cache of one sequence (start_cache). While `cached` is set, the decoder layer appends each
  // layer's K / V to it and attends over the whole cache.
  std::unique_ptr<DeviceKvCache> kv;
  bool cached = false;
  const float* tapped_q = nullptr;  // the Q tap's activation, for the attention score ranges at the K tap

  // Quantization's layer-by-layer passes (GpuLayerPasses) add the taps of hessian_layer's linear inputs to the
  // Hessians (per Tap) while it is >= 0.
  int hessian_layer = -1;
  std::array<cuda::DeviceBuffer<double>, kTapCount> hess;
  std::array<std::int64_t, kTapCount> hess_samples{};

  Impl(const Model& m, const QuantizedModel* qm, const GpuOptions& o)
      : model(m), cfg(m.config()), quantized(qm), opts(o) {}

  ~Impl() {
    if (compute) cudaStreamSynchronize(compute);
    if (upload) cudaStreamSynchronize(upload);
    layer_store.reset();  // its events and pinned staging, before the streams go
    try {
      blas.close();
    } catch (const std::exception&) {  // a destructor must not throw
    }
    if (compute) cudaStreamDestroy(compute);
    if (upload) cudaStreamDestroy(upload);
    cudaGetLastError();
  }

  void note_alloc(std::size_t bytes) { ledger.alloc(bytes); }
  void note_free(std::size_t bytes) { ledger.free(bytes); }

  // Drops the KV cache and its accounting.
  void free_cache() {
    note_free(mem.kv_cache_bytes);
    mem.kv_cache_bytes = 0;
    kv.reset();
  }

  // An empty cache of `capacity` tokens (DeviceKvCache): per layer K and V as float32, or as the packed codes of
  // kv_quant.
  void start_cache(std::int64_t capacity, std::shared_ptr<const KvQuantization> quant) {
    if (capacity < 1) throw InputError("a KV cache needs room for at least one token");
    RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));  // the old cache may still be read
    free_cache();  // no half-made cache: step() refuses to run without one
    kv = std::make_unique<DeviceKvCache>(cfg, capacity, std::move(quant), compute);
    note_alloc(kv->allocated());
    mem.kv_cache_bytes = kv->allocated();
  }

  // Runs `tokens` after the cached ones, appends their K / V, and leaves the last token's logits in Logits.
  const float* step(std::span<const std::int32_t> tokens) {
    if (!kv) throw std::logic_error("GpuRunner::step before start_cache");
    const auto seq = static_cast<std::int64_t>(tokens.size());
    if (seq < 1) throw InputError("a decoding step needs at least one token");
    if (kv->length() + seq > kv->capacity())
      throw InputError("KV cache holds 1 x " + std::to_string(kv->capacity()) + " tokens; 1 x " +
                       std::to_string(kv->length() + seq) + " needed");
    float* h = embed(tokens, 1, seq, kv->length());
    cached = true;
    try {
      run_layers(h, 1, seq, 1);
    } catch (...) {
      cached = false;
      throw;
    }
    cached = false;
    kv->advance(seq);
    return head(h + (seq - 1) * cfg.hidden, 1);
  }

  template <typename T>
  cuda::DeviceBuffer<T> upload_tensor(const T* host, std::size_t n) {
    cuda::DeviceBuffer<T> b(n);
    note_alloc(b.bytes());
    mem.outer_bytes += b.bytes();
    b.copy_from_host(host, n);
    return b;
  }
  cuda::DeviceBuffer<float> upload_tensor(const Tensor& t) {
    return t.empty() ? cuda::DeviceBuffer<float>() : upload_tensor(t.data(), static_cast<std::size_t>(t.numel()));
  }

  template <typename T>
  T* buf(Buf id, std::size_t count) {
    const std::size_t bytes = device_align_up(std::max<std::size_t>(count * sizeof(T), 1));
    cuda::DeviceBuffer<std::uint8_t>& b = bufs[id];
    if (b.bytes() < bytes) {
      RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));  // work in flight may still use the old buffer
      note_free(b.bytes());
      mem.activation_bytes -= std::min(mem.activation_bytes, b.bytes());
      b = cuda::DeviceBuffer<std::uint8_t>();
      b = cuda::DeviceBuffer<std::uint8_t>(bytes);
      note_alloc(bytes);
      mem.activation_bytes += bytes;
    }
    return reinterpret_cast<T*>(b.data());
  }

  // The cuBLAS scratch a packed linear asks for (packed_gemm.cu: [x as 16-bit][one tile]); BlasHandle grows it to
  // 1.5 times the request.
  void note_blas_scratch(std::size_t request) {
    if (request <= blas_scratch) return;
    const std::size_t want = request + request / 2;
    note_free(blas_scratch);
    mem.activation_bytes -= std::min(mem.activation_bytes, blas_scratch);
    blas_scratch = want;
    note_alloc(want);
    mem.activation_bytes += want;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Setup

  void init() {
    // The ordinal asked for (it must name a supported GPU), or the first supported one.
    opts.device = device_info().pick_gpu(opts.device);
    RPTQ_CUDA_CHECK(cudaSetDevice(opts.device));
    RPTQ_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    RPTQ_CUDA_CHECK(cudaStreamCreateWithFlags(&upload, cudaStreamNonBlocking));
    blas.set_stream(compute);

    const auto ow = model.outer_weights();
    embed_tokens = upload_tensor(ow.embed_tokens);
    embed_positions = upload_tensor(ow.embed_positions);
    project_in = upload_tensor(ow.project_in.weight);
    project_out = upload_tensor(ow.project_out.weight);
    final_gamma = upload_tensor(ow.final_norm.gamma);
    final_beta = upload_tensor(ow.final_norm.beta);
    lm_head = upload_tensor(ow.lm_head);
    if (!ow.final_norm.gather.empty()) throw InputError("the final norm has a gather (not supported on the GPU)");

    upload_quantizers();

    layer_store = std::make_unique<DeviceLayers>(model, opts, compute, upload, ledger);
    layer_store->place();
  }

  void upload_quantizers() {
    if (!quantized) return;
    if (&quantized->model() != &model) throw std::logic_error("GpuRunner: the quantizers belong to another model");
    tapq.resize(static_cast<std::size_t>(cfg.layers));
    for (int l = 0; l < std::min<int>(quantized->layers(), static_cast<int>(cfg.layers)); ++l)
      upload_layer_quantizers(l);
  }

  // Layer l's activation quantizers as the QuantizedModel holds them now (replacing what was uploaded before).
  void upload_layer_quantizers(int l) {
    RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));  // work in flight may still read the ones replaced here
    std::size_t workspace = 0;
    for (Tap t : kAllTaps) {
      const TapQuantizer& tq = quantized->layer(l).taps[static_cast<std::size_t>(t)];
      TapQ& d = tapq[static_cast<std::size_t>(l)][static_cast<std::size_t>(t)];
      if (d.active) {
        const std::size_t b = d.boundaries.bytes() + d.q.boundaries.bytes() + d.q.scale.bytes() +
                              d.q.zero_point.bytes();
        note_free(b);
        mem.outer_bytes -= std::min(mem.outer_bytes, b);
        d = TapQ();
      }
      if (!tq.active()) continue;
      d.active = true;
      d.dynamic = tq.dynamic;
      d.bits = tq.bits;
      d.grid = tq.grid == QuantGrid::Reference ? cuda::Grid::Reference : cuda::Grid::Exact;
      d.cols = tap_channels(cfg, t);
      d.clusters = static_cast<std::int64_t>(tq.boundaries.size()) - 1;
      if (tq.dynamic) {
        any_dynamic = true;
        const std::vector<std::int32_t> b32(tq.boundaries.begin(), tq.boundaries.end());
        d.boundaries = upload_tensor(b32.data(), b32.size());
        workspace = std::max(workspace, cuda::fake_quant_dynamic_workspace_bytes(d.cols, d.clusters));
      } else {
        std::vector<float> scale, zero;
        for (const QuantParams& p : tq.params) {
          scale.push_back(p.scale);
          zero.push_back(p.zero_point);
        }
        try {
          d.q = cuda::upload_cluster_quantizer(tq.boundaries, scale, zero, tq.bits, d.cols);
        } catch (const std::invalid_argument& e) {
          throw InputError("layer " + std::to_string(l) + " tap " + tap_name(t) + ": " + e.what());
        }
        const std::size_t b = d.q.boundaries.bytes() + d.q.scale.bytes() + d.q.zero_point.bytes();
        note_alloc(b);
        mem.outer_bytes += b;
      }
    }
    if (workspace > dyn_workspace.bytes()) {
      note_free(dyn_workspace.bytes());
      mem.outer_bytes -= std::min(mem.outer_bytes, dyn_workspace.bytes());
      dyn_workspace = cuda::DeviceBuffer<std::uint8_t>();
      dyn_workspace = upload_tensor(std::vector<std::uint8_t>(workspace, 0).data(), workspace);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Ops

  void run_linear(const DevLinear& L, const float* x, std::int64_t ldx, std::int64_t rows, const float* bias,
                  float* y, bool accumulate) {
    if (L.packed && rows <= cuda::kPackedGemvMaxRows && opts.precision == GpuPrecision::FP32) {
      // Decode steps (and other passes of a few rows): the fused kernel reads the codes once and dequantizes in
      // registers, float32 throughout, with no scratch and no cuBLAS call.
      cuda::packed_gemv(x, ldx, rows, L.pw, bias, y, accumulate, compute);
      return;
    }
    if (L.packed) {
      const std::size_t esize = opts.precision == GpuPrecision::FP32 ? 4 : 2;
      std::int64_t tile = static_cast<std::int64_t>(kPackedTileBytes / (static_cast<std::size_t>(L.in) * esize));
      tile = std::clamp<std::int64_t>(tile / 8 * 8, 8, std::max<std::int64_t>(L.out, 8));
      const std::size_t x_bytes = esize == 4 ? 0 : device_align_up(static_cast<std::size_t>(rows * L.in) * esize);
      note_blas_scratch(x_bytes + static_cast<std::size_t>(std::min(tile, L.out) * L.in) * esize);
      cuda::packed_linear(blas, x, ldx, rows, L.pw, bias, y, accumulate, gemm_inputs(opts.precision), tile);
      return;
    }
    switch (opts.precision) {
      case GpuPrecision::FP32:
        return cuda::linear(blas, x, ldx, rows, L.in, static_cast<const float*>(L.w), bias, L.out, y, accumulate);
      case GpuPrecision::FP16: {
        __half* xh = buf<__half>(XHalf, static_cast<std::size_t>(rows * L.in));
        cuda::convert_rows(x, ldx, rows, L.in, xh, compute);
        return cuda::linear(blas, xh, L.in, rows, L.in, static_cast<const __half*>(L.w), bias, L.out, y, accumulate);
      }
      case GpuPrecision::BF16: {
        __nv_bfloat16* xh = buf<__nv_bfloat16>(XHalf, static_cast<std::size_t>(rows * L.in));
        cuda::convert_rows(x, ldx, rows, L.in, xh, compute);
        return cuda::linear(blas, xh, L.in, rows, L.in, static_cast<const __nv_bfloat16*>(L.w), bias, L.out, y,
                            accumulate);
      }
    }
  }

  void norm(const float* gamma, const float* beta, const std::int32_t* gather, const float* x, float* y,
            std::int64_t rows) {
    if (cfg.arch == Architecture::OPT)
      cuda::layer_norm(x, y, rows, cfg.hidden, gamma, beta, cfg.norm_eps, gather, compute);
    else
      cuda::rms_norm(x, y, rows, cfg.hidden, gamma, cfg.norm_eps, gather, compute);
  }
  void norm(const DevNorm& n, const float* x, float* y, std::int64_t rows) {
    norm(n.gamma, n.beta, n.gather, x, y, rows);
  }

  void copy_to_host(const float* x, std::int64_t rows, std::int64_t cols, Tensor& out) {
    out.resize({rows, cols});
    RPTQ_CUDA_CHECK(cudaMemcpyAsync(out.data(), x, static_cast<std::size_t>(rows * cols) * 4, cudaMemcpyDeviceToHost,
                                    compute));
    RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));
  }

  // The device hook: the tap's quantizer, then (calibrating) its ranges per window. x is [nseq * seq, cols].
  void device_hook(int layer, Tap t, float* x, std::int64_t nseq, std::int64_t seq, std::int64_t cols) {
    const std::int64_t rows = nseq * seq;
    if (observer) copy_to_host(x, rows, cols, observed_before);
    if (!tapq.empty() && layer < static_cast<int>(tapq.size())) {
      TapQ& d = tapq[static_cast<std::size_t>(layer)][static_cast<std::size_t>(t)];
      if (d.active && d.dynamic) {
        // Each sequence's own ranges, as the CPU's hook (a batch of windows quantizes as the windows one at a time).
        for (std::int64_t s = 0; s < nseq; ++s) {
          cuda::fake_quant_clusters_dynamic(x + s * seq * cols, seq, cols, cols, d.boundaries.data(), d.clusters,
                                            d.bits, d.grid, cuda::DynamicRange::AllRows, dyn_workspace.data(),
                                            nullptr, nullptr, compute);
          if (observer || nseq > 1) {
            // The observer waits for every tap anyway: fail at the tap, before it sees the unquantized values.
            // Several sequences: the workspace records only the last call, so each is checked here (a wait per
            // sequence: dynamic ranges are a remedy, not the fast path).
            const std::int64_t bad = cuda::fake_quant_dynamic_bad_channel(dyn_workspace.data(), cols, d.clusters,
                                                                          compute);
            if (bad >= 0) throw bad_dynamic_range(layer, t, bad);
          } else {
            cuda::fake_quant_dynamic_copy_bad_channel(dyn_workspace.data(), cols, d.clusters,
                                                      dynamic_record(layer, chunk_index, t), compute);
          }
        }
      } else if (d.active && layer != hessian_layer) {
        // (GPTQ's Hessian pass sees the layer's own static quantizers off, as the CPU's: quantize.h, LayerPasses.)
        cuda::fake_quant_clusters(x, rows, cols, d.q, compute);
      }
    }
    if (observer) {
      copy_to_host(x, rows, cols, observed_after);
      observer(layer, t, observed_before, observed_after);
    }
    if (layer == hessian_layer) {
      const auto ti = static_cast<std::size_t>(t);
      if (!hess[ti].empty()) {
        cuda::hessian_add(blas, x, rows, cols, cols, hess_samples[ti], hess[ti].data());
        hess_samples[ti] += rows;
      }
    }
    if (recording) recorder.add_tap(t, x, nseq, seq, sample0, compute);
  }

  static InputError bad_dynamic_range(int layer, Tap t, std::int64_t channel) {
    return InputError("layer " + std::to_string(layer) + " tap " + tap_name(t) + ": channel " +
                      std::to_string(channel) + " has no finite range (dynamic quantization)");
  }
  std::uint32_t* dynamic_record(int layer, std::int64_t chunk, Tap t) {
    const std::size_t records = static_cast<std::size_t>(cfg.layers * pass_chunks * kTapCount);
    return buf<std::uint32_t>(DynBad, records) + (layer * pass_chunks + chunk) * kTapCount + static_cast<int>(t);
  }
  // Throws, as the tap would have, for the first dynamic tap of layers [l0, l1) of this pass (in the order they
  // ran: layer, chunk, tap) whose range was not finite. One copy and one wait for all of them.
  void check_dynamic_ranges(int l0, int l1) {
    if (!any_dynamic || observer || l0 >= l1) return;
    const std::size_t per_layer = static_cast<std::size_t>(pass_chunks * kTapCount);
    std::vector<std::uint32_t> rec(static_cast<std::size_t>(l1 - l0) * per_layer);
    const std::uint32_t* first = dynamic_record(l0, 0, Tap::AttnInput);
    RPTQ_CUDA_CHECK(cudaMemcpyAsync(rec.data(), first, rec.size() * sizeof(std::uint32_t), cudaMemcpyDeviceToHost,
                                    compute));
    RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));
    for (int l = l0; l < l1 && l < static_cast<int>(tapq.size()); ++l)
      for (std::int64_t c = 0; c < pass_chunks; ++c)
        for (Tap t : kAllTaps) {
          const TapQ& d = tapq[static_cast<std::size_t>(l)][static_cast<std::size_t>(t)];
          if (!d.active || !d.dynamic) continue;
          const std::uint32_t bad =
              rec[static_cast<std::size_t>(l - l0) * per_layer + static_cast<std::size_t>(c * kTapCount) +
                  static_cast<std::size_t>(t)];
          if (bad != cuda::kDynamicAllFinite) throw bad_dynamic_range(l, t, static_cast<std::int64_t>(bad));
        }
  }

  // Calibration: allocates the arena of the ranges of `samples` windows: every tap's and then the scores' [ema_max,
  // ema_min, max, min], then every tap's per-sample [smax, smin] ([samples, channels] each), all of which the host
  // reads per layer (the scores' per-sample scratch is the ScoreRange buffer), and points `rec` into it.
  void begin_recording(std::int64_t samples) {
    sync();  // a cancelled calibration may have left work that reads the old arena
    note_free(recorder.arena_bytes());
    mem.activation_bytes -= std::min(mem.activation_bytes, recorder.arena_bytes());
    recorder.begin(cfg, samples);
    note_alloc(recorder.arena_bytes());
    mem.activation_bytes += recorder.arena_bytes();
  }

  // The recorded ranges of the layer just run, all in one copy on the compute stream (which wrote them).
  void read_recorded(LayerRanges& lr, std::int64_t samples) { recorder.read(lr, samples, compute); }

  // -------------------------------------------------------------------------------------------------------------
  // The decoder layer's op set (model/decoder_layer.h): the kernels on the compute stream, the device hook, and the
  // device KV cache while generating.

  float* buffer(layer::LayerBuffer id, std::size_t n) {
    switch (id) {
      case layer::LayerBuffer::X: return buf<float>(X, n);
      case layer::LayerBuffer::Q: return buf<float>(Q, n);
      case layer::LayerBuffer::K: return buf<float>(K, n);
      case layer::LayerBuffer::V: return buf<float>(V, n);
      case layer::LayerBuffer::Attn: return buf<float>(Attn, n);
      case layer::LayerBuffer::Hidden: return buf<float>(Hid, n);
      case layer::LayerBuffer::Up: return buf<float>(Up, n);
      case layer::LayerBuffer::Embed: return buf<float>(Tmp, n);
      case layer::LayerBuffer::HeadX: return buf<float>(HeadX, n);
      case layer::LayerBuffer::HeadY: return buf<float>(HeadY, n);
    }
    throw std::logic_error("unknown layer buffer");
  }
  void linear(const DevLinear& w, const float* x, std::int64_t ldx, std::int64_t rows, float* y, bool accumulate,
              bool bias) {
    run_linear(w, x, ldx, rows, bias ? w.bias : nullptr, y, accumulate);
  }
  void copy(float* dst, const float* src, std::size_t n) {
    RPTQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, compute));
  }
  void scale(float* x, std::size_t n, float s) { cuda::scale(x, static_cast<std::int64_t>(n), s, compute); }
  // Every chunk of a pass starts at the same position (0, or the cache's length when generating): the prefix of
  // Pos filled by embed() serves each chunk.
  void rotary(float* x, std::int64_t rows, std::int64_t heads, std::int64_t group, const DevLayer& w,
              const layer::LayerPass&) {
    const std::int64_t* pos = buf<std::int64_t>(Pos, static_cast<std::size_t>(rows));
    cuda::rotary(x, rows, heads, cfg.head_dim, pos, cfg.rope_theta, w.rope_index, group, compute);
  }
  void bias_activation(layer::Activation a, float* x, std::int64_t rows, std::int64_t cols, const DevLinear& w) {
    switch (a) {
      case layer::Activation::Relu: return cuda::bias_relu(x, rows, cols, w.bias, compute);
      case layer::Activation::GeluTanh: return cuda::bias_gelu_tanh(x, rows, cols, w.bias, compute);
      case layer::Activation::Gelu: return cuda::bias_gelu(x, rows, cols, w.bias, compute);
    }
  }
  void silu_mul(float* gate, const float* up, std::int64_t rows, std::int64_t cols) {
    cuda::silu_mul(gate, up, rows, cols, compute);
  }
  void attention(const float* q, const float* k, const float* v, float* out, const AttentionShape& s) {
    cuda::attention(q, k, v, out, s, compute);
  }
  void tap(int l, Tap t, float* x, std::int64_t cols, const layer::LayerPass& p) {
    device_hook(l, t, x, p.nseq, p.seq, cols);
    if (t == Tap::Q) tapped_q = x;
    if (t == Tap::K && recording)
      recorder.add_scores(tapped_q, x, p.nseq, p.seq, sample0,
                          buf<float>(ScoreRange, static_cast<std::size_t>(2 * p.nseq * cfg.heads)), compute);
  }
  KvStore* cache() { return cached ? kv.get() : nullptr; }

  // One decoder layer over nseq windows of seq tokens: h [nseq * seq, hidden] in place.
  void layer_forward(int l, const DevLayer& w, float* h, std::int64_t nseq, std::int64_t seq) {
    layer::LayerPass p;
    p.nseq = nseq;
    p.seq = seq;
    p.past = cached ? kv->length() : 0;
    layer::layer_forward(*this, cfg, l, w, h, p);
  }

  // The ends' ops (decoder_layer.h's embed and head).
  void embedding(std::span<const std::int32_t> tokens, float* y) {
    const auto n = static_cast<std::int64_t>(tokens.size());
    std::int32_t* ids = buf<std::int32_t>(Ids, tokens.size());
    RPTQ_CUDA_CHECK(cudaMemcpyAsync(ids, tokens.data(), tokens.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                                    compute));
    cuda::embedding(ids, n, embed_tokens.data(), cfg.vocab, cfg.embed_dim, y, compute);
  }
  void add_positions(float* h, const layer::LayerPass& p) {
    cuda::add_positions(h, p.rows(), p.seq, p.past, embed_positions.data(), cfg.max_positions + 2, cfg.hidden, 2,
                        compute);
  }
  void embedding_with_positions(std::span<const std::int32_t> tokens, const layer::LayerPass& p, float* y) {
    const auto n = static_cast<std::int64_t>(tokens.size());
    std::int32_t* ids = buf<std::int32_t>(Ids, tokens.size());
    RPTQ_CUDA_CHECK(cudaMemcpyAsync(ids, tokens.data(), tokens.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                                    compute));
    cuda::embedding_with_positions(ids, n, embed_tokens.data(), cfg.vocab, cfg.hidden, p.seq, p.past,
                                   embed_positions.data(), cfg.max_positions + 2, 2, y, compute);
  }
  void project(layer::Projection which, const float* x, std::int64_t rows, float* y) {
    const std::int64_t d = cfg.hidden, e = cfg.embed_dim;
    switch (which) {
      case layer::Projection::In:
        return cuda::linear(blas, x, e, rows, e, project_in.data(), nullptr, d, y, false);
      case layer::Projection::Out:
        return cuda::linear(blas, x, d, rows, d, project_out.data(), nullptr, e, y, false);
      case layer::Projection::Head: {
        const float* w = lm_head.empty() ? embed_tokens.data() : lm_head.data();
        return cuda::linear(blas, x, e, rows, e, w, nullptr, cfg.vocab, y, false);
      }
    }
  }
  void final_norm(const float* x, float* y, std::int64_t rows) {
    norm(final_gamma.data(), final_beta.data(), nullptr, x, y, rows);
  }

  // Embeds nseq sequences of seq tokens, continuing `past` cached ones, into H [nseq * seq, hidden] (Model::embed).
  float* embed(std::span<const std::int32_t> tokens, std::int64_t nseq, std::int64_t seq, std::int64_t past = 0) {
    layer::LayerPass p;
    p.nseq = nseq;
    p.seq = layer::check_tokens(cfg, tokens, nseq, past);
    p.past = past;
    if (p.seq != seq) throw std::logic_error("GpuRunner::embed: tokens do not form windows of the length given");
    const std::int64_t n = p.rows();
    std::vector<std::int64_t> pos;  // a host temporary: lives until the wait below
    if (cfg.arch != Architecture::OPT) {
      // Rotary positions of every row, for the layers.
      pos.resize(static_cast<std::size_t>(n));
      for (std::size_t r = 0; r < pos.size(); ++r) pos[r] = past + static_cast<std::int64_t>(r) % seq;
      std::int64_t* dp = buf<std::int64_t>(Pos, pos.size());
      RPTQ_CUDA_CHECK(cudaMemcpyAsync(dp, pos.data(), pos.size() * 8, cudaMemcpyHostToDevice, compute));
    }
    float* h = buf<float>(H, static_cast<std::size_t>(n * cfg.hidden));
    layer::embed(*this, cfg, tokens, p, h);
    RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));  // `tokens` (and `pos`) may be temporaries
    return h;
  }

  // Every decoder layer over the windows in H, `chunk` windows per step, layer weights streamed or resident.
  // Nothing here waits for the GPU, except a streamed layer's staging (for the copy out of its buffer before) and
  // the dynamic-range check: once at the end, or before each after_layer.
  void run_layers(float* h, std::int64_t nseq, std::int64_t seq, std::int64_t chunk,
                  const std::function<void(int)>& after_layer = {}) {
    const int L = static_cast<int>(cfg.layers);
    if (L == 0) return;
    pass_chunks = (nseq + chunk - 1) / chunk;
    layer_store->upload_layer(0);
    for (int l = 0; l < L; ++l) {
      const DevLayer w = layer_store->begin_layer(l);
      for (std::int64_t s0 = 0; s0 < nseq; s0 += chunk) {
        const std::int64_t nb = std::min(chunk, nseq - s0);
        sample0 = s0;
        chunk_index = s0 / chunk;
        layer_forward(l, w, h + s0 * seq * cfg.hidden, nb, seq);
      }
      layer_store->end_layer(l);
      // Staged on the host while the GPU works through the layer just queued; its copy waits only for the
      // compute that last read the other slot.
      if (layer_store->slot_count() > 1 && l + 1 < L) layer_store->upload_layer(l + 1);
      if (after_layer) {
        check_dynamic_ranges(l, l + 1);
        after_layer(l);
      }
      if (layer_store->slot_count() == 1 && l + 1 < L) layer_store->upload_layer(l + 1);
    }
    if (!after_layer) check_dynamic_ranges(0, L);
  }

  // Logits [rows, vocab] of hidden rows [rows, hidden] into Logits (Model::head).
  float* head(const float* hidden, std::int64_t rows) {
    float* logits = buf<float>(Logits, static_cast<std::size_t>(rows * cfg.vocab));
    layer::head(*this, cfg, hidden, rows, logits);
    return logits;
  }

  void logits_to_host(const float* hidden, std::int64_t rows, Tensor& out) {
    out.resize({rows, cfg.vocab});
    const float* lg = head(hidden, rows);
    RPTQ_CUDA_CHECK(cudaMemcpyAsync(out.data(), lg, static_cast<std::size_t>(rows * cfg.vocab) * 4,
                                    cudaMemcpyDeviceToHost, compute));
    RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));
  }

  void sync() { RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute)); }
};

// The runner's state for this file's other GPU paths (the layer-wise passes of quantization, compare_models_gpu);
// GpuRunner's header gives nothing else access to it.
struct GpuRunnerAccess {
  static GpuRunner::Impl& impl(GpuRunner& r) { return *r.impl_; }
};

namespace {

// Runs f, turning an out-of-memory CUDA error into an InputError a user can act on.
template <typename F>
auto guarded(const char* what, std::size_t held, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const CudaError& e) {
    if (e.out_of_memory())
      throw InputError(std::string("GPU out of memory ") + what + " (" + mib(held) +
                       " already allocated by this run): use fewer windows per step or shorter "
                       "windows (" + e.what() + ")");
    throw;
  } catch (const std::invalid_argument& e) {
    throw InputError(std::string("GPU ") + what + ": " + e.what());
  }
}

}  // namespace

namespace {
bool any_per_token(const QuantConfig& c) {
  return std::any_of(c.overrides.begin(), c.overrides.end(), [](const TapOverride& o) { return o.dynamic == 2; });
}
const QuantizedModel* gpu_supported(const QuantizedModel* q) {
  if (q && q->config().kv_fp8 != KvFp8::Off)
    throw InputError("the FP8 KV cache simulation (kv_fp8) runs on the CPU only so far: choose the CPU device");
  if (q && q->config().fp_prefix > 0)
    throw InputError("a full-precision prefix (fp_prefix " + std::to_string(q->config().fp_prefix) +
                     ") runs on the CPU only so far: choose the CPU device");
  if (q)
    for (int l = 0; l < q->layers(); ++l)
      for (const TapQuantizer& tq : q->layer(l).taps)
        if (tq.active() && tq.per_token)
          throw InputError("per-token activation ranges (an override) run on the CPU only so far: choose the CPU "
                           "device");
  return q;
}
}  // namespace

GpuRunner::GpuRunner(const Model& model, const QuantizedModel* quantized, const GpuOptions& opts)
    : impl_(std::make_unique<Impl>(model, gpu_supported(quantized), opts)) {
  guarded("while uploading the model", 0, [&] { impl_->init(); });
}

GpuRunner::~GpuRunner() = default;

const GpuMemoryStats& GpuRunner::memory() const { return impl_->mem; }

std::string GpuRunner::device_description() const {
  const GpuMemoryStats& m = impl_->mem;
  return device_info().description + (m.layers == GpuLayerPlacement::Resident
                                          ? std::string("; decoder layers resident")
                                          : "; decoder layers streamed through " + std::to_string(m.layer_slots) +
                                                (m.layer_slots == 1 ? " slot" : " slots"));
}

void GpuRunner::set_tap_observer(GpuTapObserver observer) { impl_->observer = std::move(observer); }

void GpuRunner::start_cache(std::int64_t capacity, std::shared_ptr<const KvQuantization> kv_quant) {
  Impl& m = *impl_;
  guarded("while making the KV cache", m.held, [&] { m.start_cache(capacity, std::move(kv_quant)); });
}

Tensor GpuRunner::step(std::span<const std::int32_t> tokens) {
  Impl& m = *impl_;
  Tensor out;
  guarded("while generating", m.held, [&] {
    const float* lg = m.step(tokens);
    m.copy_to_host(lg, 1, m.cfg.vocab, out);
  });
  return out;
}

std::int64_t GpuRunner::cache_length() const { return impl_->kv ? impl_->kv->length() : 0; }

GenerateResult GpuRunner::generate(std::span<const std::int32_t> prompt, const GenerateOptions& opts,
                                   const std::function<bool(std::int32_t)>& on_token) {
  Impl& m = *impl_;
  const std::int64_t capacity = generation_capacity(m.model, prompt, opts);
  start_cache(capacity, opts.kv_quant);
  GenerateResult res;
  res.kv_cache_bytes = m.kv->bytes();
  res.kv_cache_fp16_bytes = m.kv->fp16_bytes();
  Tensor logits;
  generation_loop(res, prompt, opts, m.cfg.vocab, capacity,
                  [&](std::span<const std::int32_t> tokens) {
                    logits = step(tokens);
                    return logits.data();
                  },
                  on_token);
  return res;
}

GenerateResult generate_gpu(const Model& model, const QuantizedModel* quantized, std::span<const std::int32_t> prompt,
                            const GenerateOptions& opts, const std::function<bool(std::int32_t)>& on_token,
                            const GpuOptions& gpu) {
  GpuRunner runner(model, quantized, gpu);
  return runner.generate(prompt, opts, on_token);
}

Tensor GpuRunner::forward(std::span<const std::int32_t> tokens, std::int64_t batch) {
  Impl& m = *impl_;
  return guarded("in the forward pass", m.held, [&] {
    if (batch < 1 || tokens.size() % static_cast<std::size_t>(batch) != 0)
      throw InputError(std::to_string(tokens.size()) + " tokens cannot form " + std::to_string(batch) +
                       " equal sequences");
    const std::int64_t seq = static_cast<std::int64_t>(tokens.size()) / batch;
    float* h = m.embed(tokens, batch, seq);
    m.run_layers(h, batch, seq, batch);
    const std::int64_t rows = batch * seq, V = m.cfg.vocab;
    Tensor logits = Tensor::uninitialized({rows, V});
    // Each block of logits straight into its rows; the next block's head waits for the copy (one stream).
    for (std::int64_t r0 = 0; r0 < rows; r0 += kHeadRows) {
      const std::int64_t n = std::min(kHeadRows, rows - r0);
      const float* lg = m.head(h + r0 * m.cfg.hidden, n);
      RPTQ_CUDA_CHECK(cudaMemcpyAsync(logits.data() + r0 * V, lg, static_cast<std::size_t>(n * V) * 4,
                                      cudaMemcpyDeviceToHost, m.compute));
    }
    m.sync();
    return logits;
  });
}

PerplexityResult GpuRunner::perplexity(std::span<const std::int32_t> ids, const PerplexityOptions& opts) {
  Impl& m = *impl_;
  PerplexityResult res = perplexity_windows(ids, opts);
  const std::int64_t windows = res.windows;
  const auto start = std::chrono::steady_clock::now();
  guarded("while evaluating perplexity", m.held, [&] {
    const std::int64_t T = opts.seqlen, V = m.cfg.vocab;
    for (std::int64_t w0 = 0; w0 < windows; w0 += opts.batch) {
      const std::int64_t nb = std::min(opts.batch, windows - w0);
      auto batch_ids = ids.subspan(static_cast<std::size_t>(w0 * T), static_cast<std::size_t>(nb * T));
      // Row t of a window predicts token t + 1; the window's last row predicts nothing.
      std::vector<std::int32_t> targets(static_cast<std::size_t>(nb * T), 0);
      for (std::int64_t b = 0; b < nb; ++b)
        for (std::int64_t t = 0; t + 1 < T; ++t)
          targets[static_cast<std::size_t>(b * T + t)] = batch_ids[static_cast<std::size_t>(b * T + t + 1)];
      std::int32_t* dt = m.buf<std::int32_t>(Impl::Targets, targets.size());
      RPTQ_CUDA_CHECK(cudaMemcpyAsync(dt, targets.data(), targets.size() * 4, cudaMemcpyHostToDevice, m.compute));
      float* h = m.embed(batch_ids, nb, T);  // synchronises: `targets` is safe to free after it
      m.run_layers(h, nb, T, nb);
      // Each block of rows sums its NLL into its own entry of Total; all are read with one copy after the batch
      // and added on the host in the order the blocks ran, as the per-block reads did.
      const std::int64_t blocks = (T - 1 + kHeadRows - 1) / kHeadRows;
      double* nll = m.buf<double>(Impl::Nll, static_cast<std::size_t>(kHeadRows));
      double* total = m.buf<double>(Impl::Total, static_cast<std::size_t>(std::max<std::int64_t>(nb * blocks, 1)));
      for (std::int64_t b = 0; b < nb; ++b) {
        for (std::int64_t i = 0; i < blocks; ++i) {
          const std::int64_t r0 = i * kHeadRows, r1 = std::min(T - 1, r0 + kHeadRows);
          const float* lg = m.head(h + (b * T + r0) * m.cfg.hidden, r1 - r0);
          cuda::nll_rows(lg, r1 - r0, V, V, dt + b * T + r0, nll, total + b * blocks + i, m.compute);
        }
      }
      std::vector<double> parts(static_cast<std::size_t>(nb * blocks));
      RPTQ_CUDA_CHECK(cudaMemcpyAsync(parts.data(), total, parts.size() * sizeof(double), cudaMemcpyDeviceToHost,
                                      m.compute));
      m.sync();
      for (std::int64_t b = 0; b < nb; ++b) {
        double sum = 0.0;
        for (std::int64_t i = 0; i < blocks; ++i) sum += parts[static_cast<std::size_t>(b * blocks + i)];
        res.window_nll.push_back(sum / static_cast<double>(T - 1));
      }
      if (opts.progress && !opts.progress(w0 + nb, windows)) throw Cancelled();
    }
  });
  finish_perplexity(res, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return res;
}

std::vector<LayerRanges> GpuRunner::calibration_ranges(std::span<const std::int32_t> tokens, std::int64_t samples,
                                                       std::int64_t seqlen, std::int64_t batch,
                                                       const LayerwiseCallback& progress) {
  Impl& m = *impl_;
  if (samples < 1 || seqlen < 1 || static_cast<std::int64_t>(tokens.size()) != samples * seqlen)
    throw InputError("calibration tokens: " + std::to_string(tokens.size()) + " ids cannot be " +
                     std::to_string(samples) + " windows of " + std::to_string(seqlen));
  batch = std::clamp<std::int64_t>(batch, 1, samples);
  std::vector<LayerRanges> ranges(static_cast<std::size_t>(m.cfg.layers));
  guarded("while calibrating", m.held, [&] {
    m.begin_recording(samples);
    m.recording = true;
    struct Off {
      Impl& m;
      ~Off() { m.recording = false; }
    } off{m};
    float* h = m.embed(tokens, samples, seqlen);
    LayerwiseProgress p;
    p.layers = static_cast<int>(m.cfg.layers);
    p.samples = samples;
    p.total = m.cfg.layers * samples;
    m.run_layers(h, samples, seqlen, batch, [&](int l) {
      m.read_recorded(ranges[static_cast<std::size_t>(l)], samples);
      p.layer = l;
      p.sample = samples;
      p.done = static_cast<std::int64_t>(l + 1) * samples;
      if (progress && !progress(p)) throw Cancelled();
    });
  });
  return ranges;
}

ChannelStats calibrate_gpu(const Model& model, const std::string& model_dir, std::span<const std::int32_t> text_ids,
                           const std::string& data_path, const std::string& data_sha256,
                           const CalibrationSettings& settings, const LayerwiseCallback& progress,
                           const GpuOptions& opts, std::int64_t batch) {
  const auto t0 = std::chrono::steady_clock::now();
  ChannelStats st = calibration_start(model, model_dir, text_ids, data_path, data_sha256, settings);
  GpuRunner runner(model, nullptr, opts);
  st.ranges = runner.calibration_ranges(st.tokens, settings.samples, settings.seqlen, batch, progress);
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

namespace {

// quantize()'s passes on the GPU, one layer at a time: a runner over the model being quantized, with its quantizers
// as they are set, and every calibration window's hidden state kept on the device (the runner's H buffer), the
// input of the next layer to run. The runner's taps do the measuring: its range recorder, and the Hessians of the
// linears' inputs of hessian_layer.
class GpuLayerPasses : public LayerPasses {
 public:
  GpuLayerPasses(QuantizedModel& q, const ChannelStats& stats, int passes_per_layer, const GpuOptions& gpu,
                 std::int64_t batch)
      : runner_(q.model(), &q, gpu), m_(GpuRunnerAccess::impl(runner_)) {
    guarded("while quantizing", m_.held, [&] {
      begin(stats.tokens, stats.settings.samples, stats.settings.seqlen, batch, passes_per_layer);
    });
  }
  LayerRanges ranges(int l, const LayerwiseCallback& progress) override {
    return guarded("while quantizing", m_.held, [&] { return measure_ranges(l, progress); });
  }
  void changed(int l) override {
    guarded("while quantizing", m_.held, [&] {
      m_.upload_layer_quantizers(l);
      m_.layer_store->restage_layer(l);
    });
  }
  std::map<Tap, HessianAccumulator> hessians(int l, const LayerwiseCallback& progress) override {
    return guarded("while quantizing", m_.held, [&] { return measure_hessians(l, progress); });
  }
  LayerMeasurement measure(int l, bool want_ranges, bool want_hessians, const LayerwiseCallback& progress) override {
    return guarded("while quantizing", m_.held, [&] { return measure_layer(l, want_ranges, want_hessians, progress); });
  }
  void advance(int l, const LayerwiseCallback& progress) override {
    guarded("while quantizing", m_.held, [&] { pass(l, /*keep=*/true, progress); });
  }
  Tensor hidden(std::int64_t i) override {
    Tensor t;
    m_.copy_to_host(window_state(i), seqlen_, m_.cfg.hidden, t);
    return t;
  }
  void set_hidden(std::int64_t i, const Tensor& h) override {
    if (h.numel() != seqlen_ * m_.cfg.hidden) throw std::invalid_argument("set_hidden: wrong shape");
    RPTQ_CUDA_CHECK(cudaMemcpyAsync(window_state(i), h.data(), static_cast<std::size_t>(h.numel()) * 4,
                                    cudaMemcpyHostToDevice, m_.compute));
    m_.sync();
  }

 private:
  void begin(std::span<const std::int32_t> tokens, std::int64_t samples, std::int64_t seqlen, std::int64_t batch,
             int passes_per_layer) {
    if (samples < 1 || seqlen < 1 || static_cast<std::int64_t>(tokens.size()) != samples * seqlen)
      throw InputError("calibration tokens: " + std::to_string(tokens.size()) + " ids cannot be " +
                       std::to_string(samples) + " windows of " + std::to_string(seqlen));
    samples_ = samples;
    seqlen_ = seqlen;
    batch_ = std::clamp<std::int64_t>(batch, 1, samples);
    done_ = 0;
    total_ = m_.cfg.layers * passes_per_layer * samples;
    h_ = m_.embed(tokens, samples, seqlen);
  }

  // Layer l over every window: in place (keep), or on a copy of each chunk of windows. Dynamic activation ranges
  // are taken per window, as the CPU's passes (one window per call) take them.
  void pass(int l, bool keep, const LayerwiseCallback& progress) {
    const std::int64_t S = samples_, T = seqlen_, d = m_.cfg.hidden;
    const std::int64_t chunk = m_.any_dynamic ? 1 : batch_;
    m_.pass_chunks = (S + chunk - 1) / chunk;
    m_.layer_store->upload_layer(l);
    const DevLayer w = m_.layer_store->begin_layer(l);
    LayerwiseProgress p;
    p.layer = l;
    p.layers = static_cast<int>(m_.cfg.layers);
    p.samples = S;
    p.total = total_;
    for (std::int64_t s0 = 0; s0 < S; s0 += chunk) {
      const std::int64_t nb = std::min(chunk, S - s0);
      m_.sample0 = s0;
      m_.chunk_index = s0 / chunk;
      float* h = h_ + s0 * T * d;
      if (!keep) {
        float* copy = m_.buf<float>(GpuRunner::Impl::HCopy, static_cast<std::size_t>(chunk * T * d));
        RPTQ_CUDA_CHECK(cudaMemcpyAsync(copy, h, static_cast<std::size_t>(nb * T * d) * 4, cudaMemcpyDeviceToDevice,
                                        m_.compute));
        h = copy;
      }
      m_.layer_forward(l, w, h, nb, T);
      p.sample = s0 + nb;
      p.done = done_ += nb;
      if (progress) {
        m_.sync();  // progress as done, not as queued
        if (!progress(p)) throw Cancelled();
      }
    }
    m_.layer_store->end_layer(l);
    m_.check_dynamic_ranges(l, l + 1);
  }

  LayerRanges measure_ranges(int l, const LayerwiseCallback& progress) {
    return measure_layer(l, true, false, progress).ranges;
  }

  std::map<Tap, HessianAccumulator> measure_hessians(int l, const LayerwiseCallback& progress) {
    return measure_layer(l, false, true, progress).hessians;
  }

  // One pass over layer l m_.recording its ranges and/or adding its linears' inputs to the Hessians (the tap does
  // both: quantizers of m_.hessian_layer off, then hessian_add, then the ranges).
  LayerMeasurement measure_layer(int l, bool want_ranges, bool want_hessians, const LayerwiseCallback& progress) {
    LayerMeasurement out;
    if (want_hessians) {
      for (Tap t : kLinearInputTaps) {
        const auto ti = static_cast<std::size_t>(t);
        const std::int64_t n = tap_channels(m_.cfg, t);
        if (m_.hess[ti].size() != static_cast<std::size_t>(n * n)) {
          m_.sync();
          m_.note_free(m_.hess[ti].bytes());
          m_.mem.activation_bytes -= std::min(m_.mem.activation_bytes, m_.hess[ti].bytes());
          m_.hess[ti] = cuda::DeviceBuffer<double>();
          m_.hess[ti] = cuda::DeviceBuffer<double>(static_cast<std::size_t>(n * n));
          m_.note_alloc(m_.hess[ti].bytes());
          m_.mem.activation_bytes += m_.hess[ti].bytes();
        }
        RPTQ_CUDA_CHECK(cudaMemsetAsync(m_.hess[ti].data(), 0, m_.hess[ti].bytes(), m_.compute));
        m_.hess_samples[ti] = 0;
      }
      m_.hessian_layer = l;
    }
    if (want_ranges) {
      m_.begin_recording(samples_);
      m_.recording = true;
    }
    try {
      pass(l, /*keep=*/false, progress);
      if (want_ranges) m_.read_recorded(out.ranges, samples_);
    } catch (...) {
      m_.recording = false;
      m_.hessian_layer = -1;
      throw;
    }
    m_.recording = false;
    m_.hessian_layer = -1;
    if (want_hessians) {
      for (Tap t : kLinearInputTaps) {
        const auto ti = static_cast<std::size_t>(t);
        const std::int64_t n = tap_channels(m_.cfg, t);
        std::vector<double> h(static_cast<std::size_t>(n * n));
        RPTQ_CUDA_CHECK(cudaMemcpyAsync(h.data(), m_.hess[ti].data(), h.size() * sizeof(double),
                                        cudaMemcpyDeviceToHost, m_.compute));
        m_.sync();
        out.hessians.emplace(t, HessianAccumulator(n, std::move(h), m_.hess_samples[ti]));
      }
    }
    return out;
  }

  float* window_state(std::int64_t i) {
    if (i < 0 || i >= samples_) throw std::out_of_range("window " + std::to_string(i) + " out of range");
    return h_ + i * seqlen_ * m_.cfg.hidden;
  }

  GpuRunner runner_;
  GpuRunner::Impl& m_;
  std::int64_t samples_ = 0, seqlen_ = 0, batch_ = 8, done_ = 0, total_ = 0;
  float* h_ = nullptr;  // the windows' hidden states, [samples, seqlen, hidden] (the runner's H)
};

}  // namespace

std::unique_ptr<QuantizedModel> quantize_gpu(std::unique_ptr<Model> model, const ChannelStats& stats,
                                             const QuantConfig& cfg, const QuantizeOptions& opts,
                                             const GpuOptions& gpu, std::int64_t batch) {
  if (cfg.fp_prefix > 0)
    throw InputError("a full-precision prefix (fp_prefix " + std::to_string(cfg.fp_prefix) +
                     ") runs on the CPU only so far: choose the CPU device");
  if (any_per_token(cfg))
    throw InputError("per-token activation ranges (an override) run on the CPU only so far: choose the CPU device");
  if (cfg.kv_fp8 != KvFp8::Off)
    throw InputError("the FP8 KV cache simulation (kv_fp8) runs on the CPU only so far: choose the CPU device");
  return quantize_with(std::move(model), stats, cfg, opts, [&](QuantizedModel& q, int passes_per_layer) {
    return make_gpu_layer_passes(q, stats, passes_per_layer, gpu, batch);
  });
}

std::unique_ptr<LayerPasses> make_gpu_layer_passes(QuantizedModel& q, const ChannelStats& stats, int passes_per_layer,
                                                   const GpuOptions& gpu, std::int64_t batch) {
  return std::make_unique<GpuLayerPasses>(q, stats, passes_per_layer, gpu, batch);
}

namespace {

// One text's comparison on two runners made for it (or for several texts: compare_texts_gpu): both forward passes
// of each window on the GPU, the NLL, KL and top-1 sums and every position's KL on the device
// (kernels/compare_logits.cuh); only those come back, not the logits. progress(windows of this text done) returns
// false to cancel.
CompareResult compare_on(GpuRunner::Impl& mf, GpuRunner::Impl& mq, const Model& fp, const Model& q,
                         std::span<const std::int32_t> ids, const PerplexityOptions& opts,
                         const std::function<bool(std::int64_t)>& progress) {
  CompareAccumulator acc(ids, opts, fp.config().vocab, q.config().vocab);
  const std::int64_t T = opts.seqlen, V = fp.config().vocab;
  const auto start = std::chrono::steady_clock::now();
  guarded("while comparing", mf.held + mq.held, [&] {
    cuda::DeviceBuffer<cuda::CompareRowSums> sums(1);
    cuda::DeviceBuffer<double> row_kl(static_cast<std::size_t>(T - 1));  // the window's per-position KLs
    mf.note_alloc(sums.bytes() + row_kl.bytes());
    std::vector<double> host_kl(static_cast<std::size_t>(T - 1));
    for (std::int64_t w = 0; w < acc.windows(); ++w) {
      const auto win = acc.window(w);
      const auto t0 = std::chrono::steady_clock::now();
      float* hf = mf.embed(win, 1, T);
      mf.run_layers(hf, 1, T, 1);
      mf.sync();
      const auto t1 = std::chrono::steady_clock::now();
      float* hq = mq.embed(win, 1, T);
      mq.run_layers(hq, 1, T, 1);
      mq.sync();
      const auto t2 = std::chrono::steady_clock::now();
      // Targets: position r predicts token r + 1 of the window.
      std::int32_t* targets = mq.buf<std::int32_t>(GpuRunner::Impl::Targets, static_cast<std::size_t>(T - 1));
      RPTQ_CUDA_CHECK(cudaMemcpyAsync(targets, win.data() + 1, static_cast<std::size_t>(T - 1) * 4,
                                      cudaMemcpyHostToDevice, mq.compute));
      RPTQ_CUDA_CHECK(cudaMemsetAsync(sums.data(), 0, sums.bytes(), mq.compute));
      for (std::int64_t r0 = 0; r0 < T - 1; r0 += kHeadRows) {
        const std::int64_t n = std::min(T - 1, r0 + kHeadRows) - r0;
        const float* lf = mf.head(hf + r0 * fp.config().hidden, n);
        mf.sync();  // the quantized side's stream reads the FP logits
        const float* lq = mq.head(hq + r0 * q.config().hidden, n);
        cuda::compare_logits_rows(lf, lq, n, V, V, V, targets + r0, sums.data(), row_kl.data() + r0, mq.compute);
        mq.sync();  // the FP side's next head overwrites its logits
      }
      cuda::CompareRowSums host;
      RPTQ_CUDA_CHECK(cudaMemcpyAsync(&host, sums.data(), sizeof host, cudaMemcpyDeviceToHost, mq.compute));
      RPTQ_CUDA_CHECK(cudaMemcpyAsync(host_kl.data(), row_kl.data(), row_kl.bytes(), cudaMemcpyDeviceToHost,
                                      mq.compute));
      mq.sync();
      acc.add_sums(T - 1, host.nll_p, host.nll_q, host.kl, host.agree, host_kl);
      acc.end_window(std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count());
      if (progress && !progress(w + 1)) throw Cancelled();
    }
    mf.note_free(sums.bytes() + row_kl.bytes());
  });
  return acc.finish(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace

CompareResult compare_models_gpu(const Model& fp, const QuantizedModel* fp_quant, const Model& q,
                                 const QuantizedModel* q_quant, std::span<const std::int32_t> ids,
                                 const PerplexityOptions& opts, const GpuOptions& gpu) {
  // A bad text or option is refused before the models are uploaded.
  const std::int64_t windows = perplexity_windows(ids, opts).windows;
  GpuRunner rf(fp, fp_quant, gpu), rq(q, q_quant, gpu);
  std::function<bool(std::int64_t)> progress;
  if (opts.progress) progress = [&](std::int64_t done) { return opts.progress(done, windows); };
  return compare_on(GpuRunnerAccess::impl(rf), GpuRunnerAccess::impl(rq), fp, q, ids, opts, progress);
}

std::vector<CompareResult> compare_texts_gpu(const Model& fp, const QuantizedModel* fp_quant, const Model& q,
                                             const QuantizedModel* q_quant, std::span<const CompareText> texts,
                                             const PerplexityOptions& opts, const GpuOptions& gpu) {
  const std::int64_t total = compare_texts_windows(texts, opts);
  GpuRunner rf(fp, fp_quant, gpu), rq(q, q_quant, gpu);  // uploaded once for every text
  std::vector<CompareResult> out;
  std::int64_t before = 0;
  for (const CompareText& t : texts) {
    std::function<bool(std::int64_t)> progress;
    if (opts.progress) progress = [&](std::int64_t done) { return opts.progress(before + done, total); };
    out.push_back(compare_on(GpuRunnerAccess::impl(rf), GpuRunnerAccess::impl(rq), fp, q, t.ids, opts, progress));
    before += out.back().fp.windows;
  }
  return out;
}

}  // namespace rptq

#endif  // RPTQ_WITH_CUDA
