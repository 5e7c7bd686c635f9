#pragma once
// A Hugging Face model folder's weights: model.safetensors, sharded safetensors (model.safetensors.index.json),
// pytorch_model.bin, or sharded .bin (pytorch_model.bin.index.json). Safetensors files are memory-mapped;
// .bin files are PyTorch zip archives read through a restricted unpickler that never executes anything.
// When several are present the first of this list wins: model.safetensors.index.json, model.safetensors,
// pytorch_model.bin.index.json, pytorch_model.bin. Tensor names are kept exactly as stored. Each RawTensor views the
// memory-mapped file and keeps the mapping alive through its owner, so tensors may outlive the Checkpoint.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "rptq/base/raw_tensor.h"

namespace rptq {

class Checkpoint {
 public:
  // Opens the weights of a model folder. Throws InputError naming the file and the problem.
  static Checkpoint open(const std::filesystem::path& model_dir);
  // Tensors already in memory (a quantized checkpoint's weights, dequantized), named as in a model folder.
  static Checkpoint from_tensors(const std::filesystem::path& source, std::map<std::string, RawTensor> tensors,
                                 std::string format);

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws InputError "missing tensor NAME in DIR" when absent.
  const RawTensor& get(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::map<std::string, RawTensor>& tensors() const { return tensors_; }

  // "safetensors", "safetensors (3 shards)", "pytorch .bin", "pytorch .bin (2 shards)".
  const std::string& format() const { return format_; }
  const std::vector<std::filesystem::path>& files() const { return files_; }
  std::uint64_t file_bytes() const;  // total size on disk of the weight files
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::string format_;
  std::vector<std::filesystem::path> files_;
  std::map<std::string, RawTensor> tensors_;
  std::uint64_t file_bytes_ = 0;
};

}  // namespace rptq
