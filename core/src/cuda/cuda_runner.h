#pragma once
// Internal to core: front ends reach the GPU through rptq/engine.h (an Execution value chooses the device) and learn
// about GPUs from rptq/device.h. Tests and bench_cuda include this header to drive the runner directly.
//
// The forward pass on a CUDA GPU. The embeddings and the output head are uploaded once; the decoder layers are
// either resident (every layer uploaded once, at construction, and kept: what a model that fits the GPU gets) or
// streamed: only the decoder layer being computed has its weights on the device (each layer is copied through
// pinned host memory into one of two reused device slots, the next layer's copy overlapping the current layer's
// compute on a second stream). GpuOptions::layers chooses; GpuMemoryStats::layers says which was used. The
// activations of the whole batch stay on the device. The decoder layer is model.cpp's, written once for both devices
// (model/decoder_layer.h over the runner's CUDA op set, kernels/*.cuh), including the fused R1/R4 gathers,
// rope_index, quantize_softmax, GQA and sliding windows, and it is the same in
// both placements: the same weights (FP16 / BF16 rounded on the host when streamed, on the device when resident,
// both to nearest even) reach the same kernels, so the results are identical bit for bit.
//
// The taps run on the device too: QuantizedModel's activation quantizers (fake_quant, static and dynamic) and the
// calibration ranges (device_range_recorder.h: channel_range, the per-sample max / min and EMA of RangeRecorder /
// TapRanges, and the attention score ranges of attention_score_range, kernels/attention_scores.cuh).
// The runner's jobs live in their own files: placement (device_layers.h), the KV cache (device_kv_cache.h), the
// calibration ranges (device_range_recorder.h); cuda_runner.cpp keeps the op set, the taps, the layer-wise passes
// of quantization (ranges, Hessians) and the forward, perplexity, generation and comparison passes.
//
// Built with RPTQ_WITH_CUDA; without it every function here throws InputError("CUDA support was not compiled
// in ..."), so callers need no #ifdef. A missing GPU or driver is an InputError naming the reason; running out of
// device memory is an InputError suggesting a smaller batch or sequence length.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/eval/compare.h"
#include "rptq/execution.h"
#include "rptq/eval/generate.h"
#include "rptq/eval/perplexity.h"
#include "rptq/method/quantize.h"
#include "rptq/model/tap.h"
#include "rptq/base/tensor.h"

namespace rptq {

class Model;
class QuantizedModel;


// Device memory the runner allocated (its own buffers and the cuBLAS scratch it asked for), in bytes.
// Streaming: peak_bytes = outer_bytes + layer_slots x layer_slot_bytes + activation_bytes (+ kv_cache_bytes).
// Resident:  peak_bytes = outer_bytes + model_layer_bytes + max(upload_scratch_bytes, activation_bytes)
//            (+ kv_cache_bytes).
struct GpuMemoryStats {
  GpuLayerPlacement layers = GpuLayerPlacement::Stream;  // the placement used: Stream or Resident, never Auto
  std::size_t outer_bytes = 0;       // embeddings, positions, final norm, head, quantizers: uploaded once
  std::size_t layer_slot_bytes = 0;  // streaming: one slot, the largest decoder layer's weights as uploaded
  int layer_slots = 0;               // streaming: 2 with overlap_upload, else 1; resident: 0
  std::size_t model_layer_bytes = 0; // all decoder layers' weights as uploaded (held when resident)
  std::size_t upload_scratch_bytes = 0;  // resident FP16 / BF16: the float32 buffer (at most 16 MiB) weights pass
                                         // through to be rounded on the device; held during construction only
  std::size_t activation_bytes = 0;  // activations and scratch of the largest pass so far
  std::size_t kv_cache_bytes = 0;    // generation: the KV cache (start_cache), and its float32 scratch when packed
  std::size_t peak_bytes = 0;        // the most held at once
};

// One tap of one layer as the device holds it, copied to the host: [batch * seq, channels] before and after the
// tap's activation quantizer (equal when the tap is not quantized). The GPU twin of an ActivationHook that only
// looks; for tests and diagnosis (each call costs two device-to-host copies and a synchronisation).
using GpuTapObserver = std::function<void(int layer, Tap tap, const Tensor& before, const Tensor& after)>;

class GpuRunner {
 public:
  // Uploads the outer weights, and every decoder layer when they are to be resident (GpuOptions::layers).
  // `quantized` (may be null) supplies the activation quantizers of the taps; its model() must be `model`. Throws
  // InputError when CUDA is unavailable. The model's weights must not change while the runner exists.
  GpuRunner(const Model& model, const QuantizedModel* quantized = nullptr, const GpuOptions& opts = {});
  ~GpuRunner();
  GpuRunner(const GpuRunner&) = delete;
  GpuRunner& operator=(const GpuRunner&) = delete;

  // Logits [batch * seq, vocab] of tokens [batch, seq] (no KV cache), copied to the host.
  Tensor forward(std::span<const std::int32_t> tokens, std::int64_t batch);
  // perplexity() of perplexity.h on the device (NLL summed by the softmax kernel per window).
  PerplexityResult perplexity(std::span<const std::int32_t> ids, const PerplexityOptions& opts);
  // The ranges calibrate() records (per tap and the attention scores), of `samples` windows of `seqlen` tokens,
  // every window's hidden state kept on the device and `batch` windows per layer step.
  std::vector<LayerRanges> calibration_ranges(std::span<const std::int32_t> tokens, std::int64_t samples,
                                              std::int64_t seqlen, std::int64_t batch = 8,
                                              const LayerwiseCallback& progress = {});

  // generate() of generate.h on the device: the prefill and every decoding step run here, the KV cache stays in
  // device memory (float32, or GenerateOptions::kv_quant's packed codes, kernels/kv_pack.cuh), the runner's
  // quantizers act at the taps as the CPU's hook does, and the sampler runs on the host from the last row's logits
  // (one [vocab] copy per token). Greedy decoding picks the CPU's tokens wherever its logits' top two differ by
  // more than the GPU's rounding.
  GenerateResult generate(std::span<const std::int32_t> prompt, const GenerateOptions& opts,
                          const std::function<bool(std::int32_t)>& on_token = {});

  // Incremental decoding of one sequence, what generate() is made of: start_cache() makes an empty device KV cache
  // of `capacity` tokens (replacing any earlier one); step() runs `tokens` at the cache's next positions, appends
  // their keys and values, and returns the last token's logits [1, vocab] (Model::forward(tokens, 1, &cache, hook,
  // true) with a KvCache made with the same kv_quant). The cache is freed with the runner or by the next start.
  void start_cache(std::int64_t capacity, std::shared_ptr<const KvQuantization> kv_quant = nullptr);
  Tensor step(std::span<const std::int32_t> tokens);
  std::int64_t cache_length() const;

  const GpuMemoryStats& memory() const;
  // The GPU's description and the layer placement used, e.g. "... ; decoder layers resident".
  std::string device_description() const;

  // Called at every tap of the passes that follow, in the CPU hook's order (per layer: attn_input, q, k, v,
  // attn_output, ffn_input, ffn_hidden), once per layer step (a whole forward() batch is one step). Empty: none.
  void set_tap_observer(GpuTapObserver observer);

  struct Impl;  // defined in cuda_runner.cpp

 private:
  friend struct GpuRunnerAccess;  // the library's own GPU paths (cuda_runner.cpp): layer-wise passes, compare
  std::unique_ptr<Impl> impl_;
};

// calibrate() of calibration.h with the forward passes on the GPU: the same windows, the same ChannelStats.
ChannelStats calibrate_gpu(const Model& model, const std::string& model_dir, std::span<const std::int32_t> text_ids,
                           const std::string& data_path, const std::string& data_sha256,
                           const CalibrationSettings& settings, const LayerwiseCallback& progress = {},
                           const GpuOptions& opts = {}, std::int64_t batch = 8);

// quantize() of quantize.h with its passes over the calibration windows on the GPU: every window's hidden state
// stays on the device (samples x seqlen x hidden x 4 bytes) and `batch` windows run per step (one with dynamic
// activation ranges, which are per window as on the CPU); each layer's ranges (sequential), the Hessians of its
// linears' inputs (GPTQ: X^T X by cuBLAS, accumulated in double, kernels/hessian.cuh) and its quantized outputs
// are computed there, the layer re-uploaded (or re-staged) after its reorder and again once packed. The clustering,
// the reorder and the GPTQ solve itself run on the host. The same pipeline as quantize(), step for step; results
// differ from the CPU's only by float rounding (and what that moves: a k-means assignment or a rounding tie).
std::unique_ptr<QuantizedModel> quantize_gpu(std::unique_ptr<Model> model, const ChannelStats& stats,
                                             const QuantConfig& cfg, const QuantizeOptions& opts = {},
                                             const GpuOptions& gpu = {}, std::int64_t batch = 8);

// The GPU's passes (what quantize_gpu() uses), for callers of quantize_with.
std::unique_ptr<LayerPasses> make_gpu_layer_passes(QuantizedModel& q, const ChannelStats& stats, int passes_per_layer,
                                                   const GpuOptions& gpu = {}, std::int64_t batch = 8);

// generate() with the forward passes on the GPU (GpuRunner::generate of a runner made for this call).
// `quantized` (may be null) is the model's QuantizedModel, whose quantizers act at the taps.
GenerateResult generate_gpu(const Model& model, const QuantizedModel* quantized, std::span<const std::int32_t> prompt,
                            const GenerateOptions& opts, const std::function<bool(std::int32_t)>& on_token = {},
                            const GpuOptions& gpu = {});

// compare_models() with both models' forward passes on the GPU, one after the other (each places its layers as
// GpuOptions::layers says; with Auto the second model is resident only when it fits beside the first);
// the NLLs, KL divergence and top-1 agreement are summed on the device (kernels/compare_logits.cuh) and only the
// sums are copied to the host, not the logits.
CompareResult compare_models_gpu(const Model& fp, const QuantizedModel* fp_quant, const Model& q,
                                 const QuantizedModel* q_quant, std::span<const std::int32_t> ids,
                                 const PerplexityOptions& opts, const GpuOptions& gpu = {});

// compare_models_gpu over several texts with the two runners made once (the models uploaded once): one result per
// text, in order; opts.progress(windows done, windows total) counts over all texts (compare_texts_windows, which
// also checks every text first) and returning false cancels (throws Cancelled).
std::vector<CompareResult> compare_texts_gpu(const Model& fp, const QuantizedModel* fp_quant, const Model& q,
                                             const QuantizedModel* q_quant, std::span<const CompareText> texts,
                                             const PerplexityOptions& opts, const GpuOptions& gpu = {});

}  // namespace rptq
