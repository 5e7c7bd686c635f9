// Device discovery, device selection and CUDA error reporting. The checks that need no GPU run everywhere; those
// that touch device memory skip when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "rptq/device.h"
#include "test_support.h"
#include "rptq/base/error.h"

#ifdef RPTQ_WITH_CUDA
#include "cuda_check.cuh"
#include "device.cuh"
#endif

TEST(DeviceInfo, IsConsistent) {
  const rptq::DeviceInfo info = rptq::device_info();
#ifdef RPTQ_WITH_CUDA
  EXPECT_TRUE(info.cuda_compiled);
#else
  EXPECT_FALSE(info.cuda_compiled);
  EXPECT_EQ(info.cuda_devices, 0);
  EXPECT_EQ(info.unavailable_reason, "CUDA support not compiled in");
#endif
  EXPECT_GE(info.cuda_devices, 0);
  EXPECT_FALSE(info.description.empty());
  // A reason exactly when there is no usable GPU.
  EXPECT_EQ(info.cuda_devices == 0, !info.unavailable_reason.empty()) << info.unavailable_reason;
  std::printf("device_info: %s\n", info.description.c_str());
}

// The device list, faked: a machine whose GPU 0 cannot run the kernels and whose GPU 1 can. The ordinal a run
// takes is GPU 1's (not "the first of cuda_devices = 1 supported", i.e. 0), 0 is refused saying why, and an ordinal
// past the list is refused naming the list.
namespace {
rptq::GpuInfo fake_gpu(int ordinal, const char* name, int major, int minor, bool supported) {
  rptq::GpuInfo g;
  g.ordinal = ordinal;
  g.name = name;
  g.cc_major = major;
  g.cc_minor = minor;
  g.supported = supported;
  if (!supported) g.why_not = "sm_" + std::to_string(major) + std::to_string(minor) + "; this build has kernels for sm_80";
  g.total_bytes = std::uint64_t{8} << 30;
  return g;
}
}  // namespace

TEST(DeviceInfo, FakedListPicksTheSupportedOrdinal) {
  const rptq::DeviceInfo info =
      rptq::make_device_info(true, {fake_gpu(0, "Old GPU", 6, 1, false), fake_gpu(1, "New GPU", 9, 0, true)});
  EXPECT_EQ(info.cuda_devices, 1);
  ASSERT_EQ(info.gpus.size(), 2u);
  EXPECT_EQ(info.first_usable_gpu(), 1);
  EXPECT_EQ(info.pick_gpu(-1), 1);
  EXPECT_EQ(info.pick_gpu(1), 1);
  EXPECT_TRUE(info.unavailable_reason.empty());
  EXPECT_EQ(info.description,
            "CUDA: cuda:0 Old GPU (sm_61, 8.0 GiB) [unsupported]; cuda:1 New GPU (sm_90, 8.0 GiB)");
  try {
    info.pick_gpu(0);
    ADD_FAILURE() << "GPU 0 is unsupported";
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0 Old GPU"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sm_61; this build has kernels for sm_80"), std::string::npos) << e.what();
  }
  try {
    info.pick_gpu(2);
    ADD_FAILURE() << "there is no GPU 2";
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no GPU cuda:2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(info.gpu(1)->name, "New GPU");
  EXPECT_EQ(info.gpu(5), nullptr);

  // Only the unsupported one: no usable GPU, and the reason names it.
  const rptq::DeviceInfo old_only = rptq::make_device_info(true, {fake_gpu(0, "Old GPU", 6, 1, false)});
  EXPECT_EQ(old_only.cuda_devices, 0);
  EXPECT_EQ(old_only.first_usable_gpu(), -1);
  EXPECT_NE(old_only.unavailable_reason.find("no GPU the kernels support (cuda:0 Old GPU"), std::string::npos)
      << old_only.unavailable_reason;
  EXPECT_THROW(old_only.pick_gpu(-1), rptq::InputError);
  // No GPU listed at all: the runtime's reason; not compiled in: says so whatever the list.
  EXPECT_EQ(rptq::make_device_info(true, {}, "no driver").unavailable_reason, "no driver");
  EXPECT_EQ(rptq::make_device_info(true, {}).unavailable_reason, "no GPU found");
  const rptq::DeviceInfo cpu = rptq::make_device_info(false, {fake_gpu(0, "New GPU", 9, 0, true)});
  EXPECT_EQ(cpu.cuda_devices, 0);
  EXPECT_TRUE(cpu.gpus.empty());
  EXPECT_EQ(cpu.unavailable_reason, "CUDA support not compiled in");
  // The real list agrees with itself.
  const rptq::DeviceInfo real = rptq::device_info();
  EXPECT_EQ(real.cuda_compiled, rptq::cuda_compiled_in());
  EXPECT_EQ(static_cast<int>(std::count_if(real.gpus.begin(), real.gpus.end(), [](const rptq::GpuInfo& g) {
              return g.supported;
            })),
            real.cuda_devices);
}

TEST(DeviceInfo, ResolveDevice) {
  const rptq::DeviceInfo info = rptq::device_info();
  EXPECT_EQ(rptq::resolve_device("cpu"), rptq::Device::CPU);
  EXPECT_EQ(rptq::resolve_device("CPU"), rptq::Device::CPU);
  const rptq::Device automatic = rptq::resolve_device("auto");
  EXPECT_EQ(automatic, info.cuda_devices > 0 ? rptq::Device::CUDA : rptq::Device::CPU);
  if (info.cuda_devices > 0) {
    EXPECT_EQ(rptq::resolve_device("cuda"), rptq::Device::CUDA);
  } else {
    try {
      rptq::resolve_device("cuda");
      ADD_FAILURE() << "resolve_device(\"cuda\") without a GPU must throw";
    } catch (const rptq::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(info.unavailable_reason), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(rptq::resolve_device("tpu"), rptq::InputError);
  EXPECT_THROW(rptq::resolve_device(""), rptq::InputError);
  EXPECT_EQ(rptq::device_name(rptq::Device::CPU), "cpu");
  EXPECT_EQ(rptq::device_name(rptq::Device::CUDA), "cuda");
  EXPECT_EQ(rptq::resolve_device(rptq::device_name(automatic)), automatic);
}

#ifdef RPTQ_WITH_CUDA

TEST(CudaDevice, CountNeverThrows) {
  std::string reason = "stale";
  const int count = rptq::cuda::device_count(&reason);
  EXPECT_GE(count, 0);
  EXPECT_EQ(count == 0, !reason.empty()) << reason;
  EXPECT_EQ(rptq::cuda::device_count(), count);
  // With a GPU, nothing is left behind for the next launch check. (Without a driver every runtime call, this
  // one included, reports the failed initialisation.)
  if (count > 0) {
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  }
}

TEST(CudaDevice, KernelArchitectures) {
  const std::vector<int> archs = rptq::cuda::kernel_architectures();
  EXPECT_EQ(archs, (std::vector<int>{80, 89, 90}));
  EXPECT_FALSE(rptq::cuda::kernels_support({7, 5}));
  EXPECT_TRUE(rptq::cuda::kernels_support({8, 0}));
  EXPECT_TRUE(rptq::cuda::kernels_support({8, 6}));
  EXPECT_TRUE(rptq::cuda::kernels_support({12, 0}));
}

TEST(CudaError, MessageNamesCallAndPlace) {
  try {
    RPTQ_CUDA_CHECK(cudaErrorInvalidValue);
    FAIL() << "no exception";
  } catch (const rptq::CudaError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cudaErrorInvalidValue"), std::string::npos) << what;
    EXPECT_NE(what.find("test_cuda_device.cpp:"), std::string::npos) << what;
    EXPECT_NE(what.find(cudaGetErrorString(cudaErrorInvalidValue)), std::string::npos) << what;
    EXPECT_EQ(e.code(), static_cast<int>(cudaErrorInvalidValue));
    EXPECT_FALSE(e.out_of_memory());
  }
}

TEST(CudaError, OutOfMemoryIsNamed) {
  try {
    rptq::throw_cuda_error(cudaErrorMemoryAllocation, "cudaMalloc(&p, n)", "somewhere.cu", 7);
  } catch (const rptq::CudaError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(e.out_of_memory());
    EXPECT_EQ(what.rfind("CUDA out of memory: cudaMalloc(&p, n) failed at somewhere.cu:7", 0), 0u) << what;
  }
  try {
    RPTQ_CUBLAS_CHECK(CUBLAS_STATUS_ALLOC_FAILED);
  } catch (const rptq::CudaError& e) {
    EXPECT_TRUE(e.out_of_memory());
    EXPECT_NE(std::string(e.what()).find("cuBLAS out of memory"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_ALLOC_FAILED"), std::string::npos) << e.what();
  }
  EXPECT_THROW(RPTQ_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE), std::runtime_error);
  // The memory query on the error path leaves no error behind (checkable only where the runtime starts).
  if (rptq::device_info().cuda_devices > 0) {
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  }
}

TEST(CudaDevice, Properties) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  EXPECT_FALSE(rptq::cuda::device_name(0).empty());
  const rptq::cuda::ComputeCapability cc = rptq::cuda::compute_capability(0);
  EXPECT_GE(cc.major, 7);
  const rptq::cuda::MemoryInfo memory = rptq::cuda::memory_info(0);
  EXPECT_GT(memory.total_bytes, 0u);
  EXPECT_LE(memory.free_bytes, memory.total_bytes);
  EXPECT_EQ(memory.total_bytes, rptq::cuda::total_memory(0));
  EXPECT_THROW(rptq::cuda::device_name(rptq::cuda::device_count()), rptq::CudaError);
  // A reported failure is not reported again by the next launch check.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(CudaDevice, BufferRoundTrip) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const std::vector<float> host{1.0f, -2.5f, 3.25f, 1e-30f, 7.0f};
  rptq::cuda::DeviceBuffer<float> buffer(host);
  EXPECT_EQ(buffer.size(), host.size());
  EXPECT_EQ(buffer.bytes(), host.size() * sizeof(float));
  EXPECT_EQ(buffer.to_host(), host);

  rptq::cuda::DeviceBuffer<float> moved(std::move(buffer));
  EXPECT_EQ(buffer.data(), nullptr);
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(moved.to_host(), host);

  moved.fill_zero();
  EXPECT_EQ(moved.to_host(), std::vector<float>(host.size(), 0.0f));
  EXPECT_THROW(moved.copy_from_host(host.data(), host.size() + 1), std::out_of_range);

  rptq::cuda::DeviceBuffer<std::int32_t> empty(0);
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_TRUE(empty.to_host().empty());
}

TEST(CudaDevice, OutOfMemoryThrows) {
  RPTQ_REQUIRE_CUDA_DEVICE();
  const std::size_t too_much = rptq::cuda::total_memory(0) * 4;  // bytes, as floats: 16x the device
  try {
    rptq::cuda::DeviceBuffer<float> buffer(too_much);
    FAIL() << "allocating " << too_much * 4 << " bytes succeeded";
  } catch (const rptq::CudaError& e) {
    EXPECT_TRUE(e.out_of_memory()) << e.what();
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  // Out of memory is not sticky: the device is still usable.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  rptq::cuda::DeviceBuffer<float> small(16);
  small.fill_zero();
}

#else

TEST(CudaDevice, NotCompiled) { GTEST_SKIP() << "CUDA support not compiled in"; }

#endif
