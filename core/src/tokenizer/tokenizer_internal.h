#pragma once
// Private to core/src/tokenizer*.cpp: the single BPE engine behind both file formats (vocab.json + merges.txt and
// tokenizer.json) and the small pieces it is configured from. The loaders (tokenizer_load.cpp) turn the files into a
// BpeSpec; BpeTokenizer (tokenizer_bpe.cpp) runs it: added tokens -> normalizers -> pre-tokenizers -> BPE -> ids,
// and ids -> decoder steps -> bytes.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "rptq/tokenizer/tokenizer.h"

namespace rptq::detail {

// ---- UTF-8 helpers (tokenizer.cpp) ----

// Length of the character starting at s[i]: 1..4 for a well-formed sequence, 1 for a byte that does not start one
// (so invalid input is walked byte by byte).
std::size_t utf8_char_len(std::string_view s, std::size_t i);
// Number of bytes at the end of s that form a well-formed but unfinished character (0..3).
std::size_t utf8_incomplete_tail(std::string_view s);
void append_utf8(std::string& out, char32_t cp);

// GPT-2's reversible byte -> printable character map (the "Ġ" for space), as UTF-8 strings.
const std::array<std::string, 256>& gpt2_byte_chars();
// The byte a GPT-2 character stands for, or -1 when the code point is not one of the 256.
int gpt2_char_byte(char32_t cp);

// ---- Patterns ----

// A literal string or a PCRE2 regex compiled once with UTF + UCP (+ JIT when available). Matching is thread-safe:
// the compiled code is shared, match data is per call. Invalid UTF-8 in the subject never matches a character.
class Pattern {
 public:
  static std::shared_ptr<const Pattern> regex(const std::string& re, const std::string& where);
  static std::shared_ptr<const Pattern> literal(std::string text);
  ~Pattern();
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;

  // Appends the non-overlapping matches [begin, end) of s, left to right (empty matches are skipped).
  void find_all(std::string_view s, std::vector<std::pair<std::size_t, std::size_t>>& out) const;
  // Length of the match that starts exactly at s[pos], 0 if none (regexes only).
  std::size_t match_at(std::string_view s, std::size_t pos) const;

 private:
  Pattern() = default;
  std::string literal_;
  pcre2_code* code_ = nullptr;
};

// GPT-2's pre-tokenizer regex (used by ByteLevel with use_regex).
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---- Pipeline steps, as in Hugging Face's tokenizer.json ----

struct NormStep {
  enum class Kind { Prepend, Replace };
  Kind kind = Kind::Replace;
  std::string text;                         // Prepend: the prefix; Replace: the replacement
  std::shared_ptr<const Pattern> pattern;   // Replace: what is replaced
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
enum class PrependScheme { Always, First, Never };

struct PreStep {
  enum class Kind { Split, ByteLevel, Metaspace };
  Kind kind = Kind::Split;
  std::shared_ptr<const Pattern> pattern;  // Split; ByteLevel: GPT-2 regex when use_regex, else null
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;       // ByteLevel: prepend ' ' unless the piece starts with one
  std::string replacement;             // Metaspace: "▁"
  PrependScheme prepend = PrependScheme::Always;
  bool split = true;                   // Metaspace: split before each replacement character
};

struct DecodeStep {
  enum class Kind { ByteLevel, Replace, ByteFallback, Strip, Metaspace };
  Kind kind = Kind::Replace;
  std::shared_ptr<const Pattern> pattern;  // Replace
  std::string text;                        // Replace: replacement; Strip: the character; Metaspace: replacement
  int start = 0, stop = 0;                 // Strip counts
  bool fused = false;                      // Strip after Fuse: acts on the whole text, i.e. the first token only
  PrependScheme prepend = PrependScheme::Always;  // Metaspace
};

struct AddedToken {
  std::string content;
  std::int32_t id = -1;
  bool special = false;
  bool lstrip = false, rstrip = false, single_word = false;
};

// Transparent hashing so vocabulary lookups take string_views without allocating.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

inline std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
}

// Everything a loader reads from the files, ids already resolved and validated.
struct BpeSpec {
  std::string kind;
  Vocab vocab;                                                           // model vocabulary
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, std::int32_t>> merges;  // (a, b) -> (rank, merged id)
  std::int32_t unk_id = -1;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  bool byte_level = false;  // the model sees bytes through GPT-2's map (a ByteLevel pre-tokenizer)
  std::vector<AddedToken> added;
  std::vector<NormStep> normalizers;
  std::vector<PreStep> pre_tokenizers;
  std::vector<DecodeStep> decoders;
  std::vector<std::int32_t> prefix, suffix;  // special tokens around the text when add_special
  std::int32_t bos_id = -1, eos_id = -1;
  std::string source;  // the file the pipeline steps come from (tokenizer.json), for errors at encode time
};

// Bounds on what a tokenizer file may make of a text, so that a hostile file cannot turn a few bytes into
// gigabytes: at most kMaxPipelineSteps normalizer, pre-tokenizer and decoder steps each (real files have a handful),
// and the normalizers and pre-tokenizers together may add at most kGrowthFactor times the input's bytes plus
// kGrowthSlack (real ones add a few bytes per space: "\u2581" for ' ', a prefix space); a decoder may make at most
// as much of one token.
inline constexpr std::size_t kMaxPipelineSteps = 64;
inline constexpr std::size_t kGrowthFactor = 4;
inline constexpr std::size_t kGrowthSlack = 1024;

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeSpec spec);
  ~BpeTokenizer() override;

  std::vector<std::int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(std::span<const std::int32_t> ids) const override;
  std::string token_bytes(std::int32_t id, bool first) const override;
  std::int32_t vocab_size() const override { return static_cast<std::int32_t>(id_token_.size()); }
  std::int32_t bos_id() const override { return spec_.bos_id; }
  std::int32_t eos_id() const override { return spec_.eos_id; }
  bool adds_bos() const override;
  std::string kind() const override { return spec_.kind; }

 private:
  struct Piece {
    std::string_view text;
    bool at_start;  // begins at offset 0 of the whole input (Metaspace's prepend_scheme "first")
  };
  struct Scratch;

  void encode_segment(std::string_view seg, bool at_start, std::vector<std::int32_t>& out, Scratch& sc) const;
  void encode_word(std::string_view word, std::vector<std::int32_t>& out) const;
  void bpe(std::string_view word, std::vector<std::int32_t>& out) const;
  void apply_pre(const PreStep& step, const Piece& p, std::vector<Piece>& out, Scratch& sc) const;
  // Takes `added` bytes from this encode()'s growth allowance; throws InputError naming the file and `stage` when
  // the allowance is spent.
  void grow(Scratch& sc, std::size_t added, const char* stage) const;

  BpeSpec spec_;
  std::vector<std::string> id_token_;  // id -> token string (model vocabulary, then added tokens)
  enum : std::uint8_t { kPresent = 1, kSpecial = 2, kAdded = 4 };
  std::vector<std::uint8_t> id_flags_;
  std::array<std::int32_t, 256> byte_ids_{};      // byte-level: id of each byte's GPT-2 character, -1 if none
  std::array<std::int32_t, 256> fallback_ids_{};  // byte fallback: id of "<0xNN>", -1 if none
  std::array<std::vector<std::size_t>, 256> added_by_byte_;  // added tokens by first byte, longest first
  std::shared_ptr<const Pattern> word_char_;  // what single_word added tokens must not touch

  // Cache of word -> ids for short words (the pre-tokenizer repeats most words).
  mutable std::shared_mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>, StringHash, std::equal_to<>> cache_;
};

// Loaders (tokenizer_load.cpp).
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& dir);
std::unique_ptr<Tokenizer> load_vocab_merges(const std::filesystem::path& dir);

}  // namespace rptq::detail
