#include "rptq/model/model_info.h"

#include <fstream>
#include <sstream>

#include "rptq/io/checkpoint.h"
#include "rptq/io/files.h"
#include "rptq/base/error.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq {

std::string read_text_file(const std::filesystem::path& path) { return read_file(path); }

ModelInfo inspect_model(const std::filesystem::path& dir) {
  ModelInfo info;
  info.dir = dir;
  std::error_code ec;
  require_model_folder(dir);
  info.config = ModelConfig::load(dir);
  const Checkpoint ckpt = Checkpoint::open(dir);
  info.format = ckpt.format();
  for (const auto& f : ckpt.files()) info.weight_files.push_back(f.filename().string());
  info.weight_bytes = ckpt.file_bytes();
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) info.folder_bytes += e.file_size(ec);
  for (const auto& [name, t] : ckpt.tensors()) {
    // A tied output head stored anyway is the same parameters as the token embedding.
    if (info.config.tie_embeddings && name == "lm_head.weight") continue;
    info.parameters += t.numel();
    info.dtype_parameters[std::string(dtype_name(t.dtype))] += t.numel();
    ++info.tensors;
  }
  try {
    auto tok = Tokenizer::load(dir);
    info.tokenizer = tok->kind();
    info.tokenizer_vocab = tok->vocab_size();
    info.tokenizer_ok = true;
  } catch (const std::exception& e) {
    info.tokenizer = e.what();
  }
  return info;
}

}  // namespace rptq
