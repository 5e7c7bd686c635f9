#pragma once
// Shared by the CPU kernels (ops_cpu.cpp, quantizer.cpp): when a row loop is worth parallelising, and how hot row
// kernels are compiled for baseline x86-64 and for AVX2 / AVX-512, chosen at load time (ifunc), so a portable
// binary still uses the vector width of the machine it runs on.
#include <cstdint>

namespace rptq::cpu {
// Parallelise row loops only when there is enough work to pay for waking the thread pool.
constexpr std::int64_t kParallelElements = 1 << 14;
}  // namespace rptq::cpu

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RPTQ_VECTOR_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define RPTQ_VECTOR_CLONES
#endif
