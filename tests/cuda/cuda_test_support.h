#pragma once
// What the GPU-path tests (test_cuda_model, _generate, _quantize, _compare) share: whether a GPU is usable (and the
// skip that says why not), the fixture folders, and the difference measures their tolerances are stated in.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/device.h"
#include "rptq/model/model.h"
#include "rptq/base/tensor.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace rptq::test {

// True when the CUDA path can run here; otherwise *reason says why (device_info's unavailable_reason).
inline bool gpu_available(std::string* reason) {
  const DeviceInfo info = device_info();
  *reason = info.unavailable_reason;
  return info.cuda_devices > 0;
}

// A small model folder of tests/data/variants (an architecture variant made for the tests).
inline std::filesystem::path variant_dir(const char* name) {
  return resources_dir().parent_path() / "tests" / "data" / "variants" / name;
}

// A model the GPU-path tests run on: the bundled model NAME when shared (rptq::test::shared_model: resources/models
// or ../shared), else tests/data/variants/NAME.
struct ModelCase {
  const char* name;
  bool shared;
};
inline std::filesystem::path model_dir(const ModelCase& c) {
  return c.shared ? rptq::test::shared_model(c.name) : variant_dir(c.name);
}
// The two shared models and the five architecture variants (LLaMA with untied head and biases, Mistral's sliding
// window, OPT-350m's post-LayerNorm and projections, OPT with GELU and no LayerNorm affine, Qwen2 with a tied head).
inline std::vector<ModelCase> gpu_model_cases() {
  return {{"tiny-opt-16m", true},       {"stories260k", true},       {"llama-untied-bias", false},
          {"mistral-window", false},    {"opt-350m-style", false},   {"opt-gelu-noaffine", false},
          {"qwen2-tied", false}};
}
inline std::string model_case_name(const ::testing::TestParamInfo<ModelCase>& info) {
  std::string n = info.param.name;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}
// Up to n token ids for a case: the shared stories text for a shared model, seeded random ids otherwise.
inline std::vector<std::int32_t> case_ids(const ModelCase& c, const Model& m, std::size_t n, std::uint32_t seed) {
  if (!c.shared) return some_ids(static_cast<std::int64_t>(n), static_cast<std::int32_t>(m.config().vocab), seed);
  auto tok = Tokenizer::load(model_dir(c));
  std::vector<std::int32_t> ids = tok->encode(read_file(rptq::test::shared_file("data/stories.txt")), true);
  ids.resize(std::min(ids.size(), n));
  return ids;
}

// A bundled model (rptq::test::shared_model(NAME)) with the stories text's token ids and a calibration on them
// (samples x seqlen tokens, CPU).
struct Calibrated {
  std::filesystem::path dir;
  std::unique_ptr<Model> fp;
  std::vector<std::int32_t> ids;
  ChannelStats stats;
};
inline Calibrated calibrated(const char* name, std::int64_t samples, std::int64_t seqlen) {
  Calibrated s;
  s.dir = rptq::test::shared_model(name);
  s.fp = Model::load(s.dir);
  auto tok = Tokenizer::load(s.dir);
  s.ids = tok->encode(read_file(rptq::test::shared_file("data/stories.txt")), true);
  CalibrationSettings cs;
  cs.samples = samples;
  cs.seqlen = seqlen;
  s.stats = calibrate(*s.fp, s.dir.string(), s.ids, "stories.txt", "", cs);
  return s;
}

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (std::int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(static_cast<double>(t.data()[i])));
  return m;
}
inline double max_diff(const float* a, const float* b, std::int64_t n) {
  double m = 0;
  for (std::int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}
inline double max_diff(const Tensor& a, const Tensor& b) { return max_diff(a.data(), b.data(), a.numel()); }
// ||got - ref|| / ||ref|| (Frobenius).
inline double rel_fro(const Tensor& got, const Tensor& ref) {
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double d = static_cast<double>(got.data()[i]) - ref.data()[i];
    num += d * d;
    den += static_cast<double>(ref.data()[i]) * ref.data()[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace rptq::test

// Skips the test (GTEST_SKIP, with the reason) where no GPU is usable.
#define SKIP_WITHOUT_GPU()                                                                  \
  do {                                                                                      \
    std::string reason_;                                                                    \
    if (!rptq::test::gpu_available(&reason_)) GTEST_SKIP() << "no usable GPU: " << reason_; \
  } while (0)
