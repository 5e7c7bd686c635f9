// Elementwise ops and embedding gathers. All are memory-bound single passes: the row ops put threads on columns
// (coalesced, each thread loads its bias once) and blocks of grid y on rows, striding over rows past 65535.
// Each activation is written with the CPU's exact sequence of float roundings (hd:: operations: nvcc would otherwise
// fuse a * b + c into one FMA), so the only differences from the CPU come from erff / tanhf / expf themselves.
#include "elementwise.cuh"

#include <cmath>
#include <string>

#include "cuda_check.cuh"
#include "host_device.cuh"

namespace rptq::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxGridY = 65535;

enum class Act { Relu, Gelu, GeluTanh, Bias };

template <Act A>
__device__ __forceinline__ float activate(float v) {
  if constexpr (A == Act::Relu) {
    return hd::max(v, 0.0f);  // std::max(v, 0.0f): a NaN stays NaN, -0 stays -0
  } else if constexpr (A == Act::Gelu) {
    return hd::mul(hd::mul(0.5f, v), hd::add(1.0f, erff(hd::mul(v, 0.70710678118654752f))));
  } else if constexpr (A == Act::GeluTanh) {
    const float cube = hd::mul(hd::mul(hd::mul(0.044715f, v), v), v);
    const float inner = hd::mul(0.7978845608028654f, hd::add(v, cube));
    return hd::mul(hd::mul(0.5f, v), hd::add(1.0f, tanhf(inner)));
  } else {
    return v;
  }
}

// x[r, c] = act(x[r, c] + bias[c]). Without a bias the CPU's relu takes x as it is, while its GELUs add 0.0f
// (which turns -0 into +0): the same here, so that even the sign of a zero matches.
template <Act A>
__global__ void bias_act_kernel(float* x, std::int64_t rows, std::int64_t cols, const float* __restrict__ bias) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const bool add_zero = A == Act::Gelu || A == Act::GeluTanh;
  const bool add = bias != nullptr || add_zero;
  const float b = bias ? bias[c] : 0.0f;
  for (std::int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    float* p = x + r * cols + c;
    *p = activate<A>(add ? hd::add(*p, b) : *p);
  }
}

__global__ void broadcast_rows_kernel(float* y, std::int64_t rows, std::int64_t cols, const float* __restrict__ row) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const float v = row ? row[c] : 0.0f;
  for (std::int64_t r = blockIdx.y; r < rows; r += gridDim.y) y[r * cols + c] = v;
}

__global__ void silu_mul_kernel(float* gate, const float* __restrict__ up, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    gate[i] = hd::mul(hd::div(g, hd::add(1.0f, expf(-g))), up[i]);
  }
}

__global__ void add_kernel(float* x, const float* __restrict__ y, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    x[i] = hd::add(x[i], y[i]);
}

__global__ void scale_kernel(float* x, float s, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    x[i] = hd::mul(x[i], s);
}

// One block row per token: threads over the embedding columns, so each row is one coalesced copy.
__global__ void embedding_kernel(const std::int32_t* __restrict__ ids, std::int64_t n,
                                 const float* __restrict__ table, std::int64_t vocab, std::int64_t dim,
                                 std::int64_t seq, std::int64_t pos_base, const float* __restrict__ pos_table,
                                 float* out) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  for (std::int64_t i = blockIdx.y; i < n; i += gridDim.y) {
    const std::int32_t id = ids[i];
    float v = id >= 0 && id < vocab ? table[static_cast<std::int64_t>(id) * dim + c] : NAN;
    if (pos_table) v = hd::add(v, pos_table[(pos_base + i % seq) * dim + c]);
    out[i * dim + c] = v;
  }
}

__global__ void add_positions_kernel(float* h, std::int64_t n, std::int64_t dim, std::int64_t seq,
                                     std::int64_t pos_base, const float* __restrict__ pos_table) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  for (std::int64_t i = blockIdx.y; i < n; i += gridDim.y) {
    float* p = h + i * dim + c;
    *p = hd::add(*p, pos_table[(pos_base + i % seq) * dim + c]);
  }
}

dim3 row_grid(std::int64_t rows, std::int64_t cols) {
  const std::int64_t x = (cols + kThreads - 1) / kThreads;
  const std::int64_t y = rows < kMaxGridY ? rows : kMaxGridY;
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y));
}

void check_rows(const char* op, std::int64_t rows, std::int64_t cols, const void* x) {
  require_shape(op, rows, cols);
  // Grid x counts blocks of 256 columns: 2^31 - 1 of them is far beyond any row.
  require_int(op, cols, "cols");
  if (rows > 0 && cols > 0) require_data(op, x, "data");
}

template <Act A>
void launch_bias_act(const char* op, float* x, std::int64_t rows, std::int64_t cols, const float* bias,
                     cudaStream_t stream) {
  check_rows(op, rows, cols, x);
  if (rows == 0 || cols == 0) return;
  bias_act_kernel<A><<<row_grid(rows, cols), kThreads, 0, stream>>>(x, rows, cols, bias);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void check_embedding(const char* op, const std::int32_t* ids, std::int64_t n, const float* table,
                     std::int64_t vocab, std::int64_t dim, float* out) {
  require(n >= 0 && vocab >= 0 && dim >= 0, op,
          "bad sizes n " + std::to_string(n) + ", vocab " + std::to_string(vocab) + ", dim " + std::to_string(dim));
  require_int(op, dim, "dim");
  if (n > 0 && dim > 0) {
    require_data(op, ids, "ids");
    require_data(op, table, "table");
    require_data(op, out, "out");
  }
}

void check_positions(const char* op, std::int64_t n, std::int64_t seq, std::int64_t past, const float* pos_table,
                     std::int64_t pos_rows, std::int64_t offset) {
  if (n == 0) return;
  require(seq >= 1 && n % seq == 0, op,
          std::to_string(n) + " rows cannot form sequences of " + std::to_string(seq) + " tokens");
  require(past >= 0 && offset >= 0, op, "negative past or offset");
  require_data(op, pos_table, "pos_table");
  require(past + seq + offset <= pos_rows, op,
          "positions up to " + std::to_string(past + seq - 1) + " (+ offset " + std::to_string(offset) +
              ") need more than the table's " + std::to_string(pos_rows) + " rows");
}

}  // namespace

void bias_relu(float* x, std::int64_t rows, std::int64_t cols, const float* bias, cudaStream_t stream) {
  launch_bias_act<Act::Relu>("bias_relu", x, rows, cols, bias, stream);
}
void bias_gelu(float* x, std::int64_t rows, std::int64_t cols, const float* bias, cudaStream_t stream) {
  launch_bias_act<Act::Gelu>("bias_gelu", x, rows, cols, bias, stream);
}
void bias_gelu_tanh(float* x, std::int64_t rows, std::int64_t cols, const float* bias, cudaStream_t stream) {
  launch_bias_act<Act::GeluTanh>("bias_gelu_tanh", x, rows, cols, bias, stream);
}
void add_bias(float* x, std::int64_t rows, std::int64_t cols, const float* bias, cudaStream_t stream) {
  if (rows > 0 && cols > 0) require_data("add_bias", bias, "bias");
  launch_bias_act<Act::Bias>("add_bias", x, rows, cols, bias, stream);
}

void broadcast_rows(float* y, std::int64_t rows, std::int64_t cols, const float* row, cudaStream_t stream) {
  check_rows("broadcast_rows", rows, cols, y);
  if (rows == 0 || cols == 0) return;
  broadcast_rows_kernel<<<row_grid(rows, cols), kThreads, 0, stream>>>(y, rows, cols, row);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void silu_mul(float* gate, const float* up, std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  require_shape("silu_mul", rows, cols);
  const std::int64_t n = rows * cols;
  if (n == 0) return;
  require_data("silu_mul", gate, "gate");
  require_data("silu_mul", up, "up");
  silu_mul_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(gate, up, n);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void add(float* x, const float* y, std::int64_t n, cudaStream_t stream) {
  require(n >= 0, "add", "negative size " + std::to_string(n));
  if (n == 0) return;
  require_data("add", x, "x");
  require_data("add", y, "y");
  add_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, n);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void scale(float* x, std::int64_t n, float s, cudaStream_t stream) {
  require(n >= 0, "scale", "negative size " + std::to_string(n));
  if (n == 0) return;
  require_data("scale", x, "x");
  scale_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, s, n);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void embedding(const std::int32_t* ids, std::int64_t n, const float* table, std::int64_t vocab, std::int64_t dim,
               float* out, cudaStream_t stream) {
  check_embedding("embedding", ids, n, table, vocab, dim, out);
  if (n == 0 || dim == 0) return;
  embedding_kernel<<<row_grid(n, dim), kThreads, 0, stream>>>(ids, n, table, vocab, dim, 1, 0, nullptr, out);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void add_positions(float* h, std::int64_t n, std::int64_t seq, std::int64_t past, const float* pos_table,
                   std::int64_t pos_rows, std::int64_t dim, std::int64_t offset, cudaStream_t stream) {
  check_rows("add_positions", n, dim, h);
  check_positions("add_positions", n, seq, past, pos_table, pos_rows, offset);
  if (n == 0 || dim == 0) return;
  add_positions_kernel<<<row_grid(n, dim), kThreads, 0, stream>>>(h, n, dim, seq, past + offset, pos_table);
  RPTQ_CUDA_CHECK_LAUNCH();
}

void embedding_with_positions(const std::int32_t* ids, std::int64_t n, const float* table, std::int64_t vocab,
                              std::int64_t dim, std::int64_t seq, std::int64_t past, const float* pos_table,
                              std::int64_t pos_rows, std::int64_t offset, float* out, cudaStream_t stream) {
  check_embedding("embedding_with_positions", ids, n, table, vocab, dim, out);
  check_positions("embedding_with_positions", n, seq, past, pos_table, pos_rows, offset);
  if (n == 0 || dim == 0) return;
  embedding_kernel<<<row_grid(n, dim), kThreads, 0, stream>>>(ids, n, table, vocab, dim, seq, past + offset,
                                                              pos_table, out);
  RPTQ_CUDA_CHECK_LAUNCH();
}

}  // namespace rptq::cuda
