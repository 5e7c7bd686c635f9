#pragma once
// What `rptq inspect` and the GUI's Model step show about a model folder, read from config.json, the tokenizer
// files and the checkpoint headers without converting any weights.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "rptq/model/model_config.h"

namespace rptq {

struct ModelInfo {
  std::filesystem::path dir;
  ModelConfig config;
  std::string format;                       // "safetensors", "pytorch .bin (2 shards)", ...
  std::vector<std::string> weight_files;    // file names inside dir
  std::uint64_t weight_bytes = 0;           // size of the weight files on disk
  std::uint64_t folder_bytes = 0;           // size of every regular file in the folder
  std::int64_t parameters = 0;              // tied head counted once
  std::int64_t tensors = 0;
  std::map<std::string, std::int64_t> dtype_parameters;  // "F16" -> parameters stored in F16
  std::string tokenizer;                    // tokenizer kind, or the error that loading it gave
  bool tokenizer_ok = false;
  std::int64_t tokenizer_vocab = 0;
};

// Throws InputError when config.json or the weights cannot be read; a broken tokenizer is reported in the info.
ModelInfo inspect_model(const std::filesystem::path& dir);

// Reads a whole file; throws InputError naming the file when it cannot.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace rptq
