#include "rptq/io/zip_archive.h"

#include <array>
#include <cstring>

#include "rptq/base/error.h"

namespace rptq {

namespace {

constexpr std::uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEocdSig = 0x06054b50,
                        kZip64EocdSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;
constexpr std::size_t kEocdSize = 22, kCentralSize = 46, kLocalSize = 30, kZip64EocdSize = 56, kLocatorSize = 20;
constexpr std::uint64_t kMaxEntries = 1u << 20;  // a state dict with a million storages is not a real checkpoint

// Printable form of an untrusted entry name for messages.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 200) out += "...";
  return out;
}

}  // namespace

std::uint32_t crc32(std::span<const std::byte> bytes) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::byte b : bytes) c = table[(c ^ std::to_integer<std::uint32_t>(b)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

bool ZipArchive::looks_like_zip(std::span<const std::byte> head) {
  if (head.size() < 4) return false;
  const std::uint32_t sig = load_le32(head.data());
  return sig == kLocalSig || sig == kEocdSig;
}

ZipArchive::ZipArchive(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {
  const std::byte* base = file_->data();
  const std::uint64_t size = file_->size();
  const std::string fname = file_->name();
  auto fail = [&](const std::string& msg) { throw InputError(fname + ": " + msg); };

  // End of central directory: the last 22+ bytes, possibly followed by a comment of up to 64 KiB. Prefer a record
  // whose comment ends exactly at the end of the file; scan backwards from the end.
  if (size < kEocdSize) fail("too short to be a zip archive (truncated?)");
  std::uint64_t eocd = UINT64_MAX, loose = UINT64_MAX;
  const std::uint64_t lowest = size - kEocdSize > 0xFFFF ? size - kEocdSize - 0xFFFF : 0;
  for (std::uint64_t p = size - kEocdSize + 1; p-- > lowest;) {
    if (load_le32(base + p) != kEocdSig) continue;
    const std::uint64_t comment = load_le16(base + p + 20);
    if (p + kEocdSize + comment == size) {
      eocd = p;
      break;
    }
    if (loose == UINT64_MAX && p + kEocdSize + comment <= size) loose = p;
  }
  if (eocd == UINT64_MAX) eocd = loose;
  if (eocd == UINT64_MAX) fail("no zip end-of-central-directory record (truncated, or not a zip archive)");

  const std::byte* e = base + eocd;
  std::uint64_t disk = load_le16(e + 4), cd_disk = load_le16(e + 6), n_disk = load_le16(e + 8),
                n_total = load_le16(e + 10), cd_size = load_le32(e + 12), cd_offset = load_le32(e + 16);
  std::uint64_t cd_limit = eocd;  // the central directory must end before this

  // Zip64: a locator right before the classic record points at the 64-bit record.
  if (eocd >= kLocatorSize && load_le32(base + eocd - kLocatorSize) == kZip64LocatorSig) {
    const std::byte* loc = base + eocd - kLocatorSize;
    const std::uint64_t z = load_le64(loc + 8);
    if (load_le32(loc + 16) > 1) fail("multi-disk zip archives are not supported");
    if (z > eocd - kLocatorSize || eocd - kLocatorSize - z < kZip64EocdSize || load_le32(base + z) != kZip64EocdSig)
      fail("zip64 end-of-central-directory locator points outside the file or at garbage (corrupt archive)");
    const std::byte* r = base + z;
    disk = load_le32(r + 16);
    cd_disk = load_le32(r + 20);
    n_disk = load_le64(r + 24);
    n_total = load_le64(r + 32);
    cd_size = load_le64(r + 40);
    cd_offset = load_le64(r + 48);
    cd_limit = z;
  } else if (n_total == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    fail("zip directory needs a zip64 record, but there is none (truncated or corrupt archive)");
  }
  if (disk != 0 || cd_disk != 0 || n_disk != n_total) fail("multi-disk zip archives are not supported");
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
    fail("zip central directory (offset " + std::to_string(cd_offset) + ", " + std::to_string(cd_size) +
         " bytes) lies outside the file (truncated or corrupt archive)");
  if (n_total > cd_size / kCentralSize || n_total > kMaxEntries)
    fail("zip directory claims " + std::to_string(n_total) + " entries, more than its " + std::to_string(cd_size) +
         " bytes can hold (corrupt archive)");

  entries_.reserve(n_total);
  const std::uint64_t cd_end = cd_offset + cd_size;
  std::uint64_t p = cd_offset;
  for (std::uint64_t i = 0; i < n_total; ++i) {
    if (cd_end - p < kCentralSize || load_le32(base + p) != kCentralSig)
      fail("zip central directory entry " + std::to_string(i) + " is corrupt");
    const std::byte* c = base + p;
    const std::uint16_t flags = load_le16(c + 8);
    Entry en;
    en.method = load_le16(c + 10);
    en.crc32 = load_le32(c + 16);
    en.compressed_size = load_le32(c + 20);
    en.size = load_le32(c + 24);
    const std::uint64_t name_len = load_le16(c + 28), extra_len = load_le16(c + 30), comment_len = load_le16(c + 32);
    std::uint64_t disk_start = load_le16(c + 34);
    std::uint64_t local = load_le32(c + 42);
    if (cd_end - p - kCentralSize < name_len + extra_len + comment_len)
      fail("zip central directory entry " + std::to_string(i) + " runs past the directory (corrupt archive)");
    en.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    const std::string shown = printable(en.name);
    if (en.name.empty() || en.name.find('\0') != std::string::npos)
      fail("zip entry " + std::to_string(i) + " has an empty or invalid name");

    // Zip64 extended information: 64-bit values for exactly the fields saturated above, in this order.
    const std::byte* x = c + kCentralSize + name_len;
    for (std::uint64_t q = 0; q + 4 <= extra_len;) {
      const std::uint16_t id = load_le16(x + q), len = load_le16(x + q + 2);
      if (q + 4 + len > extra_len) fail("zip entry '" + shown + "' has a malformed extra field");
      if (id == 0x0001) {
        const std::byte* z = x + q + 4;
        std::uint64_t left = len;
        auto take64 = [&](std::uint64_t& v) {
          if (left < 8) fail("zip entry '" + shown + "' has a truncated zip64 extra field");
          v = load_le64(z);
          z += 8;
          left -= 8;
        };
        if (en.size == 0xFFFFFFFF) take64(en.size);
        if (en.compressed_size == 0xFFFFFFFF) take64(en.compressed_size);
        if (local == 0xFFFFFFFF) take64(local);
        if (disk_start == 0xFFFF) {
          if (left < 4) fail("zip entry '" + shown + "' has a truncated zip64 extra field");
          disk_start = load_le32(z);
        }
      }
      q += 4 + len;
    }
    p += kCentralSize + name_len + extra_len + comment_len;

    if (disk_start != 0) fail("zip entry '" + shown + "' is on another disk (multi-disk archives are not supported)");
    if (flags & 0x41) fail("zip entry '" + shown + "' is encrypted");
    // Entry data lives before the central directory; check the local header and the data against that bound.
    if (local > cd_offset || cd_offset - local < kLocalSize || load_le32(base + local) != kLocalSig)
      fail("zip entry '" + shown + "' has a local header outside the file or at garbage (corrupt archive)");
    const std::byte* l = base + local;
    const std::uint64_t lname = load_le16(l + 26), lextra = load_le16(l + 28);
    if (cd_offset - local - kLocalSize < lname + lextra)
      fail("zip entry '" + shown + "' has a local header running into the central directory (corrupt archive)");
    if (lname != name_len || std::memcmp(l + kLocalSize, en.name.data(), name_len) != 0)
      fail("zip entry '" + shown + "' has a different name in its local header (corrupt archive)");
    en.data_offset = local + kLocalSize + lname + lextra;
    if (en.compressed_size > cd_offset - en.data_offset)
      fail("zip entry '" + shown + "' claims " + std::to_string(en.compressed_size) +
           " bytes, more than the archive holds (truncated or corrupt)");
    if (en.method == 0 && en.compressed_size != en.size)
      fail("zip entry '" + shown + "' is stored uncompressed but its two sizes differ (corrupt archive)");

    if (!index_.emplace(en.name, entries_.size()).second) fail("zip archive has two entries named '" + shown + "'");
    entries_.push_back(std::move(en));
  }
}

const ZipArchive::Entry* ZipArchive::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::span<const std::byte> ZipArchive::stored_bytes(const Entry& e) const {
  if (e.method != 0)
    throw InputError(file_->name() + ": zip entry '" + printable(e.name) + "' is compressed (method " +
                     std::to_string(e.method) +
                     "); torch.save stores entries uncompressed, so re-save the checkpoint with torch.save or "
                     "convert it to safetensors");
  return {file_->data() + e.data_offset, static_cast<std::size_t>(e.size)};
}

}  // namespace rptq
