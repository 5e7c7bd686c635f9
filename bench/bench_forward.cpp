// Forward-pass throughput of rptq::Model on the CPU, against OpenBLAS's sgemm ceiling measured in the same process.
//
//   bench_forward MODEL_DIR [--seqlen 512] [--batch 1] [--threads N] [--repeats R] [--warmup W] [--seed S]
//                 [--profile] [--no-ceiling] [--dump-logits FILE] [--label NAME]
//   bench_forward --print-config
//   bench_forward --sgemm-only [--threads N]
//
// Runs Model::forward over seeded random token ids [batch, seqlen] W + R times (all positions' logits, as a
// perplexity evaluation does) and reports median and min seconds, tokens/s and GFLOP/s from an analytic FLOP count
// (see count_flops). Before and after the forward it measures cblas_sgemm on the forward's own GEMM shapes and on
// 2048^3, best of several runs (and of the two passes), and reports forward GFLOP/s as a fraction of that ceiling. --profile re-runs the forward op by op (the same
// rptq::ops calls Model::layer_forward makes, with a timer around each) and prints where the time goes.
// --dump-logits writes the token ids and logits of one forward to FILE for bench/torch_forward.py --check-logits.
// Every result is printed as one JSON line (starting with '{') and again in a human-readable table.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rptq/model/blas.h"
#include "rptq/model/model.h"
#include "rptq/model/ops.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double min_of(const std::vector<double>& v) { return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end()); }

struct Args {
  std::string model_dir;
  std::int64_t seqlen = 512, batch = 1;
  int threads = 0, repeats = 5, warmup = 1;
  std::uint64_t seed = 1234;
  bool profile = false, ceiling = true, print_config = false, sgemm_only = false;
  std::string dump_logits, label;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "%s\nusage: bench_forward MODEL_DIR [--seqlen 512] [--batch 1] [--threads N (0 = all cores)] "
               "[--repeats 5] [--warmup 1] [--seed 1234] [--profile] [--no-ceiling] [--dump-logits FILE] "
               "[--label NAME]\n       bench_forward --print-config\n       bench_forward --sgemm-only "
               "[--threads N]   (the 2048^3 sgemm alone, no model)\n",
               why);
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + s).c_str());
      return argv[++i];
    };
    try {
      if (s == "--seqlen") a.seqlen = std::stoll(value());
      else if (s == "--batch") a.batch = std::stoll(value());
      else if (s == "--threads") a.threads = std::stoi(value());
      else if (s == "--repeats") a.repeats = std::stoi(value());
      else if (s == "--warmup") a.warmup = std::stoi(value());
      else if (s == "--seed") a.seed = std::stoull(value());
      else if (s == "--profile") a.profile = true;
      else if (s == "--no-ceiling") a.ceiling = false;
      else if (s == "--dump-logits") a.dump_logits = value();
      else if (s == "--label") a.label = value();
      else if (s == "--print-config") a.print_config = true;
      else if (s == "--sgemm-only") a.sgemm_only = true;
      else if (s == "-h" || s == "--help") usage("");
      else if (!s.empty() && s[0] == '-') usage(("unknown option " + s).c_str());
      else if (a.model_dir.empty()) a.model_dir = s;
      else usage(("unexpected argument " + s).c_str());
    } catch (const std::logic_error&) {
      usage(("bad value for " + s).c_str());
    }
  }
  if (!a.print_config && !a.sgemm_only && a.model_dir.empty()) usage("missing MODEL_DIR");
  if (a.seqlen <= 0 || a.batch <= 0 || a.repeats <= 0 || a.warmup < 0) usage("seqlen, batch, repeats must be > 0");
  return a;
}

// The OpenBLAS rptq::blas loads (with the kernels it chooses): the sgemm ceiling is always measured with it; the
// forward pass's GEMMs run on the active backend (oneDNN when built with it, or RPTQ_GEMM=openblas), named here too.
// "rptq" on the default GEMM backend; "rptq/openblas" (or "rptq/onednn") when RPTQ_GEMM chose one.
std::string engine_name() {
  return std::getenv("RPTQ_GEMM") ? std::string("rptq/") + rptq::blas::gemm_backend_name(rptq::blas::gemm_backend())
                                  : std::string("rptq");
}

json openblas_info() {
  const rptq::blas::Info i = rptq::blas::info();
  return {{"library", i.library},
          {"config", i.config},
          {"corename", i.corename},
          {"coretype", i.coretype_source},
          {"forward_gemm_backend", rptq::blas::gemm_backend_name(rptq::blas::gemm_backend())}};
}

// ---------------------------------------------------------------------------------------------------------------
// FLOPs of one forward pass, counted analytically: 2 * M * N * K for every matrix product the code computes.
// Not counted: LayerNorm, softmax, bias adds, ReLU, the scale of q, embedding lookups (O(rows * width) each).
//
// Attention: ops::attention tiles the queries of each (sequence, head) into blocks of 64 and computes QK^T and PV
// for all keys up to the block's last query (key_end = past + i1), masking the rest inside the tile. So the
// counted score entries are sum over blocks of m * key_end: for T = 512 that is 64 * 64 * (1 + ... + 8) =
// 147456 per head, between the exact causal triangle T(T+1)/2 = 131328 and the full square T^2 = 262144.
// The JSON also gives the attention FLOPs for the full square and the exact triangle, for reference.
struct Flops {
  double proj = 0;  // q, k, v, o projections
  double ffn = 0;   // fc1 + fc2 (OPT) or gate + up + down (LLaMA)
  double attn = 0;  // QK^T + PV as computed (64-query block-causal tiles)
  double attn_full = 0, attn_causal = 0;  // the same for the full T x T square and the exact triangle
  double head = 0;  // LM head over all positions (+ project_out when word_embed_proj_dim != hidden)
  double embed = 0; // project_in when word_embed_proj_dim != hidden
  double total() const { return proj + ffn + attn + head + embed; }
};

constexpr std::int64_t kAttnBlock = 64;  // ops::attention's query tile (ops_cpu.cpp)

double attn_score_entries(std::int64_t T, std::int64_t window) {
  double n = 0;
  for (std::int64_t i0 = 0; i0 < T; i0 += kAttnBlock) {
    const std::int64_t i1 = std::min(T, i0 + kAttnBlock), m = i1 - i0;
    const std::int64_t begin = window > 0 ? std::max<std::int64_t>(0, i0 - window + 1) : 0;
    n += static_cast<double>(m) * static_cast<double>(i1 - begin);
  }
  return n;
}

Flops count_flops(const rptq::ModelConfig& c, std::int64_t batch, std::int64_t T) {
  Flops f;
  const double rows = static_cast<double>(batch * T), d = c.hidden, L = c.layers;
  const double qd = c.q_dim(), kvd = c.kv_dim(), ff = c.intermediate, e = c.embed_dim ? c.embed_dim : c.hidden;
  f.proj = L * 2 * rows * (d * qd + 2 * d * kvd + qd * d);
  f.ffn = L * 2 * rows * d * ff * (c.arch == rptq::Architecture::OPT ? 2 : 3);
  // Per score entry and head: 2 * hd for QK^T and 2 * hd for PV.
  const double per_entry = 4.0 * static_cast<double>(c.head_dim) * static_cast<double>(c.heads) * batch * L;
  f.attn = per_entry * attn_score_entries(T, c.sliding_window);
  f.attn_full = per_entry * static_cast<double>(T) * static_cast<double>(T);
  f.attn_causal = per_entry * static_cast<double>(T) * static_cast<double>(T + 1) / 2;
  f.head = 2 * rows * e * static_cast<double>(c.vocab);
  if (c.arch == rptq::Architecture::OPT && c.embed_dim != c.hidden) {
    f.head += 2 * rows * d * e;
    f.embed = 2 * rows * e * d;
  }
  return f;
}

// ---------------------------------------------------------------------------------------------------------------
// sgemm ceiling

std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = static_cast<float>(static_cast<std::int32_t>(s >> 33) % 2001 - 1000) * 1e-3f;
  }
  return v;
}

struct GemmResult {
  std::string name;
  std::int64_t M, N, K;
  bool trans_b;
  double flops;         // of one call
  double best_s, median_s;
  int runs;
  double gflops() const { return flops / best_s * 1e-9; }
};

// Best (and median) time of C[M,N] = A[M,K] * op(B), row-major; op(B) = B^T with B [N,K] (as ops::linear calls it)
// or B [K,N]. One warm-up call, then at least min_runs calls and until min_seconds have passed (at most 50).
GemmResult bench_sgemm(const std::string& name, std::int64_t M, std::int64_t N, std::int64_t K, bool trans_b,
                       int min_runs = 5, double min_seconds = 0.5) {
  std::vector<float> A = random_floats(static_cast<std::size_t>(M * K), 1);
  std::vector<float> B = random_floats(static_cast<std::size_t>(N * K), 2);
  std::vector<float> C(static_cast<std::size_t>(M * N), 0.0f);
  auto call = [&] {
    rptq::blas::sgemm_openblas(false, trans_b, M, N, K, 1.0f, A.data(), K, B.data(), trans_b ? K : N, 0.0f, C.data(),
                               N);
  };
  call();
  std::vector<double> t;
  const auto start = Clock::now();
  while (static_cast<int>(t.size()) < min_runs || (seconds_since(start) < min_seconds && t.size() < 50)) {
    const auto t0 = Clock::now();
    call();
    t.push_back(seconds_since(t0));
  }
  return {name, M, N, K, trans_b, 2.0 * M * N * K, min_of(t), median(t), static_cast<int>(t.size())};
}

// The BLAS part of ops::attention alone: the same (sequence, head, 64-query block) tasks over the same OpenMP loop,
// each a single-threaded QK^T sgemm into a per-thread score tile and a PV sgemm, without the softmax. Returns the
// best time; flops = the block-causal count.
GemmResult bench_attention_tiles(const rptq::ModelConfig& c, std::int64_t batch, std::int64_t T, int min_runs = 5,
                                 double min_seconds = 0.5) {
  const std::int64_t hd = c.head_dim, heads = c.heads, ld = heads * hd, kv_ld = c.kv_dim();
  const std::int64_t group = c.heads / c.kv_heads;
  const std::int64_t blocks = (T + kAttnBlock - 1) / kAttnBlock, tasks = batch * heads * blocks;
  std::vector<float> q = random_floats(static_cast<std::size_t>(batch * T * ld), 3);
  std::vector<float> k = random_floats(static_cast<std::size_t>(batch * T * kv_ld), 4);
  std::vector<float> v = random_floats(static_cast<std::size_t>(batch * T * kv_ld), 5);
  std::vector<float> out(static_cast<std::size_t>(batch * T * ld));
  auto call = [&] {
#pragma omp parallel
    {
      std::vector<float> scores;
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t task = 0; task < tasks; ++task) {
        const std::int64_t blk = blocks - 1 - task % blocks, h = (task / blocks) % heads, b = task / (blocks * heads);
        const std::int64_t i0 = blk * kAttnBlock, i1 = std::min(T, i0 + kAttnBlock), m = i1 - i0, nk = i1;
        scores.resize(static_cast<std::size_t>(m * nk));
        const float* qb = q.data() + (b * T + i0) * ld + h * hd;
        const float* kb = k.data() + b * T * kv_ld + (h / group) * hd;
        const float* vb = v.data() + b * T * kv_ld + (h / group) * hd;
        rptq::blas::sgemm_openblas(false, true, m, nk, hd, 1.0f, qb, ld, kb, kv_ld, 0.0f, scores.data(), nk);
        rptq::blas::sgemm_openblas(false, false, m, hd, nk, 1.0f, scores.data(), nk, vb, kv_ld, 0.0f,
                          out.data() + (b * T + i0) * ld + h * hd, ld);
      }
    }
  };
  call();
  std::vector<double> t;
  const auto start = Clock::now();
  while (static_cast<int>(t.size()) < min_runs || (seconds_since(start) < min_seconds && t.size() < 50)) {
    const auto t0 = Clock::now();
    call();
    t.push_back(seconds_since(t0));
  }
  const double flops = 4.0 * static_cast<double>(hd) * static_cast<double>(heads) * batch * attn_score_entries(T, 0);
  return {"attention tiles (64-query blocks, QK^T+PV, 1 thread per tile)", T, T, hd, true, flops, min_of(t),
          median(t), static_cast<int>(t.size())};
}

// ---------------------------------------------------------------------------------------------------------------
// Op-by-op profile: the OPT pre-LN layer of Model::layer_forward / attention_block / ffn_block (model.cpp), made of
// the same rptq::ops calls, with a timer around each, on scratch buffers reused across layers and forwards. Bias
// handling of the accumulating projections (o, fc2) is split out: ops::linear(accumulate, bias) is an sgemm with
// beta = 1 followed by ops::add_bias, done here as two calls. Returns the logits so the caller can check they equal
// Model::forward's.

struct OpTimes {
  std::map<std::string, double> s;  // op -> seconds in one forward
  void add(const std::string& op, Clock::time_point t0) { s[op] += seconds_since(t0); }
};

const std::vector<std::string> kOpOrder = {"embed",     "layer_norm", "qkv_proj", "q_scale", "attention",
                                           "o_proj",    "fc1",        "bias_relu", "fc2",    "bias_add(o,fc2)",
                                           "buffers",   "head"};

// Experiments timed inside the profiled forward but not part of it (excluded from the profiled total):
// * the head again, into a logits buffer kept across forwards (Model::head's reusing overload): head minus this is
//   what allocating and first touching a fresh [rows x vocab] logits buffer per forward costs;
// * q, k and v as one GEMM on the concatenated [3 * hidden, hidden] weight (and bias), on the same input x at the
//   same point of the layer: what fusing the three projections would gain.
const std::string kHeadReused = "head, logits buffer reused (extra, not in total)";
const std::string kQkvFused = "q/k/v as one fused GEMM (extra, not in total)";
const std::vector<std::string> kExtras = {kQkvFused, kHeadReused};

// The layer's scratch buffers, kept across layers and forwards as Model keeps its per-thread scratch, and the
// concatenated q/k/v weights of the fused-GEMM experiment.
struct ProfileScratch {
  rptq::Tensor x, q, k, v, attn, hidden, logits, qkv;
  std::vector<rptq::Tensor> wqkv, bqkv;  // per layer: [3d, d] and [3d]
  void build_fused(const rptq::Model& model) {
    const rptq::ModelConfig& c = model.config();
    const std::int64_t d = c.hidden;
    for (int l = 0; l < c.layers; ++l) {
      const rptq::DecoderLayerWeights& w = model.layer(l);
      rptq::Tensor W = rptq::Tensor::uninitialized({3 * d, d}), b({3 * d});
      const rptq::LinearWeights* parts[3] = {&w.q, &w.k, &w.v};
      for (int p = 0; p < 3; ++p) {
        std::memcpy(W.data() + p * d * d, parts[p]->weight.data(), static_cast<std::size_t>(d * d) * 4);
        if (parts[p]->bias_data()) std::memcpy(b.data() + p * d, parts[p]->bias_data(), static_cast<std::size_t>(d) * 4);
      }
      wqkv.push_back(std::move(W));
      bqkv.push_back(std::move(b));
    }
  }
};

rptq::Tensor profiled_forward(const rptq::Model& model, const std::vector<std::int32_t>& tokens, std::int64_t batch,
                              OpTimes& t, ProfileScratch& ws) {
  using rptq::Tensor;
  namespace ops = rptq::ops;
  const rptq::ModelConfig& c = model.config();
  auto t0 = Clock::now();
  Tensor h = model.embed(tokens, batch);
  t.add("embed", t0);
  const std::int64_t rows = h.dim(0), seq = rows / batch, d = c.hidden, f = c.intermediate;
  auto norm = [&](const rptq::NormWeights& n, const float* x, float* y) {
    const auto t1 = Clock::now();
    ops::layer_norm(x, y, rows, d, n.gamma.empty() ? nullptr : n.gamma.data(),
                    n.beta.empty() ? nullptr : n.beta.data(), c.norm_eps, n.gather.empty() ? nullptr : n.gather.data());
    t.add("layer_norm", t1);
  };
  for (int l = 0; l < c.layers; ++l) {
    const rptq::DecoderLayerWeights& w = model.layer(l);
    t0 = Clock::now();
    ws.x.resize({rows, d});
    ws.q.resize({rows, d});
    ws.k.resize({rows, d});
    ws.v.resize({rows, d});
    ws.attn.resize({rows, d});
    ws.hidden.resize({rows, f});
    Tensor &x = ws.x, &q = ws.q, &k = ws.k, &v = ws.v, &attn = ws.attn, &hidden = ws.hidden;
    t.add("buffers", t0);

    norm(w.attn_norm, h.data(), x.data());
    t0 = Clock::now();
    ops::linear(x.data(), d, rows, d, w.q.weight.data(), w.q.bias_data(), d, q.data());
    ops::linear(x.data(), d, rows, d, w.k.weight.data(), w.k.bias_data(), d, k.data());
    ops::linear(x.data(), d, rows, d, w.v.weight.data(), w.v.bias_data(), d, v.data());
    t.add("qkv_proj", t0);
    if (!ws.wqkv.empty()) {
      t0 = Clock::now();
      ws.qkv.resize({rows, 3 * d});
      ops::linear(x.data(), d, rows, d, ws.wqkv[l].data(), ws.bqkv[l].data(), 3 * d, ws.qkv.data());
      t.add(kQkvFused, t0);
    }
    t0 = Clock::now();
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    float* qp = q.data();
    const std::int64_t nq = q.numel();
#pragma omp parallel for schedule(static) if (nq > (1 << 14))
    for (std::int64_t i = 0; i < nq; ++i) qp[i] *= scale;
    t.add("q_scale", t0);
    t0 = Clock::now();
    ops::AttentionShape s;
    s.batch = batch;
    s.tq = seq;
    s.heads = c.heads;
    s.kv_heads = c.kv_heads;
    s.head_dim = c.head_dim;
    s.window = c.sliding_window;
    s.scale = 1.0f;
    s.kv_batch_stride = seq * d;
    s.kv_ld = d;
    ops::attention(q.data(), k.data(), v.data(), attn.data(), s);
    t.add("attention", t0);
    t0 = Clock::now();
    ops::linear(attn.data(), d, rows, d, w.o.weight.data(), nullptr, d, h.data(), /*accumulate=*/true);
    t.add("o_proj", t0);
    t0 = Clock::now();
    if (w.o.bias_data()) ops::add_bias(h.data(), rows, d, w.o.bias_data());
    t.add("bias_add(o,fc2)", t0);

    norm(w.ffn_norm, h.data(), x.data());
    t0 = Clock::now();
    ops::linear(x.data(), d, rows, d, w.fc1.weight.data(), nullptr, f, hidden.data());
    t.add("fc1", t0);
    t0 = Clock::now();
    ops::bias_relu(hidden.data(), rows, f, w.fc1.bias_data());
    t.add("bias_relu", t0);
    t0 = Clock::now();
    ops::linear(hidden.data(), f, rows, f, w.fc2.weight.data(), nullptr, d, h.data(), /*accumulate=*/true);
    t.add("fc2", t0);
    t0 = Clock::now();
    if (w.fc2.bias_data()) ops::add_bias(h.data(), rows, d, w.fc2.bias_data());
    t.add("bias_add(o,fc2)", t0);
  }
  t0 = Clock::now();
  Tensor logits = model.head(h);
  t.add("head", t0);
  t0 = Clock::now();
  model.head(h.data(), rows, ws.logits);
  t.add(kHeadReused, t0);
  return logits;
}

bool profile_supported(const rptq::ModelConfig& c) {
  return c.arch == rptq::Architecture::OPT && c.pre_layer_norm && c.embed_dim == c.hidden &&
         c.activation == "relu" && c.kv_heads == c.heads && c.sliding_window == 0;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  rptq::set_num_threads(a.threads);
  const int threads = rptq::num_threads();
  if (a.print_config) {
    std::cout << json{{"kind", "config"}, {"threads", threads}, {"openblas", openblas_info()}}.dump() << "\n";
    return 0;
  }
  if (a.sgemm_only) {
    const GemmResult g = bench_sgemm("square 2048^3 (NN)", 2048, 2048, 2048, false);
    std::cout << json{{"kind", "sgemm"},         {"shape", g.name},       {"threads", threads},
                      {"runs", g.runs},          {"best_s", g.best_s},    {"median_s", g.median_s},
                      {"gflops_best", g.gflops()}, {"openblas", openblas_info()}}
                     .dump()
              << "\n";
    return 0;
  }

  try {
    const auto t_load = Clock::now();
    std::unique_ptr<rptq::Model> model = rptq::Model::load(a.model_dir);
    const double load_s = seconds_since(t_load);
    const rptq::ModelConfig& c = model->config();
    const std::string label = a.label.empty() ? std::filesystem::path(a.model_dir).filename().string() : a.label;
    const std::int64_t B = a.batch, T = a.seqlen, ntok = B * T;

    std::mt19937_64 rng(a.seed);
    std::uniform_int_distribution<std::int32_t> dist(0, static_cast<std::int32_t>(c.vocab - 1));
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(ntok));
    for (auto& id : tokens) id = dist(rng);

    const Flops fl = count_flops(c, B, T);
    const json common = {{"model", label},   {"model_dir", a.model_dir}, {"arch", c.arch_name()},
                         {"hidden", c.hidden}, {"layers", c.layers},      {"heads", c.heads},
                         {"ffn", c.intermediate}, {"vocab", c.vocab},     {"batch", B},
                         {"seqlen", T},        {"threads", threads}};

    // ---- sgemm ceiling, first pass (see below)
    struct Use {
      std::string name;
      std::int64_t M, N, K;
      double flops;     // of the forward spent in this shape
      std::string op;   // profile op; empty: not one of the forward's GEMMs
    };
    const std::int64_t rows_ = ntok, d_ = c.hidden, f_ = c.intermediate, e_ = c.embed_dim;
    const bool opt = c.arch == rptq::Architecture::OPT;
    const std::vector<Use> ceiling_uses = {
        {"q/k/v/o proj [rows x hidden] x [hidden x hidden]", rows_, d_, d_, fl.proj, "qkv_proj"},
        {"fc1 [rows x hidden] x [hidden x ffn]", rows_, f_, d_, opt ? fl.ffn / 2 : 0, "fc1"},
        {"fc2 [rows x ffn] x [ffn x hidden]", rows_, d_, f_, opt ? fl.ffn / 2 : 0, "fc2"},
        {"lm head [rows x embed] x [embed x vocab]", rows_, c.vocab, e_, fl.head, "head"},
        {"attention tiles", T, T, c.head_dim, fl.attn, "attention"},
        {"square 2048^3 (NN)", 2048, 2048, 2048, 0, ""},
    };
    auto measure_ceiling = [&] {
      std::vector<GemmResult> r;
      for (const auto& u : ceiling_uses) {
        if (u.op == "attention") r.push_back(bench_attention_tiles(c, B, T));
        else r.push_back(bench_sgemm(u.name, u.M, u.N, u.K, u.op != ""));
      }
      return r;
    };
    const std::vector<GemmResult> ceiling_before = a.ceiling ? measure_ceiling() : std::vector<GemmResult>{};

    // ---- forward
    std::vector<double> times;
    volatile float sink = 0.0f;
    rptq::Tensor logits;  // kept across forwards, as an evaluation loop keeps its buffer
    for (int i = 0; i < a.warmup + a.repeats; ++i) {
      const auto t0 = Clock::now();
      model->forward(tokens, B, logits);
      const double s = seconds_since(t0);
      sink = sink + logits[0];
      if (i >= a.warmup) times.push_back(s);
    }
    const double med = median(times), best = min_of(times);
    json fwd = common;
    fwd.update({{"kind", "forward"},
                {"engine", engine_name()},
                {"load_s", load_s},
                {"warmup", a.warmup},
                {"repeats", a.repeats},
                {"times_s", times},
                {"median_s", med},
                {"min_s", best},
                {"tokens_per_s_median", ntok / med},
                {"tokens_per_s_best", ntok / best},
                {"flops", fl.total()},
                {"flops_breakdown",
                 {{"qkvo_proj", fl.proj},
                  {"ffn", fl.ffn},
                  {"attention_block_causal_as_computed", fl.attn},
                  {"attention_if_full_square", fl.attn_full},
                  {"attention_if_exact_causal", fl.attn_causal},
                  {"lm_head_all_positions", fl.head},
                  {"project_in", fl.embed}}},
                {"flop_counting",
                 "2*M*N*K per matmul; attention counted as computed: 64-query tiles over keys up to the tile end; "
                 "LM head over all batch*seqlen positions; norms/softmax/bias/activation not counted"},
                {"gflops_median", fl.total() / med * 1e-9},
                {"gflops_best", fl.total() / best * 1e-9}});
    std::cout << fwd.dump() << "\n";

    // ---- op profile
    std::vector<std::pair<std::string, double>> prof;  // op, median seconds
    double prof_total = 0.0, prof_maxdiff = -1.0;
    if (a.profile && profile_supported(c)) {
      std::map<std::string, std::vector<double>> per_op;
      std::vector<double> totals;
      ProfileScratch scratch;
      scratch.build_fused(*model);
      for (int i = 0; i < a.warmup + a.repeats; ++i) {
        OpTimes t;
        const auto t0 = Clock::now();
        rptq::Tensor logits = profiled_forward(*model, tokens, B, t, scratch);
        double total = seconds_since(t0);
        for (const auto& x : kExtras) total -= t.s[x];
        if (i == 0) {
          const rptq::Tensor ref = model->forward(tokens, B);
          double md = 0.0;
          for (std::int64_t j = 0; j < ref.numel(); ++j)
            md = std::max(md, static_cast<double>(std::fabs(ref[j] - logits[j])));
          prof_maxdiff = md;
        }
        if (i < a.warmup) continue;
        totals.push_back(total);
        for (const auto& op : kOpOrder) per_op[op].push_back(t.s.count(op) ? t.s.at(op) : 0.0);
        for (const auto& x : kExtras) per_op[x].push_back(t.s[x]);
      }
      prof_total = median(totals);
      for (const auto& op : kOpOrder) prof.emplace_back(op, median(per_op[op]));
      for (const auto& x : kExtras) prof.emplace_back(x, median(per_op[x]));
    } else if (a.profile) {
      std::cerr << "bench_forward: --profile supports pre-LN OPT with ReLU and no project_in/out only\n";
    }

    // ---- sgemm ceiling: the second pass (after the forward); the first ran before it. Per shape the better pass
    // counts: on a shared host the machine's speed drifts over seconds, and the ceiling is a best case.
    std::vector<GemmResult> gemms;
    std::vector<std::pair<double, double>> gemm_passes;  // GFLOP/s before, after the forward
    double peak = 0.0, matched = 0.0;
    std::map<std::string, double> op_gemm_rate;  // profile op -> sgemm GFLOP/s of its shape
    if (a.ceiling) {
      const std::vector<GemmResult> after = measure_ceiling();
      double weighted_time = 0.0, weighted_flops = 0.0;
      for (std::size_t i = 0; i < after.size(); ++i) {
        GemmResult g = ceiling_before[i].best_s <= after[i].best_s ? ceiling_before[i] : after[i];
        json j = common;
        j.update({{"kind", "sgemm"},
                  {"shape", g.name},
                  {"M", g.M},
                  {"N", g.N},
                  {"K", g.K},
                  {"trans_b", g.trans_b},
                  {"runs", ceiling_before[i].runs + after[i].runs},
                  {"best_s", g.best_s},
                  {"gflops_best", g.gflops()},
                  {"gflops_best_before_forward", ceiling_before[i].gflops()},
                  {"gflops_best_after_forward", after[i].gflops()},
                  {"gflops_median_before_forward", g.flops / ceiling_before[i].median_s * 1e-9},
                  {"gflops_median_after_forward", g.flops / after[i].median_s * 1e-9}});
        std::cout << j.dump() << "\n";
        g.runs = ceiling_before[i].runs + after[i].runs;
        gemms.push_back(g);
        gemm_passes.emplace_back(ceiling_before[i].gflops(), after[i].gflops());
        peak = std::max(peak, g.gflops());
        if (!ceiling_uses[i].op.empty()) {
          op_gemm_rate[ceiling_uses[i].op] = g.gflops();
          if (ceiling_uses[i].op == "qkv_proj") op_gemm_rate["o_proj"] = g.gflops();
          weighted_time += ceiling_uses[i].flops / (g.gflops() * 1e9);
          weighted_flops += ceiling_uses[i].flops;
        }
      }
      matched = weighted_flops / weighted_time * 1e-9;  // GFLOP/s
    }

    // ---- summary JSON
    const double gf_med = fl.total() / med * 1e-9;
    json sum = common;
    sum.update({{"kind", "summary"},
                {"engine", engine_name()},
                {"tokens_per_s_median", ntok / med},
                {"forward_gflops_median", gf_med},
                {"forward_gflops_best", fl.total() / best * 1e-9},
                {"openblas", openblas_info()}});
    if (a.ceiling) {
      sum["sgemm_ceiling_gflops"] = peak;
      sum["sgemm_shape_matched_gflops"] = matched;
      sum["ratio_forward_to_ceiling"] = gf_med / peak;
      sum["ratio_forward_to_shape_matched"] = gf_med / matched;
      // The same with the forward's best repeat: best against best, as the ceiling is a best-of-runs figure.
      sum["ratio_best_forward_to_ceiling"] = fl.total() / best * 1e-9 / peak;
      sum["ratio_best_forward_to_shape_matched"] = fl.total() / best * 1e-9 / matched;
    }
    if (!prof.empty()) {
      json p = json::object();
      for (const auto& [op, s] : prof) p[op] = s;
      sum["profile_median_s"] = p;
      sum["profile_total_s"] = prof_total;
      sum["profile_vs_forward_max_abs_logit_diff"] = prof_maxdiff;
    }
    std::cout << sum.dump() << "\n";

    // ---- human-readable table
    std::printf("\n== rptq forward: %s (%s, hidden %lld, %lld layers, ffn %lld, vocab %lld) batch %lld x seqlen %lld, "
                "%d threads, GEMMs on %s\n",
                label.c_str(), c.arch_name().c_str(), static_cast<long long>(c.hidden),
                static_cast<long long>(c.layers), static_cast<long long>(c.intermediate),
                static_cast<long long>(c.vocab), static_cast<long long>(B), static_cast<long long>(T), threads,
                rptq::blas::gemm_backend_name(rptq::blas::gemm_backend()));
    std::printf("   forward   median %.4f s  min %.4f s  (%d repeats after %d warm-up)  %.1f tokens/s  "
                "%.2f GFLOP/forward  %.1f GFLOP/s (best %.1f)\n",
                med, best, a.repeats, a.warmup, ntok / med, fl.total() * 1e-9, gf_med, fl.total() / best * 1e-9);
    std::printf("   FLOPs: q/k/v/o %.2f G, FFN %.2f G, attention %.2f G (64-query block-causal as computed; full square "
                "would be %.2f G, exact causal %.2f G), LM head %.2f G (all %lld positions)\n",
                fl.proj * 1e-9, fl.ffn * 1e-9, fl.attn * 1e-9, fl.attn_full * 1e-9, fl.attn_causal * 1e-9,
                fl.head * 1e-9, static_cast<long long>(ntok));
    if (a.ceiling) {
      std::printf("   %-66s %6s %6s %6s %5s %10s %9s %17s\n", "OpenBLAS sgemm (same process, same threads)", "M", "N", "K",
                  "runs", "best s", "GFLOP/s", "before / after");
      for (std::size_t i = 0; i < gemms.size(); ++i) {
        const GemmResult& g = gemms[i];
        std::printf("   %-66s %6lld %6lld %6lld %5d %10.5f %9.1f %8.1f /%7.1f\n", g.name.c_str(),
                    static_cast<long long>(g.M), static_cast<long long>(g.N), static_cast<long long>(g.K), g.runs,
                    g.best_s, g.gflops(), gemm_passes[i].first, gemm_passes[i].second);
      }
      const double gf_best = fl.total() / best * 1e-9;
      std::printf("   (best of two passes, before and after the forward; best GFLOP/s of each pass on the right)\n");
      std::printf("   sgemm ceiling (best of the above) %.1f GFLOP/s; forward / ceiling = %.1f%% (median forward), "
                  "%.1f%% (best forward)\n",
                  peak, 100.0 * gf_med / peak, 100.0 * gf_best / peak);
      std::printf("   shape-matched ceiling (forward's FLOPs at each GEMM's own best rate) %.1f GFLOP/s; "
                  "forward / shape-matched = %.1f%% (median forward), %.1f%% (best forward)\n",
                  matched, 100.0 * gf_med / matched, 100.0 * gf_best / matched);
    }
    if (!prof.empty()) {
      std::printf("   op profile (median of %d profiled forwards, total %.4f s vs forward median %.4f s; max |logit "
                  "diff| vs Model::forward %.3g)\n",
                  a.repeats, prof_total, med, prof_maxdiff);
      std::map<std::string, double> op_flops = {{"qkv_proj", fl.proj * 0.75}, {"o_proj", fl.proj * 0.25},
                                                {"fc1", fl.ffn / 2},           {"fc2", fl.ffn / 2},
                                                {"attention", fl.attn},        {"head", fl.head},
                                                {kHeadReused, fl.head},        {kQkvFused, fl.proj * 0.75}};
      op_gemm_rate[kHeadReused] = op_gemm_rate.count("head") ? op_gemm_rate["head"] : 0.0;
      op_gemm_rate[kQkvFused] = 0.0;
      std::printf("   %-18s %10s %7s %10s %12s %14s\n", "op", "seconds", "share", "GFLOP", "GFLOP/s", "sgemm GFLOP/s");
      for (const auto& [op, s] : prof) {
        const double share = prof_total > 0 ? 100.0 * s / prof_total : 0.0;
        const std::string name = op == kHeadReused ? "(head, reused*)" : op == kQkvFused ? "(qkv fused**)" : op;
        if (op_flops.count(op)) {
          const double gf = op_flops[op] * 1e-9;
          std::printf("   %-18s %10.4f %6.1f%% %10.2f %12.1f %14s\n", name.c_str(), s, share, gf, s > 0 ? gf / s : 0.0,
                      op_gemm_rate.count(op) && op_gemm_rate[op] > 0 ? fmt("%.1f", op_gemm_rate[op]).c_str() : "-");
        } else {
          std::printf("   %-18s %10.4f %6.1f%% %10s %12s %14s\n", name.c_str(), s, share, "-", "-", "-");
        }
      }
      std::printf("   * the head run again into a logits buffer kept across forwards (Model::head's reusing overload); "
                  "not part of the forward or the total: head minus this = the cost of a fresh logits buffer\n");
      std::printf("   ** q, k, v as one GEMM on the concatenated [3 x hidden, hidden] weight, same input, same point of "
                  "the layer; not part of the forward or the total: compare with qkv_proj\n");
    }
    std::fflush(stdout);

    // ---- logits dump for torch_forward.py --check-logits
    if (!a.dump_logits.empty()) {
      const rptq::Tensor logits = model->forward(tokens, B);
      std::ofstream out(a.dump_logits, std::ios::binary);
      const char magic[8] = {'R', 'P', 'T', 'Q', 'L', 'G', 'T', '1'};
      const std::int64_t hdr[3] = {B, T, c.vocab};
      out.write(magic, 8);
      out.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
      out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * 4));
      out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.numel() * 4));
      if (!out) {
        std::cerr << "bench_forward: cannot write " << a.dump_logits << "\n";
        return 1;
      }
      std::cout << json{{"kind", "logits_dump"}, {"file", a.dump_logits}, {"batch", B}, {"seqlen", T},
                        {"vocab", c.vocab}}
                       .dump()
                << "\n";
    }
    (void)sink;
  } catch (const std::exception& e) {
    std::cerr << "bench_forward: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
