#pragma once
// Paths of the shared reference data and helpers common to the tests.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "rptq/device.h"

namespace rptq::test {

// ../shared (models, data, reference outputs) beside the checkout, as configured (RPTQ_SHARED_DIR in CMake); the
// environment variable RPTQ_SHARED_DIR, when set, names another folder at run time. A fresh clone has none: tests
// reach its files through shared_file(), which prefers the copies the repo carries.
inline std::filesystem::path shared_dir() {
  const char* env = std::getenv("RPTQ_SHARED_DIR");
  return env && *env ? std::filesystem::path(env) : std::filesystem::path(RPTQ_SHARED_DIR);
}
inline std::filesystem::path resources_dir() { return RPTQ_RESOURCES_DIR; }
inline std::filesystem::path source_dir() { return resources_dir().parent_path(); }

// The part of ../shared the repo carries, under the same paths (tests/data/README.md says how each file was made).
inline std::filesystem::path carried_shared_dir() { return source_dir() / "tests" / "data" / "shared"; }

// A file or folder of ../shared by its path there ("reference/perplexity.json", "models/stories260k",
// "data/stories.txt"): the repo's byte-identical copy when it carries one (tests/data/shared, or resources/models
// and resources/data, which hold the same files), else ../shared's own, which may not exist.
inline std::filesystem::path shared_file(const std::filesystem::path& rel) {
  const std::filesystem::path carried = carried_shared_dir() / rel;
  if (std::filesystem::exists(carried)) return carried;
  const auto top = rel.begin();
  if (top != rel.end() && (*top == "models" || *top == "data")) {
    const std::filesystem::path shipped = resources_dir() / rel;
    if (std::filesystem::exists(shipped)) return shipped;
  }
  return shared_dir() / rel;
}

// A model folder of ../shared, by name ("stories260k", "tiny-opt-16m": the repo ships both in resources/models).
inline std::filesystem::path shared_model(const std::string& name) {
  return shared_file(std::filesystem::path("models") / name);
}

// A fresh empty directory for one test's files. ctest runs each test in its own process, several at once, so the
// process id keeps equal names of concurrent tests apart.
inline std::filesystem::path temp_dir(const std::string& name) {
  auto p = std::filesystem::path(RPTQ_TEST_TMP) / (name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// temp_dir(name), removed afterwards unless the test failed (then it is kept for a look): for tests that write
// large files (model exports).
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) : path_(temp_dir(name)) {}
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    if (!::testing::Test::HasFailure()) std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& p) const { return path_ / p; }

 private:
  std::filesystem::path path_;
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// n seeded pseudo-random token ids in [0, vocab) (an LCG: the same ids on every platform).
inline std::vector<std::int32_t> some_ids(std::int64_t n, std::int32_t vocab, std::uint32_t seed) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  for (auto& id : ids) {
    seed = seed * 1664525u + 1013904223u;
    id = static_cast<std::int32_t>((seed >> 8) % static_cast<std::uint32_t>(vocab));
  }
  return ids;
}

// n values drawn from N(mean, stddev^2) by a seeded generator (the GPU parity tests' inputs).
inline std::vector<float> normal(std::size_t n, float mean, float stddev, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

}  // namespace rptq::test

// Skips the test (with the reason) when ../shared is not beside the checkout.
#define RPTQ_REQUIRE_SHARED()                                                               \
  do {                                                                                      \
    if (!std::filesystem::exists(rptq::test::shared_dir() / "reference"))                   \
      GTEST_SKIP() << "shared reference data not found at " << rptq::test::shared_dir();    \
  } while (0)

// Skips the test (with the reason) when shared_file(rel) is neither carried in the repo nor in ../shared: for the
// files too large to carry (tests/data/README.md lists them).
#define RPTQ_REQUIRE_SHARED_FILE(rel)                                                                        \
  do {                                                                                                       \
    if (!std::filesystem::exists(rptq::test::shared_file(rel)))                                              \
      GTEST_SKIP() << (rel) << " is not carried in the repo (tests/data/README.md) and ../shared is not at " \
                   << rptq::test::shared_dir();                                                              \
  } while (0)

// Skips the test (with the reason) when no usable CUDA device is present.
#define RPTQ_REQUIRE_CUDA_DEVICE()                                                               \
  do {                                                                                           \
    const rptq::DeviceInfo info_ = rptq::device_info();                                          \
    if (info_.cuda_devices == 0) GTEST_SKIP() << "no CUDA device: " << info_.unavailable_reason; \
  } while (0)
