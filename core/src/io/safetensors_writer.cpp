#include "rptq/io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "rptq/base/error.h"
#include "rptq/io/files.h"
#include "rptq/io/safetensors.h"
#include "rptq/base/tensor.h"

namespace rptq {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts unsupported");

namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

// A file written under a temporary name in the target's folder and renamed into place by commit(); destroyed
// without commit() (an error on the way), the temporary file is removed and the target is untouched.
class AtomicFile {
 public:
  explicit AtomicFile(const fs::path& target) : target_(target) {
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail("cannot write: no such folder " + dir.string());
    if (fs::is_directory(target, ec)) fail("cannot write: it is a folder");
    // A FIFO, device or socket is never replaced (renaming over /dev/null as root would break the system); whether
    // an existing regular file may be is the caller's decision.
    check_output_target(target, /*overwrite=*/true);
    std::random_device rd;
    for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
      // Built by append: GCC 12 warns falsely (-Wrestrict) on "." + std::string.
      std::string name(".");
      name.append(target.filename().string()).append(".tmp-").append(std::to_string(::getpid()));
      name.append("-").append(std::to_string(rd() % 1000000));
      temp_ = dir / name;
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd_ < 0 && errno != EEXIST) break;
    }
    if (fd_ < 0) fail("cannot create a file in " + dir.string() + " (" + errno_text() + ")");
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }

  void write(const void* data, std::size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, std::min<std::size_t>(n, std::size_t{1} << 30));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("write failed (" + errno_text() + ")");
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }

  void commit() {
    if (::fsync(fd_) != 0) fail("cannot sync to disk (" + errno_text() + ")");
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail("cannot close (" + errno_text() + ")");
    check_output_target(target_, /*overwrite=*/true);  // again: the target may have changed while writing
    if (::rename(temp_.c_str(), target_.c_str()) != 0)
      fail("cannot move the finished file into place (" + errno_text() + ")");
    committed_ = true;
    // Make the rename itself durable (best effort: some file systems cannot sync a folder).
    const fs::path dir = target_.has_parent_path() ? target_.parent_path() : fs::path(".");
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }

  [[noreturn]] void fail(const std::string& what) const { throw InputError(target_.string() + ": " + what); }

 private:
  fs::path target_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Converts float32 values to the file's dtype chunk by chunk and writes them (F32 goes out as it is).
void write_values(AtomicFile& f, const float* v, std::int64_t n, DType dtype) {
  if (dtype == DType::F32) {
    f.write(v, static_cast<std::size_t>(n) * sizeof(float));
    return;
  }
  constexpr std::int64_t kChunk = 1 << 16;
  std::vector<std::uint16_t> buf(static_cast<std::size_t>(std::min(n, kChunk)));
  for (std::int64_t i = 0; i < n; i += kChunk) {
    const std::int64_t m = std::min(kChunk, n - i);
    for (std::int64_t k = 0; k < m; ++k)
      buf[static_cast<std::size_t>(k)] = dtype == DType::F16 ? float_to_half(v[i + k]) : float_to_bf16(v[i + k]);
    f.write(buf.data(), static_cast<std::size_t>(m) * sizeof(std::uint16_t));
  }
}

}  // namespace

void write_safetensors(const fs::path& path, const std::vector<SafetensorsTensor>& tensors, DType dtype,
                       const std::map<std::string, std::string>& metadata) {
  auto fail = [&](const std::string& msg) -> void { throw InputError(path.string() + ": " + msg); };
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
    fail("cannot write dtype " + std::string(dtype_name(dtype)) + " (supported: F32, F16, BF16)");
  auto dtype_of = [dtype](const SafetensorsTensor& t) { return t.dtype == DType::Bool ? dtype : t.dtype; };

  // Validate everything before the file is created; order by name.
  std::vector<const SafetensorsTensor*> order;
  std::set<std::string_view> names;
  for (const SafetensorsTensor& t : tensors) {
    if (t.name.empty()) fail("a tensor has an empty name");
    if (t.name == "__metadata__") fail("\"__metadata__\" is reserved and cannot name a tensor");
    if (!names.insert(t.name).second) fail("tensor '" + t.name + "' is given twice");
    const DType td = dtype_of(t);
    const bool integer = td == DType::I32 || td == DType::I64;
    if (!integer && td != DType::F32 && td != DType::F16 && td != DType::BF16)
      fail("tensor '" + t.name + "': cannot write dtype " + std::string(dtype_name(td)));
    if (integer != static_cast<bool>(t.produce_raw))
      fail("tensor '" + t.name + "': integer tensors (and only they) are given as raw bytes");
    if (!checked_byte_size(t.shape, dtype_size(td)))
      fail("tensor '" + t.name + "': shape " + shape_to_string(t.shape) + " is negative or too large");
    if (!t.produce && !t.produce_raw) {
      std::int64_t numel = 1;
      for (std::int64_t d : t.shape) numel *= d;
      if (static_cast<std::int64_t>(t.values.size()) != numel)
        fail("tensor '" + t.name + "': " + std::to_string(t.values.size()) + " values for shape " +
             shape_to_string(t.shape));
    }
    order.push_back(&t);
  }
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const SafetensorsTensor* t : order) {
    const std::uint64_t bytes = *checked_byte_size(t->shape, dtype_size(dtype_of(*t)));
    header[t->name] = {{"dtype", std::string(dtype_name(dtype_of(*t)))}, {"shape", t->shape},
                       {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error&) {  // 316: a string that is not UTF-8
    fail("a tensor name or metadata value is not valid UTF-8 (safetensors headers are JSON text)");
  }
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // the data section starts 8-byte aligned
  if (text.size() > kSafetensorsMaxHeader)
    fail("header of " + std::to_string(text.size()) + " bytes exceeds the format's 100 MB limit");

  AtomicFile f(path);
  const std::uint64_t n = text.size();
  f.write(&n, sizeof n);
  f.write(text.data(), text.size());
  std::vector<float> scratch;
  std::vector<std::uint8_t> raw;
  for (const SafetensorsTensor* t : order) {
    std::int64_t numel = 1;
    for (std::int64_t d : t->shape) numel *= d;
    if (t->produce_raw) {
      raw.assign(*checked_byte_size(t->shape, dtype_size(dtype_of(*t))), 0);
      t->produce_raw(raw.data());
      f.write(raw.data(), raw.size());
    } else if (t->produce) {
      scratch.assign(static_cast<std::size_t>(numel), 0.0f);
      t->produce(scratch.data());
      write_values(f, scratch.data(), numel, dtype_of(*t));
    } else {
      write_values(f, t->values.data(), numel, dtype_of(*t));
    }
  }
  f.commit();
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace rptq
