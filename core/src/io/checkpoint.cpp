#include "rptq/io/checkpoint.h"

#include <nlohmann/json.hpp>
#include <set>

#include "rptq/base/error.h"
#include "rptq/io/files.h"
#include "rptq/io/safetensors.h"
#include "rptq/io/torch_pickle.h"

namespace rptq {

namespace fs = std::filesystem;

namespace {

enum class Format { Safetensors, Torch };

struct Candidate {
  const char* file;
  Format format;
  bool index;
};
// Preference order when a folder holds several.
constexpr Candidate kCandidates[] = {{"model.safetensors.index.json", Format::Safetensors, true},
                                     {"model.safetensors", Format::Safetensors, false},
                                     {"pytorch_model.bin.index.json", Format::Torch, true},
                                     {"pytorch_model.bin", Format::Torch, false}};

std::vector<RawTensor> read_weights(const fs::path& p, Format f) {
  return f == Format::Safetensors ? read_safetensors(p).tensors : read_torch_checkpoint(p);
}

// An index file: read_file refuses a FIFO or device without blocking and bounds the size.
std::string read_small_file(const fs::path& p, std::uintmax_t max) { return read_file(p, max); }

// A shard name from an index must stay inside the model folder: relative, without "..". (Symlinked shards, as in
// the Hugging Face cache, are fine: the check is on the name, not the resolved target.)
void check_shard_name(const std::string& shard, const fs::path& index) {
  const fs::path p(shard);
  bool bad = shard.empty() || p.is_absolute() || p.has_root_name() || p.has_root_directory() ||
             shard.find('\0') != std::string::npos;
  for (const auto& part : p)
    if (part == "..") bad = true;
  if (bad)
    throw InputError(index.string() + ": shard '" + shard +
                     "' is not a file name inside the model folder (absolute paths and '..' are refused)");
}

}  // namespace

Checkpoint Checkpoint::open(const fs::path& model_dir) {
  std::error_code ec;
  require_model_folder(model_dir);

  const Candidate* found = nullptr;
  for (const auto& c : kCandidates)
    if (fs::exists(model_dir / c.file, ec)) {
      found = &c;
      break;
    }
  if (found == nullptr) {
    std::string looked;
    for (const auto& c : kCandidates) looked += std::string(looked.empty() ? "" : ", ") + c.file;
    throw InputError(model_dir.string() + ": no model weights found (looked for " + looked + ")");
  }

  Checkpoint ck;
  ck.dir_ = model_dir;
  const char* kind = found->format == Format::Safetensors ? "safetensors" : "pytorch .bin";
  auto add = [&](std::vector<RawTensor> tensors) {
    for (auto& t : tensors) {
      auto [it, inserted] = ck.tensors_.try_emplace(t.name, std::move(t));
      if (!inserted && it->second.file != t.file)
        throw InputError(model_dir.string() + ": tensor '" + it->first + "' is stored twice, in " + it->second.file +
                         " and in " + t.file);
      if (!inserted) throw InputError(t.file + ": tensor '" + it->first + "' is stored twice");
    }
  };
  auto add_file_size = [&](const fs::path& p) {
    std::error_code e;
    const auto n = fs::file_size(p, e);
    ck.file_bytes_ += e ? 0 : n;
  };

  const fs::path path = model_dir / found->file;
  if (!found->index) {
    add(read_weights(path, found->format));
    ck.files_.push_back(path);
    add_file_size(path);
    ck.format_ = kind;
    return ck;
  }

  // Sharded: the index maps each tensor name to the shard holding it.
  using nlohmann::json;
  const std::string text = read_small_file(path, 64u << 20);
  const json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) throw InputError(path.string() + ": not a valid JSON object");
  const auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object() || wm->empty())
    throw InputError(path.string() + ": missing or empty \"weight_map\" object");
  std::set<std::string> shards;
  for (const auto& [name, shard] : wm->items()) {
    if (!shard.is_string())
      throw InputError(path.string() + ": weight_map entry for '" + name + "' is not a file name");
    const std::string s = shard.get<std::string>();
    check_shard_name(s, path);
    shards.insert(s);
  }
  for (const auto& s : shards) {
    const fs::path p = model_dir / s;
    if (!fs::exists(p, ec))
      throw InputError(path.string() + ": shard '" + s + "' is listed but " + p.string() + " does not exist");
    add(read_weights(p, found->format));
    ck.files_.push_back(p);
    add_file_size(p);
  }
  for (const auto& [name, shard] : wm->items()) {
    const auto it = ck.tensors_.find(name);
    const std::string expected = (model_dir / shard.get<std::string>()).string();
    if (it == ck.tensors_.end() || it->second.file != expected)
      throw InputError(path.string() + ": weight_map puts tensor '" + name + "' in " + shard.get<std::string>() +
                       ", but that shard does not contain it");
  }
  ck.format_ = std::string(kind) + " (" + std::to_string(shards.size()) + (shards.size() == 1 ? " shard)" : " shards)");
  return ck;
}

const RawTensor& Checkpoint::get(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) throw InputError("missing tensor " + name + " in " + dir_.string());
  return it->second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> v;
  v.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) v.push_back(name);
  return v;
}

std::uint64_t Checkpoint::file_bytes() const { return file_bytes_; }

Checkpoint Checkpoint::from_tensors(const std::filesystem::path& source, std::map<std::string, RawTensor> tensors,
                                    std::string format) {
  Checkpoint c;
  c.dir_ = source;
  c.format_ = std::move(format);
  c.files_ = {source};
  for (const auto& [name, t] : tensors) c.file_bytes_ += t.nbytes();
  c.tensors_ = std::move(tensors);
  return c;
}

}  // namespace rptq
