#pragma once
// The ops of the decoder layer (core/src/model/decoder_layer.h) behind one interface per device, over host vectors,
// for test_backend_ops: the CPU backend calls rptq::ops; the CUDA backend (built with RPTQ_WITH_CUDA) copies the
// inputs into device buffers, poisons its outputs with NaN, calls rptq::cuda, synchronises and copies back. A test
// body written against Backend runs unchanged on every device (ggml's test-backend-ops, CTranslate2's suites).
//
// Matrices are row-major float32 [rows, cols]; an empty vector stands for the op's null pointer (no gamma, beta,
// bias, gather or freq_index).
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rptq/device.h"
#include "rptq/model/attention_shape.h"
#include "rptq/model/ops.h"

#ifdef RPTQ_WITH_CUDA
#include "attention.cuh"
#include "device.cuh"
#include "elementwise.cuh"
#include "gemm.cuh"
#include "norm.cuh"
#include "rotary.cuh"
#endif

namespace rptq::test {

// The input precision of linear layers (the GPU runner's GpuPrecision): F16 / BF16 round x and w to the 16-bit type
// (to nearest even) and sum the products in float. Every other op runs in float32 on every backend.
enum class Precision { F32, F16, BF16 };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Precision precision() const { return Precision::F32; }

  // norm(x) [rows, cols], written reordered by gather (y[:, k] from column gather[k]).
  virtual std::vector<float> layer_norm(const std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                                        const std::vector<float>& gamma, const std::vector<float>& beta, float eps,
                                        const std::vector<std::int32_t>& gather) = 0;
  virtual std::vector<float> rms_norm(const std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                                      const std::vector<float>& gamma, float eps,
                                      const std::vector<std::int32_t>& gather) = 0;
  // y [rows, out] = x [rows, in] (row stride ldx) * w [out, in]^T (+ bias) (+ y when accumulate).
  virtual void linear(const std::vector<float>& x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
                      const std::vector<float>& w, const std::vector<float>& bias, std::int64_t out,
                      std::vector<float>& y, bool accumulate) = 0;
  // In place: x = act(x + bias).
  virtual void bias_relu(std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                         const std::vector<float>& bias) = 0;
  virtual void bias_gelu(std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                         const std::vector<float>& bias) = 0;
  virtual void bias_gelu_tanh(std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                              const std::vector<float>& bias) = 0;
  // In place: gate = silu(gate) * up.
  virtual void silu_mul(std::vector<float>& gate, const std::vector<float>& up, std::int64_t rows,
                        std::int64_t cols) = 0;
  // In place: x *= s (OPT's q scaling).
  virtual void scale(std::vector<float>& x, float s) = 0;
  // In place on x [rows, heads * head_dim]; freq_index [heads / group, head_dim / 2] (RPTQ's rope_index).
  virtual void rotary(std::vector<float>& x, std::int64_t rows, std::int64_t heads, std::int64_t head_dim,
                      const std::vector<std::int64_t>& positions, float theta,
                      const std::vector<std::int32_t>& freq_index, std::int64_t group) = 0;
  // out [batch * tq, heads * head_dim]; q, k, v laid out as attention_shape.h says.
  virtual std::vector<float> attention(const std::vector<float>& q, const std::vector<float>& k,
                                       const std::vector<float>& v, const AttentionShape& s) = 0;
};

namespace backend_detail {
template <typename T>
const T* ptr(const std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}
}  // namespace backend_detail

// rptq::ops, and for scale the CPU op set's loop (CpuLayerOps::scale in model.cpp; rptq::ops has no scale).
class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  std::vector<float> layer_norm(const std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                                const std::vector<float>& gamma, const std::vector<float>& beta, float eps,
                                const std::vector<std::int32_t>& gather) override {
    using backend_detail::ptr;
    std::vector<float> y(x.size(), std::nanf(""));
    ops::layer_norm(x.data(), y.data(), rows, cols, ptr(gamma), ptr(beta), eps, ptr(gather));
    return y;
  }
  std::vector<float> rms_norm(const std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                              const std::vector<float>& gamma, float eps,
                              const std::vector<std::int32_t>& gather) override {
    using backend_detail::ptr;
    std::vector<float> y(x.size(), std::nanf(""));
    ops::rms_norm(x.data(), y.data(), rows, cols, ptr(gamma), eps, ptr(gather));
    return y;
  }
  void linear(const std::vector<float>& x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
              const std::vector<float>& w, const std::vector<float>& bias, std::int64_t out, std::vector<float>& y,
              bool accumulate) override {
    ops::linear(x.data(), ldx, rows, in, w.data(), backend_detail::ptr(bias), out, y.data(), accumulate);
  }
  void bias_relu(std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                 const std::vector<float>& bias) override {
    ops::bias_relu(x.data(), rows, cols, backend_detail::ptr(bias));
  }
  void bias_gelu(std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                 const std::vector<float>& bias) override {
    ops::bias_gelu(x.data(), rows, cols, backend_detail::ptr(bias));
  }
  void bias_gelu_tanh(std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                      const std::vector<float>& bias) override {
    ops::bias_gelu_tanh(x.data(), rows, cols, backend_detail::ptr(bias));
  }
  void silu_mul(std::vector<float>& gate, const std::vector<float>& up, std::int64_t rows,
                std::int64_t cols) override {
    ops::silu_mul(gate.data(), up.data(), rows, cols);
  }
  void scale(std::vector<float>& x, float s) override {
    for (float& v : x) v *= s;
  }
  void rotary(std::vector<float>& x, std::int64_t rows, std::int64_t heads, std::int64_t head_dim,
              const std::vector<std::int64_t>& positions, float theta, const std::vector<std::int32_t>& freq_index,
              std::int64_t group) override {
    ops::rotary(x.data(), rows, heads, head_dim, positions.data(), theta, backend_detail::ptr(freq_index), group);
  }
  std::vector<float> attention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                               const AttentionShape& s) override {
    std::vector<float> out(q.size(), std::nanf(""));
    ops::attention(q.data(), k.data(), v.data(), out.data(), s);
    return out;
  }
};

#ifdef RPTQ_WITH_CUDA
// rptq::cuda on the default stream, each call synchronised so that a fault in a kernel is reported by its op.
class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(Precision precision) : precision_(precision) {}
  std::string name() const override {
    return precision_ == Precision::F16 ? "cuda_f16" : precision_ == Precision::BF16 ? "cuda_bf16" : "cuda";
  }
  Precision precision() const override { return precision_; }

  std::vector<float> layer_norm(const std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                                const std::vector<float>& gamma, const std::vector<float>& beta, float eps,
                                const std::vector<std::int32_t>& gather) override {
    cuda::DeviceBuffer<float> dx(x), dgamma(gamma), dbeta(beta), dy = poisoned(x.size());
    cuda::DeviceBuffer<std::int32_t> dgather(gather);
    cuda::layer_norm(dx.data(), dy.data(), rows, cols, dgamma.data(), dbeta.data(), eps, dgather.data());
    return finish(dy);
  }
  std::vector<float> rms_norm(const std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                              const std::vector<float>& gamma, float eps,
                              const std::vector<std::int32_t>& gather) override {
    cuda::DeviceBuffer<float> dx(x), dgamma(gamma), dy = poisoned(x.size());
    cuda::DeviceBuffer<std::int32_t> dgather(gather);
    cuda::rms_norm(dx.data(), dy.data(), rows, cols, dgamma.data(), eps, dgather.data());
    return finish(dy);
  }
  // The 16-bit modes convert w on the device once (as the runner does at load time) and pass x as float: the
  // overload rounds it into the handle's scratch on every call.
  void linear(const std::vector<float>& x, std::int64_t ldx, std::int64_t rows, std::int64_t in,
              const std::vector<float>& w, const std::vector<float>& bias, std::int64_t out, std::vector<float>& y,
              bool accumulate) override {
    cuda::DeviceBuffer<float> dx(x), dw(w), dbias(bias), dy(y);
    const auto n = static_cast<std::int64_t>(w.size());
    if (precision_ == Precision::F16) {
      cuda::DeviceBuffer<__half> wh(w.size());
      cuda::convert(dw.data(), wh.data(), n);
      cuda::linear(blas_, dx.data(), ldx, rows, in, wh.data(), dbias.data(), out, dy.data(), accumulate);
    } else if (precision_ == Precision::BF16) {
      cuda::DeviceBuffer<__nv_bfloat16> wb(w.size());
      cuda::convert(dw.data(), wb.data(), n);
      cuda::linear(blas_, dx.data(), ldx, rows, in, wb.data(), dbias.data(), out, dy.data(), accumulate);
    } else {
      cuda::linear(blas_, dx.data(), ldx, rows, in, dw.data(), dbias.data(), out, dy.data(), accumulate);
    }
    y = finish(dy);
  }
  void bias_relu(std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                 const std::vector<float>& bias) override {
    cuda::DeviceBuffer<float> dx(x), dbias(bias);
    cuda::bias_relu(dx.data(), rows, cols, dbias.data());
    x = finish(dx);
  }
  void bias_gelu(std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                 const std::vector<float>& bias) override {
    cuda::DeviceBuffer<float> dx(x), dbias(bias);
    cuda::bias_gelu(dx.data(), rows, cols, dbias.data());
    x = finish(dx);
  }
  void bias_gelu_tanh(std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                      const std::vector<float>& bias) override {
    cuda::DeviceBuffer<float> dx(x), dbias(bias);
    cuda::bias_gelu_tanh(dx.data(), rows, cols, dbias.data());
    x = finish(dx);
  }
  void silu_mul(std::vector<float>& gate, const std::vector<float>& up, std::int64_t rows,
                std::int64_t cols) override {
    cuda::DeviceBuffer<float> dgate(gate), dup(up);
    cuda::silu_mul(dgate.data(), dup.data(), rows, cols);
    gate = finish(dgate);
  }
  void scale(std::vector<float>& x, float s) override {
    cuda::DeviceBuffer<float> dx(x);
    cuda::scale(dx.data(), static_cast<std::int64_t>(x.size()), s);
    x = finish(dx);
  }
  void rotary(std::vector<float>& x, std::int64_t rows, std::int64_t heads, std::int64_t head_dim,
              const std::vector<std::int64_t>& positions, float theta, const std::vector<std::int32_t>& freq_index,
              std::int64_t group) override {
    cuda::DeviceBuffer<float> dx(x);
    cuda::DeviceBuffer<std::int64_t> dpos(positions);
    cuda::DeviceBuffer<std::int32_t> dfi(freq_index);
    cuda::rotary(dx.data(), rows, heads, head_dim, dpos.data(), theta, dfi.data(), group);
    x = finish(dx);
  }
  std::vector<float> attention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                               const AttentionShape& s) override {
    cuda::DeviceBuffer<float> dq(q), dk(k), dv(v), dout = poisoned(q.size());
    cuda::attention(dq.data(), dk.data(), dv.data(), dout.data(), s);
    return finish(dout);
  }

 private:
  // A fresh output buffer of NaN (all bits set), so that an element the kernel does not write fails the check.
  static cuda::DeviceBuffer<float> poisoned(std::size_t n) {
    cuda::DeviceBuffer<float> d(n);
    if (n > 0) RPTQ_CUDA_CHECK(cudaMemset(d.data(), 0xFF, d.bytes()));
    return d;
  }
  static std::vector<float> finish(const cuda::DeviceBuffer<float>& d) {
    RPTQ_CUDA_CHECK(cudaDeviceSynchronize());
    return d.to_host();
  }

  Precision precision_;
  cuda::BlasHandle blas_;
};
#endif

// The CUDA backend of this precision, or null where this build or machine has none; *why_not then says why.
inline std::unique_ptr<Backend> make_cuda_backend(Precision precision, std::string* why_not) {
  const DeviceInfo info = device_info();
  if (info.cuda_devices == 0) {
    *why_not = "no CUDA device: " + info.unavailable_reason;
    return nullptr;
  }
#ifdef RPTQ_WITH_CUDA
  return std::make_unique<CudaBackend>(precision);
#else
  *why_not = "no CUDA device: CUDA support not compiled in";
  return nullptr;
#endif
}

}  // namespace rptq::test
