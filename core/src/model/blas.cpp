#include "rptq/model/blas.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#ifdef RPTQ_HAVE_ONEDNN
#include <dnnl.h>
#endif
#include <stdexcept>

namespace rptq::blas {

namespace {

// CBLAS constants (cblas.h): row-major 101, no-transpose 111, transpose 112.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using SetThreadsFn = void (*)(int);
using StringFn = char* (*)();
// Fortran LAPACK: arguments by pointer, then the hidden length of the character argument (gfortran: size_t).
using PotrfFn = void (*)(const char*, const int*, double*, const int*, int*, std::size_t);
using TrtriFn = void (*)(const char*, const char*, const int*, double*, const int*, int*, std::size_t, std::size_t);

struct Library {
  SgemmFn sgemm = nullptr;
  SetThreadsFn set_threads = nullptr;
  StringFn config = nullptr;
  StringFn corename = nullptr;
  PotrfFn dpotrf = nullptr;  // LAPACK; null when the library has none
  PotrfFn dpotri = nullptr;
  TrtriFn dtrtri = nullptr;
  Info info;
};

Library load() {
  Library lib;
  if (const char* user = std::getenv("OPENBLAS_CORETYPE"); user && *user) {
    lib.info.coretype_source = std::string("OPENBLAS_CORETYPE=") + user + " from the environment";
  } else if (const std::string core = suggested_coretype(); !core.empty()) {
    setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
    lib.info.coretype_source = "OPENBLAS_CORETYPE=" + core + " set by RPTQ from the CPU's instruction sets";
  } else {
    lib.info.coretype_source = "chosen by OpenBLAS";
  }
  std::string tried;
  void* h = nullptr;
  const char* env_lib = std::getenv("RPTQ_BLAS_LIBRARY");
  for (const char* path : {env_lib, RPTQ_OPENBLAS_LIBRARY, "libopenblas.so.0"}) {
    if (!path || !*path) continue;
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h) {
      lib.info.library = path;
      break;
    }
    tried += std::string(tried.empty() ? "" : "; ") + dlerror();
  }
  if (!h) throw std::runtime_error("cannot load OpenBLAS (" + tried + "); install libopenblas0-openmp");
  lib.sgemm = reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm"));
  lib.set_threads = reinterpret_cast<SetThreadsFn>(dlsym(h, "openblas_set_num_threads"));
  lib.config = reinterpret_cast<StringFn>(dlsym(h, "openblas_get_config"));
  lib.corename = reinterpret_cast<StringFn>(dlsym(h, "openblas_get_corename"));
  lib.dpotrf = reinterpret_cast<PotrfFn>(dlsym(h, "dpotrf_"));
  lib.dpotri = reinterpret_cast<PotrfFn>(dlsym(h, "dpotri_"));
  lib.dtrtri = reinterpret_cast<TrtriFn>(dlsym(h, "dtrtri_"));
  if (!lib.sgemm || !lib.set_threads)
    throw std::runtime_error(lib.info.library + " has no cblas_sgemm/openblas_set_num_threads: not OpenBLAS?");
  if (lib.config) lib.info.config = lib.config();
  if (lib.corename) lib.info.corename = lib.corename();
  return lib;
}

Library& library() {
  static Library lib = load();
  return lib;
}

}  // namespace

std::string suggested_coretype() {
#if defined(__x86_64__) || defined(__i386__)
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV), as OpenBLAS does.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return __builtin_cpu_is("amd") ? "Zen" : "Haswell";
  return "";
#else
  return "";
#endif
}

bool have_onednn() {
#ifdef RPTQ_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

const char* gemm_backend_name(GemmBackend b) { return b == GemmBackend::OneDNN ? "onednn" : "openblas"; }

namespace {
GemmBackend default_backend() {
  const char* env = std::getenv("RPTQ_GEMM");
  if (env && std::strcmp(env, "openblas") == 0) return GemmBackend::OpenBLAS;
  if (env && std::strcmp(env, "onednn") == 0 && !have_onednn())
    throw std::runtime_error("RPTQ_GEMM=onednn, but this build of RPTQ has no oneDNN");
  return have_onednn() ? GemmBackend::OneDNN : GemmBackend::OpenBLAS;
}
std::atomic<GemmBackend>& backend() {
  static std::atomic<GemmBackend> b{default_backend()};
  return b;
}
}  // namespace

GemmBackend gemm_backend() { return backend().load(std::memory_order_relaxed); }

void set_gemm_backend(GemmBackend b) {
  if (b == GemmBackend::OneDNN && !have_onednn()) throw std::runtime_error("this build of RPTQ has no oneDNN");
  backend().store(b, std::memory_order_relaxed);
}

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
#ifdef RPTQ_HAVE_ONEDNN
  if (gemm_backend() == GemmBackend::OneDNN) {
    // dnnl_sgemm is row-major with the same argument order as cblas_sgemm(RowMajor, ...).
    const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                                        beta, c, ldc);
    if (st != dnnl_success) throw std::runtime_error("oneDNN sgemm failed (status " + std::to_string(st) + ")");
    return;
  }
#endif
  sgemm_openblas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sgemm_openblas(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                    const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                    std::int64_t ldc) {
  library().sgemm(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans, static_cast<int>(m),
                  static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
                  beta, c, static_cast<int>(ldc));
}

namespace {
int call_lapack(PotrfFn fn, const char* name, char uplo, std::int64_t n, double* a, std::int64_t lda) {
  if (!fn)
    throw std::runtime_error(library().info.library + " has no LAPACK " + name + "_: install libopenblas0-openmp");
  const int in = static_cast<int>(n), ilda = static_cast<int>(lda);
  int info = 0;
  fn(&uplo, &in, a, &ilda, &info, 1);
  return info;
}
}  // namespace

int dpotrf(char uplo, std::int64_t n, double* a, std::int64_t lda) {
  return call_lapack(library().dpotrf, "dpotrf", uplo, n, a, lda);
}

int dpotri(char uplo, std::int64_t n, double* a, std::int64_t lda) {
  return call_lapack(library().dpotri, "dpotri", uplo, n, a, lda);
}

int dtrtri(char uplo, std::int64_t n, double* a, std::int64_t lda) {
  const TrtriFn fn = library().dtrtri;
  if (!fn)
    throw std::runtime_error(library().info.library + " has no LAPACK dtrtri_: install libopenblas0-openmp");
  const int in = static_cast<int>(n), ilda = static_cast<int>(lda);
  const char diag = 'N';
  int info = 0;
  fn(&uplo, &diag, &in, a, &ilda, &info, 1, 1);
  return info;
}

void set_num_threads(int n) { library().set_threads(n); }

Info info() { return library().info; }

}  // namespace rptq::blas
