#pragma once
// A thin RAII layer over the HDF5 C API for RPTQ's files (channel statistics, quantized checkpoints): handles that
// close themselves, typed attribute and dataset helpers, and errors as exceptions that name the file and the object.
// HDF5's own error printing is switched off; every failure becomes an InputError (reading) or runtime_error
// (writing).
//
// Reading untrusted files. libhdf5 (1.10) trusts much of a file's metadata: a damaged variable-length string
// (global heap), object header, B-tree or chunk index can crash it or make it loop. So, in layers:
//  - What we write cannot be damaged unnoticed: the 1.10 file format (superblock v3, v2 object headers, fixed
//    array / extensible array chunk indexes, all checksummed), fixed-length strings only (no global heap), and a
//    Fletcher-32 checksum on every dataset's chunks.
//  - What we read is checked before libhdf5 acts on it: only hard links (no external or soft links), no external
//    storage or virtual datasets, only the filters we write (deflate, shuffle, fletcher32), only the standard
//    numeric types, bounded chunk sizes, and a dataset's declared size against the bytes it occupies before
//    anything is allocated; attributes must be one element.
//  - What checks cannot rule out (older files without checksums, libhdf5's own bugs) is contained: guarded() runs
//    the whole load in a forked child process first, with a time limit, and the load runs here only when the child
//    finished it. A crash or a hang in the child becomes an InputError naming the file.
#include <hdf5.h>

#include "rptq/base/error.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace rptq::h5 {

class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  ~Handle() { reset(); }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Switches off HDF5's automatic error printing (once per process).
void quiet();

// Held by every call into libhdf5 made here (the Debian build is not thread-safe, and a child must not be forked
// while another thread is inside the library).
std::recursive_mutex& mutex();

// Runs `load` (which reads `path`) in a forked child process with a time limit and returns normally when the child
// completed it; throws the child's InputError when it failed cleanly, and an InputError naming `path` when it
// crashed, ran out of time, or was killed. Without fork (or with RPTQ_HDF5_ISOLATION=0 in the environment) it
// returns at once. Do not call with locks held that `load` needs. The time limit is `seconds`, or when 0, 20 s plus
// 1 s per 20 MB of the file.
void probe(const std::filesystem::path& path, const std::function<void()>& load, int seconds = 0);

// Rethrows `e` as an InputError that names `path` (prefixed unless its message already does).
[[noreturn]] void rethrow_naming(const std::filesystem::path& path, const std::exception& e);

// probe(path, load), then load() here: what every loader of an untrusted .h5 file calls. Every InputError it
// throws names the file; a std::logic_error (out_of_range, length_error: an index or size a check missed) from the
// reading becomes one.
template <typename F>
auto guarded(const std::filesystem::path& path, F&& load) -> decltype(load()) {
  auto named = [&]() -> decltype(load()) {
    try {
      return load();
    } catch (const InputError& e) {
      rethrow_naming(path, e);
    } catch (const std::logic_error& e) {  // an index or size a check missed: still the file's fault
      rethrow_naming(path, InputError(std::string("damaged or inconsistent file (") + e.what() + ")"));
    }
  };
  probe(path, [&] { (void)named(); });
  return named();
}

// A file opened for reading: every read names `path` and the object in its errors.
class Reader {
 public:
  // Throws InputError when the file is missing, not HDF5, or truncated.
  explicit Reader(const std::filesystem::path& path);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  const std::string& path() const { return path_; }
  hid_t root() const { return file_.id(); }

  // Checks the root's `format` attribute equals `format` (else "not an <what>") and that `format_version` is
  // 1..max_version (else "newer than this tool reads"); returns the version.
  std::int64_t check_format(const std::string& format, std::int64_t max_version, const std::string& what) const;
  bool exists(const std::string& object) const;
  bool has_attr(const std::string& object, const std::string& name) const;
  std::string attr_string(const std::string& object, const std::string& name) const;
  std::int64_t attr_int(const std::string& object, const std::string& name) const;
  double attr_double(const std::string& object, const std::string& name) const;
  // Dataset shape; throws InputError when missing.
  std::vector<std::int64_t> shape(const std::string& dataset) const;
  // Reads a whole dataset converted to the element type; `expect` (if non-empty) must equal its shape.
  std::vector<float> read_f32(const std::string& dataset, const std::vector<std::int64_t>& expect = {}) const;
  std::vector<std::int32_t> read_i32(const std::string& dataset, const std::vector<std::int64_t>& expect = {}) const;
  std::vector<std::uint8_t> read_u8(const std::string& dataset, const std::vector<std::int64_t>& expect = {}) const;
  // Bytes the dataset occupies in the file (after compression).
  std::uint64_t storage_bytes(const std::string& dataset) const;
  [[noreturn]] void fail(const std::string& what) const;

 private:
  template <typename T>
  std::vector<T> read(const std::string& dataset, hid_t mem_type, const std::vector<std::int64_t>& expect) const;
  // Opens a dataset after checking its link, layout, storage, filters and element type; `shape` receives its dims.
  Handle open_dataset(const std::string& dataset, std::vector<std::int64_t>* shape = nullptr,
                      std::uint64_t* storage = nullptr) const;
  Handle open_attr(const std::string& object, const std::string& name, const char* expect) const;
  std::string path_;
  std::uint64_t file_bytes_ = 0;
  Handle file_;
};

// A file written to a temporary name beside the target and renamed into place by commit() after it is flushed to
// disk; destroyed without commit(), it removes the temporary file, so nothing half-written is left at the target.
// With RPTQ_HDF5_LEGACY_LAYOUT=1 in the environment, a Writer writes the HDF5 layout of the files earlier versions
// wrote (earliest file format, no checksums, variable-length strings, contiguous datasets unless compressed): for
// tests and the fuzzer, which must keep reading such files safely.
class Writer {
 public:
  // overwrite: replace an existing target (else an existing target is an InputError before anything is written).
  Writer(const std::filesystem::path& target, bool overwrite);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  hid_t root() const { return file_.id(); }
  const std::filesystem::path& temp_path() const { return temp_; }

  void group(const std::string& path);  // creates a group (and missing parents)
  void attr(const std::string& object, const std::string& name, const std::string& value);
  void attr(const std::string& object, const std::string& name, std::int64_t value);
  void attr(const std::string& object, const std::string& name, double value);
  // Datasets; compress: deflate (with shuffle) in chunks, for data where it pays.
  void write_f32(const std::string& path, const std::vector<std::int64_t>& shape, const float* data,
                 bool compress = false);
  void write_i32(const std::string& path, const std::vector<std::int64_t>& shape, const std::int32_t* data,
                 bool compress = false);
  void write_u8(const std::string& path, const std::vector<std::int64_t>& shape, const std::uint8_t* data,
                bool compress = false);
  void write_f16(const std::string& path, const std::vector<std::int64_t>& shape, const std::uint16_t* data,
                 bool compress = false);
  void write_i8(const std::string& path, const std::vector<std::int64_t>& shape, const std::int8_t* data,
                bool compress = false);
  void write_i16(const std::string& path, const std::vector<std::int64_t>& shape, const std::int16_t* data,
                 bool compress = false);
  // Flushes, closes, fsyncs, and renames the file into place.
  void commit();

 private:
  void write(const std::string& path, const std::vector<std::int64_t>& shape, hid_t file_type, hid_t mem_type,
             const void* data, std::size_t elem_size, bool compress);
  [[noreturn]] void fail(const std::string& what) const;
  std::filesystem::path target_, temp_;
  Handle file_;
  bool committed_ = false;
  bool legacy_ = false;
};

}  // namespace rptq::h5
