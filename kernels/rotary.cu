// Rotary embedding: one block per row. The row's cos / sin table (one entry per frequency, shared by every head)
// is built once in shared memory, so each angle's sincos is computed once per row rather than once per head; then
// the block rotates all heads' pairs, threads over (head, pair), reading each pair's two channels coalesced.
//
// Numerics: the angle is the CPU's float32 product; cos and sin are taken in double and rounded to float, so they
// are the correctly rounded values of that angle (glibc's cosf / sinf, which the CPU uses, are within 0.56 ulp of
// it), and the rotation rounds each product as the CPU does. Double sincos costs little here: rows * half of them.
#include "rotary.cuh"

#include <string>

#include "cuda_check.cuh"

namespace rptq::cuda {

namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxHalf = 4096;  // 32 KiB of cos / sin table per block

__global__ void rotary_kernel(float* x, std::int64_t rows, int heads, int head_dim,
                              const std::int64_t* __restrict__ positions, float theta,
                              const std::int32_t* __restrict__ freq_index, std::int64_t group) {
  extern __shared__ float table[];
  const int half = head_dim / 2;
  float* cs = table;
  float* sn = table + half;
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const std::int64_t pos = positions[r];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      const float angle = rotary_angle(pos, rotary_inv_freq(i, head_dim, theta));
      double s = 0.0, c = 0.0;
      sincos(static_cast<double>(angle), &s, &c);
      cs[i] = static_cast<float>(c);
      sn[i] = static_cast<float>(s);
    }
    __syncthreads();
    float* xr = x + r * static_cast<std::int64_t>(heads) * head_dim;
    const int pairs = heads * half;
    for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
      const int h = p / half, i = p % half;
      const std::int64_t f = rotary_frequency_of(freq_index, h, i, half, group);
      float* xh = xr + static_cast<std::int64_t>(h) * head_dim;
      float a = xh[i], b = xh[i + half];
      rotary_rotate(a, b, cs[f], sn[f]);
      xh[i] = a;
      xh[i + half] = b;
    }
    __syncthreads();  // the next row overwrites the table
  }
}

}  // namespace

void rotary(float* x, std::int64_t rows, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
            float theta, const std::int32_t* freq_index, std::int64_t group, cudaStream_t stream) {
  const char* op = "rotary";
  require(rows >= 0 && heads >= 0 && head_dim >= 0, op,
          "bad shape rows " + std::to_string(rows) + ", heads " + std::to_string(heads) + ", head_dim " +
              std::to_string(head_dim));
  require(group >= 1, op, "group must be at least 1; got " + std::to_string(group));
  require(head_dim / 2 <= kMaxHalf, op,
          "head_dim " + std::to_string(head_dim) + " is beyond the kernel's " + std::to_string(2 * kMaxHalf));
  require_int(op, heads * (head_dim / 2), "heads * head_dim / 2");
  require(std::isfinite(theta) && theta > 0.0f, op, "theta must be positive and finite");
  if (rows == 0 || heads == 0 || head_dim < 2) return;
  require_data(op, x, "x");
  require_data(op, positions, "positions");
  const unsigned grid = static_cast<unsigned>(rows < (1 << 20) ? rows : (1 << 20));
  const std::size_t shared = static_cast<std::size_t>(head_dim / 2) * 2 * sizeof(float);
  rotary_kernel<<<grid, kThreads, shared, stream>>>(x, rows, static_cast<int>(heads), static_cast<int>(head_dim),
                                                    positions, theta, freq_index, group);
  RPTQ_CUDA_CHECK_LAUNCH();
}

}  // namespace rptq::cuda
