#pragma once
// A validating reader for the zip archives torch.save writes (pytorch_model.bin): the end-of-central-directory
// record (and its zip64 form for archives over 4 GB), the central directory and each entry's local header. Every
// offset and size is checked against the file before use, so a corrupt or hostile archive gives an InputError and
// never a read outside the mapping. Entries are not decompressed: torch.save stores them (method 0), and
// stored_bytes() returns a view straight into the memory mapping.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rptq/io/mapped_file.h"

namespace rptq {

class ZipArchive {
 public:
  struct Entry {
    std::string name;
    std::uint16_t method = 0;           // 0 = stored, 8 = deflate, ...
    std::uint32_t crc32 = 0;
    std::uint64_t compressed_size = 0;  // bytes in the file
    std::uint64_t size = 0;             // uncompressed size
    std::uint64_t data_offset = 0;      // of the entry's (compressed) bytes in the file
  };

  // Parses and validates the archive's directory. Throws InputError "FILE: ..." on any inconsistency.
  explicit ZipArchive(std::shared_ptr<const MappedFile> file);

  const std::vector<Entry>& entries() const { return entries_; }
  const Entry* find(std::string_view name) const;
  // The bytes of a stored (uncompressed) entry. Throws InputError naming the entry when it is compressed.
  std::span<const std::byte> stored_bytes(const Entry& e) const;
  const std::shared_ptr<const MappedFile>& file() const { return file_; }

  // True when the bytes start like a zip archive ("PK\3\4" local header or "PK\5\6" empty archive).
  static bool looks_like_zip(std::span<const std::byte> head);

 private:
  std::shared_ptr<const MappedFile> file_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

// CRC-32 (the zip/IEEE polynomial) of `bytes`.
std::uint32_t crc32(std::span<const std::byte> bytes);

}  // namespace rptq
