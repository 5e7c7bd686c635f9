#pragma once
// Which GPUs there are, and an owning buffer of device memory. Plain host header: safe to include from .cpp.
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda_check.cuh"

namespace rptq::cuda {

struct ComputeCapability {
  int major = 0, minor = 0;
};

struct MemoryInfo {
  std::size_t free_bytes = 0, total_bytes = 0;
};

// Number of CUDA devices. Never throws: no driver, an old driver, no GPU or a runtime that cannot start all give
// 0, and *reason (when given) then says why in words a user can act on; it is cleared when devices are found.
int device_count(std::string* reason = nullptr);
// The name the driver reports, e.g. "NVIDIA H100 80GB HBM3".
std::string device_name(int device);
ComputeCapability compute_capability(int device);
// Total memory of a device, without creating a CUDA context on it.
std::size_t total_memory(int device);
// Free and total memory; creates the device's CUDA context (a few hundred MiB) if it has none yet.
MemoryInfo memory_info(int device);
// Compute capabilities this build carries kernels for, as 10 * major + minor (e.g. 80, 89, 90).
std::vector<int> kernel_architectures();
// Whether the kernels run on a GPU of this capability: at least the oldest architecture compiled (the SASS of a
// minor version runs on later minors, and the PTX of the newest JIT-compiles for later GPUs).
bool kernels_support(ComputeCapability cc);

// Owns count elements of device memory (cudaMalloc / cudaFree); move-only. Copies are synchronous.
template <typename T>
class DeviceBuffer {
  static_assert(std::is_trivially_copyable_v<T>, "DeviceBuffer holds plain data only");

 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) : count_(count) {
    if (count_ > 0) RPTQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), bytes()));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    copy_from_host(host.data(), host.size());
  }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return count_; }
  std::size_t bytes() const noexcept { return count_ * sizeof(T); }
  bool empty() const noexcept { return count_ == 0; }

  // Copies count elements from host memory to the start of the buffer.
  void copy_from_host(const T* host, std::size_t count) {
    check_count(count);
    if (count > 0) RPTQ_CUDA_CHECK(cudaMemcpy(data_, host, count * sizeof(T), cudaMemcpyHostToDevice));
  }
  // Copies the first count elements of the buffer to host memory.
  void copy_to_host(T* host, std::size_t count) const {
    check_count(count);
    if (count > 0) RPTQ_CUDA_CHECK(cudaMemcpy(host, data_, count * sizeof(T), cudaMemcpyDeviceToHost));
  }
  std::vector<T> to_host() const {
    std::vector<T> host(count_);
    copy_to_host(host.data(), count_);
    return host;
  }
  void fill_zero() {
    if (count_ > 0) RPTQ_CUDA_CHECK(cudaMemset(data_, 0, bytes()));
  }

 private:
  void check_count(std::size_t count) const {
    if (count > count_)
      throw std::out_of_range("DeviceBuffer: copy of " + std::to_string(count) + " elements into a buffer of " +
                              std::to_string(count_));
  }
  // A destructor must not throw: a failed cudaFree (e.g. after a sticky kernel fault, or at process exit) is
  // dropped, and cleared so that a later RPTQ_CUDA_CHECK_LAUNCH does not report it.
  void release() noexcept {
    if (data_ && cudaFree(data_) != cudaSuccess) cudaGetLastError();
    data_ = nullptr;
    count_ = 0;
  }

  T* data_ = nullptr;
  std::size_t count_ = 0;
};

}  // namespace rptq::cuda
