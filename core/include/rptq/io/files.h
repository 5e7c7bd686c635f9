#pragma once
// The user's files, read and written defensively. Inputs are regular files only: a FIFO, a device or a socket is
// refused before anything blocks on it, and a read is bounded. Outputs go to new paths or replace regular files
// only: a device node, FIFO or folder at the target is refused even with overwrite (replacing /dev/null with a
// regular file, as root, would break the system).
#include <cstdint>
#include <filesystem>
#include <string>

namespace rptq {

// The whole of a regular file. Throws InputError "PATH: ..." when it is missing, a folder, not a regular file,
// unreadable, or larger than max_bytes (text inputs: config, tokenizer and data files).
std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes = std::uint64_t{1} << 31);

// Checks that `folder` is a model folder (a directory, or a link to one). Throws InputError "PATH: ..." saying what
// it is instead: missing, a regular file (perhaps a checkpoint or statistics file), a FIFO, a device.
void require_model_folder(const std::filesystem::path& folder);

// Checks that `target` may be written: a new path, or (with overwrite) an existing regular file or a symlink to
// one. Throws OutputExists when it exists and overwrite is false, InputError when it is not a regular file.
void check_output_target(const std::filesystem::path& target, bool overwrite);

// Writes `contents` to `target` atomically: into a temporary file beside it (flushed to disk), then renamed over
// it, so a reader sees the old file or the new one, never half of one. Checks the target as check_output_target
// does. Throws InputError "PATH: ..." when the folder is missing or not writable.
void write_file_atomic(const std::filesystem::path& target, const std::string& contents, bool overwrite);

}  // namespace rptq
