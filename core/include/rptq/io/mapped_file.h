#pragma once
// A whole file mapped read-only into memory (mmap, PROT_READ, MAP_PRIVATE). Checkpoint tensors point straight into
// the mapping; a RawTensor's `owner` holds the shared_ptr so the mapping lives as long as any tensor viewing it.
// Files are never written through the mapping. (If another process truncates the file while it is mapped, reads
// past the new end fault; checkpoints are treated as immutable while loaded.)
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

namespace rptq {

class MappedFile {
 public:
  // Maps a regular file. Throws InputError "PATH: ..." when it is missing, not a regular file, or unreadable.
  // An empty file maps to size() == 0 and a null data().
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }
  std::string name() const { return path_.string(); }  // for error messages

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Little-endian field readers over untrusted bytes; callers check bounds first.
inline std::uint16_t load_le16(const std::byte* p) {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) | (std::to_integer<unsigned>(p[1]) << 8));
}
inline std::uint32_t load_le32(const std::byte* p) {
  return static_cast<std::uint32_t>(load_le16(p)) | (static_cast<std::uint32_t>(load_le16(p + 2)) << 16);
}
inline std::uint64_t load_le64(const std::byte* p) {
  return static_cast<std::uint64_t>(load_le32(p)) | (static_cast<std::uint64_t>(load_le32(p + 4)) << 32);
}

}  // namespace rptq
