// The decoder layers' placement on the device; a CPU-only build has no use for it.
#ifdef RPTQ_WITH_CUDA
#include "cuda/device_layers.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cuda_check.cuh"
#include "gemm.cuh"
#include "rptq/base/error.h"
#include "rptq/model/packed_weight.h"

namespace rptq {

namespace {

// Resident FP16 / BF16 layers: float32 weights pass through a device buffer of at most this many floats (16 MiB)
// on their way to being rounded.
constexpr std::size_t kConvertChunk = std::size_t{4} << 20;
// GpuLayerPlacement::Auto keeps this much of the device free for activations: max(2 GiB, total / 5).
constexpr std::size_t kResidentMarginMin = std::size_t{2} << 30;
constexpr std::size_t kResidentMarginDivisor = 5;

// Lays a layer's tensors out at 256-byte aligned offsets: sizes the slot (host == nullptr) or fills the host
// staging buffer, returning pointers into the device slot at `dev`. With `deferred`, the 16-bit weights are not
// rounded on the host: their place is left as it is and they are listed there, to be rounded on the device.
class Stager {
 public:
  Stager(std::uint8_t* host, std::uintptr_t dev, std::vector<DeferredRounding>* deferred = nullptr)
      : host_(host), dev_(dev), deferred_(deferred) {}
  template <typename T>
  const T* put(const T* src, std::size_t n) {
    if (n == 0) return nullptr;
    off_ = device_align_up(off_);
    if (host_) std::memcpy(host_ + off_, src, n * sizeof(T));
    const T* p = reinterpret_cast<const T*>(dev_ + off_);
    off_ += n * sizeof(T);
    return p;
  }
  // float32 rounded to a 16-bit type (round to nearest even), as gemm.cuh's convert() does.
  template <typename H>
  const H* put_rounded(const float* src, std::size_t n) {
    off_ = device_align_up(off_);
    if (deferred_) {
      deferred_->push_back({src, reinterpret_cast<void*>(dev_ + off_), n});
    } else if (host_) {
      H* dst = reinterpret_cast<H*>(host_ + off_);
      for (std::size_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<H, __half>)
          dst[i] = __float2half_rn(src[i]);
        else
          dst[i] = __float2bfloat16_rn(src[i]);
      }
    }
    const H* p = reinterpret_cast<const H*>(dev_ + off_);
    off_ += n * sizeof(H);
    return p;
  }
  std::size_t bytes() const { return device_align_up(off_); }

 private:
  std::uint8_t* host_;
  std::uintptr_t dev_;
  std::vector<DeferredRounding>* deferred_;
  std::size_t off_ = 0;
};

}  // namespace

DeviceLayers::~DeviceLayers() {
  for (cudaEvent_t e : copied)
    if (e) cudaEventDestroy(e);
  for (cudaEvent_t e : computed)
    if (e) cudaEventDestroy(e);
  for (std::size_t i = 0; i < staging.size(); ++i)
    if (staging_pinned[i] && staging[i]) cudaFreeHost(staging[i]);
}

void DeviceLayers::place() {
  std::size_t slot_bytes = 0, largest_rounding = 0;
  std::vector<std::size_t> layer_bytes;
  std::vector<DeferredRounding> rounding;
  for (int l = 0; l < cfg.layers; ++l) {
    rounding.clear();
    const std::size_t b = stage_layer(l, nullptr, 0, &rounding).second;
    for (const DeferredRounding& r : rounding) largest_rounding = std::max(largest_rounding, r.n);
    layer_bytes.push_back(b);
    slot_bytes = std::max(slot_bytes, b);
    mem.model_layer_bytes += b;
  }
  const std::size_t scratch_floats = std::min(largest_rounding, kConvertChunk);
  resident = choose_resident(mem.model_layer_bytes + scratch_floats * sizeof(float));
  if (resident) {
    upload_resident(layer_bytes, slot_bytes, scratch_floats);
    return;
  }
  mem.layers = GpuLayerPlacement::Stream;
  slots = opts.overlap_upload ? 2 : 1;
  mem.layer_slot_bytes = slot_bytes;
  mem.layer_slots = slots;
  make_slot_buffers(slot_bytes);
  for (int s = 0; s < slots; ++s) {
    cudaEvent_t e1 = nullptr, e2 = nullptr;
    RPTQ_CUDA_CHECK(cudaEventCreateWithFlags(&e1, cudaEventDisableTiming));
    copied.push_back(e1);
    RPTQ_CUDA_CHECK(cudaEventCreateWithFlags(&e2, cudaEventDisableTiming));
    computed.push_back(e2);
    slot_layer.push_back(-1);
    slot_view.emplace_back();
  }
  // The outer weights were copied with cudaMemcpy on the legacy stream, which the non-blocking compute stream
  // does not wait for.
  RPTQ_CUDA_CHECK(cudaDeviceSynchronize());
}

// The streamed layers' slots of `bytes` each, device memory and host staging (pinned when it can be had),
// replacing any earlier ones (nothing may be in flight).
void DeviceLayers::make_slot_buffers(std::size_t bytes) {
  for (std::size_t i = 0; i < slot.size(); ++i) {
    note_free(slot[i].bytes());
    if (staging_pinned[i] && staging[i]) cudaFreeHost(staging[i]);
  }
  slot.clear();
  staging.clear();
  staging_pinned.clear();
  staging_fallback.clear();
  for (int s = 0; s < slots; ++s) {
    slot.emplace_back(bytes);
    note_alloc(bytes);
    void* p = nullptr;
    const bool pinned = cudaMallocHost(&p, std::max<std::size_t>(bytes, 1)) == cudaSuccess;
    if (!pinned) {
      cudaGetLastError();
      staging_fallback.emplace_back(bytes);
      p = staging_fallback.back().data();
    }
    staging.push_back(static_cast<std::uint8_t*>(p));
    staging_pinned.push_back(pinned);
  }
  mem.layer_slot_bytes = bytes;
}

// Whether the decoder layers stay on the device: GpuOptions::layers, and for Auto whether `bytes` fit in the
// free memory less the activations' margin.
bool DeviceLayers::choose_resident(std::size_t bytes) const {
  if (opts.layers != GpuLayerPlacement::Auto) return opts.layers == GpuLayerPlacement::Resident;
  if (cfg.layers == 0) return false;
  const cuda::MemoryInfo info = cuda::memory_info(opts.device);
  const std::size_t margin = std::max(kResidentMarginMin, info.total_bytes / kResidentMarginDivisor);
  return info.free_bytes > margin && bytes <= info.free_bytes - margin;
}

// Every decoder layer into its own device buffer, once: the bytes that need no rounding from a host staging
// buffer, the FP16 / BF16 weights as float32 through a device buffer of at most kConvertChunk floats, rounded
// there by cuda::convert (round to nearest even: the bits __float2half_rn / __float2bfloat16_rn give the
// streamed slots on the host, test_cuda_gemm's ConversionsRoundToNearestEven).
void DeviceLayers::upload_resident(const std::vector<std::size_t>& layer_bytes, std::size_t largest,
                                   std::size_t scratch_floats) {
  mem.layers = GpuLayerPlacement::Resident;
  mem.layer_slot_bytes = 0;
  mem.layer_slots = 0;
  cuda::DeviceBuffer<float> scratch;
  if (scratch_floats > 0) {
    scratch = cuda::DeviceBuffer<float>(scratch_floats);
    note_alloc(scratch.bytes());
    mem.upload_scratch_bytes = scratch.bytes();
  }
  std::vector<std::uint8_t> host(largest);
  // The outer weights' cudaMemcpy ran on the legacy stream; the copies below run on the compute stream.
  RPTQ_CUDA_CHECK(cudaDeviceSynchronize());
  for (int l = 0; l < cfg.layers; ++l) {
    const std::size_t bytes = layer_bytes[static_cast<std::size_t>(l)];
    resident_layer.emplace_back(bytes);
    note_alloc(bytes);
    resident_view.push_back(upload_layer_to(l, resident_layer.back().data(), bytes, host.data(), scratch.data(),
                                            scratch_floats));
  }
  note_free(scratch.bytes());
}

// Uploads layer l into `dev` (`bytes` as stage_layer sized it) through the host buffer `host` (as large) and, for
// FP16 / BF16 weights, the device buffer `scratch` (scratch_floats floats) where they are rounded; returns the
// layer's view. Waits for the copies (`host` and `scratch` may be reused at once).
DevLayer DeviceLayers::upload_layer_to(int l, std::uint8_t* dev, std::size_t bytes, std::uint8_t* host,
                                       float* scratch, std::size_t scratch_floats) {
  std::vector<DeferredRounding> rounding;
  const DevLayer view = stage_layer(l, host, reinterpret_cast<std::uintptr_t>(dev), &rounding).first;
  RPTQ_CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, compute));
  for (const DeferredRounding& r : rounding) {
    for (std::size_t i0 = 0; i0 < r.n; i0 += scratch_floats) {
      const std::size_t n = std::min(scratch_floats, r.n - i0);
      RPTQ_CUDA_CHECK(cudaMemcpyAsync(scratch, r.src + i0, n * sizeof(float), cudaMemcpyHostToDevice, compute));
      const auto count = static_cast<std::int64_t>(n);
      if (opts.precision == GpuPrecision::FP16)
        cuda::convert(scratch, static_cast<__half*>(r.dst) + i0, count, compute);
      else
        cuda::convert(scratch, static_cast<__nv_bfloat16*>(r.dst) + i0, count, compute);
    }
  }
  RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));
  return view;
}

// Layer l's weights changed on the host (a quantization in progress: reordered, then packed): a resident layer
// is uploaded again, a streamed one staged afresh at its next use.
void DeviceLayers::restage_layer(int l) {
  if (!resident) {
    for (int& sl : slot_layer)
      if (sl == l) sl = -1;
    // A reorder adds the norms' gathers (and LLaMA's rope index): the layer may no longer fit a slot.
    const std::size_t bytes = stage_layer(l, nullptr, 0).second;
    if (bytes > mem.layer_slot_bytes) {
      RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));
      RPTQ_CUDA_CHECK(cudaStreamSynchronize(upload));
      make_slot_buffers(bytes);
      for (int& sl : slot_layer) sl = -1;
    }
    return;
  }
  std::vector<DeferredRounding> rounding;
  const std::size_t bytes = stage_layer(l, nullptr, 0, &rounding).second;
  std::size_t largest = 0;
  for (const DeferredRounding& r : rounding) largest = std::max(largest, r.n);
  const std::size_t scratch_floats = std::min(largest, kConvertChunk);
  RPTQ_CUDA_CHECK(cudaStreamSynchronize(compute));  // work in flight may still read the old layer
  cuda::DeviceBuffer<std::uint8_t>& slot_l = resident_layer[static_cast<std::size_t>(l)];
  note_free(slot_l.bytes());
  mem.model_layer_bytes -= std::min(mem.model_layer_bytes, slot_l.bytes());
  slot_l = cuda::DeviceBuffer<std::uint8_t>();
  slot_l = cuda::DeviceBuffer<std::uint8_t>(bytes);
  note_alloc(slot_l.bytes());
  mem.model_layer_bytes += slot_l.bytes();
  cuda::DeviceBuffer<float> scratch;
  if (scratch_floats > 0) {
    scratch = cuda::DeviceBuffer<float>(scratch_floats);
    note_alloc(scratch.bytes());
  }
  std::vector<std::uint8_t> host(bytes);
  resident_view[static_cast<std::size_t>(l)] =
      upload_layer_to(l, slot_l.data(), bytes, host.data(), scratch.data(), scratch_floats);
  note_free(scratch.bytes());
}

// Fills `host` (when not null) with layer l's weights as uploaded and returns their pointers in a slot at `dev`,
// and the slot bytes they need. With `deferred`, the FP16 / BF16 dense weights are listed there instead of
// rounded into `host`.
std::pair<DevLayer, std::size_t> DeviceLayers::stage_layer(int l, std::uint8_t* host, std::uintptr_t dev,
                                                           std::vector<DeferredRounding>* deferred) const {
  const DecoderLayerWeights& w = model.layer(l);
  Stager st(host, dev, deferred);
  DevLayer d;
  auto norm = [&](const NormWeights& n) {
    DevNorm dn;
    dn.gamma = st.put(n.gamma.empty() ? nullptr : n.gamma.data(), static_cast<std::size_t>(n.gamma.numel()));
    dn.beta = st.put(n.beta.empty() ? nullptr : n.beta.data(), static_cast<std::size_t>(n.beta.numel()));
    dn.gather = st.put(n.gather.data(), n.gather.size());
    return dn;
  };
  auto linear = [&](const LinearWeights& lw) {
    DevLinear dl;
    if (!lw.packed && lw.weight.empty()) return dl;
    dl.in = lw.in();
    dl.out = lw.out();
    dl.bias = st.put(lw.bias.empty() ? nullptr : lw.bias.data(), static_cast<std::size_t>(lw.bias.numel()));
    if (lw.packed) {
      const PackedWeight& p = *lw.packed;
      dl.packed = true;
      dl.pw.out = p.out;
      dl.pw.in = p.in;
      dl.pw.bits = p.bits;
      dl.pw.groups = p.groups();
      dl.pw.value_dtype = p.value_dtype == DType::F16    ? cuda::kValueF16
                          : p.value_dtype == DType::BF16 ? cuda::kValueBF16
                                                         : cuda::kValueF32;
      dl.pw.codes = st.put(p.codes.data(), p.codes.size());
      dl.pw.scales = st.put(p.scales.data(), p.scales.size());
      dl.pw.zero_points = st.put(p.zero_points.data(), p.zero_points.size());
      const std::vector<std::int32_t> b32(p.group_boundaries.begin(), p.group_boundaries.end());
      dl.pw.group_boundaries = st.put(b32.data(), b32.size());
    } else {
      const std::size_t n = static_cast<std::size_t>(lw.weight.numel());
      if (opts.precision == GpuPrecision::FP16)
        dl.w = st.put_rounded<__half>(lw.weight.data(), n);
      else if (opts.precision == GpuPrecision::BF16)
        dl.w = st.put_rounded<__nv_bfloat16>(lw.weight.data(), n);
      else
        dl.w = st.put(lw.weight.data(), n);
    }
    return dl;
  };
  d.attn_norm = norm(w.attn_norm);
  d.ffn_norm = norm(w.ffn_norm);
  d.q = linear(w.q);
  d.k = linear(w.k);
  d.v = linear(w.v);
  d.o = linear(w.o);
  d.fc1 = linear(w.fc1);
  d.fc2 = linear(w.fc2);
  d.gate = linear(w.gate);
  d.up = linear(w.up);
  d.down = linear(w.down);
  d.rope_index = st.put(w.rope_index.data(), w.rope_index.size());
  d.quantize_softmax = w.quantize_softmax;
  return {d, st.bytes()};
}

// Starts copying layer l into its slot on the upload stream (after the compute that last used the slot).
void DeviceLayers::upload_layer(int l) {
  if (resident) return;
  const int s = l % slots;
  if (slot_layer[static_cast<std::size_t>(s)] == l) return;  // still there (a model with <= slots layers)
  // The staging buffer may still be read by the previous copy out of it.
  RPTQ_CUDA_CHECK(cudaEventSynchronize(copied[static_cast<std::size_t>(s)]));
  auto [view, bytes] = stage_layer(l, staging[static_cast<std::size_t>(s)],
                                   reinterpret_cast<std::uintptr_t>(slot[static_cast<std::size_t>(s)].data()));
  RPTQ_CUDA_CHECK(cudaStreamWaitEvent(upload, computed[static_cast<std::size_t>(s)], 0));
  RPTQ_CUDA_CHECK(cudaMemcpyAsync(slot[static_cast<std::size_t>(s)].data(), staging[static_cast<std::size_t>(s)],
                                  bytes, cudaMemcpyHostToDevice, upload));
  RPTQ_CUDA_CHECK(cudaEventRecord(copied[static_cast<std::size_t>(s)], upload));
  if (!staging_pinned[static_cast<std::size_t>(s)]) RPTQ_CUDA_CHECK(cudaStreamSynchronize(upload));
  slot_layer[static_cast<std::size_t>(s)] = l;
  slot_view[static_cast<std::size_t>(s)] = view;
}
const DevLayer& DeviceLayers::begin_layer(int l) {
  if (resident) return resident_view[static_cast<std::size_t>(l)];
  const int s = l % slots;
  RPTQ_CUDA_CHECK(cudaStreamWaitEvent(compute, copied[static_cast<std::size_t>(s)], 0));
  return slot_view[static_cast<std::size_t>(s)];
}
void DeviceLayers::end_layer(int l) {
  if (!resident) RPTQ_CUDA_CHECK(cudaEventRecord(computed[static_cast<std::size_t>(l % slots)], compute));
}

}  // namespace rptq
#endif  // RPTQ_WITH_CUDA
