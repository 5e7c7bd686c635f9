#pragma once
// PyTorch checkpoints (pytorch_model.bin): the zip format torch.save writes since PyTorch 1.6. The archive holds
// "<prefix>/data.pkl" (the pickled state dict), one "<prefix>/data/<key>" blob per storage, and "<prefix>/version".
// The pickle is read by a restricted unpickler that never executes anything: it knows the handful of opcodes and
// globals a state dict uses (collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter,
// torch.<Type>Storage) and refuses every other global, naming it. Tensors point straight into the storage blobs of
// the memory-mapped archive (no copy).
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "rptq/base/raw_tensor.h"

namespace rptq {

// Bounds on what a pickle may make the unpickler hold, so hostile input costs bounded memory and time.
struct UnpickleLimits {
  std::size_t max_pickle_bytes = 64u << 20;  // data.pkl of a real state dict is KBs to a few MB
  std::size_t max_objects = 4u << 20;        // values created (ints, strings, tuples, ...)
  std::size_t max_items = 16u << 20;         // container elements, summed over all containers
  std::size_t max_marks = 1000;              // MARK nesting depth
};

// Returns the bytes of storage `key` ("<prefix>/data/<key>" in the archive); throws InputError when absent.
using StorageLookup = std::function<std::span<const std::byte>(const std::string& key)>;

// Runs the restricted unpickler over a pickled state dict and returns its tensors in pickle order. Non-tensor
// values of the top-level dict are skipped. `file` names the source in error messages; `owner` becomes each
// tensor's owner (it must keep the storage bytes alive). Throws InputError on anything outside what a state dict
// needs, on malformed or truncated pickles, and on tensors that are not contiguous or overrun their storage.
std::vector<RawTensor> unpickle_state_dict(std::span<const std::byte> pickle, const StorageLookup& storage,
                                           std::shared_ptr<const void> owner, const std::string& file,
                                           const UnpickleLimits& limits = {});

// Maps and reads a PyTorch zip checkpoint. Legacy (pre-1.6, non-zip) files get an InputError suggesting a re-save
// with a newer PyTorch or a conversion to safetensors.
std::vector<RawTensor> read_torch_checkpoint(const std::filesystem::path& path);

}  // namespace rptq
