// The emulated CUDA runtime and cuBLAS subset, and the fiber scheduler behind emu::run.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <ucontext.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

uint3 emu_threadIdx, emu_blockIdx;
dim3 emu_blockDim, emu_gridDim;

namespace emu {

enum State { Ready, WaitBlock, WaitWarp, Done };

struct Fiber {
  ucontext_t ctx;
  State state = Ready;
  std::vector<char> stack;
};

struct Scheduler {
  std::vector<Fiber> fibers;
  ucontext_t sched;
  int current = -1;
  int threads = 0;
  std::vector<std::uint64_t> warp_slots[2];
  std::vector<int> warp_slot_gen[2];
  std::vector<int> warp_gen;
  std::vector<int> block_slots[2], block_slot_gen[2];
  int block_gen = 0;
  std::function<void()> body;
  bool fiber_mode = false;
  const char* name = "";
};

static Scheduler S;
static std::vector<unsigned char> g_shared;

void* dynamic_shared() { return g_shared.data(); }

static void set_thread(int t) {
  emu_threadIdx.x = t % emu_blockDim.x;
  emu_threadIdx.y = (t / emu_blockDim.x) % emu_blockDim.y;
  emu_threadIdx.z = t / (emu_blockDim.x * emu_blockDim.y);
}

int lane_id() { return S.current % 32; }

[[noreturn]] static void fail(const char* what) {
  std::fprintf(stderr, "emu: kernel %s: %s (thread %d of block %u,%u,%u)\n", S.name, what, S.current, emu_blockIdx.x,
               emu_blockIdx.y, emu_blockIdx.z);
  std::abort();
}

static void yield() {
  if (!S.fiber_mode) fail("a collective in a kernel launched without fibers");
  Fiber& f = S.fibers[S.current];
  swapcontext(&f.ctx, &S.sched);
}

void syncthreads() {
  S.fibers[S.current].state = WaitBlock;
  yield();
}

int syncthreads_or(int pred) {
  const int gen = S.block_gen, p = gen & 1;
  S.block_slots[p][S.current] = pred != 0;
  S.block_slot_gen[p][S.current] = gen;
  S.fibers[S.current].state = WaitBlock;
  yield();
  int any = 0;
  for (int t = 0; t < S.threads; ++t)
    if (S.block_slot_gen[p][t] == gen) any |= S.block_slots[p][t];
  return any;
}

std::uint64_t warp_exchange(std::uint64_t v, int src) {
  const int w = S.current / 32;
  const int gen = S.warp_gen[w], p = gen & 1;
  S.warp_slots[p][S.current] = v;
  S.warp_slot_gen[p][S.current] = gen;
  S.fibers[S.current].state = WaitWarp;
  yield();
  const int s = w * 32 + src;
  if (src < 0 || src >= 32 || s >= S.threads) fail("shuffle from a lane outside the warp");
  if (S.warp_slot_gen[p][s] != gen) fail("shuffle from a lane that did not take part (exited or diverged)");
  return S.warp_slots[p][s];
}

static void trampoline() {
  S.body();
  S.fibers[S.current].state = Done;
  // uc_link returns to the scheduler.
}

static void run_block_fibers() {
  const int n = S.threads;
  for (int t = 0; t < n; ++t) {
    Fiber& f = S.fibers[t];
    f.state = Ready;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = &S.sched;
    makecontext(&f.ctx, trampoline, 0);
  }
  for (int p = 0; p < 2; ++p) {
    std::fill(S.warp_slots[p].begin(), S.warp_slots[p].end(), 0xDEADBEEFDEADBEEFull);
    std::fill(S.warp_slot_gen[p].begin(), S.warp_slot_gen[p].end(), -1);
    std::fill(S.block_slots[p].begin(), S.block_slots[p].end(), 0);
    std::fill(S.block_slot_gen[p].begin(), S.block_slot_gen[p].end(), -1);
  }
  std::fill(S.warp_gen.begin(), S.warp_gen.end(), 0);
  S.block_gen = 0;
  static const char* order_env = std::getenv("EMU_ORDER");
  static const int order = order_env ? (order_env[0] == 'r' ? 1 : order_env[0] == 's' ? 2 : 0) : 0;
  static unsigned rng = 12345;
  std::vector<int> perm(n);
  for (int t = 0; t < n; ++t) perm[t] = order == 1 ? n - 1 - t : t;
  for (;;) {
    bool progressed = false;
    if (order == 2)
      for (int t = n - 1; t > 0; --t) {
        rng = rng * 1103515245u + 12345u;
        std::swap(perm[t], perm[(rng >> 8) % (t + 1)]);
      }
    for (int i = 0; i < n; ++i) {
      const int t = perm[i];
      if (S.fibers[t].state != Ready) continue;
      S.current = t;
      set_thread(t);
      swapcontext(&S.sched, &S.fibers[t].ctx);
      progressed = true;
    }
    // Warp collectives: every live lane of the warp waits.
    for (int w = 0; w * 32 < n; ++w) {
      int live = 0, waiting = 0;
      for (int t = w * 32; t < n && t < w * 32 + 32; ++t) {
        if (S.fibers[t].state != Done) ++live;
        if (S.fibers[t].state == WaitWarp) ++waiting;
      }
      if (live > 0 && waiting == live) {
        for (int t = w * 32; t < n && t < w * 32 + 32; ++t) S.fibers[t].state = Ready;
        ++S.warp_gen[w];
        progressed = true;
      }
    }
    int live = 0, waiting = 0;
    for (int t = 0; t < n; ++t) {
      if (S.fibers[t].state != Done) ++live;
      if (S.fibers[t].state == WaitBlock) ++waiting;
    }
    if (live == 0) break;
    if (waiting == live) {
      for (int t = 0; t < n; ++t) S.fibers[t].state = Ready;
      ++S.block_gen;
      progressed = true;
    }
    if (!progressed) {
      std::string states;
      for (int t = 0; t < n; ++t) states += "0RBWD"[S.fibers[t].state + 1];
      std::fprintf(stderr, "emu: kernel %s deadlocks in block %u,%u,%u: %s\n", S.name, emu_blockIdx.x, emu_blockIdx.y,
                   emu_blockIdx.z, states.c_str());
      std::abort();
    }
  }
}

void run(std::function<void()> body, dim3 grid, dim3 block, std::size_t shared, bool fibers, const char* name) {
  const int n = static_cast<int>(block.x * block.y * block.z);
  if (n < 1 || n > 1024) {
    std::fprintf(stderr, "emu: kernel %s: bad block size %d\n", name, n);
    std::abort();
  }
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 || grid.z > 65535) {
    std::fprintf(stderr, "emu: kernel %s: bad grid %u %u %u\n", name, grid.x, grid.y, grid.z);
    std::abort();
  }
  if (shared > 227 * 1024) {
    std::fprintf(stderr, "emu: kernel %s: %zu bytes of dynamic shared memory\n", name, shared);
    std::abort();
  }
  S.body = std::move(body);
  S.threads = n;
  S.fiber_mode = fibers;
  S.name = name;
  emu_blockDim = block;
  emu_gridDim = grid;
  g_shared.assign(shared + 16, 0xFF);
  if (fibers) {
    if (static_cast<int>(S.fibers.size()) < n) {
      S.fibers.resize(n);
      for (Fiber& f : S.fibers)
        if (f.stack.empty()) f.stack.resize(256 * 1024);
    }
    for (int p = 0; p < 2; ++p) {
      S.warp_slots[p].assign(n, 0);
      S.warp_slot_gen[p].assign(n, -1);
      S.block_slots[p].assign(n, 0);
      S.block_slot_gen[p].assign(n, -1);
    }
    S.warp_gen.assign((n + 31) / 32, 0);
  }
  static const bool reverse_blocks = std::getenv("EMU_BLOCKS") != nullptr;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        emu_blockIdx.x = reverse_blocks ? grid.x - 1 - x : x;
        emu_blockIdx.y = reverse_blocks ? grid.y - 1 - y : y;
        emu_blockIdx.z = reverse_blocks ? grid.z - 1 - z : z;
        std::memset(g_shared.data(), 0xFF, g_shared.size());
        if (fibers) {
          run_block_fibers();
        } else {
          for (int t = 0; t < n; ++t) {
            S.current = t;
            set_thread(t);
            S.body();
          }
        }
      }
}

}  // namespace emu

// ---------------------------------------------------------------------------------------------------------------
// CUDA runtime

static cudaError_t g_last = cudaSuccess;

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : (g_last = cudaErrorInvalidDevice); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return g_last = cudaErrorInvalidDevice;
  std::memset(p, 0, sizeof(*p));
  std::strcpy(p->name, "Emulated GPU");
  p->totalGlobalMem = std::size_t{8} << 30;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  if (d != 0) return g_last = cudaErrorInvalidDevice;
  switch (a) {
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 227 * 1024; break;
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    default: *v = 0;
  }
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(std::size_t* f, std::size_t* t) {
  *f = std::size_t{4} << 30;
  *t = std::size_t{8} << 30;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  if (bytes > (std::size_t{16} << 30)) {
    *p = nullptr;
    return g_last = cudaErrorMemoryAllocation;
  }
  *p = std::malloc(bytes ? bytes : 1);
  std::memset(*p, 0xFF, bytes);  // uninitialised device memory: NaN
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* d, const void* s, std::size_t n, cudaMemcpyKind) {
  std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, std::size_t n, cudaMemcpyKind, cudaStream_t) {
  std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* d, int v, std::size_t n) {
  std::memset(d, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* d, int v, std::size_t n, cudaStream_t) {
  std::memset(d, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemset2DAsync(void* d, std::size_t pitch, int v, std::size_t w, std::size_t h, cudaStream_t) {
  for (std::size_t r = 0; r < h; ++r) std::memset(static_cast<char*>(d) + r * pitch, v, w);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = reinterpret_cast<cudaStream_t>(new int(1));
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete reinterpret_cast<int*>(s);
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
// Every call runs to completion when it is made, so streams are always idle and events always complete.
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = reinterpret_cast<cudaEvent_t>(new int(3));
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<int*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
// Pinned host memory: plain host memory here.
cudaError_t cudaMallocHost(void** p, std::size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : (g_last = cudaErrorMemoryAllocation);
}
cudaError_t cudaHostAlloc(void** p, std::size_t bytes, unsigned) { return cudaMallocHost(p, bytes); }
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    default: return "cudaErrorEmulated";
  }
}
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }

}  // extern "C"

// ---------------------------------------------------------------------------------------------------------------
// cuBLAS

static float load(const void* p, cudaDataType t, std::int64_t i) {
  switch (t) {
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    default: std::fprintf(stderr, "emu: cublas type\n"); std::abort();
  }
}

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = reinterpret_cast<cublasHandle_t>(new int(2));
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete reinterpret_cast<int*>(h);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t m) {
  return m == CUBLAS_DEFAULT_MATH ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}
const char* cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    default: return "CUBLAS_STATUS_EMULATED";
  }
}
const char* cublasGetStatusString(cublasStatus_t) { return "emulated cuBLAS status"; }

cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                            int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t) {
  if (ct != CUDA_R_32F || comp != CUBLAS_COMPUTE_32F || at != bt) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (m < 0 || n < 0 || k < 0 || ldc < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k) || ldb < std::max(1, tb == CUBLAS_OP_N ? k : n))
    return CUBLAS_STATUS_INVALID_VALUE;
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  float* c = static_cast<float*>(C);
  if (at == CUDA_R_32F && ta == CUBLAS_OP_T && tb == CUBLAS_OP_N) {
    // The layout of every linear here (y^T = W x^T): rows of A and columns of B are contiguous.
    const float* Af = static_cast<const float*>(A);
    const float* Bf = static_cast<const float*>(B);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const float* ar = Af + static_cast<std::int64_t>(i) * lda;
        const float* bc = Bf + static_cast<std::int64_t>(j) * ldb;
        float s = 0.0f;
        for (int l = 0; l < k; ++l) s += ar[l] * bc[l];
        float& out = c[i + static_cast<std::int64_t>(j) * ldc];
        out = b == 0.0f ? a * s : a * s + b * out;
      }
    return CUBLAS_STATUS_SUCCESS;
  }
  if (at == CUDA_R_32F && ta == CUBLAS_OP_N && tb == CUBLAS_OP_T) {
    // X^T X of a row-major x (hessian_add): columns of A and rows of B are contiguous; each element still sums its
    // k products in order, over a column of accumulators.
    const float* Af = static_cast<const float*>(A);
    const float* Bf = static_cast<const float*>(B);
    std::vector<float> acc(static_cast<std::size_t>(m));
    for (int j = 0; j < n; ++j) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int l = 0; l < k; ++l) {
        const float* al = Af + static_cast<std::int64_t>(l) * lda;
        const float bv = Bf[j + static_cast<std::int64_t>(l) * ldb];
        for (int i = 0; i < m; ++i) acc[i] += al[i] * bv;
      }
      for (int i = 0; i < m; ++i) {
        float& out = c[i + static_cast<std::int64_t>(j) * ldc];
        out = b == 0.0f ? a * acc[i] : a * acc[i] + b * out;
      }
    }
    return CUBLAS_STATUS_SUCCESS;
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      float s = 0.0f;
      for (int l = 0; l < k; ++l) {
        const float av = ta == CUBLAS_OP_N ? load(A, at, i + static_cast<std::int64_t>(l) * lda)
                                           : load(A, at, l + static_cast<std::int64_t>(i) * lda);
        const float bv = tb == CUBLAS_OP_N ? load(B, bt, l + static_cast<std::int64_t>(j) * ldb)
                                           : load(B, bt, j + static_cast<std::int64_t>(l) * ldb);
        s += av * bv;
      }
      float& out = c[i + static_cast<std::int64_t>(j) * ldc];
      out = b == 0.0f ? a * s : a * s + b * out;  // beta = 0: C is not read (it may hold NaN)
    }
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
