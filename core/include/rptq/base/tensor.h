#pragma once
// The CPU compute tensor: a 64-byte aligned, owned float32 buffer with a row-major shape.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace rptq {

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::vector<std::int64_t> shape);  // zero-initialized
  Tensor(std::initializer_list<std::int64_t> shape) : Tensor(std::vector<std::int64_t>(shape)) {}
  // Without zero-filling, for buffers that are written before they are read.
  static Tensor uninitialized(std::vector<std::int64_t> shape);

  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const std::vector<std::int64_t>& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return numel_; }
  bool empty() const { return numel_ == 0; }

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  std::span<float> span() { return {data_.get(), static_cast<std::size_t>(numel_)}; }
  std::span<const float> span() const { return {data_.get(), static_cast<std::size_t>(numel_)}; }
  float& operator[](std::int64_t i) { return data_[i]; }
  float operator[](std::int64_t i) const { return data_[i]; }

  // Changes the shape without touching data; the element count must stay the same.
  void reshape(std::vector<std::int64_t> shape);
  // Reallocates when the element count grows; contents are unspecified afterwards.
  void resize(std::vector<std::int64_t> shape);
  std::string shape_string() const;

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::vector<std::int64_t> shape_;
  std::int64_t numel_ = 0;
  std::int64_t capacity_ = 0;
  std::unique_ptr<float[], Free> data_;
};

std::string shape_to_string(const std::vector<std::int64_t>& shape);

}  // namespace rptq
