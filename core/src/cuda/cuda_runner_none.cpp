// The GPU runner of a CPU-only build (the CUDA kernels not compiled in): every entry point says so, as an
// InputError a front end shows like any other.
#ifndef RPTQ_WITH_CUDA
#include "cuda/cuda_runner.h"
#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/method/quantize.h"

namespace rptq {

namespace {
[[noreturn]] void no_cuda() {
  throw InputError("CUDA support was not compiled in (this build runs on the CPU only; choose the CPU device)");
}
}  // namespace

struct GpuRunner::Impl {
  GpuMemoryStats mem;
};
GpuRunner::GpuRunner(const Model&, const QuantizedModel*, const GpuOptions&) { no_cuda(); }
GpuRunner::~GpuRunner() = default;
Tensor GpuRunner::forward(std::span<const std::int32_t>, std::int64_t) { no_cuda(); }
PerplexityResult GpuRunner::perplexity(std::span<const std::int32_t>, const PerplexityOptions&) { no_cuda(); }
std::vector<LayerRanges> GpuRunner::calibration_ranges(std::span<const std::int32_t>, std::int64_t, std::int64_t,
                                                       std::int64_t, const LayerwiseCallback&) {
  no_cuda();
}
const GpuMemoryStats& GpuRunner::memory() const { no_cuda(); }
std::string GpuRunner::device_description() const { no_cuda(); }
void GpuRunner::set_tap_observer(GpuTapObserver) { no_cuda(); }
GenerateResult GpuRunner::generate(std::span<const std::int32_t>, const GenerateOptions&,
                                   const std::function<bool(std::int32_t)>&) {
  no_cuda();
}
void GpuRunner::start_cache(std::int64_t, std::shared_ptr<const KvQuantization>) { no_cuda(); }
Tensor GpuRunner::step(std::span<const std::int32_t>) { no_cuda(); }
std::int64_t GpuRunner::cache_length() const { no_cuda(); }
GenerateResult generate_gpu(const Model&, const QuantizedModel*, std::span<const std::int32_t>,
                            const GenerateOptions&, const std::function<bool(std::int32_t)>&, const GpuOptions&) {
  no_cuda();
}
ChannelStats calibrate_gpu(const Model&, const std::string&, std::span<const std::int32_t>, const std::string&,
                           const std::string&, const CalibrationSettings&, const LayerwiseCallback&,
                           const GpuOptions&, std::int64_t) {
  no_cuda();
}
CompareResult compare_models_gpu(const Model&, const QuantizedModel*, const Model&, const QuantizedModel*,
                                 std::span<const std::int32_t>, const PerplexityOptions&, const GpuOptions&) {
  no_cuda();
}
std::vector<CompareResult> compare_texts_gpu(const Model&, const QuantizedModel*, const Model&,
                                             const QuantizedModel*, std::span<const CompareText>,
                                             const PerplexityOptions&, const GpuOptions&) {
  no_cuda();
}
std::unique_ptr<QuantizedModel> quantize_gpu(std::unique_ptr<Model>, const ChannelStats&, const QuantConfig&,
                                             const QuantizeOptions&, const GpuOptions&, std::int64_t) {
  no_cuda();
}
std::unique_ptr<LayerPasses> make_gpu_layer_passes(QuantizedModel&, const ChannelStats&, int, const GpuOptions&,
                                                   std::int64_t) {
  no_cuda();
}

}  // namespace rptq

#endif  // !RPTQ_WITH_CUDA
