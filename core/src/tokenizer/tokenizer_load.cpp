// Reading tokenizer files into a BpeSpec. Every problem becomes an InputError that names the file; the files may
// be corrupt or hostile, so types, ids and references between tokens are all checked before use.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "rptq/base/error.h"
#include "rptq/io/files.h"
#include "tokenizer/tokenizer_internal.h"

namespace rptq::detail {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kMaxNesting = 16;  // of Sequence steps

[[noreturn]] void fail(const std::string& where, const std::string& what) { throw InputError(where + ": " + what); }

// A regular file only (a FIFO or device is refused without blocking on it), at most 1 GiB (the largest real
// tokenizer.json files are tens of MB).
std::string read_text(const fs::path& p) { return read_file(p, std::uint64_t{1} << 30); }

json parse_json(const fs::path& p) {
  const std::string text = read_text(p);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(p.string(), std::string("invalid JSON: ") + e.what());
  }
}

// An optional side file (tokenizer_config.json, ...): null when absent, an error when present but unreadable.
json parse_optional(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec)) return nullptr;
  json j = parse_json(p);
  if (!j.is_object()) fail(p.string(), "expected a JSON object");
  return j;
}

std::string shown(std::string_view s) {
  std::string out = "'";
  out.append(s.substr(0, 80));
  if (s.size() > 80) out += "...";
  return out + "'";
}

const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

bool bool_or(const json& obj, const char* key, bool def) {
  const json* v = member(obj, key);
  return v ? v->get<bool>() : def;
}

std::string string_or(const json& obj, const char* key, std::string def) {
  const json* v = member(obj, key);
  return v ? v->get<std::string>() : def;
}

// Special tokens in config files are either "text" or {"content": "text", ...}.
std::optional<std::string> token_content(const json* v) {
  if (!v) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  if (v->is_object() && v->contains("content")) return v->at("content").get<std::string>();
  return std::nullopt;
}

std::int32_t checked_id(const json& v, std::string_view token, std::size_t limit, const std::string& where) {
  if (!v.is_number_integer()) fail(where, "id of token " + shown(token) + " is not an integer");
  const auto id = v.get<std::int64_t>();
  if (id < 0 || static_cast<std::uint64_t>(id) >= limit)
    fail(where, "id " + std::to_string(id) + " of token " + shown(token) + " is out of range");
  return static_cast<std::int32_t>(id);
}

std::shared_ptr<const Pattern> pattern_of(const json& p, const std::string& where) {
  if (const json* s = member(p, "String")) return Pattern::literal(s->get<std::string>());
  if (const json* r = member(p, "Regex")) return Pattern::regex(r->get<std::string>(), where);
  fail(where, "pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

PrependScheme prepend_scheme(const json& o, const std::string& where) {
  if (const json* s = member(o, "prepend_scheme")) {
    const auto v = s->get<std::string>();
    if (v == "always") return PrependScheme::Always;
    if (v == "first") return PrependScheme::First;
    if (v == "never") return PrependScheme::Never;
    fail(where, "unknown Metaspace prepend_scheme " + shown(v));
  }
  return bool_or(o, "add_prefix_space", true) ? PrependScheme::Always : PrependScheme::Never;
}

std::string type_of(const json& o, const std::string& where, const char* what) {
  if (!o.is_object()) fail(where, std::string(what) + " must be an object");
  const json* t = member(o, "type");
  if (!t || !t->is_string()) fail(where, std::string(what) + " has no type");
  return t->get<std::string>();
}

void add_normalizer(const json& n, BpeSpec& spec, const std::string& where, int depth) {
  if (depth > kMaxNesting) fail(where, "normalizers nested too deeply");
  const std::string type = type_of(n, where, "normalizer");
  if (type == "Sequence") {
    for (const json& c : n.at("normalizers")) add_normalizer(c, spec, where, depth + 1);
  } else if (type == "Prepend") {
    spec.normalizers.push_back({NormStep::Kind::Prepend, n.at("prepend").get<std::string>(), nullptr});
  } else if (type == "Replace") {
    spec.normalizers.push_back(
        {NormStep::Kind::Replace, n.at("content").get<std::string>(), pattern_of(n.at("pattern"), where)});
  } else if (type == "NFC") {
    // Accepted as the identity: text is virtually always NFC already (no Unicode composition tables here).
  } else {
    fail(where, "unsupported normalizer type " + shown(type));
  }
  if (spec.normalizers.size() > kMaxPipelineSteps)
    fail(where, "more than " + std::to_string(kMaxPipelineSteps) + " normalizer steps");
}

void add_pre_tokenizer(const json& p, BpeSpec& spec, const std::string& where, int depth) {
  if (depth > kMaxNesting) fail(where, "pre-tokenizers nested too deeply");
  const std::string type = type_of(p, where, "pre_tokenizer");
  PreStep s;
  if (type == "Sequence") {
    for (const json& c : p.at("pretokenizers")) add_pre_tokenizer(c, spec, where, depth + 1);
    return;
  } else if (type == "Split") {
    s.kind = PreStep::Kind::Split;
    s.pattern = pattern_of(p.at("pattern"), where);
    const std::string b = p.at("behavior").get<std::string>();
    if (b == "Removed") s.behavior = SplitBehavior::Removed;
    else if (b == "Isolated") s.behavior = SplitBehavior::Isolated;
    else if (b == "MergedWithPrevious") s.behavior = SplitBehavior::MergedWithPrevious;
    else if (b == "MergedWithNext") s.behavior = SplitBehavior::MergedWithNext;
    else if (b == "Contiguous") s.behavior = SplitBehavior::Contiguous;
    else fail(where, "unknown Split behavior " + shown(b));
    s.invert = bool_or(p, "invert", false);
  } else if (type == "Digits") {
    s.kind = PreStep::Kind::Split;
    s.pattern = Pattern::regex(bool_or(p, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)", where);
  } else if (type == "ByteLevel") {
    s.kind = PreStep::Kind::ByteLevel;
    s.add_prefix_space = bool_or(p, "add_prefix_space", true);
    if (bool_or(p, "use_regex", true)) s.pattern = Pattern::regex(kGpt2Pattern, where);
    spec.byte_level = true;
  } else if (type == "Metaspace") {
    s.kind = PreStep::Kind::Metaspace;
    s.replacement = string_or(p, "replacement", "\u2581");
    if (s.replacement.empty()) fail(where, "Metaspace replacement is empty");
    s.prepend = prepend_scheme(p, where);
    s.split = bool_or(p, "split", true);
  } else {
    fail(where, "unsupported pre_tokenizer type " + shown(type));
  }
  // The model maps bytes itself, so a ByteLevel step must come last (later steps would see GPT-2 characters).
  if (!spec.pre_tokenizers.empty() && spec.pre_tokenizers.back().kind == PreStep::Kind::ByteLevel)
    fail(where, "unsupported pre_tokenizer: " + type + " after ByteLevel");
  spec.pre_tokenizers.push_back(std::move(s));
  if (spec.pre_tokenizers.size() > kMaxPipelineSteps)
    fail(where, "more than " + std::to_string(kMaxPipelineSteps) + " pre-tokenizer steps");
}

void add_decoder(const json& d, BpeSpec& spec, bool& fused, const std::string& where, int depth) {
  if (depth > kMaxNesting) fail(where, "decoders nested too deeply");
  const std::string type = type_of(d, where, "decoder");
  DecodeStep s;
  if (type == "Sequence") {
    for (const json& c : d.at("decoders")) add_decoder(c, spec, fused, where, depth + 1);
    return;
  } else if (type == "Fuse") {
    fused = true;  // concatenation is what we do anyway
    return;
  } else if (type == "ByteLevel") {
    s.kind = DecodeStep::Kind::ByteLevel;
  } else if (type == "Replace") {
    s.kind = DecodeStep::Kind::Replace;
    s.pattern = pattern_of(d.at("pattern"), where);
    s.text = d.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    s.kind = DecodeStep::Kind::ByteFallback;
  } else if (type == "Strip") {
    s.kind = DecodeStep::Kind::Strip;
    s.text = d.at("content").get<std::string>();
    s.start = std::clamp(d.at("start").get<int>(), 0, 1 << 20);
    s.stop = std::clamp(d.at("stop").get<int>(), 0, 1 << 20);
    s.fused = fused;
    if (s.text.empty()) return;
  } else if (type == "Metaspace") {
    s.kind = DecodeStep::Kind::Metaspace;
    s.text = string_or(d, "replacement", "\u2581");
    s.pattern = Pattern::literal(s.text);
    s.prepend = prepend_scheme(d, where);
  } else {
    fail(where, "unsupported decoder type " + shown(type));
  }
  spec.decoders.push_back(std::move(s));
  if (spec.decoders.size() > kMaxPipelineSteps)
    fail(where, "more than " + std::to_string(kMaxPipelineSteps) + " decoder steps");
}

// Id of a token by its text: added tokens first, then the model vocabulary; -1 if unknown.
std::int32_t find_token(const BpeSpec& spec, std::string_view text) {
  for (const auto& a : spec.added)
    if (a.content == text) return a.id;
  auto it = spec.vocab.find(text);
  return it == spec.vocab.end() ? -1 : it->second;
}

void add_post_processor(const json& p, BpeSpec& spec, std::int32_t id_limit, const std::string& where, int depth) {
  if (depth > kMaxNesting) fail(where, "post-processors nested too deeply");
  const std::string type = type_of(p, where, "post_processor");
  const auto check = [&](const json& v, std::string_view name) { return checked_id(v, name, id_limit, where); };
  if (type == "Sequence") {
    for (const json& c : p.at("processors")) add_post_processor(c, spec, id_limit, where, depth + 1);
  } else if (type == "ByteLevel") {
    // offsets only
  } else if (type == "TemplateProcessing") {
    const json& specials = p.at("special_tokens");
    bool seen_sequence = false;
    for (const json& item : p.at("single")) {
      if (const json* seq = member(item, "Sequence")) {
        (void)seq;
        seen_sequence = true;
      } else if (const json* sp = member(item, "SpecialToken")) {
        const std::string name = sp->at("id").get<std::string>();
        const json* entry = member(specials, name.c_str());
        if (!entry) fail(where, "post_processor names unknown special token " + shown(name));
        for (const json& id : entry->at("ids")) (seen_sequence ? spec.suffix : spec.prefix).push_back(check(id, name));
      } else {
        fail(where, "unexpected item in post_processor template");
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    const json& cls = p.at("cls");
    const json& sep = p.at("sep");
    spec.prefix.push_back(check(cls.at(1), cls.at(0).get<std::string>()));
    spec.suffix.push_back(check(sep.at(1), sep.at(0).get<std::string>()));
  } else {
    fail(where, "unsupported post_processor type " + shown(type));
  }
}

// BOS/EOS from tokenizer_config.json, then special_tokens_map.json; add_bos_token/add_eos_token, when given,
// decide whether they wrap the text (as transformers' Llama tokenizers rebuild their template).
void apply_side_configs(BpeSpec& spec, const json& cfg, const std::string& cfg_where, const json& stm,
                        const std::string& stm_where) {
  const auto lookup = [&](const char* key) -> std::int32_t {
    for (auto [src, where] : {std::pair{&cfg, &cfg_where}, std::pair{&stm, &stm_where}}) {
      try {
        if (auto t = token_content(member(*src, key))) {
          const std::int32_t id = find_token(spec, *t);
          if (id >= 0) return id;
        }
      } catch (const json::exception& e) {
        fail(*where, std::string(key) + ": " + e.what());
      }
    }
    return -1;
  };
  spec.bos_id = lookup("bos_token");
  spec.eos_id = lookup("eos_token");
  if (spec.bos_id < 0 && !spec.prefix.empty()) spec.bos_id = spec.prefix.front();
  if (spec.eos_id < 0 && !spec.suffix.empty()) spec.eos_id = spec.suffix.back();
  try {
    const auto set = [](std::vector<std::int32_t>& v, std::int32_t id, bool on, bool front) {
      if (id < 0) return;
      const bool has = std::find(v.begin(), v.end(), id) != v.end();
      if (on && !has) v.insert(front ? v.begin() : v.end(), id);
      if (!on) std::erase(v, id);
    };
    if (const json* b = member(cfg, "add_bos_token")) set(spec.prefix, spec.bos_id, b->get<bool>(), true);
    if (const json* e = member(cfg, "add_eos_token")) set(spec.suffix, spec.eos_id, e->get<bool>(), false);
  } catch (const json::exception& e) {
    fail(cfg_where, e.what());
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const fs::path& dir) {
  const fs::path path = dir / "tokenizer.json";
  const std::string where = path.string();
  const json j = parse_json(path);
  BpeSpec spec;
  spec.source = where;
  try {
    if (!j.is_object()) fail(where, "expected a JSON object");
    const json* model = member(j, "model");
    if (!model || !model->is_object()) fail(where, "no \"model\" object");
    std::string type = member(*model, "type") ? model->at("type").get<std::string>() : "";
    if (type.empty() && member(*model, "merges")) type = "BPE";  // very old files leave the type out
    if (type != "BPE") fail(where, "unsupported tokenizer model type " + shown(type) + " (only BPE is supported)");
    spec.kind = "BPE (tokenizer.json)";

    const json* vocab = member(*model, "vocab");
    if (!vocab || !vocab->is_object()) fail(where, "model.vocab must be an object");
    const json* added = member(j, "added_tokens");
    if (added && !added->is_array()) fail(where, "added_tokens must be a list");
    // Real vocabularies are dense; this bound keeps a hostile id from sizing huge tables.
    const std::size_t limit = 2 * (vocab->size() + (added ? added->size() : 0)) + 1024;
    spec.vocab.reserve(vocab->size());
    for (const auto& [tok, id] : vocab->items()) spec.vocab[tok] = checked_id(id, tok, limit, where);

    if (const json* merges = member(*model, "merges")) {
      if (!merges->is_array()) fail(where, "model.merges must be a list");
      spec.merges.reserve(merges->size());
      std::int32_t rank = 0;
      for (const json& m : *merges) {
        std::string a, b;
        if (m.is_string()) {
          const auto s = m.get<std::string>();
          const auto sp = s.find(' ');
          if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
            fail(where, "merge " + std::to_string(rank) + " " + shown(s) + " is not two tokens");
          a = s.substr(0, sp);
          b = s.substr(sp + 1);
        } else if (m.is_array() && m.size() == 2) {
          a = m[0].get<std::string>();
          b = m[1].get<std::string>();
        } else {
          fail(where, "merge " + std::to_string(rank) + " is neither \"a b\" nor [\"a\", \"b\"]");
        }
        const auto id_of = [&](const std::string& t) {
          auto it = spec.vocab.find(t);
          if (it == spec.vocab.end())
            fail(where, "merge " + std::to_string(rank) + " names unknown token " + shown(t));
          return it->second;
        };
        const std::int32_t ia = id_of(a), ib = id_of(b), iab = id_of(a + b);
        spec.merges[pair_key(ia, ib)] = {rank, iab};  // a repeated pair keeps its last rank, as in tokenizers
        ++rank;
      }
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (!string_or(*model, key, "").empty()) fail(where, std::string("unsupported BPE option ") + key);
    if (auto unk = token_content(member(*model, "unk_token"))) {
      auto it = spec.vocab.find(*unk);
      spec.unk_id = it == spec.vocab.end() ? -1 : it->second;
    }
    spec.fuse_unk = bool_or(*model, "fuse_unk", false);
    spec.byte_fallback = bool_or(*model, "byte_fallback", false);
    spec.ignore_merges = bool_or(*model, "ignore_merges", false);

    if (added)
      for (const json& a : *added) {
        AddedToken t;
        t.content = a.at("content").get<std::string>();
        t.id = checked_id(a.at("id"), t.content, limit, where);
        t.special = bool_or(a, "special", false);
        t.lstrip = bool_or(a, "lstrip", false);
        t.rstrip = bool_or(a, "rstrip", false);
        t.single_word = bool_or(a, "single_word", false);
        spec.added.push_back(std::move(t));
      }

    if (const json* n = member(j, "normalizer")) add_normalizer(*n, spec, where, 0);
    if (const json* p = member(j, "pre_tokenizer")) add_pre_tokenizer(*p, spec, where, 0);
    bool fused = false;
    if (const json* d = member(j, "decoder")) add_decoder(*d, spec, fused, where, 0);
    if (const json* p = member(j, "post_processor"))
      add_post_processor(*p, spec, static_cast<std::int32_t>(std::min<std::size_t>(limit, INT32_MAX)), where, 0);
    spec.kind = spec.byte_level ? "byte-level BPE (tokenizer.json)"
                                : (spec.byte_fallback ? "SentencePiece-style BPE with byte fallback (tokenizer.json)"
                                                      : "BPE (tokenizer.json)");
  } catch (const json::exception& e) {
    fail(where, e.what());
  }

  // Template ids must be tokens (they go to the model as they are).
  std::int32_t max_id = -1;
  for (const auto& [tok, id] : spec.vocab) max_id = std::max(max_id, id);
  for (const auto& a : spec.added) max_id = std::max(max_id, a.id);
  for (const auto* ids : {&spec.prefix, &spec.suffix})
    for (std::int32_t id : *ids)
      if (id > max_id) fail(where, "post_processor id " + std::to_string(id) + " is not a token");

  const fs::path cfg_path = dir / "tokenizer_config.json", stm_path = dir / "special_tokens_map.json";
  const json cfg = parse_optional(cfg_path);
  const json stm = parse_optional(stm_path);
  apply_side_configs(spec, cfg, cfg_path.string(), stm, stm_path.string());
  return std::make_unique<BpeTokenizer>(std::move(spec));
}

std::unique_ptr<Tokenizer> load_vocab_merges(const fs::path& dir) {
  BpeSpec spec;
  spec.kind = "byte-level BPE (vocab.json + merges.txt)";
  spec.source = (dir / "vocab.json").string();

  const fs::path vocab_path = dir / "vocab.json";
  {
    const std::string where = vocab_path.string();
    const json v = parse_json(vocab_path);
    if (!v.is_object()) fail(where, "expected an object of token -> id");
    const std::size_t limit = 2 * v.size() + 1024;
    spec.vocab.reserve(v.size());
    for (const auto& [tok, id] : v.items()) spec.vocab[tok] = checked_id(id, tok, limit, where);
  }

  const fs::path merges_path = dir / "merges.txt";
  {
    const std::string where = merges_path.string();
    const std::string text = read_text(merges_path);
    std::size_t pos = 0, line_no = 0;
    std::int32_t rank = 0;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
      const auto sp = line.find(' ');
      if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size() ||
          line.find(' ', sp + 1) != std::string_view::npos)
        fail(where, "line " + std::to_string(line_no) + " " + shown(line) + " is not two tokens");
      const std::string a(line.substr(0, sp)), b(line.substr(sp + 1));
      const auto id_of = [&](const std::string& t) {
        auto it = spec.vocab.find(t);
        if (it == spec.vocab.end())
          fail(where, "line " + std::to_string(line_no) + " names token " + shown(t) + " missing from vocab.json");
        return it->second;
      };
      const std::int32_t ia = id_of(a), ib = id_of(b), iab = id_of(a + b);
      spec.merges[pair_key(ia, ib)] = {rank++, iab};
    }
  }

  const fs::path cfg_path = dir / "tokenizer_config.json";
  const std::string cfg_where = cfg_path.string();
  const json cfg = parse_optional(cfg_path);
  const fs::path stm_path = dir / "special_tokens_map.json";
  const std::string stm_where = stm_path.string();
  const json stm = parse_optional(stm_path);
  const json model_cfg = parse_optional(dir / "config.json");
  const fs::path added_path = dir / "added_tokens.json";
  const json added_json = parse_optional(added_path);

  bool add_prefix_space = false, add_bos = false, add_eos = false;
  std::string blame = added_path.string();  // the file being read, for type errors
  try {
    std::int32_t next_id = 0;
    for (const auto& [tok, id] : spec.vocab) next_id = std::max(next_id, id + 1);
    // Tokens added after training (added_tokens.json), then the special tokens the configs declare; a special
    // token missing from the vocabulary gets the next free id, as transformers does.
    if (added_json.is_object())
      for (const auto& [tok, id] : added_json.items()) {
        AddedToken t;
        t.content = tok;
        t.id = checked_id(id, tok, 2 * (spec.vocab.size() + added_json.size()) + 1024, added_path.string());
        next_id = std::max(next_id, t.id + 1);
        spec.added.push_back(std::move(t));
      }
    const auto add_special = [&](const json& v) {
      AddedToken t;
      if (auto c = token_content(&v)) t.content = *c;
      if (t.content.empty()) return;
      if (v.is_object()) {
        t.lstrip = bool_or(v, "lstrip", false);
        t.rstrip = bool_or(v, "rstrip", false);
        t.single_word = bool_or(v, "single_word", false);
      }
      for (auto& a : spec.added)
        if (a.content == t.content) {
          a.special = true;
          return;
        }
      t.id = find_token(spec, t.content);
      if (t.id < 0) t.id = next_id++;
      t.special = true;
      spec.added.push_back(std::move(t));
    };
    for (auto [src, where] : {std::pair{&cfg, &cfg_where}, std::pair{&stm, &stm_where}}) {
      blame = *where;
      for (const char* key :
           {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
        if (const json* v = member(*src, key)) add_special(*v);
      if (const json* extra = member(*src, "additional_special_tokens"))
        for (const json& v : *extra) add_special(v);
    }
    // A vocabulary in fairseq order (OPT, RoBERTa) reserves ids 0-3 for <s> <pad> </s> <unk>; Hugging Face's
    // converted tokenizers treat all four as special even where the configs name only some (OPT's <unk> is
    // written literally in PTB, and must stay one token to match the reference counts).
    const char* fairseq[] = {"<s>", "<pad>", "</s>", "<unk>"};
    for (std::int32_t i = 0; i < 4; ++i)
      if (auto it = spec.vocab.find(std::string_view(fairseq[i])); it != spec.vocab.end() && it->second == i)
        add_special(json(fairseq[i]));
    blame = cfg_where;
    if (const json* dec = member(cfg, "added_tokens_decoder"))
      for (const auto& [key, v] : dec->items()) {
        if (!bool_or(v, "special", false)) continue;
        add_special(v);
      }
    add_prefix_space = bool_or(cfg, "add_prefix_space", false);
    // OPT's tokenizer prepends </s>; plain GPT-2 style tokenizers add nothing unless told.
    blame = (dir / "config.json").string();
    const bool is_opt = string_or(model_cfg, "model_type", "") == "opt";
    blame = cfg_where;
    add_bos = bool_or(cfg, "add_bos_token", is_opt);
    add_eos = bool_or(cfg, "add_eos_token", false);
  } catch (const json::exception& e) {
    fail(blame, e.what());
  }

  PreStep pre;
  pre.kind = PreStep::Kind::ByteLevel;
  pre.add_prefix_space = add_prefix_space;
  pre.pattern = Pattern::regex(kGpt2Pattern, vocab_path.string());
  spec.pre_tokenizers.push_back(std::move(pre));
  spec.byte_level = true;
  DecodeStep dec;
  dec.kind = DecodeStep::Kind::ByteLevel;
  spec.decoders.push_back(std::move(dec));

  apply_side_configs(spec, cfg, cfg_where, stm, stm_where);
  spec.prefix.clear();
  spec.suffix.clear();
  if (add_bos && spec.bos_id >= 0) spec.prefix.push_back(spec.bos_id);
  if (add_eos && spec.eos_id >= 0) spec.suffix.push_back(spec.eos_id);
  return std::make_unique<BpeTokenizer>(std::move(spec));
}

}  // namespace rptq::detail
