#include "rptq/export/hf_export.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <memory>
#include <regex>
#include <stdexcept>

#include "rptq/base/error.h"
#include "rptq/model/model_config.h"
#include "rptq/io/safetensors_writer.h"
#include "rptq/method/weight_quant.h"
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

// The tensors outside the decoder layers (embeddings, positions, projections, final norm, untied head), as they
// are, under their Hugging Face names.
void add_outer(std::vector<SafetensorsTensor>& out, const Model& model) {
  const ModelConfig& m = model.config();
  const bool opt = m.arch == Architecture::OPT;
  const std::string base = opt ? "model.decoder." : "model.";
  const Model::OuterWeights top = model.outer_weights();
  add(out, base + "embed_tokens.weight", top.embed_tokens);
  add(out, base + "embed_positions.weight", top.embed_positions);
  add(out, base + "project_in.weight", top.project_in.weight);
  add(out, base + "project_out.weight", top.project_out.weight);
  add_norm(out, opt ? base + "final_layer_norm" : base + "norm", top.final_norm);
  add(out, "lm_head.weight", top.lm_head);
}

std::vector<SafetensorsTensor> hf_tensors(const QuantizedModel& q) {
  const Model& model = q.model();
  const ModelConfig& m = model.config();
  const bool opt = m.arch == Architecture::OPT;
  const std::string base = opt ? "model.decoder." : "model.";
  std::vector<SafetensorsTensor> out;
  add_outer(out, model);

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

namespace {

// Writes the folder: model.safetensors from `tensors` (file dtype `dtype`), then the removal of an earlier model's
// files, the tokenizer files and, last, config.json (`config_text`). The folder rules of export_hf_folder.
void write_folder(const QuantizedModel& q, const fs::path& source_model_dir, const fs::path& out_dir, bool overwrite,
                  std::vector<SafetensorsTensor> tensors, DType dtype, const std::map<std::string, std::string>& metadata,
                  const std::function<std::string()>& config_text,
                  const std::function<bool(double, const std::string&)>& progress) {
  const ModelConfig& m = q.model().config();
  if (q.layers() != m.layers) throw std::logic_error("hf export: the quantized model has no record of every layer");
  std::error_code ec;
  const fs::path config = source_model_dir / "config.json";
  if (!fs::is_regular_file(config, ec)) throw InputError(config.string() + ": not found (the source model's config)");
  check_source_config(ModelConfig::load(source_model_dir), m, source_model_dir);
  const std::string config_out = config_text();  // before anything is written: a bad config.json stops here

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
      if (t.produce_raw) {
        t.produce_raw = [inner = std::move(t.produce_raw), fraction, name = t.name, &progress](std::uint8_t* dst) {
          if (!progress(fraction, name)) throw Cancelled();
          inner(dst);
        };
      } else {
        std::function<void(float*)> inner = t.produce;
        if (!inner) inner = [v = t.values](float* dst) { std::copy(v.begin(), v.end(), dst); };
        t.produce = [inner = std::move(inner), fraction, name = t.name, &progress](float* dst) {
          if (!progress(fraction, name)) throw Cancelled();
          inner(dst);
        };
      }
      before += numel(t);
    }
  }
  try {
    write_safetensors(out_dir / "model.safetensors", tensors, dtype, metadata);
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
  write_file_atomic(out_dir / "config.json", config_out);
  if (progress) progress(1.0, "done");
}

// ---------------------------------------------------------------------------------------------------------------
// compressed-tensors

// `values` (count unsigned codes of `bits` bits) packed as compressed-tensors' pack_to_int32 packs one row: value i
// at bit i * bits, little-endian int32 words, the last word zero-padded.
void pack_row_int32(const std::uint32_t* values, std::int64_t count, int bits, std::uint32_t* words) {
  const std::int64_t nwords = (count * bits + 31) / 32;
  std::fill_n(words, nwords, 0u);
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t bit = i * bits;
    const std::uint32_t v = values[i];
    words[bit / 32] |= v << (bit % 32);
    if (bit % 32 + bits > 32) words[bit / 32 + 1] |= v >> (32 - bit % 32);
  }
}

struct ServedLinear {
  std::string name;  // module name, e.g. model.layers.0.self_attn.q_proj
  const LinearWeights* w;
  int bits;          // 16: kept in float
};

std::vector<ServedLinear> served_linears(const QuantizedModel& q) {
  const ModelConfig& m = q.model().config();
  const bool opt = m.arch == Architecture::OPT;
  const std::string base = opt ? "model.decoder." : "model.";
  std::vector<ServedLinear> out;
  for (int l = 0; l < static_cast<int>(m.layers); ++l) {
    const DecoderLayerWeights& w = q.model().layer(l);
    const std::string p = base + "layers." + std::to_string(l) + ".";
    auto add_one = [&](const std::string& name, const LinearWeights& lw) {
      out.push_back({p + name, &lw, lw.packed ? lw.packed->bits : kFullPrecisionBits});
    };
    add_one("self_attn.q_proj", w.q);
    add_one("self_attn.k_proj", w.k);
    add_one("self_attn.v_proj", w.v);
    add_one(opt ? "self_attn.out_proj" : "self_attn.o_proj", w.o);
    if (opt) {
      add_one("fc1", w.fc1);
      add_one("fc2", w.fc2);
    } else {
      add_one("mlp.gate_proj", w.gate);
      add_one("mlp.up_proj", w.up);
      add_one("mlp.down_proj", w.down);
    }
  }
  return out;
}

// Checks that the quantized model is what the serving target promises: identity R1/R2/R4 (no norm gather, no
// rotary permutation), uniform groups of the configured size, values in the scale dtype, zero points in range.
void check_served(const QuantizedModel& q) {
  const QuantConfig& c = q.config();
  if (c.target != ServeTarget::CompressedTensors)
    throw InputError("the compressed-tensors format needs a quantization made for it (--serving compressed-tensors): "
                     "RPTQ's own quantization (" + c.describe() + ") has per-cluster weight groups and reorders that "
                     "the format cannot hold");
  const ModelConfig& m = q.model().config();
  for (int l = 0; l < q.layers(); ++l) {
    const LayerReorder& r = q.layer(l).reorder;
    if (!r.r1.is_identity() || !r.r2.is_identity() || !r.r4.is_identity())
      throw std::logic_error("compressed-tensors export: layer " + std::to_string(l) + " has an R1, R2 or R4 reorder");
    check_layer_layout(m, l, q.model().layer(l), r);
  }
  for (const ServedLinear& s : served_linears(q)) {
    if (s.bits == kFullPrecisionBits) {
      if (s.w->weight.empty()) throw std::logic_error("compressed-tensors export: " + s.name + " has no weight");
      continue;
    }
    const PackedWeight& p = *s.w->packed;
    const std::int64_t group = c.weight_group > 0 ? c.weight_group : p.in;
    if (p.value_dtype != c.scale_dtype || (p.bits != 4 && p.bits != 8) || p.in % group != 0 ||
        p.group_boundaries != fixed_group_boundaries(p.in, group))
      throw std::logic_error("compressed-tensors export: " + s.name + " is not quantized in the target's format");
    for (float z : p.zero_points)
      if (z < static_cast<float>(code_min(p.bits)) || z > static_cast<float>(code_max(p.bits)) || z != std::nearbyint(z))
        throw std::logic_error("compressed-tensors export: " + s.name + " has a zero point outside the code range");
  }
}

void add_served_linear(std::vector<SafetensorsTensor>& out, const ServedLinear& s, DType scale_dtype) {
  const LinearWeights& l = *s.w;
  if (s.bits == kFullPrecisionBits) {
    add(out, s.name + ".weight", l.weight);
    add(out, s.name + ".bias", l.bias);
    return;
  }
  const std::shared_ptr<const PackedWeight> p = l.packed;
  const std::int64_t o = p->out, in = p->in, g = p->groups(), bits = p->bits;
  SafetensorsTensor packed;
  packed.name = s.name + ".weight_packed";
  const std::int64_t row_words = (in * bits + 31) / 32;  // a row's last word zero-padded (channel strategy)
  packed.shape = {o, row_words};
  packed.dtype = DType::I32;
  packed.produce_raw = [p, o, in, bits, row_words](std::uint8_t* dst) {
    const QuantizedWeight qw = p->unpack();
    const std::uint32_t offset = 1u << (bits - 1);
    std::vector<std::uint32_t> row(static_cast<std::size_t>(in));
    std::vector<std::uint32_t> words(static_cast<std::size_t>(row_words));
    for (std::int64_t r = 0; r < o; ++r) {
      for (std::int64_t c = 0; c < in; ++c)
        row[static_cast<std::size_t>(c)] =
            static_cast<std::uint32_t>(qw.codes[static_cast<std::size_t>(r * in + c)] + static_cast<int>(offset));
      pack_row_int32(row.data(), in, static_cast<int>(bits), words.data());
      std::memcpy(dst + r * row_words * 4, words.data(), words.size() * sizeof(std::uint32_t));
    }
  };
  out.push_back(std::move(packed));

  SafetensorsTensor scale;
  scale.name = s.name + ".weight_scale";
  scale.shape = {o, g};
  scale.dtype = scale_dtype;
  scale.values = std::span<const float>(p->scales);
  out.push_back(std::move(scale));

  SafetensorsTensor zp;
  zp.name = s.name + ".weight_zero_point";
  const std::int64_t zrows = (o * bits + 31) / 32;
  zp.shape = {zrows, g};
  zp.dtype = DType::I32;
  zp.produce_raw = [p, o, g, bits, zrows](std::uint8_t* dst) {
    // Packed down each column (pack_to_int32 with packed_dim 0): column k's o values form one packed row, stored
    // as column k of the [zrows, g] result.
    std::vector<std::uint32_t> col(static_cast<std::size_t>(o)), words(static_cast<std::size_t>(zrows));
    for (std::int64_t k = 0; k < g; ++k) {
      for (std::int64_t r = 0; r < o; ++r)
        col[static_cast<std::size_t>(r)] = static_cast<std::uint32_t>(
            static_cast<std::int32_t>(p->zero_points[static_cast<std::size_t>(r * g + k)]) + (1 << (bits - 1)));
      pack_row_int32(col.data(), o, static_cast<int>(bits), words.data());
      for (std::int64_t w = 0; w < zrows; ++w)
        std::memcpy(dst + (w * g + k) * 4, &words[static_cast<std::size_t>(w)], 4);
    }
  };
  out.push_back(std::move(zp));

  SafetensorsTensor shape;
  shape.name = s.name + ".weight_shape";
  shape.shape = {2};
  shape.dtype = DType::I64;
  shape.produce_raw = [o, in](std::uint8_t* dst) {
    const std::int64_t v[2] = {o, in};
    std::memcpy(dst, v, sizeof v);
  };
  out.push_back(std::move(shape));
  add(out, s.name + ".bias", l.bias);
}

std::vector<SafetensorsTensor> served_tensors(const QuantizedModel& q) {
  const Model& model = q.model();
  const ModelConfig& m = model.config();
  const bool opt = m.arch == Architecture::OPT;
  const std::string base = opt ? "model.decoder." : "model.";
  std::vector<SafetensorsTensor> out;
  add_outer(out, model);
  for (int l = 0; l < static_cast<int>(m.layers); ++l) {
    const DecoderLayerWeights& w = model.layer(l);
    const std::string p = base + "layers." + std::to_string(l) + ".";
    add_norm(out, p + (opt ? "self_attn_layer_norm" : "input_layernorm"), w.attn_norm);
    add_norm(out, p + (opt ? "final_layer_norm" : "post_attention_layernorm"), w.ffn_norm);
    if (q.config().kv_fp8 != KvFp8::Off)  // the FP8 cache scales: [1] per tensor, [kv_heads, 1, 1] per head
      for (Tap t : {Tap::K, Tap::V}) {
        const std::vector<float>& sc = q.layer(l).taps[static_cast<std::size_t>(t)].fp8_scales;
        const bool per_head = q.config().kv_fp8 == KvFp8::Head;
        if (static_cast<std::int64_t>(sc.size()) != (per_head ? m.kv_heads : 1))
          throw std::logic_error("compressed-tensors export: layer " + std::to_string(l) + " has no FP8 KV scales");
        SafetensorsTensor k;
        k.name = p + (t == Tap::K ? "self_attn.k_scale" : "self_attn.v_scale");
        k.shape = per_head ? std::vector<std::int64_t>{m.kv_heads, 1, 1} : std::vector<std::int64_t>{1};
        k.values = std::span<const float>(sc);
        out.push_back(std::move(k));
      }
  }
  for (const ServedLinear& s : served_linears(q)) add_served_linear(out, s, q.config().scale_dtype);
  return out;
}

nlohmann::ordered_json ct_config(const QuantizedModel& q) {
  const QuantConfig& c = q.config();
  const std::vector<ServedLinear> linears = served_linears(q);
  std::map<int, std::vector<std::string>> by_bits;
  // Every nn.Linear outside the decoder layers stays in float: the head, and OPT-350m's embedding projections.
  nlohmann::ordered_json ignore = nlohmann::ordered_json::array({"lm_head"});
  const Model::OuterWeights top = q.model().outer_weights();
  if (!top.project_in.weight.empty()) ignore.push_back("model.decoder.project_in");
  if (!top.project_out.weight.empty()) ignore.push_back("model.decoder.project_out");
  for (const ServedLinear& s : linears) {
    if (s.bits == kFullPrecisionBits)
      ignore.push_back(s.name);
    else
      by_bits[s.bits].push_back(s.name);
  }
  nlohmann::ordered_json groups = nlohmann::ordered_json::object();
  int i = 0;
  for (const auto& [bits, names] : by_bits) {
    nlohmann::ordered_json targets = nlohmann::ordered_json::array();
    if (by_bits.size() == 1)
      targets.push_back("Linear");  // every linear but those in "ignore"
    else
      for (const std::string& n : names) targets.push_back(n);
    groups["group_" + std::to_string(i++)] = {
        {"targets", targets},
        {"weights",
         {{"num_bits", bits},
          {"type", "int"},
          {"symmetric", false},
          {"group_size", c.weight_group > 0 ? nlohmann::ordered_json(c.weight_group) : nlohmann::ordered_json(nullptr)},
          {"strategy", c.weight_group > 0 ? "group" : "channel"},
          {"dynamic", false},
          {"observer", "minmax"}}},
        {"input_activations", nullptr},
        {"output_activations", nullptr},
        {"format", "pack-quantized"}};
  }
  nlohmann::ordered_json j;
  j["quant_method"] = "compressed-tensors";
  j["format"] = "pack-quantized";
  j["quantization_status"] = "compressed";
  j["config_groups"] = groups;
  j["ignore"] = ignore;
  if (c.kv_fp8 == KvFp8::Off)
    j["kv_cache_scheme"] = nullptr;
  else
    j["kv_cache_scheme"] = {{"num_bits", 8},          {"type", "float"},
                            {"symmetric", true},      {"group_size", nullptr},
                            {"strategy", c.kv_fp8 == KvFp8::Head ? "attn_head" : "tensor"},
                            {"dynamic", false}};
  j["global_compression_ratio"] = nullptr;
  return j;
}

}  // namespace

void export_hf_folder(const QuantizedModel& q, const fs::path& source_model_dir, const fs::path& out_dir,
                      bool overwrite, DType dtype, const std::function<bool(double, const std::string&)>& progress) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
    throw InputError("cannot export weights as " + std::string(dtype_name(dtype)) + " (supported: F32, F16, BF16)");
  if (q.config().target != ServeTarget::None)
    throw InputError(out_dir.string() + ": a quantization made for the " + std::string(target_name(q.config().target)) +
                     " serving format is exported in that format (--format " + target_name(q.config().target) + ")");
  write_folder(q, source_model_dir, out_dir, overwrite, hf_tensors(q), dtype,
               {{"format", "pt"}, {"rptq", q.config().describe()}},
               [&] { return read_whole(source_model_dir / "config.json"); }, progress);
}

std::string compressed_tensors_config_json(const QuantizedModel& q) { return ct_config(q).dump(2); }

void export_compressed_tensors(const QuantizedModel& q, const fs::path& source_model_dir, const fs::path& out_dir,
                               bool overwrite, const std::function<bool(double, const std::string&)>& progress) {
  check_served(q);
  auto config_text = [&] {
    const fs::path config = source_model_dir / "config.json";
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(read_whole(config));
    } catch (const nlohmann::json::exception& e) {
      throw InputError(config.string() + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw InputError(config.string() + ": not a JSON object");
    j["quantization_config"] = ct_config(q);
    return j.dump(2) + "\n";
  };
  write_folder(q, source_model_dir, out_dir, overwrite, served_tensors(q), DType::F32,
               {{"format", "pt"}, {"rptq", q.config().describe()}}, config_text, progress);
}

}  // namespace rptq
