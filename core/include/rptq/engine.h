#pragma once
// The engine's operations with the device chosen once: each takes an Execution and runs on the CPU or on the GPU it
// names, with the same results (within float rounding) and the same errors. Front ends call these, never a
// device's own implementation.
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

namespace rptq {

// calibrate() of calibration.h.
ChannelStats calibrate(const Model& model, const std::string& model_dir, std::span<const std::int32_t> text_ids,
                       const std::string& data_path, const std::string& data_sha256,
                       const CalibrationSettings& settings, const LayerwiseCallback& progress, const Execution& exec);

// quantize() of quantize.h, its calibration passes where exec says (the clustering, reorder and GPTQ solves run on
// the host either way).
std::unique_ptr<QuantizedModel> quantize(std::unique_ptr<Model> model, const ChannelStats& stats,
                                         const QuantConfig& cfg, const QuantizeOptions& opts, const Execution& exec);

// perplexity() of perplexity.h; `quantized` (may be null) is the model's QuantizedModel, whose quantizers act at
// the taps.
PerplexityResult perplexity(const Model& model, const QuantizedModel* quantized, std::span<const std::int32_t> ids,
                            const PerplexityOptions& opts, const Execution& exec);

// compare_models() of compare.h; fp_quant / q_quant (may be null) are the models' QuantizedModels.
CompareResult compare_models(const Model& fp, const QuantizedModel* fp_quant, const Model& q,
                             const QuantizedModel* q_quant, std::span<const std::int32_t> ids,
                             const PerplexityOptions& opts, const Execution& exec);

// compare_models() on several texts (e.g. WikiText-2, PTB and C4, as the paper's tables): one CompareResult per
// text, in order, each equal to compare_models() on that text alone with the same options. Every text is checked
// first (compare_texts_windows: a text shorter than one window throws InputError naming it); on the GPU the models
// are uploaded once. opts.progress(windows done, windows total) counts over all texts, from the calling thread
// (a worker thread may call this); returning false cancels (throws Cancelled).
std::vector<CompareResult> compare_texts(const Model& fp, const QuantizedModel* fp_quant, const Model& q,
                                         const QuantizedModel* q_quant, std::span<const CompareText> texts,
                                         const PerplexityOptions& opts, const Execution& exec);

// generate() of generate.h; `quantized` as for perplexity.
GenerateResult generate(const Model& model, const QuantizedModel* quantized, std::span<const std::int32_t> prompt,
                        const GenerateOptions& opts, const std::function<bool(std::int32_t)>& on_token,
                        const Execution& exec);

}  // namespace rptq
