// The GPU forward path (core/src/cuda/cuda_runner.cpp) end to end against the CPU model: logits, perplexity,
// calibration ranges and a W4A4 quantized model, on the two shared models and several architecture variants, plus
// layer streaming's memory bound and resident layers against streamed ones. Skipped (with the reason) without a
// usable GPU; the no-GPU message is checked everywhere.
//
// Tolerances, and why:
// - FP32 logits: max |gpu - cpu| <= 2e-4 * (1 + max |cpu|). Both sides compute every op in float32 with the same
//   roundings except the GEMM and attention sums, whose order differs (cuBLAS / the tiled attention kernel against
//   OpenBLAS / oneDNN and the CPU loops): relative errors of ~sqrt(k) ulp per dot product of length k (k <= 1024
//   here, ~4e-6), carried through a few layers and amplified by LayerNorm's division by small variances. Measured
//   under the emulator: a few 1e-6 relative.
// - Perplexity: 1e-3 relative (the task's bound); measured ~1e-7.
// - Calibration ranges: |gpu - cpu| <= 1e-4 * (1 + |cpu|) per channel: the max / min and EMA are exact given the
//   same activations, so only the activations' own float differences (above) remain.
// - W4A4 logits, static and dynamic activation ranges, checked three ways:
//   1. At every tap of every layer the device quantizer's output is the CPU function (fake_quant_clusters, or
//      fake_quant_clusters_dynamic: one range per cluster and sequence, as the CPU's hook) of the device's own input,
//      bit for bit (GpuTapObserver).
//   2. Against a CPU pass that takes the GPU's side of every rounding tie (FollowGpuTies): a value that the two
//      put within float noise of a rounding boundary, of a tap's codes or of the 8-bit softmax grid. Every other
//      code must agree, the tap inputs within 1e-4 * (1 + max), the logits to the FP32 bound above. Measured:
//      relative Frobenius 1.2e-7 .. 2.0e-7, tap inputs within 7e-7, 0 .. 27 ties followed per pass (dynamic
//      ranges: up to ~200, when the two sides' ranges put a cluster's zero point one apart, a tie of min / scale
//      that moves every value of the cluster; the CPU then takes the GPU's value of each).
//   3. Static ranges: against the plain CPU, relative Frobenius <= 2e-2, room for a few ties that each move one
//      value by one code. Measured 1.2e-7 .. 5.2e-4 (the 5.2e-4: two ties, the first an 8-bit ffn_input value,
//      tiny-opt-16m tokens 200..247). Perplexity likewise: stories260k W4A4 (GPTQ, 16 x 128 calibration, 6
//      windows of 128) CPU 6.51835, emulated GPU 6.51140 (-1.1e-3; RTN weights: -1.8e-4), windows -3.6e-3 ..
//      +6.8e-4; following 0 .. 4 ties per window brings every window's NLL to within 7e-8.
//   Dynamic ranges against the plain CPU: no bound holds; printed only. This was the open bug "W4A4 dynamic: GPU
//   logits 5e-3 .. 0.15 from the CPU's"; it was no bug of the GPU path: the CPU's own result changes as much
//   under a 1-ulp change of its inputs. Dynamic ranges make the quantized model chaotic: a tie changes one code,
//   and once that change reaches a row holding a cluster's min or max, the next taps' ranges (taken over every
//   row of the batch) change, so every value of that cluster in every sequence moves, more values cross
//   boundaries, and so on through the layers. Ties are not rare: the attention output, sum_j p_j v_j with p_j
//   on the 8-bit grid k / 255 and v_j on V's dynamic grid (attn_output shares V's R3 clusters), lies on the
//   lattice scale_v / 255 * integer, so x / scale = 15 n / m for integers n, m is exactly k + 1/2 for several
//   values per layer, and the last bit of the P V sum (OpenBLAS's order against the kernel's) picks the code.
//   Measured under the emulator, GPU against the plain CPU: tiny-opt-16m 6.0e-3 .. 9.4e-3, stories260k 5.0e-3 ..
//   0.116, with 2 x 24 and 1 x 48 tokens alike (the same with EMU_ORDER=r / s and EMU_BLOCKS=1); the CPU against
//   itself with its tap inputs scaled by 1 + 1e-7 * noise (one ulp): more than 1e-5 at 19 of 19 offsets, 0.08 ..
//   0.12 where printed (stories260k, 2 x 24). What had been narrowed down was misleading: with only attn_output
//   quantized there is no lattice, and the 4e-3 of tokens 200..247 as 2 x 24 is one near-tie (x / scale
//   -1.4999988 on the CPU, -1.5000002 on the GPU, layer 1), which 1 x 48 and 2 x 12 happen not to have (1 x 48
//   diverges at other offsets); the conditioning check's 3e-7 perturbation was below the ~1e-6 differences
//   between the two sides' inputs.
// - FP16 / BF16 GEMM inputs: relative Frobenius error of the logits <= 1e-2 / 4e-2 (inputs rounded to 11 / 8
//   significant bits: 2^-11 / 2^-8 relative per product, growing through the layers).
// - Resident against streamed decoder layers (GpuLayerPlacement): none, bit for bit. The same weights (FP16 / BF16
//   rounded to nearest even on the device or on the host: the same bits, test_cuda_gemm) reach the same kernels in
//   the same order; only where the weights live differs. Logits, perplexity, calibration ranges, FP32 / FP16 /
//   BF16, W4A4 static and dynamic; the peak memory is checked to equal what GpuMemoryStats says it is made of.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "rptq/method/calibration.h"
#include "cuda/cuda_runner.h"
#include "rptq/device.h"
#include "rptq/base/error.h"
#include "rptq/model/model.h"
#include "rptq/eval/perplexity.h"
#include "rptq/method/quantize.h"
#include "rptq/tokenizer/tokenizer.h"
#include "cuda_test_support.h"

namespace {

using rptq::test::gpu_available;
using rptq::test::max_abs;
using rptq::test::max_diff;
using rptq::test::rel_fro;

// Without a GPU (or without CUDA compiled in) the runner says why, as an InputError.
TEST(CudaModelNoGpu, ConstructionThrowsInputErrorWithReason) {
  std::string reason;
  if (gpu_available(&reason)) GTEST_SKIP() << "a GPU is available";
  const auto dir = rptq::test::variant_dir("qwen2-tied");
  auto m = rptq::Model::load(dir);
  try {
    rptq::GpuRunner r(*m);
    FAIL() << "expected InputError";
  } catch (const rptq::InputError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("CUDA") != std::string::npos) << what;
  }
}

using Case = rptq::test::ModelCase;
using rptq::test::model_dir;

class CudaModelTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    const Case c = GetParam();
    dir = model_dir(c);
    fp = rptq::Model::load(dir);
    ids = rptq::test::case_ids(c, *fp, c.shared ? 400 : 200, 7);
  }
  std::filesystem::path dir;
  std::unique_ptr<rptq::Model> fp;
  std::vector<std::int32_t> ids;
};

TEST_P(CudaModelTest, LogitsMatchCpu) {
  const std::int64_t batch = 2, seq = 24;
  std::vector<std::int32_t> tokens(ids.begin(), ids.begin() + batch * seq);
  const rptq::Tensor ref = fp->forward(tokens, batch);
  rptq::GpuRunner r(*fp);
  const rptq::Tensor got = r.forward(tokens, batch);
  ASSERT_EQ(got.numel(), ref.numel());
  const double scale = 1.0 + max_abs(ref);
  EXPECT_LE(max_diff(got, ref), 2e-4 * scale) << "relative Frobenius " << rel_fro(got, ref);
  std::printf("[ %s ] FP32 logits: max |diff| %.3g (max |logit| %.3g), relative Frobenius %.3g\n", GetParam().name,
              max_diff(got, ref), scale - 1.0, rel_fro(got, ref));
}

TEST_P(CudaModelTest, ReducedPrecisionGemmsStayClose) {
  const std::int64_t seq = 24;
  std::vector<std::int32_t> tokens(ids.begin(), ids.begin() + seq);
  const rptq::Tensor ref = fp->forward(tokens, 1);
  for (auto [p, tol] : {std::pair{rptq::GpuPrecision::FP16, 1e-2}, std::pair{rptq::GpuPrecision::BF16, 4e-2}}) {
    rptq::GpuOptions o;
    o.precision = p;
    rptq::GpuRunner r(*fp, nullptr, o);
    const rptq::Tensor got = r.forward(tokens, 1);
    EXPECT_LE(rel_fro(got, ref), tol) << (p == rptq::GpuPrecision::FP16 ? "FP16" : "BF16");
    std::printf("[ %s ] %s GEMM inputs: relative Frobenius %.3g\n", GetParam().name,
                p == rptq::GpuPrecision::FP16 ? "FP16" : "BF16", rel_fro(got, ref));
  }
}

TEST_P(CudaModelTest, PerplexityWithin1e3) {
  rptq::PerplexityOptions po;
  po.seqlen = 32;
  po.max_windows = 3;
  po.batch = 2;  // windows 0-1 together, then window 2: a short last batch
  const rptq::PerplexityResult cpu = rptq::perplexity(*fp, ids, po);
  rptq::GpuRunner r(*fp);
  const rptq::PerplexityResult gpu = r.perplexity(ids, po);
  ASSERT_EQ(gpu.windows, cpu.windows);
  EXPECT_NEAR(gpu.ppl, cpu.ppl, 1e-3 * cpu.ppl);
  for (std::size_t w = 0; w < cpu.window_nll.size(); ++w)
    EXPECT_NEAR(gpu.window_nll[w], cpu.window_nll[w], 1e-3 * std::abs(cpu.window_nll[w])) << "window " << w;
  std::printf("[ %s ] perplexity CPU %.7f GPU %.7f (relative %.2g)\n", GetParam().name, cpu.ppl, gpu.ppl,
              std::abs(gpu.ppl / cpu.ppl - 1.0));
}

void expect_ranges_near(const rptq::TapRanges& got, const rptq::TapRanges& ref, const std::string& what) {
  ASSERT_EQ(got.samples, ref.samples) << what;
  ASSERT_EQ(got.max.size(), ref.max.size()) << what;
  auto near = [&](const std::vector<float>& a, const std::vector<float>& b, const char* stat) {
    for (std::size_t c = 0; c < b.size(); ++c)
      ASSERT_NEAR(a[c], b[c], 1e-4 * (1.0 + std::abs(b[c]))) << what << " " << stat << " channel " << c;
  };
  near(got.max, ref.max, "max");
  near(got.min, ref.min, "min");
  near(got.ema_max, ref.ema_max, "ema_max");
  near(got.ema_min, ref.ema_min, "ema_min");
}

TEST_P(CudaModelTest, CalibrationRangesMatchCalibrate) {
  rptq::CalibrationSettings cs;
  cs.samples = 3;
  cs.seqlen = 32;
  const rptq::ChannelStats cpu = rptq::calibrate(*fp, dir.string(), ids, "ids", "", cs);
  // Two windows per layer step: the EMA must still fold the samples in order, one at a time.
  const rptq::ChannelStats gpu = rptq::calibrate_gpu(*fp, dir.string(), ids, "ids", "", cs, {}, {}, /*batch=*/2);
  ASSERT_EQ(gpu.tokens, cpu.tokens);
  ASSERT_EQ(gpu.ranges.size(), cpu.ranges.size());
  for (std::size_t l = 0; l < cpu.ranges.size(); ++l) {
    for (rptq::Tap t : rptq::kAllTaps)
      expect_ranges_near(gpu.ranges[l].tap(t), cpu.ranges[l].tap(t),
                         "layer " + std::to_string(l) + " " + rptq::tap_name(t));
    expect_ranges_near(gpu.ranges[l].scores, cpu.ranges[l].scores, "layer " + std::to_string(l) + " scores");
  }
}

// Only one or two layers' weights are on the device at a time: the peak is the outer weights, the layer slots
// and the activations, and the slots hold less than the decoder layers all together when there are more layers
// than slots.
TEST_P(CudaModelTest, LayerStreamingBoundsPeakMemory) {
  for (bool overlap : {true, false}) {
    rptq::GpuOptions o;
    o.overlap_upload = overlap;
    o.layers = rptq::GpuLayerPlacement::Stream;
    rptq::GpuRunner r(*fp, nullptr, o);
    std::vector<std::int32_t> tokens(ids.begin(), ids.begin() + 48);
    const rptq::Tensor got = r.forward(tokens, 2);
    const rptq::GpuMemoryStats& m = r.memory();
    EXPECT_EQ(m.layers, rptq::GpuLayerPlacement::Stream);
    EXPECT_NE(r.device_description().find("streamed"), std::string::npos) << r.device_description();
    EXPECT_EQ(m.upload_scratch_bytes, 0u);
    EXPECT_EQ(m.layer_slots, overlap ? 2 : 1);
    const std::size_t slots = m.layer_slot_bytes * static_cast<std::size_t>(m.layer_slots);
    EXPECT_LE(m.peak_bytes, m.outer_bytes + slots + m.activation_bytes);
    EXPECT_GE(m.peak_bytes, m.outer_bytes + slots);
    if (fp->config().layers > m.layer_slots) {
      EXPECT_LT(slots, m.model_layer_bytes);
    }
    // The slot is the largest layer: layers of one shape give exactly model bytes / layers.
    EXPECT_EQ(m.layer_slot_bytes * static_cast<std::size_t>(fp->config().layers), m.model_layer_bytes);
    std::printf("[ %s ] overlap %d: peak %zu = outer %zu + %d x layer %zu + activations %zu (all layers %zu)\n",
                GetParam().name, overlap, m.peak_bytes, m.outer_bytes, m.layer_slots, m.layer_slot_bytes,
                m.activation_bytes, m.model_layer_bytes);
  }
}

bool same_bits(const rptq::Tensor& a, const rptq::Tensor& b) {
  return a.numel() == b.numel() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * sizeof(float)) == 0;
}
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
void expect_same_ranges(const std::vector<rptq::LayerRanges>& got, const std::vector<rptq::LayerRanges>& ref,
                        const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  auto same = [&](const rptq::TapRanges& a, const rptq::TapRanges& b, const std::string& name) {
    EXPECT_EQ(a.samples, b.samples) << name;
    EXPECT_TRUE(same_bits(a.max, b.max) && same_bits(a.min, b.min) && same_bits(a.ema_max, b.ema_max) &&
                same_bits(a.ema_min, b.ema_min))
        << name;
  };
  for (std::size_t l = 0; l < ref.size(); ++l) {
    for (rptq::Tap t : rptq::kAllTaps)
      same(got[l].tap(t), ref[l].tap(t), what + " layer " + std::to_string(l) + " " + rptq::tap_name(t));
    same(got[l].scores, ref[l].scores, what + " layer " + std::to_string(l) + " scores");
  }
}

// Resident layers (uploaded once, FP16 / BF16 rounded on the device) against streamed ones (rounded on the host
// per forward): the same weights reach the same kernels, so logits, perplexity and calibration ranges are the same
// bits. Resident memory is the outer weights, every layer and the larger of the upload's conversion buffer and the
// activations, exactly as GpuMemoryStats reports it.
void expect_resident_matches_streaming(const rptq::Model& model, const rptq::QuantizedModel* q,
                                       const std::vector<std::int32_t>& ids, const std::string& name,
                                       const std::vector<rptq::GpuPrecision>& precisions) {
  const std::vector<std::int32_t> tokens(ids.begin(), ids.begin() + 48);
  rptq::PerplexityOptions po;
  po.seqlen = 32;
  po.max_windows = 3;
  po.batch = 2;
  for (rptq::GpuPrecision p : precisions) {
    const std::string what = name + (p == rptq::GpuPrecision::FP16   ? " FP16"
                                     : p == rptq::GpuPrecision::BF16 ? " BF16"
                                                                     : " FP32");
    rptq::GpuOptions so, ro;
    so.precision = ro.precision = p;
    so.layers = rptq::GpuLayerPlacement::Stream;
    ro.layers = rptq::GpuLayerPlacement::Resident;
    rptq::GpuRunner streamed(model, q, so), resident(model, q, ro);
    const rptq::GpuMemoryStats& m = resident.memory();
    EXPECT_EQ(m.layers, rptq::GpuLayerPlacement::Resident) << what;
    EXPECT_EQ(m.layer_slots, 0) << what;
    EXPECT_EQ(m.layer_slot_bytes, 0u) << what;
    EXPECT_NE(resident.device_description().find("resident"), std::string::npos) << resident.device_description();
    // The conversion buffer: FP16 / BF16 only, at most 16 MiB.
    if (p == rptq::GpuPrecision::FP32 || q) {
      EXPECT_EQ(m.upload_scratch_bytes, 0u) << what;  // packed linears are dequantized per GEMM, never converted
    } else {
      EXPECT_GT(m.upload_scratch_bytes, 0u) << what;
      EXPECT_LE(m.upload_scratch_bytes, std::size_t{16} << 20) << what;
    }
    EXPECT_EQ(m.peak_bytes, m.outer_bytes + m.model_layer_bytes + m.upload_scratch_bytes)
        << what << ": after construction";
    // The layers as uploaded take the same bytes in both placements.
    EXPECT_EQ(m.model_layer_bytes, streamed.memory().model_layer_bytes) << what;
    EXPECT_EQ(m.outer_bytes, streamed.memory().outer_bytes) << what;

    EXPECT_TRUE(same_bits(resident.forward(tokens, 2), streamed.forward(tokens, 2))) << what << " logits";
    // A second forward of the resident runner: the layers were not changed by the first.
    EXPECT_TRUE(same_bits(resident.forward(tokens, 1), streamed.forward(tokens, 1))) << what << " logits, batch 1";
    const rptq::PerplexityResult ps = streamed.perplexity(ids, po), pr = resident.perplexity(ids, po);
    ASSERT_EQ(pr.window_nll.size(), ps.window_nll.size()) << what;
    for (std::size_t w = 0; w < ps.window_nll.size(); ++w)
      EXPECT_EQ(pr.window_nll[w], ps.window_nll[w]) << what << " window " << w;
    EXPECT_EQ(pr.ppl, ps.ppl) << what;
    // Calibration: 3 windows, 2 per layer step.
    const std::vector<std::int32_t> calib(ids.begin(), ids.begin() + 3 * 32);
    expect_same_ranges(resident.calibration_ranges(calib, 3, 32, 2), streamed.calibration_ranges(calib, 3, 32, 2),
                       what);
    EXPECT_EQ(m.peak_bytes, m.outer_bytes + m.model_layer_bytes + std::max(m.upload_scratch_bytes, m.activation_bytes))
        << what;
    const rptq::GpuMemoryStats& sm = streamed.memory();
    EXPECT_EQ(sm.peak_bytes, sm.outer_bytes + sm.layer_slot_bytes * 2 + sm.activation_bytes) << what;
    std::printf("[ %s ] resident = streamed, bit for bit; resident peak %zu = outer %zu + layers %zu + max(upload "
                "scratch %zu, activations %zu); streamed peak %zu\n",
                what.c_str(), m.peak_bytes, m.outer_bytes, m.model_layer_bytes, m.upload_scratch_bytes,
                m.activation_bytes, sm.peak_bytes);
  }
}

TEST_P(CudaModelTest, ResidentLayersMatchStreamingBitForBit) {
  expect_resident_matches_streaming(*fp, nullptr, ids, GetParam().name,
                                    {rptq::GpuPrecision::FP32, rptq::GpuPrecision::FP16, rptq::GpuPrecision::BF16});
  // Auto picks one of the two (resident when the layers fit beside a margin for the activations) and says which.
  rptq::GpuRunner a(*fp);
  EXPECT_NE(a.memory().layers, rptq::GpuLayerPlacement::Auto);
  std::printf("[ %s ] auto placement: %s (%s)\n", GetParam().name, rptq::gpu_layer_placement_name(a.memory().layers),
              a.device_description().c_str());
}

INSTANTIATE_TEST_SUITE_P(Models, CudaModelTest, ::testing::ValuesIn(rptq::test::gpu_model_cases()),
                         rptq::test::model_case_name);

// A W4A4 model (packed 4-bit linears through packed_gemm, static per-cluster activation quantizers, 8-bit
// softmax) and its dynamic-range twin: GPU logits against the CPU's quantized forward pass (see the header comment
// for the three checks).
class CudaQuantizedTest : public ::testing::TestWithParam<const char*> {};

struct W4A4Setup {
  std::unique_ptr<rptq::Model> fp;
  std::unique_ptr<rptq::QuantizedModel> q;
  std::vector<std::int32_t> ids;
};

W4A4Setup w4a4(const char* name, bool dynamic) {
  const auto dir = rptq::test::shared_model(name);
  W4A4Setup s;
  s.fp = rptq::Model::load(dir);
  auto tok = rptq::Tokenizer::load(dir);
  s.ids = tok->encode(rptq::test::read_file(rptq::test::shared_file("data/stories.txt")), true);
  rptq::CalibrationSettings cs;
  cs.samples = 2;
  cs.seqlen = 32;
  const rptq::ChannelStats stats = rptq::calibrate(*s.fp, dir.string(), s.ids, "stories.txt", "", cs);
  rptq::QuantConfig qc = rptq::QuantConfig::preset("W4A4");
  qc.weight_method = rptq::WeightMethod::RTN;
  if (dynamic) qc.range_mode = rptq::RangeMode::Dynamic;
  rptq::QuantizeOptions qo;
  qo.sequential = false;
  s.q = rptq::quantize(rptq::Model::load(dir), stats, qc, qo);
  return s;
}

// One tap of the GPU pass, as GpuTapObserver saw it.
struct GpuTap {
  rptq::Tensor before, after;
};
using GpuTaps = std::map<std::pair<int, rptq::Tap>, GpuTap>;

// The CPU's quantized forward pass (QuantizedModel::hook()), except where the CPU and the GPU put a value on the
// two sides of a rounding boundary: there the CPU takes the GPU's side. Two kinds of boundary exist:
// - a tap quantizer's code: the CPU takes the GPU's code (dequantized with the CPU's own scale);
// - an 8-bit softmax probability (inside the attention, before the attn_output tap): when one (row, head) of the
//   attention output differs from the GPU's by exactly one V row / 255 and that probability p * 255, recomputed
//   from the GPU's Q and K, sits on a rounding boundary, the CPU adds that V row / 255.
// Every other value keeps the CPU's own result. The hook records how far the CPU's tap inputs are from the GPU's
// and fails on any difference it cannot explain as a tie (a wrong range, layout, offset or reorder).
class FollowGpuTies : public rptq::ActivationHook {
 public:
  // seq: tokens per sequence of the batch.
  FollowGpuTies(rptq::QuantizedModel& q, const GpuTaps& gpu, std::int64_t seq)
      : q_(q), cfg_(q.model().config()), gpu_(gpu), seq_(seq) {}
  void on_activation(int layer, rptq::Tap tap, const rptq::ActivationView& act) override {
    const rptq::TapQuantizer& tq = q_.layer(layer).taps[static_cast<std::size_t>(tap)];
    if (!tq.active()) return q_.hook()->on_activation(layer, tap, act);
    const GpuTap* gt = gpu_tap(layer, tap, act.rows, act.cols);
    if (!gt) return;
    const float* g = gt->before.data();
    if (tap == rptq::Tap::AttnOutput) follow_probability_ties(layer, act, g);
    const std::int64_t n = act.rows * act.cols;
    std::vector<float> c(static_cast<std::size_t>(n));
    double diff = 0, scale = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const float v = act.row(i / act.cols)[i % act.cols];
      c[static_cast<std::size_t>(i)] = v;
      diff = std::max(diff, std::abs(static_cast<double>(g[i]) - v));
      scale = std::max(scale, std::abs(static_cast<double>(v)));
    }
    max_input_diff = std::max(max_input_diff, diff / (1.0 + scale));
    q_.hook()->on_activation(layer, tap, act);  // the CPU's own quantizer, as in the plain reference
    // The quantizers of each row's sequence (dynamic: each sequence's own ranges, as the hook computes them).
    const std::int64_t seq = act.seq > 0 ? act.seq : act.rows;
    std::vector<std::vector<rptq::QuantParams>> pcs, pgs;
    for (std::int64_t r0 = 0; r0 < act.rows; r0 += seq) {
      pcs.push_back(tq.params);
      pgs.push_back(tq.params);
      if (!tq.dynamic) continue;
      const std::int64_t m = std::min(seq, act.rows - r0);
      std::vector<float> tmp(c.begin() + r0 * act.cols, c.begin() + (r0 + m) * act.cols);
      pcs.back() = rptq::fake_quant_clusters_dynamic(tmp.data(), m, act.cols, act.cols, tq.boundaries, tq.bits, tq.grid);
      tmp.assign(g + r0 * act.cols, g + (r0 + m) * act.cols);
      pgs.back() = rptq::fake_quant_clusters_dynamic(tmp.data(), m, act.cols, act.cols, tq.boundaries, tq.bits, tq.grid);
    }
    for (std::size_t k = 0; k + 1 < tq.boundaries.size(); ++k) {
      for (std::int64_t r = 0; r < act.rows; ++r) {
        const std::vector<rptq::QuantParams>& pc = pcs[static_cast<std::size_t>(r / seq)];
        const std::vector<rptq::QuantParams>& pg = pgs[static_cast<std::size_t>(r / seq)];
        for (std::int64_t j = tq.boundaries[k]; j < tq.boundaries[k + 1]; ++j) {
          const std::size_t i = static_cast<std::size_t>(r * act.cols + j);
          const std::int32_t qc = rptq::quantize(c[i], pc[k]);
          const std::int32_t qg = rptq::quantize(g[i], pg[k]);
          // The same code on the same grid. (Dynamic ranges: the two sides' ranges may put a cluster's zero point
          // one apart, a tie of min / scale; then even equal codes, e.g. clamped ones, stand for other values.)
          if (qc == qg && pc[k].zero_point == pg[k].zero_point) continue;
          const double uc = static_cast<double>(c[i]) / pc[k].scale;
          const double ug = static_cast<double>(g[i]) / pg[k].scale;
          if (std::abs(qc - qg) <= 1 && std::abs(uc - ug) <= kCodeTie * (1.0 + std::abs(uc))) {
            act.row(r)[j] = rptq::dequantize(qg, pg[k]);  // the GPU's value (dynamic: its own quantizer)
            ++code_ties;
            if (first_tie.empty())
              first_tie = "layer " + std::to_string(layer) + " " + rptq::tap_name(tap) + " row " + std::to_string(r) +
                          " channel " + std::to_string(j) + ": x / scale CPU " + std::to_string(uc) + ", GPU " +
                          std::to_string(ug);
          } else {
            ++unexplained;
            ADD_FAILURE() << "layer " << layer << " " << rptq::tap_name(tap) << " row " << r << " channel " << j
                          << ": code " << qc << " on the CPU, " << qg << " on the GPU (x / scale " << uc << " and "
                          << ug << ")";
          }
        }
      }
    }
    if (tap == rptq::Tap::V) cpu_v_.assign(act.data, act.data + n);  // quantized: what the attention reads
  }

  // A code tie: both sides within this distance of each other in code units, relative to 1 + |x / scale|: ~100
  // times the CPU-GPU input differences measured under the emulator (~1e-6), far below what a wrong range (a scale
  // off by a code's worth) gives.
  static constexpr double kCodeTie = 1e-4;
  // A probability tie: p * 255 within this distance of a rounding boundary (x.5), recomputed in double.
  static constexpr double kLevelTie = 1e-3;
  double max_input_diff = 0;  // max over taps of max |gpu - cpu| / (1 + max |cpu|), before the quantizer
  int code_ties = 0, probability_ties = 0, unexplained = 0;
  std::string first_tie;

 private:
  const GpuTap* gpu_tap(int layer, rptq::Tap tap, std::int64_t rows, std::int64_t cols) {
    const auto it = gpu_.find({layer, tap});
    if (it == gpu_.end() || it->second.before.dim(0) != rows || it->second.before.dim(1) != cols) {
      ADD_FAILURE() << "layer " << layer << " tap " << rptq::tap_name(tap) << ": no GPU tap of this shape";
      ++unexplained;
      return nullptr;
    }
    return &it->second;
  }

  // Attention output rows that differ from the GPU's by one probability level of one key.
  void follow_probability_ties(int layer, const rptq::ActivationView& act, const float* g) {
    const std::int64_t hd = cfg_.head_dim, kvd = cfg_.kv_dim(), group = cfg_.heads / cfg_.kv_heads;
    const GpuTap* q = gpu_tap(layer, rptq::Tap::Q, act.rows, cfg_.q_dim());
    const GpuTap* k = gpu_tap(layer, rptq::Tap::K, act.rows, kvd);
    if (!q || !k || cfg_.sliding_window != 0 || static_cast<std::int64_t>(cpu_v_.size()) != act.rows * kvd) {
      ++unexplained;
      ADD_FAILURE() << "layer " << layer << ": cannot check the attention (no Q / K / V, or a sliding window)";
      return;
    }
    const double score_scale = cfg_.arch == rptq::Architecture::OPT ? 1.0 : 1.0 / std::sqrt(static_cast<double>(hd));
    double big = 0;
    for (std::int64_t i = 0; i < act.rows * act.cols; ++i) big = std::max(big, std::abs(static_cast<double>(g[i])));
    const double noise = 1e-5 * (1.0 + big);  // ~50 times the measured input differences
    for (std::int64_t r = 0; r < act.rows; ++r) {
      const std::int64_t first = r - r % seq_;  // keys first .. r: this sequence up to the query
      for (std::int64_t h = 0; h < cfg_.heads; ++h) {
        float* out = act.row(r) + h * hd;
        const float* want = g + r * act.cols + h * hd;
        double d = 0;
        for (std::int64_t e = 0; e < hd; ++e) d = std::max(d, std::abs(static_cast<double>(want[e]) - out[e]));
        if (d <= noise) continue;
        // The key whose V row / 255 (either sign) explains the difference best.
        const std::int64_t vh = (h / group) * hd;
        std::int64_t best = -1;
        int sign = 0;
        double best_residual = 1e30;
        for (std::int64_t j = first; j <= r; ++j)
          for (int sg : {-1, 1}) {
            double res = 0;
            for (std::int64_t e = 0; e < hd; ++e) {
              const double dv = sg * static_cast<double>(cpu_v_[static_cast<std::size_t>(j * kvd + vh + e)]) / 255.0;
              res = std::max(res, std::abs(static_cast<double>(want[e]) - out[e] - dv));
            }
            if (res < best_residual) {
              best_residual = res;
              best = j;
              sign = sg;
            }
          }
        // That key's probability level, from the GPU's Q and K.
        std::vector<double> sc;
        double m = -1e300;
        for (std::int64_t j = first; j <= r; ++j) {
          double dot = 0;
          for (std::int64_t e = 0; e < hd; ++e)
            dot += static_cast<double>(q->after.data()[r * cfg_.q_dim() + h * hd + e]) *
                   k->after.data()[j * kvd + vh + e];
          sc.push_back(dot * score_scale);
          m = std::max(m, sc.back());
        }
        double sum = 0;
        for (double& v : sc) sum += (v = std::exp(v - m));
        const double level = 255.0 * sc[static_cast<std::size_t>(best - first)] / sum;
        const double from_half = std::abs(level - std::floor(level) - 0.5);
        if (best_residual <= noise && from_half <= kLevelTie) {
          for (std::int64_t e = 0; e < hd; ++e)
            out[e] += static_cast<float>(sign * cpu_v_[static_cast<std::size_t>(best * kvd + vh + e)] / 255.0);
          ++probability_ties;
          if (first_tie.empty())
            first_tie = "layer " + std::to_string(layer) + " softmax row " + std::to_string(r) + " head " +
                        std::to_string(h) + " key " + std::to_string(best - first) + ": p * 255 = " +
                        std::to_string(level);
        } else {
          ++unexplained;
          ADD_FAILURE() << "layer " << layer << " attention row " << r << " head " << h << ": differs by " << d
                        << "; the nearest one-level probability change (key " << best - first << ", p * 255 = "
                        << level << ") leaves " << best_residual;
        }
      }
    }
  }

  rptq::QuantizedModel& q_;
  const rptq::ModelConfig& cfg_;
  const GpuTaps& gpu_;
  std::int64_t seq_;
  std::vector<float> cpu_v_;
};

// W4A4 with static or dynamic ranges, `batch` sequences of 48 / batch tokens at three offsets of the text.
void check_w4a4(const char* name, bool dynamic, std::int64_t batch) {
  SKIP_WITHOUT_GPU();
  W4A4Setup s = w4a4(name, dynamic);
  const char* mode = dynamic ? "dynamic" : "static";
  for (int off : {100, 200, 300}) {
    std::vector<std::int32_t> tokens(s.ids.begin() + off, s.ids.begin() + off + 48);
    rptq::GpuRunner r(s.q->model(), s.q.get());
    GpuTaps taps;
    r.set_tap_observer([&](int layer, rptq::Tap t, const rptq::Tensor& before, const rptq::Tensor& after) {
      taps[{layer, t}] = GpuTap{before, after};
    });
    const rptq::Tensor got = r.forward(tokens, batch);
    // At every tap the device quantizer is the CPU function of the device's own input, bit for bit (dynamic: one
    // range per cluster and sequence, in the reordered layout, whatever the batch).
    int quantized = 0;
    for (const auto& [key, t] : taps) {
      const rptq::TapQuantizer& tq = s.q->layer(key.first).taps[static_cast<std::size_t>(key.second)];
      if (!tq.active()) continue;
      ASSERT_EQ(tq.dynamic, dynamic);
      ASSERT_EQ(t.before.dim(0), static_cast<std::int64_t>(tokens.size()));
      ++quantized;
      rptq::Tensor want = t.before;
      if (dynamic) {
        const std::int64_t seq = want.dim(0) / batch;
        for (std::int64_t r0 = 0; r0 < want.dim(0); r0 += seq)
          rptq::fake_quant_clusters_dynamic(want.data() + r0 * want.dim(1), seq, want.dim(1), want.dim(1),
                                            tq.boundaries, tq.bits, tq.grid);
      } else
        rptq::fake_quant_clusters(want.data(), want.dim(0), want.dim(1), want.dim(1), tq.boundaries, tq.params);
      std::int64_t differ = 0;
      for (std::int64_t i = 0; i < want.numel(); ++i) differ += want.data()[i] != t.after.data()[i];
      EXPECT_EQ(differ, 0) << "layer " << key.first << " " << rptq::tap_name(key.second);
    }
    int per_layer = 0;
    for (rptq::Tap t : rptq::kAllTaps) per_layer += s.q->config().quantizes(t);
    EXPECT_EQ(quantized, per_layer * s.q->layers());
    // Against the CPU that takes the GPU's side of every rounding tie: FP32 parity (the FP32 logits bound).
    FollowGpuTies follow(*s.q, taps, static_cast<std::int64_t>(tokens.size()) / batch);
    const rptq::Tensor ref = s.q->model().forward(tokens, batch, nullptr, &follow);
    EXPECT_EQ(follow.unexplained, 0);
    EXPECT_LE(follow.max_input_diff, 1e-4);
    EXPECT_LE(max_diff(got, ref), 2e-4 * (1.0 + max_abs(ref))) << mode;
    // The quantized model differs from the FP one by much more than the GPU differs from the CPU.
    const rptq::Tensor fpl = s.fp->forward(tokens, batch);
    EXPECT_GT(rel_fro(fpl, ref), 10 * rel_fro(got, ref));
    // Against the plain CPU, which breaks the ties its own way. Static: a tie moves one value by one code, a small
    // local change. Dynamic: no bound holds (see the header comment); printed only.
    const rptq::Tensor plain = s.q->model().forward(tokens, batch, nullptr, s.q->hook());
    if (!dynamic) {
      EXPECT_LE(rel_fro(got, plain), 2e-2);
    }
    std::printf("[ %s ] W4A4 %s, %lld x %lld tokens at %d: relative Frobenius %.3g (max |diff| %.3g) against the "
                "CPU following %d code and %d probability ties (first: %s; tap inputs within %.2g); %.3g against the "
                "plain CPU; quantized against FP %.3g\n",
                name, mode, static_cast<long long>(batch), static_cast<long long>(48 / batch), off, rel_fro(got, ref),
                max_diff(got, ref), follow.code_ties, follow.probability_ties,
                follow.first_tie.empty() ? "none" : follow.first_tie.c_str(), follow.max_input_diff,
                rel_fro(got, plain), rel_fro(fpl, ref));
  }
}

TEST_P(CudaQuantizedTest, W4A4LogitsMatchCpuQuantizedModel) { check_w4a4(GetParam(), false, 2); }
// Several sequences per batch and one: each sequence has its own dynamic ranges.
TEST_P(CudaQuantizedTest, W4A4DynamicLogitsMatchCpuQuantizedModel) {
  check_w4a4(GetParam(), true, 2);
  check_w4a4(GetParam(), true, 1);
}

// Packed 4-bit linears, static and dynamic activation quantizers (whose bad-channel checks are read once per pass
// or per calibrated layer, several windows per step), resident against streamed.
TEST_P(CudaQuantizedTest, W4A4ResidentLayersMatchStreamingBitForBit) {
  SKIP_WITHOUT_GPU();
  for (bool dynamic : {false, true}) {
    W4A4Setup s = w4a4(GetParam(), dynamic);
    const std::vector<std::int32_t> ids(s.ids.begin() + 100, s.ids.end());
    std::vector<rptq::GpuPrecision> precisions = {rptq::GpuPrecision::FP32};
    if (!dynamic) precisions.push_back(rptq::GpuPrecision::FP16);
    expect_resident_matches_streaming(s.q->model(), s.q.get(), ids,
                                      std::string(GetParam()) + (dynamic ? " W4A4 dynamic" : " W4A4 static"),
                                      precisions);
  }
}

// A dynamic tap whose range is not finite fails the pass with the tap's InputError. Without an observer the
// runner reads the taps' records once per pass (calibration: once per layer) instead of waiting at each tap; the
// error must be the one the waiting check (taken with an observer) gives, in forward, perplexity and calibration,
// resident and streamed.
TEST(CudaQuantizedErrors, DynamicNonFiniteRangeFailsThePassWithTheTapsError) {
  SKIP_WITHOUT_GPU();
  W4A4Setup s = w4a4("tiny-opt-16m", true);
  ASSERT_TRUE(s.q->config().quantizes(rptq::Tap::Q));
  s.q->model().layer(1).q.bias.data()[5] = INFINITY;  // one channel of layer 1's Q tap is +inf in every row
  const std::vector<std::int32_t> tokens(s.ids.begin() + 100, s.ids.begin() + 148);
  auto error_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const rptq::InputError& e) {
      return e.what();
    }
    return "no error";
  };
  for (rptq::GpuLayerPlacement placement : {rptq::GpuLayerPlacement::Resident, rptq::GpuLayerPlacement::Stream}) {
    rptq::GpuOptions o;
    o.layers = placement;
    rptq::GpuRunner watched(s.q->model(), s.q.get(), o);
    watched.set_tap_observer([](int, rptq::Tap, const rptq::Tensor&, const rptq::Tensor&) {});
    const std::string want = error_of([&] { watched.forward(tokens, 2); });
    EXPECT_NE(want.find("layer 1 tap q: channel"), std::string::npos) << want;
    EXPECT_NE(want.find("has no finite range"), std::string::npos) << want;
    rptq::GpuRunner r(s.q->model(), s.q.get(), o);
    EXPECT_EQ(error_of([&] { r.forward(tokens, 2); }), want);
    rptq::PerplexityOptions po;
    po.seqlen = 16;
    po.max_windows = 3;
    po.batch = 3;
    EXPECT_EQ(error_of([&] { r.perplexity(tokens, po); }), want);
    EXPECT_EQ(error_of([&] { r.calibration_ranges(tokens, 3, 16, 2); }), want);
    // The runner stays usable: the next pass fails the same way.
    EXPECT_EQ(error_of([&] { r.forward(tokens, 1); }), want);
    std::printf("[ tiny-opt-16m ] %s: %s\n", rptq::gpu_layer_placement_name(placement), want.c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CudaQuantizedTest, ::testing::Values("tiny-opt-16m", "stories260k"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
