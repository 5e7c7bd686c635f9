// The BPE engine shared by both tokenizer formats. It follows Hugging Face's tokenizers step by step so ids match:
// added tokens are cut out of the raw text first, each remaining segment is normalized and pre-tokenized on its
// own, and each piece ("word") is split into characters (or bytes, for byte-level models) that are merged by rank.
#include <algorithm>
#include <cstdio>
#include <deque>
#include <mutex>
#include <queue>

#include "rptq/base/error.h"
#include "tokenizer/tokenizer_internal.h"

namespace rptq::detail {

namespace {

constexpr std::size_t kCacheMaxWord = 256;     // longer words are not cached (SentencePiece-style whole segments)
constexpr std::size_t kCacheMaxEntries = 200000;

// Unicode White_Space (Rust's char::is_whitespace, which Hugging Face's lstrip/rstrip use).
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Start of the character that ends at s[end] (a stray byte is a character of its own).
std::size_t char_before(std::string_view s, std::size_t end, std::size_t floor) {
  std::size_t start = end - 1;
  while (start > floor && end - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return start + utf8_char_len(s, start) == end ? start : end - 1;
}

// Code point of the character s[i, i + len) as utf8_char_len measured it.
char32_t decode_cp(std::string_view s, std::size_t i, std::size_t len) {
  const auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k])); };
  switch (len) {
    case 1: return b(0) < 0x80 ? b(0) : 0xFFFD;  // a stray byte stands for no character
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

// The size of s once every match of pat is replaced by `with`, with the matches (found once, for replace_all).
std::size_t replaced_size(const std::string& s, const Pattern& pat, std::string_view with,
                          std::vector<std::pair<std::size_t, std::size_t>>& m) {
  m.clear();
  pat.find_all(s, m);
  std::size_t size = s.size();
  for (auto [b, e] : m) size = size - (e - b) + with.size();
  return size;
}

void replace_all(std::string& s, const std::vector<std::pair<std::size_t, std::size_t>>& m, std::string_view with,
                 std::size_t size) {
  if (m.empty()) return;
  std::string out;
  out.reserve(size);
  std::size_t last = 0;
  for (auto [b, e] : m) {
    out.append(s, last, b - last);
    out += with;
    last = e;
  }
  out.append(s, last, std::string::npos);
  s = std::move(out);
}

}  // namespace

// Per-call buffers: owned strings behind the pieces' string_views, and match lists.
struct BpeTokenizer::Scratch {
  std::deque<std::string> storage;
  std::vector<Piece> cur, next;
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  std::size_t growth_left = 0;  // bytes the normalizers and pre-tokenizers may still add (kGrowthFactor)
};

void BpeTokenizer::grow(Scratch& sc, std::size_t added, const char* stage) const {
  if (added <= sc.growth_left) {
    sc.growth_left -= added;
    return;
  }
  throw InputError(spec_.source + ": the " + stage + " would make the text more than " +
                   std::to_string(kGrowthFactor + 1) + " times its size + " + std::to_string(kGrowthSlack) +
                   " bytes; refusing this tokenizer (real normalizers add a few bytes per space)");
}

BpeTokenizer::BpeTokenizer(BpeSpec spec) : spec_(std::move(spec)) {
  std::int32_t max_id = -1;
  for (const auto& [tok, id] : spec_.vocab) max_id = std::max(max_id, id);
  for (const auto& a : spec_.added) max_id = std::max(max_id, a.id);
  id_token_.resize(static_cast<std::size_t>(max_id + 1));
  id_flags_.assign(id_token_.size(), 0);
  for (const auto& [tok, id] : spec_.vocab) {
    id_token_[id] = tok;
    id_flags_[id] = kPresent;
  }
  // Added tokens win on decode, as in Hugging Face (stories260k's id 1 is "\n<s>\n" in the vocab, "<s>" added).
  for (const auto& a : spec_.added) {
    id_token_[a.id] = a.content;
    id_flags_[a.id] = kPresent | kAdded | (a.special ? kSpecial : 0);
  }
  for (std::int32_t id : {spec_.bos_id, spec_.eos_id})
    if (id >= 0 && id < vocab_size()) id_flags_[id] |= kSpecial;

  const auto& chars = gpt2_byte_chars();
  for (int b = 0; b < 256; ++b) {
    auto it = spec_.vocab.find(chars[b]);
    byte_ids_[b] = it == spec_.vocab.end() ? -1 : it->second;
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    it = spec_.vocab.find(std::string_view(name));
    fallback_ids_[b] = it == spec_.vocab.end() ? -1 : it->second;
  }
  for (std::size_t i = 0; i < spec_.added.size(); ++i) {
    const auto& c = spec_.added[i].content;
    if (!c.empty()) added_by_byte_[static_cast<unsigned char>(c[0])].push_back(i);
    if (spec_.added[i].single_word && !word_char_)
      word_char_ = Pattern::regex(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])", "word characters");
  }
  for (auto& list : added_by_byte_)
    std::stable_sort(list.begin(), list.end(), [&](std::size_t a, std::size_t b) {
      return spec_.added[a].content.size() > spec_.added[b].content.size();
    });
}

BpeTokenizer::~BpeTokenizer() = default;

bool BpeTokenizer::adds_bos() const {
  return spec_.bos_id >= 0 && std::find(spec_.prefix.begin(), spec_.prefix.end(), spec_.bos_id) != spec_.prefix.end();
}

std::vector<std::int32_t> BpeTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special) out.insert(out.end(), spec_.prefix.begin(), spec_.prefix.end());
  Scratch sc;
  sc.growth_left = kGrowthFactor * text.size() + kGrowthSlack;

  // Cut added tokens out of the raw text, leftmost then longest first (lstrip/rstrip swallow adjacent spaces).
  std::size_t seg = 0, pos = 0;
  while (pos < text.size()) {
    const AddedToken* hit = nullptr;
    for (std::size_t idx : added_by_byte_[static_cast<unsigned char>(text[pos])]) {
      const AddedToken& a = spec_.added[idx];
      if (text.compare(pos, a.content.size(), a.content) != 0) continue;
      if (a.single_word) {
        // Only as a whole word: no word character (regex \w, as Hugging Face's \b) right before or after.
        const std::size_t end = pos + a.content.size();
        if (pos > 0) {
          const std::size_t start = char_before(text, pos, 0);
          if (word_char_->match_at(text, start) == pos - start) continue;
        }
        if (end < text.size() && word_char_->match_at(text, end) > 0) continue;
      }
      hit = &a;
      break;
    }
    if (!hit) {
      ++pos;
      continue;
    }
    std::size_t b = pos, e = pos + hit->content.size();
    if (hit->lstrip)
      while (b > seg) {
        const std::size_t start = char_before(text, b, seg);
        if (!is_white_space(decode_cp(text, start, b - start))) break;
        b = start;
      }
    if (hit->rstrip)
      while (e < text.size()) {
        const std::size_t len = utf8_char_len(text, e);
        if (!is_white_space(decode_cp(text, e, len))) break;
        e += len;
      }
    if (b > seg) encode_segment(text.substr(seg, b - seg), seg == 0, out, sc);
    out.push_back(hit->id);
    seg = pos = e;
  }
  if (seg < text.size()) encode_segment(text.substr(seg), seg == 0, out, sc);

  if (add_special) out.insert(out.end(), spec_.suffix.begin(), spec_.suffix.end());
  return out;
}

void BpeTokenizer::encode_segment(std::string_view seg, bool at_start, std::vector<std::int32_t>& out,
                                  Scratch& sc) const {
  sc.storage.clear();
  std::string_view text = seg;
  if (!spec_.normalizers.empty()) {
    std::string s(seg);
    for (const NormStep& n : spec_.normalizers) {
      if (n.kind == NormStep::Kind::Prepend) {
        if (s.empty()) continue;
        grow(sc, n.text.size(), "normalizer (Prepend)");
        s.insert(0, n.text);
      } else {
        const std::size_t size = replaced_size(s, *n.pattern, n.text, sc.matches);
        if (size > s.size()) grow(sc, size - s.size(), "normalizer (Replace)");
        replace_all(s, sc.matches, n.text, size);
      }
    }
    text = sc.storage.emplace_back(std::move(s));
  }
  if (text.empty()) return;

  sc.cur.clear();
  sc.cur.push_back({text, at_start});
  for (const PreStep& step : spec_.pre_tokenizers) {
    sc.next.clear();
    for (const Piece& p : sc.cur) apply_pre(step, p, sc.next, sc);
    std::swap(sc.cur, sc.next);
  }
  for (const Piece& p : sc.cur) encode_word(p.text, out);
}

// Splits one piece by a pre-tokenizer step, appending the resulting pieces.
void BpeTokenizer::apply_pre(const PreStep& step, const Piece& p, std::vector<Piece>& out, Scratch& sc) const {
  std::string_view s = p.text;
  SplitBehavior behavior = step.behavior;
  bool invert = step.invert;
  const Pattern* pattern = step.pattern.get();

  if (step.kind == PreStep::Kind::ByteLevel) {
    if (step.add_prefix_space && (s.empty() || s[0] != ' ')) {
      grow(sc, 1, "pre-tokenizer (ByteLevel prefix space)");
      std::string& t = sc.storage.emplace_back();
      t.reserve(s.size() + 1);
      t += ' ';
      t += s;
      s = t;
    }
    if (!pattern) {
      if (!s.empty()) out.push_back({s, p.at_start});
      return;
    }
    behavior = SplitBehavior::Isolated;
    invert = false;
  } else if (step.kind == PreStep::Kind::Metaspace) {
    // Spaces become the replacement first; then the prefix is added unless the piece now starts with one.
    const bool prepend = step.prepend == PrependScheme::Always || (step.prepend == PrependScheme::First && p.at_start);
    const bool prefixed = prepend && !s.starts_with(' ') && !s.starts_with(step.replacement);
    const std::size_t spaces = static_cast<std::size_t>(std::count(s.begin(), s.end(), ' '));
    const std::size_t size = s.size() + spaces * (step.replacement.size() - 1) + (prefixed ? step.replacement.size() : 0);
    if (size > s.size()) grow(sc, size - s.size(), "pre-tokenizer (Metaspace)");
    std::string t;
    t.reserve(size);
    if (prefixed) t += step.replacement;
    for (char c : s) {
      if (c == ' ')
        t += step.replacement;
      else
        t += c;
    }
    s = sc.storage.emplace_back(std::move(t));
    if (!step.split) {
      if (!s.empty()) out.push_back({s, p.at_start});
      return;
    }
    behavior = SplitBehavior::MergedWithNext;
    invert = false;
  }

  auto& m = sc.matches;
  m.clear();
  if (pattern) pattern->find_all(s, m);
  const auto emit = [&](std::size_t b, std::size_t e) {
    if (e > b) out.push_back({s.substr(b, e - b), p.at_start && b == 0});
  };
  if (step.kind == PreStep::Kind::Metaspace) {
    // Split before each replacement character (merged with the text that follows it).
    std::size_t start = 0;
    for (std::size_t at = s.find(step.replacement, 1); at != std::string_view::npos;
         at = s.find(step.replacement, at + step.replacement.size())) {
      emit(start, at);
      start = at;
    }
    emit(start, s.size());
    return;
  }

  // Spans of the piece: the matches and the gaps between them, flagged as delimiters (matches unless inverted).
  struct Span {
    std::size_t b, e;
    bool delim;
  };
  std::vector<Span> spans;
  spans.reserve(m.size() * 2 + 1);
  std::size_t last = 0;
  for (auto [b, e] : m) {
    if (b > last) spans.push_back({last, b, invert});
    spans.push_back({b, e, !invert});
    last = e;
  }
  if (last < s.size()) spans.push_back({last, s.size(), invert});

  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const Span& sp : spans) emit(sp.b, sp.e);
      break;
    case SplitBehavior::Removed:
      for (const Span& sp : spans)
        if (!sp.delim) emit(sp.b, sp.e);
      break;
    case SplitBehavior::MergedWithPrevious: {
      std::size_t start = 0;
      for (const Span& sp : spans)
        if (sp.delim) {
          emit(start, sp.e);
          start = sp.e;
        }
      emit(start, s.size());
      break;
    }
    case SplitBehavior::MergedWithNext: {
      std::size_t start = 0;
      for (const Span& sp : spans)
        if (sp.delim) {
          emit(start, sp.b);
          start = sp.b;
        }
      emit(start, s.size());
      break;
    }
    case SplitBehavior::Contiguous: {
      std::size_t i = 0;
      while (i < spans.size()) {
        std::size_t j = i + 1;
        if (spans[i].delim)
          while (j < spans.size() && spans[j].delim) ++j;
        emit(spans[i].b, spans[j - 1].e);
        i = j;
      }
      break;
    }
  }
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= kCacheMaxWord;
  if (cacheable) {
    std::shared_lock lock(cache_mu_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const std::size_t from = out.size();
  bpe(word, out);
  if (cacheable) {
    std::vector<std::int32_t> ids(out.begin() + static_cast<std::ptrdiff_t>(from), out.end());
    std::unique_lock lock(cache_mu_);
    if (cache_.size() >= kCacheMaxEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

// Byte-pair merging of one word. Symbols form a linked list; a min-heap holds candidate pairs by (rank, position),
// so the lowest-ranked pair is merged first and ties go to the leftmost, as in Hugging Face. Entries made stale by
// an earlier merge are recognised on pop and skipped.
void BpeTokenizer::bpe(std::string_view word, std::vector<std::int32_t>& out) const {
  if (spec_.ignore_merges) {
    // LLaMA-3 style: a word that is a whole token is taken as is.
    Vocab::const_iterator it;
    if (spec_.byte_level) {
      std::string mapped;
      for (char c : word) mapped += gpt2_byte_chars()[static_cast<unsigned char>(c)];
      it = spec_.vocab.find(mapped);
    } else {
      it = spec_.vocab.find(word);
    }
    if (it != spec_.vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }

  struct Sym {
    std::int32_t id, prev, next;
    bool alive;
  };
  std::vector<Sym> sym;
  sym.reserve(word.size());
  bool last_unk = false;
  const auto push = [&](std::int32_t id) {
    const auto n = static_cast<std::int32_t>(sym.size());
    sym.push_back({id, n - 1, n + 1, true});
  };
  // A character the vocabulary lacks: its bytes as <0xNN> tokens, else <unk> (fused with a preceding <unk>).
  const auto unknown = [&](std::string_view bytes) {
    if (spec_.byte_fallback) {
      bool all = true;
      for (char c : bytes) all = all && fallback_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : bytes) push(fallback_ids_[static_cast<unsigned char>(c)]);
        last_unk = false;
        return;
      }
    }
    if (spec_.unk_id < 0) return;  // nothing to stand for it: dropped
    if (!(spec_.fuse_unk && last_unk)) push(spec_.unk_id);
    last_unk = true;
  };
  if (spec_.byte_level) {
    for (std::size_t i = 0; i < word.size(); ++i) {
      const std::int32_t id = byte_ids_[static_cast<unsigned char>(word[i])];
      if (id >= 0) {
        push(id);
        last_unk = false;
      } else {
        unknown(word.substr(i, 1));
      }
    }
  } else {
    for (std::size_t i = 0; i < word.size();) {
      const std::size_t len = utf8_char_len(word, i);
      const std::string_view ch = word.substr(i, len);
      if (auto it = spec_.vocab.find(ch); it != spec_.vocab.end()) {
        push(it->second);
        last_unk = false;
      } else {
        unknown(ch);
      }
      i += len;
    }
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  struct Cand {
    std::int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  const auto consider = [&](std::int32_t pos) {
    const std::int32_t nx = sym[pos].next;
    if (nx < 0) return;
    if (auto it = spec_.merges.find(pair_key(sym[pos].id, sym[nx].id)); it != spec_.merges.end())
      heap.push({it->second.first, pos, it->second.second});
  };
  for (std::int32_t i = 0; i + 1 < static_cast<std::int32_t>(sym.size()); ++i) consider(i);

  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& left = sym[c.pos];
    if (!left.alive || left.next < 0) continue;
    const std::int32_t nx = left.next;
    const auto it = spec_.merges.find(pair_key(left.id, sym[nx].id));
    if (it == spec_.merges.end() || it->second.second != c.id) continue;  // stale entry
    left.id = c.id;
    sym[nx].alive = false;
    left.next = sym[nx].next;
    if (left.next >= 0) sym[left.next].prev = c.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  for (std::int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

// ---- Decoding ----

std::string BpeTokenizer::token_bytes(std::int32_t id, bool first) const {
  if (id < 0 || id >= vocab_size()) return {};
  const std::uint8_t flags = id_flags_[id];
  if (!(flags & kPresent) || (flags & kSpecial)) return {};
  if (flags & kAdded) return id_token_[id];  // added tokens are text as written

  std::string s = id_token_[id];
  const std::size_t max_size = (kGrowthFactor + 1) * s.size() + kGrowthSlack;
  std::vector<std::pair<std::size_t, std::size_t>> m;
  const auto replace = [&](const Pattern& pattern, std::string_view with) {
    const std::size_t size = replaced_size(s, pattern, with, m);
    if (size > max_size)
      throw InputError(spec_.source + ": the decoder would make token " + std::to_string(id) + " more than " +
                       std::to_string(kGrowthFactor + 1) + " times its size + " + std::to_string(kGrowthSlack) +
                       " bytes; refusing this tokenizer");
    replace_all(s, m, with, size);
  };
  for (const DecodeStep& d : spec_.decoders) {
    switch (d.kind) {
      case DecodeStep::Kind::ByteLevel: {
        std::string t;
        t.reserve(s.size());
        for (std::size_t i = 0; i < s.size();) {
          const std::size_t len = utf8_char_len(s, i);
          const int b = gpt2_char_byte(decode_cp(s, i, len));
          if (b >= 0)
            t += static_cast<char>(b);
          else
            t.append(s, i, len);
          i += len;
        }
        s = std::move(t);
        break;
      }
      case DecodeStep::Kind::Replace:
        replace(*d.pattern, d.text);
        break;
      case DecodeStep::Kind::ByteFallback: {
        const auto hex = [](char c) -> int {
          if (c >= '0' && c <= '9') return c - '0';
          if (c >= 'A' && c <= 'F') return c - 'A' + 10;
          if (c >= 'a' && c <= 'f') return c - 'a' + 10;
          return -1;
        };
        if (s.size() == 6 && s.starts_with("<0x") && s[5] == '>' && hex(s[3]) >= 0 && hex(s[4]) >= 0)
          s = std::string(1, static_cast<char>(hex(s[3]) * 16 + hex(s[4])));
        break;
      }
      case DecodeStep::Kind::Strip: {
        // After Fuse the whole text is one token, so only its start (the first token) is stripped.
        if (!d.fused || first) {
          std::size_t cut = 0;
          for (int k = 0; k < d.start && s.compare(cut, d.text.size(), d.text) == 0; ++k) cut += d.text.size();
          s.erase(0, cut);
        }
        if (!d.fused)
          for (int k = 0; k < d.stop && s.size() >= d.text.size() && s.ends_with(d.text); ++k)
            s.resize(s.size() - d.text.size());
        break;
      }
      case DecodeStep::Kind::Metaspace: {
        // As Hugging Face: in the first token the replacement character is dropped (it was the prepended
        // space), elsewhere it is a space.
        replace(*d.pattern, first && d.prepend != PrependScheme::Never ? "" : " ");
        break;
      }
    }
  }
  return s;
}

std::string BpeTokenizer::decode(std::span<const std::int32_t> ids) const {
  std::string bytes;
  bool first = true;
  for (std::int32_t id : ids) {
    bytes += token_bytes(id, first);
    // Same rule as StreamDecoder: the text starts at the first token that stands for something.
    if (first && !token_bytes(id, false).empty()) first = false;
  }
  return sanitize_utf8(bytes);
}

}  // namespace rptq::detail
