#include "rptq/base/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include <sys/mman.h>

namespace rptq {

namespace {
std::int64_t count(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape " + shape_to_string(shape));
    n *= d;
  }
  return n;
}
// Buffers of at least this size are 2 MiB-aligned and marked for transparent huge pages: a first touch then
// faults in (and zeroes) 2 MiB at a time instead of 4 KiB, which matters for activations and logits that are
// written once per forward (a [512, 50272] logits buffer is 25,000 small-page faults), and the weights GEMMs
// stream get fewer TLB misses.
constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kHugeThreshold = std::size_t{4} << 20;

float* allocate(std::int64_t n) {
  if (n == 0) return nullptr;
  std::size_t bytes = ((static_cast<std::size_t>(n) * sizeof(float) + 63) / 64) * 64;
  std::size_t align = 64;
  if (bytes >= kHugeThreshold) {
    align = kHugePage;
    bytes = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  }
  void* p = std::aligned_alloc(align, bytes);
  if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (align == kHugePage) ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  return static_cast<float*>(p);
}
}  // namespace

void Tensor::Free::operator()(float* p) const { std::free(p); }

std::string shape_to_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Tensor::Tensor(std::vector<std::int64_t> shape) : shape_(std::move(shape)) {
  numel_ = count(shape_);
  capacity_ = numel_;
  data_.reset(allocate(numel_));
  if (numel_) std::memset(data_.get(), 0, static_cast<std::size_t>(numel_) * sizeof(float));
}

Tensor Tensor::uninitialized(std::vector<std::int64_t> shape) {
  Tensor t;
  t.resize(std::move(shape));
  return t;
}

Tensor::Tensor(const Tensor& other) : shape_(other.shape_), numel_(other.numel_), capacity_(other.numel_) {
  data_.reset(allocate(numel_));
  if (numel_) std::memcpy(data_.get(), other.data_.get(), static_cast<std::size_t>(numel_) * sizeof(float));
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) {
    Tensor copy(other);
    *this = std::move(copy);
  }
  return *this;
}

void Tensor::reshape(std::vector<std::int64_t> shape) {
  if (count(shape) != numel_)
    throw std::invalid_argument("cannot reshape " + shape_string() + " to " + shape_to_string(shape));
  shape_ = std::move(shape);
}

void Tensor::resize(std::vector<std::int64_t> shape) {
  const std::int64_t n = count(shape);
  if (n > capacity_) {
    data_.reset(allocate(n));
    capacity_ = n;
  }
  numel_ = n;
  shape_ = std::move(shape);
}

std::string Tensor::shape_string() const { return shape_to_string(shape_); }

}  // namespace rptq
