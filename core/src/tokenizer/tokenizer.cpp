// Tokenizer entry point, UTF-8 helpers, GPT-2's byte map, PCRE2 patterns and the streaming decoder.
#include "rptq/tokenizer/tokenizer.h"

#include <filesystem>

#include "rptq/base/error.h"
#include "rptq/io/files.h"
#include "tokenizer/tokenizer_internal.h"

namespace rptq {
namespace detail {

namespace {

// Expected length of a sequence led by byte b, and the allowed range of its second byte (Unicode table 3-7);
// 0 for a byte that cannot lead one.
struct Lead {
  int len;
  unsigned char lo, hi;
};

Lead lead_of(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// How many bytes from s[i] belong to a well-formed (maybe cut short) sequence; `complete` tells whether it ended.
std::size_t valid_prefix(std::string_view s, std::size_t i, bool& complete) {
  const Lead l = lead_of(static_cast<unsigned char>(s[i]));
  complete = false;
  if (l.len == 0) return 0;
  if (l.len == 1) {
    complete = true;
    return 1;
  }
  std::size_t k = 1;
  for (; k < static_cast<std::size_t>(l.len); ++k) {
    if (i + k >= s.size()) return k;  // cut short by the end of the input
    const auto c = static_cast<unsigned char>(s[i + k]);
    const unsigned char lo = k == 1 ? l.lo : 0x80, hi = k == 1 ? l.hi : 0xBF;
    if (c < lo || c > hi) return k;
  }
  complete = true;
  return k;
}

}  // namespace

std::size_t utf8_char_len(std::string_view s, std::size_t i) {
  bool complete = false;
  const std::size_t n = valid_prefix(s, i, complete);
  return complete ? n : 1;
}

std::size_t utf8_incomplete_tail(std::string_view s) {
  const std::size_t n = s.size();
  for (std::size_t back = std::min<std::size_t>(3, n); back >= 1; --back) {
    bool complete = false;
    if (valid_prefix(s, n - back, complete) == back && !complete) return back;
  }
  return 0;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

// GPT-2 keeps printable Latin-1 bytes as themselves and moves the others to U+0100 onwards, in byte order.
struct ByteMap {
  std::array<char32_t, 256> cp{};
  std::array<std::string, 256> utf8;
  std::array<int, 0x144> byte_of{};  // code points up to U+0143

  ByteMap() {
    byte_of.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      cp[b] = printable ? static_cast<char32_t>(b) : next++;
      append_utf8(utf8[b], cp[b]);
      byte_of[cp[b]] = b;
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

const std::array<std::string, 256>& gpt2_byte_chars() { return byte_map().utf8; }

int gpt2_char_byte(char32_t cp) {
  const auto& m = byte_map();
  return cp < m.byte_of.size() ? m.byte_of[cp] : -1;
}

// ---- Pattern ----

std::shared_ptr<const Pattern> Pattern::regex(const std::string& re, const std::string& where) {
  std::shared_ptr<Pattern> p(new Pattern());
  int err = 0;
  PCRE2_SIZE off = 0;
  p->code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(),
                           PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
  if (!p->code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw InputError(where + ": cannot compile regex '" + re + "' at offset " + std::to_string(off) + ": " +
                     reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(p->code_, PCRE2_JIT_COMPLETE);  // best effort: the interpreter is used if JIT is unavailable
  return p;
}

std::shared_ptr<const Pattern> Pattern::literal(std::string text) {
  std::shared_ptr<Pattern> p(new Pattern());
  p->literal_ = std::move(text);
  return p;
}

Pattern::~Pattern() {
  if (code_) pcre2_code_free(code_);
}

void Pattern::find_all(std::string_view s, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  if (!code_) {
    if (literal_.empty()) return;
    for (std::size_t at = s.find(literal_); at != std::string_view::npos; at = s.find(literal_, at + literal_.size()))
      out.emplace_back(at, at + literal_.size());
    return;
  }
  using MatchData = std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>;
  using Context = std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)>;
  using JitStack = std::unique_ptr<pcre2_jit_stack, decltype(&pcre2_jit_stack_free)>;
  MatchData md(pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
  Context ctx(nullptr, &pcre2_match_context_free);
  JitStack stack(nullptr, &pcre2_jit_stack_free);
  if (!md) throw std::bad_alloc();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const int rc = pcre2_match(code_, subject, s.size(), pos, 0, md.get(), ctx.get());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !stack) {
      // Very long runs can outgrow JIT's default 32 KiB stack: retry this call with a large one.
      ctx.reset(pcre2_match_context_create(nullptr));
      stack.reset(pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr));
      if (!ctx || !stack) throw std::bad_alloc();
      pcre2_jit_stack_assign(ctx.get(), nullptr, stack.get());
      continue;
    }
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw InputError(std::string("tokenizer: regex matching failed: ") + reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    const std::size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {
      // Empty match: step over one character so the scan always advances.
      if (b >= s.size()) break;
      pos = b + utf8_char_len(s, b);
    }
  }
}

std::size_t Pattern::match_at(std::string_view s, std::size_t pos) const {
  if (!code_ || pos >= s.size()) return 0;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
  if (!md) throw std::bad_alloc();
  const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos, PCRE2_ANCHORED, md.get(),
                             nullptr);
  if (rc < 0) return 0;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
  return ov[1] - ov[0];
}

}  // namespace detail

// ---- Public helpers ----

std::string sanitize_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  while (i < bytes.size()) {
    bool complete = false;
    const std::size_t n = detail::valid_prefix(bytes, i, complete);
    if (complete) {
      out.append(bytes.data() + i, n);
      i += n;
    } else {
      // One U+FFFD per maximal ill-formed subpart (as Python's and Rust's lossy decoders do).
      out += "\xEF\xBF\xBD";
      i += n == 0 ? 1 : n;
    }
  }
  return out;
}

std::string StreamDecoder::push(std::int32_t id) {
  pending_ += tok_.token_bytes(id, first_);
  // The text starts with the first token that stands for something (special tokens give "" either way).
  if (first_ && !tok_.token_bytes(id, false).empty()) first_ = false;
  const std::size_t keep = detail::utf8_incomplete_tail(pending_);
  const std::size_t ready = pending_.size() - keep;
  if (ready == 0) return {};
  std::string out = sanitize_utf8(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& model_dir) {
  namespace fs = std::filesystem;
  require_model_folder(model_dir);
  // Present in any form (a FIFO or device too, or a dangling link): the loader reads it with read_file, which says
  // what is wrong with it, rather than this saying there is no tokenizer.
  const auto present = [](const fs::path& p) {
    std::error_code ec;
    return fs::symlink_status(p, ec).type() != fs::file_type::not_found && !ec;
  };
  if (present(model_dir / "tokenizer.json")) return detail::load_tokenizer_json(model_dir);
  if (present(model_dir / "vocab.json") && present(model_dir / "merges.txt"))
    return detail::load_vocab_merges(model_dir);
  throw InputError("no tokenizer in " + model_dir.string() + ": expected tokenizer.json or vocab.json + merges.txt");
}

}  // namespace rptq
