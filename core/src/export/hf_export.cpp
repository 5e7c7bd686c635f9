#include "rptq/export/hf_export.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <regex>
#include <stdexcept>

#include "rptq/base/error.h"
#include "rptq/model/model_config.h"
#include "rptq/io/safetensors_writer.h"
#include "rptq/model/packed_weight.h"

namespace rptq {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTokenizerFiles[] = {"tokenizer.json",          "tokenizer_config.json", "vocab.json",
                                           "merges.txt",              "special_tokens_map.json",
                                           "tokenizer.model",         "generation_config.json"};

// A reorder permutation (reordered position -> original channel); null stands for the identity.
using Perm = std::shared_ptr<const std::vector<std::int32_t>>;

Perm perm_of(const ReorderIndex& r) {
  return r.is_identity() ? nullptr : std::make_shared<const std::vector<std::int32_t>>(r.order);
}

// A KV-width permutation (within each KV head) applied to every query head of the head's group, as apply_reorder
// permutes q rows (R2) and o_proj columns (R3).
Perm to_query_heads(const Perm& kv, const ModelConfig& m) {
  if (!kv) return nullptr;
  const std::int64_t hd = m.head_dim, group = m.heads / m.kv_heads;
  auto q = std::make_shared<std::vector<std::int32_t>>(static_cast<std::size_t>(m.heads * hd));
  for (std::int64_t h = 0; h < m.heads; ++h) {
    const std::int64_t g = h / group;
    for (std::int64_t k = 0; k < hd; ++k)
      (*q)[static_cast<std::size_t>(h * hd + k)] =
          static_cast<std::int32_t>(h * hd + ((*kv)[static_cast<std::size_t>(g * hd + k)] - g * hd));
  }
  return q;
}

// dst[rows[i], cols[j]] = src[i, j] for src [r, c] (null permutations: the identity).
void permute_into(const float* src, std::int64_t r, std::int64_t c, const Perm& rows, const Perm& cols, float* dst) {
  for (std::int64_t i = 0; i < r; ++i) {
    float* d = dst + static_cast<std::int64_t>(rows ? (*rows)[static_cast<std::size_t>(i)] : i) * c;
    const float* s = src + i * c;
    if (!cols) {
      std::copy_n(s, c, d);
      continue;
    }
    for (std::int64_t j = 0; j < c; ++j) d[(*cols)[static_cast<std::size_t>(j)]] = s[j];
  }
}

void check_perms(const std::string& name, std::int64_t r, std::int64_t c, const Perm& rows, const Perm& cols) {
  const auto size = [](const Perm& p) { return static_cast<std::int64_t>(p->size()); };
  if ((rows && size(rows) != r) || (cols && size(cols) != c))
    throw std::logic_error("hf export: permutation of the wrong size for " + name);
}

// The tensor in its original layout: out[rows[i], cols[j]] = w[i, j] (a 1-D tensor uses rows only). Without a
// permutation the model's own buffer is written as it is; otherwise the permuted copy is made when the writer
// reaches the tensor.
void add(std::vector<SafetensorsTensor>& out, std::string name, const Tensor& w, Perm rows = nullptr,
         Perm cols = nullptr) {
  if (w.empty()) return;
  SafetensorsTensor t;
  t.name = std::move(name);
  t.shape = w.shape();
  if (!rows && !cols) {
    t.values = w.span();
  } else {
    const std::int64_t r = w.dim(0), c = w.numel() / r;
    check_perms(t.name, r, c, rows, cols);
    t.produce = [&w, rows, cols, r, c](float* dst) { permute_into(w.data(), r, c, rows, cols, dst); };
  }
  out.push_back(std::move(t));
}

// A linear's weight: a packed one is dequantized (exactly the values the quantized model computes with) when the
// writer reaches it, one weight at a time.
void add_linear(std::vector<SafetensorsTensor>& out, const std::string& name, const LinearWeights& l, const Perm& rows,
                const Perm& cols) {
  if (l.packed) {
    SafetensorsTensor t;
    t.name = name + ".weight";
    t.shape = {l.out(), l.in()};
    check_perms(t.name, l.out(), l.in(), rows, cols);
    t.produce = [p = l.packed, rows, cols](float* dst) {
      std::vector<float> w(static_cast<std::size_t>(p->out * p->in));
      p->dequantize(w.data());
      permute_into(w.data(), p->out, p->in, rows, cols, dst);
    };
    out.push_back(std::move(t));
  } else {
    add(out, name + ".weight", l.weight, rows, cols);
  }
  add(out, name + ".bias", l.bias, rows);
}

void add_norm(std::vector<SafetensorsTensor>& out, const std::string& name, const NormWeights& n) {
  // gamma/beta are indexed by the original channel even when the norm gathers: written as they are, ungathered.
  add(out, name + ".weight", n.gamma);
  add(out, name + ".bias", n.beta);
}

// The model's fused state must be what the layer's recorded reorder produced (one apply_reorder on the loaded
// layout): the gather is R1/R4's order, a rotary model's rope_index follows R2's pairs. Anything else would be
// exported in a wrong layout, so it is refused.
void check_layer_layout(const ModelConfig& m, int l, const DecoderLayerWeights& w, const LayerReorder& r) {
  auto fail = [&](const std::string& what) {
    throw std::logic_error("hf export: layer " + std::to_string(l) + ": " + what +
                           " does not match the layer's recorded reorder");
  };
  auto gather_ok = [](const NormWeights& n, const ReorderIndex& idx) {
    return n.gather.empty() ? idx.is_identity() : n.gather == idx.order;
  };
  if (!gather_ok(w.attn_norm, r.r1)) fail("the attention norm's gather");
  if (!gather_ok(w.ffn_norm, r.r4)) fail("the FFN norm's gather");
  if (m.arch == Architecture::OPT) return;
  const std::int64_t hd = m.head_dim, half = hd / 2;
  if (w.rope_index.empty()) {
    if (!r.r2.is_identity()) fail("the rotary index");
    return;
  }
  if (static_cast<std::int64_t>(w.rope_index.size()) != m.kv_heads * half) fail("the rotary index");
  for (std::int64_t g = 0; g < m.kv_heads; ++g)
    for (std::int64_t i = 0; i < half; ++i) {
      const std::int32_t pair = r.r2.order[static_cast<std::size_t>(g * hd + i)] - static_cast<std::int32_t>(g * hd);
      if (w.rope_index[static_cast<std::size_t>(g * half + i)] != pair) fail("the rotary index");
    }
}

std::vector<SafetensorsTensor> hf_tensors(const QuantizedModel& q) {
  const Model& model = q.model();
  const ModelConfig& m = model.config();
  const bool opt = m.arch == Architecture::OPT;
  const std::string base = opt ? "model.decoder." : "model.";
  std::vector<SafetensorsTensor> out;

  const Model::OuterWeights top = model.outer_weights();
  add(out, base + "embed_tokens.weight", top.embed_tokens);
  add(out, base + "embed_positions.weight", top.embed_positions);
  add(out, base + "project_in.weight", top.project_in.weight);
  add(out, base + "project_out.weight", top.project_out.weight);
  add_norm(out, opt ? base + "final_layer_norm" : base + "norm", top.final_norm);
  add(out, "lm_head.weight", top.lm_head);

  for (int l = 0; l < static_cast<int>(m.layers); ++l) {
    const DecoderLayerWeights& w = model.layer(l);
    const LayerReorder& r = q.layer(l).reorder;
    check_layer_layout(m, l, w, r);
    const Perm r1 = perm_of(r.r1), r2 = perm_of(r.r2), r3 = perm_of(r.r3), r4 = perm_of(r.r4), r5 = perm_of(r.r5);
    const Perm r2q = to_query_heads(r2, m), r3q = to_query_heads(r3, m);
    const std::string p = base + "layers." + std::to_string(l) + ".";
    add_norm(out, p + (opt ? "self_attn_layer_norm" : "input_layernorm"), w.attn_norm);
    add_norm(out, p + (opt ? "final_layer_norm" : "post_attention_layernorm"), w.ffn_norm);
    add_linear(out, p + "self_attn.q_proj", w.q, r2q, r1);
    add_linear(out, p + "self_attn.k_proj", w.k, r2, r1);
    add_linear(out, p + "self_attn.v_proj", w.v, r3, r1);
    add_linear(out, p + (opt ? "self_attn.out_proj" : "self_attn.o_proj"), w.o, nullptr, r3q);
    if (opt) {
      add_linear(out, p + "fc1", w.fc1, r5, r4);
      add_linear(out, p + "fc2", w.fc2, nullptr, r5);
    } else {
      add_linear(out, p + "mlp.gate_proj", w.gate, r5, r4);
      add_linear(out, p + "mlp.up_proj", w.up, r5, r4);
      add_linear(out, p + "mlp.down_proj", w.down, nullptr, r5);
    }
  }
  return out;
}

// The source folder's config.json must describe the quantized model (it is copied as the export's config).
void check_source_config(const ModelConfig& src, const ModelConfig& m, const fs::path& dir) {
  auto diff = [&](const char* what, std::int64_t a, std::int64_t b) {
    if (a != b)
      throw InputError(dir.string() + ": config.json gives " + what + " " + std::to_string(a) +
                       ", the quantized model has " + std::to_string(b) + " (not the folder it was loaded from)");
  };
  if (src.model_type != m.model_type)
    throw InputError(dir.string() + ": config.json is a " + src.model_type + " model, the quantized model is " +
                     m.model_type + " (not the folder it was loaded from)");
  diff("layers", src.layers, m.layers);
  diff("hidden size", src.hidden, m.hidden);
  diff("intermediate size", src.intermediate, m.intermediate);
  diff("heads", src.heads, m.heads);
  diff("KV heads", src.kv_heads, m.kv_heads);
  diff("head size", src.head_dim, m.head_dim);
  diff("vocabulary", src.vocab, m.vocab);
  diff("embedding size", src.embed_dim, m.embed_dim);
  diff("tied embeddings", src.tie_embeddings, m.tie_embeddings);
}

std::string read_whole(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw InputError(p.string() + ": cannot read");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError(p.string() + ": cannot read");
  return s;
}

// Files of an earlier model in OUT_DIR that loaders would read instead of (or beside) what this export writes.
bool stale_model_file(const std::string& name, const fs::path& source) {
  static const std::regex kShard(R"((model-\d+-of-\d+\.safetensors)|(pytorch_model-\d+-of-\d+\.bin))");
  // config.json too: it is written last, so an interrupted export leaves a folder that is visibly unfinished.
  if (name == "config.json" || name == "model.safetensors.index.json" || name == "pytorch_model.bin" ||
      name == "pytorch_model.bin.index.json")
    return true;
  if (std::regex_match(name, kShard)) return true;
  for (const char* t : kTokenizerFiles) {
    std::error_code ec;
    if (name == t && !fs::is_regular_file(source / t, ec)) return true;
  }
  return false;
}

}  // namespace

void export_hf_folder(const QuantizedModel& q, const fs::path& source_model_dir, const fs::path& out_dir,
                      bool overwrite, DType dtype, const std::function<bool(double, const std::string&)>& progress) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
    throw InputError("cannot export weights as " + std::string(dtype_name(dtype)) + " (supported: F32, F16, BF16)");
  const ModelConfig& m = q.model().config();
  if (q.layers() != m.layers) throw std::logic_error("hf export: the quantized model has no record of every layer");
  std::error_code ec;
  const fs::path config = source_model_dir / "config.json";
  if (!fs::is_regular_file(config, ec)) throw InputError(config.string() + ": not found (the source model's config)");
  check_source_config(ModelConfig::load(source_model_dir), m, source_model_dir);

  const bool existed = fs::exists(out_dir, ec);
  if (existed) {
    if (!fs::is_directory(out_dir, ec)) throw InputError(out_dir.string() + ": exists and is not a folder");
    if (fs::equivalent(out_dir, source_model_dir, ec))
      throw InputError(out_dir.string() + ": is the source model's folder; export into another folder");
    if (!overwrite && !fs::is_empty(out_dir, ec))
      throw OutputExists(out_dir.string() + ": folder exists and is not empty, and overwriting it was not asked for");
  }
  fs::create_directories(out_dir, ec);
  if (ec) throw InputError(out_dir.string() + ": cannot create the folder (" + ec.message() + ")");

  std::vector<SafetensorsTensor> tensors = hf_tensors(q);
  const auto numel = [](const SafetensorsTensor& t) {
    std::int64_t n = 1;
    for (std::int64_t d : t.shape) n *= d;
    return n;
  };
  if (progress) {  // report before each tensor; a tensor given as a view becomes a copy so it has a turn too
    // In the order they are written (the file's name order), so the fraction only grows.
    std::sort(tensors.begin(), tensors.end(),
              [](const SafetensorsTensor& a, const SafetensorsTensor& b) { return a.name < b.name; });
    std::int64_t total = 0;
    for (const SafetensorsTensor& t : tensors) total += numel(t);
    std::int64_t before = 0;
    for (SafetensorsTensor& t : tensors) {
      const double fraction = total > 0 ? static_cast<double>(before) / static_cast<double>(total) : 0.0;
      std::function<void(float*)> inner = t.produce;
      if (!inner) inner = [v = t.values](float* dst) { std::copy(v.begin(), v.end(), dst); };
      t.produce = [inner = std::move(inner), fraction, name = t.name, &progress](float* dst) {
        if (!progress(fraction, name)) throw Cancelled();
        inner(dst);
      };
      before += numel(t);
    }
  }
  try {
    write_safetensors(out_dir / "model.safetensors", tensors, dtype,
                      {{"format", "pt"}, {"rptq", q.config().describe()}});
  } catch (const Cancelled&) {
    std::error_code rec;
    if (!existed) fs::remove(out_dir, rec);  // still empty: write_safetensors removed its temporary file
    throw;
  }
  if (overwrite) {  // only now: a cancelled or failed export leaves the earlier model whole
    for (const fs::directory_entry& e : fs::directory_iterator(out_dir, ec)) {
      std::error_code fec;
      if (e.is_regular_file(fec) && stale_model_file(e.path().filename().string(), source_model_dir)) {
        fs::remove(e.path(), fec);
        if (fec)
          throw InputError(e.path().string() + ": cannot remove the earlier model's file (" + fec.message() + ")");
      }
    }
    if (ec) throw InputError(out_dir.string() + ": cannot list the folder (" + ec.message() + ")");
  }
  for (const char* t : kTokenizerFiles)
    if (fs::is_regular_file(source_model_dir / t, ec)) write_file_atomic(out_dir / t, read_whole(source_model_dir / t));
  // Last: a folder without config.json is visibly not a finished model.
  write_file_atomic(out_dir / "config.json", read_whole(config));
  if (progress) progress(1.0, "done");
}

}  // namespace rptq
