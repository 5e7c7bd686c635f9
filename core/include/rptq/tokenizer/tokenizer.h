#pragma once
// Tokenizers of Hugging Face model folders:
//  - GPT-2 byte-level BPE from vocab.json + merges.txt (+ tokenizer_config.json), OPT's case;
//  - tokenizer.json with a BPE model, byte-level or SentencePiece-style (U+2581 normalizer, byte fallback),
//    which covers LLaMA-family models.
// Encoding matches Hugging Face's tokenizers; decoding round-trips text.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rptq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Picks the tokenizer a model folder ships (tokenizer.json first, else vocab.json + merges.txt).
  // Throws InputError naming the file and the problem.
  static std::unique_ptr<Tokenizer> load(const std::filesystem::path& model_dir);

  // Text to ids; prepends BOS when the model's tokenizer does (add_bos_token) and add_special is true.
  virtual std::vector<std::int32_t> encode(std::string_view text, bool add_special = true) const = 0;
  // Ids to text, skipping special tokens (BOS/EOS/PAD...). Invalid UTF-8 bytes become U+FFFD.
  virtual std::string decode(std::span<const std::int32_t> ids) const = 0;

  // The raw bytes one token stands for, as a streaming decoder appends them (special tokens give "").
  // `first` is true for the first generated/decoded token of a text (SentencePiece strips one leading space).
  virtual std::string token_bytes(std::int32_t id, bool first) const = 0;

  virtual std::int32_t vocab_size() const = 0;  // size of the id space (max id + 1)
  virtual std::int32_t bos_id() const = 0;      // -1 if none
  virtual std::int32_t eos_id() const = 0;      // -1 if none
  virtual bool adds_bos() const = 0;
  virtual std::string kind() const = 0;  // "byte-level BPE (vocab.json + merges.txt)", ...
};

// Turns a stream of token ids into text pieces that never split a UTF-8 character: bytes of an incomplete
// character are held until the token that completes it arrives.
class StreamDecoder {
 public:
  // at_text_start: the first token begins a text (SentencePiece then drops its leading space); false when the
  // tokens continue text already shown, such as a prompt.
  explicit StreamDecoder(const Tokenizer& tok, bool at_text_start = true) : tok_(tok), first_(at_text_start) {}
  std::string push(std::int32_t id);  // the complete text that became available with this token
  std::string finish();               // whatever is left (invalid bytes as U+FFFD)

 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool first_ = true;
};

// Replaces invalid UTF-8 sequences with U+FFFD.
std::string sanitize_utf8(std::string_view bytes);

}  // namespace rptq
