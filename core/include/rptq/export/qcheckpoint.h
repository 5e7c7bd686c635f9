#pragma once
// The quantized checkpoint (HDF5): a reordered, really packed RPTQ model with everything needed to run it on its
// own (config and tokenizer files, reorder indices, activation and KV quantizer parameters). Layout and bit order:
// docs/checkpoint-format.md.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rptq/method/calibration.h"
#include "rptq/method/quantize.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq {

// 2: weight scales as FP16 with a per-row power of two (scale_exponents), zero points packed to their range's width.
// 3: the same objects in the checksummed HDF5 layout (io/hdf5_util.h: 1.10 file format, fixed-length strings,
// Fletcher-32 on every dataset). Version 1 and 2 files (float32 scales, int8/int16/float32 zero points) still load.
constexpr int kCheckpointFormatVersion = 3;

struct ExportOptions {
  bool overwrite = false;
  // (fraction done, what); returning false cancels (throws Cancelled; nothing is left at the target).
  std::function<bool(double, const std::string&)> progress;
};

// Writes `q` (quantized from the model in source_dir with `stats`) to `out`: atomically (a temporary file beside
// it, renamed into place once complete and synced); an existing `out` only with overwrite, else InputError.
void export_checkpoint(const QuantizedModel& q, const ChannelStats& stats, const std::filesystem::path& source_dir,
                       const std::filesystem::path& out, const ExportOptions& opts = {});

// What a checkpoint holds, read from its metadata and dataset sizes (no weights are unpacked).
struct CheckpointInfo {
  int format_version = 0;
  std::string tool_version, created, preset, description, model_type, architecture, source_path;
  std::string config_sha256, data_sha256;
  int wbits = 16, kv_bits = 16;
  std::vector<int> clusters;  // R1..R5
  std::int64_t layers = 0;
  struct Linear {
    std::string name;  // "layers.0.q", ...
    int bits = 16;
    std::int64_t out = 0, in = 0, groups = 0;
    std::uint64_t packed_bytes = 0;  // codes
    std::uint64_t param_bytes = 0;   // scales + zero points
    std::uint64_t fp16_bytes() const { return static_cast<std::uint64_t>(out * in) * 2; }
  };
  std::vector<Linear> linears;
  std::uint64_t linear_packed_bytes = 0, linear_param_bytes = 0, linear_fp16_bytes = 0;
  std::uint64_t other_bytes = 0;  // unquantized tensors as stored (embeddings, norms, biases, ...)
  std::uint64_t file_bytes = 0;
};

// Throws InputError naming the file and the problem: missing, not HDF5, truncated, not an RPTQ checkpoint, a
// format version newer than this tool, missing or inconsistent datasets.
CheckpointInfo inspect_checkpoint(const std::filesystem::path& path);

// load_checkpoint (declared in quantize.h) reads a checkpoint back: the model computes with exactly the weights,
// norms, reorder and quantizer parameters the exporting process used (bit-identical logits). Its config.json and
// tokenizer files are written into `dir` by extract_checkpoint_files, so Tokenizer::load(dir) works.
void extract_checkpoint_files(const std::filesystem::path& path, const std::filesystem::path& dir);

// The tokenizer a checkpoint carries. Its files are extracted into a private folder under the system's temporary
// directory (rptq-checkpoint-PID-XXXXXX), loaded, and removed; folders left by processes that no longer run (killed
// mid-load) are removed by the next call. Errors name the checkpoint ("PATH:/files/tokenizer.json: ..."), never the
// temporary folder.
std::unique_ptr<Tokenizer> load_checkpoint_tokenizer(const std::filesystem::path& path);

// True when the file starts with the HDF5 signature (so CLI commands can tell a checkpoint from a model folder).
bool is_hdf5_file(const std::filesystem::path& path);

// The root `format` attribute of an HDF5 file ("rptq-quantized-checkpoint", "rptq-channel-stats"), or "" when it
// has none: which kind of RPTQ file it is. Read in a child process first (a damaged file throws InputError).
std::string hdf5_format(const std::filesystem::path& path);

}  // namespace rptq
