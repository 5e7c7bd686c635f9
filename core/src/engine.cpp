#include "rptq/engine.h"

#include "cuda/cuda_runner.h"
#include "rptq/model/model.h"

namespace rptq {

namespace {
// The CPU path's hook of a quantized model: its quantizers, applied at the taps (the hook changes no quantizer;
// the GPU path reads the same QuantizedModel as const).
ActivationHook* hook_of(const QuantizedModel* q) { return q ? const_cast<QuantizedModel*>(q)->hook() : nullptr; }
}  // namespace

std::string Execution::describe() const {
  if (device == Device::CPU) {
    const int n = num_threads();
    return "CPU (" + std::to_string(n) + (n == 1 ? " thread)" : " threads)");
  }
  const DeviceInfo info = device_info();
  const GpuInfo* g = info.gpu(info.pick_gpu(gpu.device));
  return g ? g->describe() : std::string("CUDA");
}

ChannelStats calibrate(const Model& model, const std::string& model_dir, std::span<const std::int32_t> text_ids,
                       const std::string& data_path, const std::string& data_sha256,
                       const CalibrationSettings& settings, const LayerwiseCallback& progress, const Execution& exec) {
  if (exec.device == Device::CUDA)
    return calibrate_gpu(model, model_dir, text_ids, data_path, data_sha256, settings, progress, exec.gpu, exec.batch);
  return calibrate(model, model_dir, text_ids, data_path, data_sha256, settings, progress);
}

std::unique_ptr<QuantizedModel> quantize(std::unique_ptr<Model> model, const ChannelStats& stats,
                                         const QuantConfig& cfg, const QuantizeOptions& opts, const Execution& exec) {
  if (exec.device == Device::CUDA) return quantize_gpu(std::move(model), stats, cfg, opts, exec.gpu, exec.batch);
  return quantize(std::move(model), stats, cfg, opts);
}

PerplexityResult perplexity(const Model& model, const QuantizedModel* quantized, std::span<const std::int32_t> ids,
                            const PerplexityOptions& opts, const Execution& exec) {
  if (exec.device == Device::CUDA) {
    GpuRunner gpu(model, quantized, exec.gpu);
    return gpu.perplexity(ids, opts);
  }
  return perplexity(model, ids, opts, hook_of(quantized));
}

CompareResult compare_models(const Model& fp, const QuantizedModel* fp_quant, const Model& q,
                             const QuantizedModel* q_quant, std::span<const std::int32_t> ids,
                             const PerplexityOptions& opts, const Execution& exec) {
  if (exec.device == Device::CUDA) return compare_models_gpu(fp, fp_quant, q, q_quant, ids, opts, exec.gpu);
  return compare_models(fp, hook_of(fp_quant), q, hook_of(q_quant), ids, opts);
}

std::vector<CompareResult> compare_texts(const Model& fp, const QuantizedModel* fp_quant, const Model& q,
                                         const QuantizedModel* q_quant, std::span<const CompareText> texts,
                                         const PerplexityOptions& opts, const Execution& exec) {
  if (exec.device == Device::CUDA) return compare_texts_gpu(fp, fp_quant, q, q_quant, texts, opts, exec.gpu);
  const std::int64_t total = compare_texts_windows(texts, opts);
  std::vector<CompareResult> out;
  std::int64_t before = 0;  // windows of the texts already compared
  PerplexityOptions one = opts;
  if (opts.progress)
    one.progress = [&](std::int64_t done, std::int64_t) { return opts.progress(before + done, total); };
  for (const CompareText& t : texts) {
    out.push_back(compare_models(fp, hook_of(fp_quant), q, hook_of(q_quant), t.ids, one));
    before += out.back().fp.windows;
  }
  return out;
}

GenerateResult generate(const Model& model, const QuantizedModel* quantized, std::span<const std::int32_t> prompt,
                        const GenerateOptions& opts, const std::function<bool(std::int32_t)>& on_token,
                        const Execution& exec) {
  if (exec.device == Device::CUDA) return generate_gpu(model, quantized, prompt, opts, on_token, exec.gpu);
  return generate(model, prompt, opts, on_token, hook_of(quantized));
}

}  // namespace rptq
