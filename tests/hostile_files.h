#pragma once
// The damaged files kept under tests/data/hostile, for test_hdf5_hostile and the GUI test: a statistics file in
// the HDF5 layout of format versions 1-2 (gzip'ed) and the byte patches of it that crashed libhdf5 in-process.
// How they were made: tests/data/README.md.
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace rptq::test {

inline std::string gunzip_file(const std::filesystem::path& p) {
  gzFile f = gzopen(p.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + p.string());
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  gzclose(f);
  return out;
}

// The legacy-layout statistics file of resources/models/stories260k (1 window of 8 tokens).
inline std::string legacy_stats_seed(const std::filesystem::path& source_dir) {
  return gunzip_file(source_dir / "tests" / "data" / "hostile" / "legacy-stats.h5.gz");
}

struct HostileCase {
  std::string found;  // the fuzzer's finding it came from
  std::string bytes;  // the whole damaged file
};

// Each input that crashed libhdf5 when read in-process (tests/data/hostile/legacy-stats-crashes.json).
inline std::vector<HostileCase> legacy_stats_crashers(const std::filesystem::path& source_dir) {
  const std::filesystem::path dir = source_dir / "tests" / "data" / "hostile";
  std::ifstream in(dir / "legacy-stats-crashes.json");
  const nlohmann::json cases = nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  const std::string seed = legacy_stats_seed(source_dir);
  std::vector<HostileCase> out;
  for (const auto& c : cases) {
    HostileCase h{c["found"].get<std::string>(), seed};
    for (const auto& patch : c["patches"]) h.bytes.at(patch[0].get<std::size_t>()) = static_cast<char>(patch[1].get<int>());
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace rptq::test
