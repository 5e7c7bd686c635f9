#include "io/hdf5_util.h"

#include <fcntl.h>
#include <omp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>

#include "rptq/base/error.h"
#include "rptq/io/files.h"

namespace rptq::h5 {

void quiet() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

namespace {
std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string t = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) t += ", ";
    t += std::to_string(s[i]);
  }
  return t + "]";
}

// IEEE binary16, little-endian, built from a float type: HDF5 1.10 has no predefined half type. h5py and numpy
// read it as float16.
hid_t f16_type() {
  static hid_t t = [] {
    hid_t x = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(x, 15, 10, 5, 0, 10);
    H5Tset_precision(x, 16);
    H5Tset_size(x, 2);
    H5Tset_ebias(x, 15);
    return x;
  }();
  return t;
}
}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Isolation

namespace {

std::string signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGKILL: return "SIGKILL";
    default: return "signal " + std::to_string(sig);
  }
}

std::recursive_mutex*& mutex_slot() {
  static std::recursive_mutex* m = new std::recursive_mutex;  // never destroyed: used until exit
  return m;
}

bool isolation_enabled() {
  const char* e = std::getenv("RPTQ_HDF5_ISOLATION");
  return !(e && std::string(e) == "0");
}

void write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t w = ::write(fd, s.data() + done, s.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    done += static_cast<std::size_t>(w);
  }
}

}  // namespace

void probe(const std::filesystem::path& path, const std::function<void()>& load, int seconds) {
  if (!isolation_enabled()) return;
  std::error_code ec;
  const std::uint64_t bytes = std::filesystem::is_regular_file(path, ec) ? std::filesystem::file_size(path, ec) : 0;
  // Reading is bound by decompression and unpacking, well above 20 MB/s; damaged files loop forever.
  if (seconds <= 0) seconds = 20 + static_cast<int>(bytes / (20u << 20));
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;  // no isolation possible: the checks in Reader still apply
  // No other thread may be inside libhdf5 when the child is forked (its state would be copied mid-operation). The
  // child cannot unlock the parent thread's lock, so it starts with a fresh mutex.
  mutex().lock();
  const pid_t pid = ::fork();
  if (pid == 0)
    mutex_slot() = new std::recursive_mutex;  // (the old one stays locked and unused in the child)
  else
    mutex().unlock();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return;
  }
  if (pid == 0) {
    // The child: load, report, and leave without running destructors or atexit handlers of the parent's state. A
    // fault must end it at once: the parent's crash handlers (Qt Test's, a sanitizer's) do not apply here.
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
      struct sigaction sa {};
      sa.sa_handler = SIG_DFL;
      sigemptyset(&sa.sa_mask);
      ::sigaction(sig, &sa, nullptr);
    }
    sigset_t unblock;
    sigemptyset(&unblock);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaddset(&unblock, sig);
    ::pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr);
    // OpenMP (libgomp) is not fork-safe: a parallel region in the child of a thread that has run one waits forever
    // for pool threads that do not exist here. One thread runs regions inline.
    omp_set_num_threads(1);
    ::close(fds[0]);
    std::string report;
    try {
      load();
      report.push_back('O');
    } catch (const InputError& e) {
      report = std::string("I") + e.what();
    } catch (const std::bad_alloc&) {
      report = "Mnot enough memory to read it";
    } catch (const std::exception& e) {
      report = std::string("X") + e.what();
    }
    write_all(fds[1], report);
    ::close(fds[1]);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string report;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1000)));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (r == 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child finished or died
    if (report.size() < (1u << 20)) report.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string name = path.string();
  if (timed_out)
    throw InputError(name + ": damaged HDF5 file: reading it did not finish in " + std::to_string(seconds) +
                     " s (stopped)");
  if (WIFSIGNALED(status))
    throw InputError(name + ": damaged HDF5 file: the HDF5 library crashed reading it (" +
                     signal_name(WTERMSIG(status)) + ", contained in a separate process)");
  if (report.empty() || (WIFEXITED(status) && WEXITSTATUS(status) != 0))
    throw InputError(name + ": damaged HDF5 file: reading it failed in a separate process (exit status " +
                     std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  switch (report[0]) {
    case 'O': return;
    case 'I': throw InputError(report.substr(1));
    case 'M': throw InputError(name + ": " + report.substr(1));
    default: throw std::runtime_error(report.substr(1));
  }
}

std::recursive_mutex& mutex() { return *mutex_slot(); }

void rethrow_naming(const std::filesystem::path& path, const std::exception& e) {
  const std::string m = e.what(), name = path.string();
  if (m.find(name) != std::string::npos) throw InputError(m);
  throw InputError(name + ": " + m);
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

namespace {

// The element types rptq writes and reads; anything else (custom floats, enums, compounds, big-endian, opaque) is
// refused before libhdf5's conversion code sees it.
bool allowed_numeric(hid_t t) {
  const hid_t ok[] = {H5T_IEEE_F32LE, H5T_IEEE_F64LE, H5T_STD_I8LE,  H5T_STD_I16LE, H5T_STD_I32LE, H5T_STD_I64LE,
                      H5T_STD_U8LE,   H5T_STD_U16LE,  H5T_STD_U32LE, H5T_STD_U64LE, f16_type()};
  for (hid_t x : ok)
    if (H5Tequal(t, x) > 0) return true;
  return false;
}

constexpr std::uint64_t kMaxChunkBytes = std::uint64_t{64} << 20;
constexpr std::size_t kMaxAttrString = std::size_t{1} << 20;

}  // namespace

Reader::Reader(const std::filesystem::path& path) : path_(path.string()) {
  quiet();
  std::lock_guard<std::recursive_mutex> g(mutex());
  // A regular file only: open without blocking (a FIFO would wait for a writer forever) and fstat the descriptor.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) throw InputError(path_ + ": no such file");
    throw InputError(path_ + ": cannot open (" + std::strerror(errno) + ")");
  }
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  ::close(fd);
  if (!regular) throw InputError(path_ + ": not a regular file");
  file_bytes_ = static_cast<std::uint64_t>(st.st_size);
  const htri_t is = H5Fis_hdf5(path_.c_str());
  if (is <= 0) throw InputError(path_ + ": not an HDF5 file (or truncated before its superblock)");
  const hid_t f = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw InputError(path_ + ": HDF5 file cannot be opened (truncated or corrupt)");
  file_ = Handle(f, H5Fclose);
}

Reader::~Reader() {
  std::lock_guard<std::recursive_mutex> g(mutex());
  file_.reset();
}

void Reader::fail(const std::string& what) const { throw InputError(path_ + ": " + what); }

std::int64_t Reader::check_format(const std::string& format, std::int64_t max_version, const std::string& what) const {
  if (!has_attr("/", "format") || attr_string("/", "format") != format)
    fail("not an " + what + " (no format = \"" + format + "\" attribute)");
  const std::int64_t version = attr_int("/", "format_version");
  if (version > max_version)
    fail("format version " + std::to_string(version) + " is newer than this tool reads (" +
         std::to_string(max_version) + "); update rptq");
  if (version < 1) fail("invalid format version " + std::to_string(version));
  return version;
}

bool Reader::exists(const std::string& object) const {
  std::lock_guard<std::recursive_mutex> g(mutex());
  // Check each prefix: H5Lexists fails (rather than returning false) when an intermediate group is missing. Every
  // link on the way must be a hard link: an external link would open another file (any file on the machine), a
  // soft link could point anywhere in this one.
  if (object.empty()) return false;
  std::string p;
  std::size_t pos = 0;
  const std::string o = object.front() == '/' ? object.substr(1) : object;
  while (pos <= o.size()) {
    const std::size_t next = o.find('/', pos);
    p += '/';
    p += o.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (H5Lexists(file_.id(), p.c_str(), H5P_DEFAULT) <= 0) return false;
    H5L_info_t info{};
    if (H5Lget_info(file_.id(), p.c_str(), &info, H5P_DEFAULT) < 0) fail(p + " is unreadable (corrupt link)");
    if (info.type != H5L_TYPE_HARD)
      fail(p + " is " + (info.type == H5L_TYPE_EXTERNAL ? "an external link (to another file)" : "a soft link") +
           "; rptq reads only objects stored in the file itself");
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return true;
}

bool Reader::has_attr(const std::string& object, const std::string& name) const {
  std::lock_guard<std::recursive_mutex> g(mutex());
  if (object != "/" && !exists(object)) return false;
  return H5Aexists_by_name(file_.id(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

Handle Reader::open_attr(const std::string& object, const std::string& name, const char* expect) const {
  if (!has_attr(object, name)) fail("missing attribute \"" + name + "\" on " + object);
  Handle a(H5Aopen_by_name(file_.id(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid()) fail("attribute \"" + name + "\" on " + object + " is unreadable");
  // One element: reading an N-element attribute into one value's buffer would overrun it.
  Handle sp(H5Aget_space(a.id()), H5Sclose);
  const H5S_class_t sc = sp.valid() ? H5Sget_simple_extent_type(sp.id()) : H5S_NO_CLASS;
  if ((sc != H5S_SCALAR && sc != H5S_SIMPLE) || H5Sget_simple_extent_npoints(sp.id()) != 1)
    fail("attribute \"" + name + "\" on " + object + " is not " + expect);
  return a;
}

std::string Reader::attr_string(const std::string& object, const std::string& name) const {
  std::lock_guard<std::recursive_mutex> g(mutex());
  const Handle a = open_attr(object, name, "one string");
  Handle t(H5Aget_type(a.id()), H5Tclose);
  if (!t.valid() || H5Tget_class(t.id()) != H5T_STRING)
    fail("attribute \"" + name + "\" on " + object + " is not a string");
  if (H5Tis_variable_str(t.id()) > 0) {
    // Written by format versions before the checksummed layout (and by other tools): the string lives in the
    // global heap, which libhdf5 reads trustingly -- callers reach this only through guarded().
    char* s = nullptr;
    Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.id(), H5T_VARIABLE);
    H5Tset_cset(mt.id(), H5T_CSET_UTF8);
    if (H5Aread(a.id(), mt.id(), &s) < 0 || !s) fail("attribute \"" + name + "\" on " + object + " is unreadable");
    std::string out(s, strnlen(s, kMaxAttrString));
    H5free_memory(s);
    return out;
  }
  const std::size_t n = H5Tget_size(t.id());
  if (n == 0 || n > kMaxAttrString) fail("attribute \"" + name + "\" on " + object + " claims an implausible size");
  std::string out(n, '\0');
  Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mt.id(), n);
  H5Tset_strpad(mt.id(), H5T_STR_NULLPAD);
  const H5T_cset_t cset = H5Tget_cset(t.id());  // libhdf5 does not convert between ASCII and UTF-8
  if (cset != H5T_CSET_ASCII && cset != H5T_CSET_UTF8) fail("attribute \"" + name + "\" on " + object + " has an unknown character set");
  H5Tset_cset(mt.id(), cset);
  if (H5Aread(a.id(), mt.id(), out.data()) < 0) fail("attribute \"" + name + "\" on " + object + " is unreadable");
  out.erase(std::find(out.begin(), out.end(), '\0'), out.end());
  return out;
}

std::int64_t Reader::attr_int(const std::string& object, const std::string& name) const {
  std::lock_guard<std::recursive_mutex> g(mutex());
  const Handle a = open_attr(object, name, "one integer");
  Handle t(H5Aget_type(a.id()), H5Tclose);
  if (!t.valid() || H5Tget_class(t.id()) != H5T_INTEGER || !allowed_numeric(t.id()))
    fail("attribute \"" + name + "\" on " + object + " is not one integer");
  std::int64_t v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_INT64, &v) < 0) fail("attribute \"" + name + "\" on " + object + " is unreadable");
  return v;
}

double Reader::attr_double(const std::string& object, const std::string& name) const {
  std::lock_guard<std::recursive_mutex> g(mutex());
  const Handle a = open_attr(object, name, "one number");
  Handle t(H5Aget_type(a.id()), H5Tclose);
  if (!t.valid() || !allowed_numeric(t.id())) fail("attribute \"" + name + "\" on " + object + " is not one number");
  double v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_DOUBLE, &v) < 0) fail("attribute \"" + name + "\" on " + object + " is unreadable");
  return v;
}

Handle Reader::open_dataset(const std::string& dataset, std::vector<std::int64_t>* shape_out,
                            std::uint64_t* storage_out) const {
  if (!exists(dataset)) fail("missing dataset " + dataset);
  Handle d(H5Dopen2(file_.id(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) fail(dataset + " is not a dataset");
  // Shape.
  Handle sp(H5Dget_space(d.id()), H5Sclose);
  const int rank = sp.valid() ? H5Sget_simple_extent_ndims(sp.id()) : -1;
  if (rank < 0 || rank > 8) fail(dataset + " has an unreadable shape");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0 && H5Sget_simple_extent_dims(sp.id(), dims.data(), nullptr) < 0) fail(dataset + " has an unreadable shape");
  std::vector<std::int64_t> s(dims.begin(), dims.end());
  std::uint64_t n = 1;
  for (hsize_t x : dims) {
    if (x > (std::uint64_t{1} << 40) || (x > 0 && n > (std::uint64_t{1} << 40) / x))
      fail(dataset + " claims an implausible size " + shape_text(s));
    n *= x;
  }
  // Element type.
  Handle t(H5Dget_type(d.id()), H5Tclose);
  if (!t.valid() || !allowed_numeric(t.id())) fail(dataset + " is not of a numeric type rptq reads");
  const std::size_t elem = H5Tget_size(t.id());
  // Layout, storage and filters.
  Handle dcpl(H5Dget_create_plist(d.id()), H5Pclose);
  if (!dcpl.valid()) fail(dataset + " has unreadable storage properties");
  const H5D_layout_t layout = H5Pget_layout(dcpl.id());
  if (layout != H5D_COMPACT && layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED)
    fail(dataset + " is a virtual dataset; rptq reads only data stored in the file itself");
  if (H5Pget_external_count(dcpl.id()) != 0)
    fail(dataset + " keeps its data in external files; rptq reads only data stored in the file itself");
  const int nfilters = H5Pget_nfilters(dcpl.id());
  if (nfilters < 0 || nfilters > 8) fail(dataset + " has unreadable filters");
  bool compressed = false;
  for (int i = 0; i < nfilters; ++i) {
    unsigned flags = 0, config = 0;
    std::size_t nelmts = 0;
    const H5Z_filter_t id =
        H5Pget_filter2(dcpl.id(), static_cast<unsigned>(i), &flags, &nelmts, nullptr, 0, nullptr, &config);
    if (id == H5Z_FILTER_DEFLATE)
      compressed = true;
    else if (id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32)
      fail(dataset + " uses HDF5 filter " + std::to_string(id) + "; rptq reads deflate, shuffle and fletcher32 only");
  }
  if (layout == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(static_cast<std::size_t>(std::max(rank, 1)));
    if (H5Pget_chunk(dcpl.id(), rank, chunk.data()) != rank) fail(dataset + " has an inconsistent chunk shape");
    std::uint64_t cb = elem;
    for (int i = 0; i < rank; ++i) {
      if (chunk[static_cast<std::size_t>(i)] == 0 || chunk[static_cast<std::size_t>(i)] > kMaxChunkBytes)
        fail(dataset + " has an implausible chunk shape");
      cb *= chunk[static_cast<std::size_t>(i)];
      if (cb > kMaxChunkBytes) fail(dataset + " has chunks larger than " + std::to_string(kMaxChunkBytes >> 20) + " MiB");
    }
  }
  // The bytes the dataset declares against the bytes it occupies, before anything is allocated: raw data must be
  // all there; deflate expands at most about 1032:1.
  const std::uint64_t storage = H5Dget_storage_size(d.id());
  if (storage > file_bytes_) fail(dataset + " claims " + std::to_string(storage) + " bytes in a file of " + std::to_string(file_bytes_));
  const std::uint64_t need = n * elem;
  const std::uint64_t limit = compressed ? storage * 1100 + 4096 : storage;
  if (need > limit)
    fail(dataset + " declares " + shape_text(s) + " (" + std::to_string(need) + " bytes) but occupies only " +
         std::to_string(storage) + " bytes of the file");
  if (shape_out) *shape_out = std::move(s);
  if (storage_out) *storage_out = storage;
  return d;
}

std::vector<std::int64_t> Reader::shape(const std::string& dataset) const {
  std::lock_guard<std::recursive_mutex> g(mutex());
  std::vector<std::int64_t> s;
  open_dataset(dataset, &s);
  return s;
}

template <typename T>
std::vector<T> Reader::read(const std::string& dataset, hid_t mem_type, const std::vector<std::int64_t>& expect) const {
  std::lock_guard<std::recursive_mutex> g(mutex());
  std::vector<std::int64_t> s;
  const Handle d = open_dataset(dataset, &s);
  if (!expect.empty() && s != expect)
    fail(dataset + " has shape " + shape_text(s) + ", expected " + shape_text(expect));
  std::uint64_t n = 1;
  for (auto x : s) n *= static_cast<std::uint64_t>(x);
  std::vector<T> out(static_cast<std::size_t>(n));
  if (n && H5Dread(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail(dataset + " cannot be read (corrupt data, or a checksum mismatch)");
  return out;
}

std::vector<float> Reader::read_f32(const std::string& ds, const std::vector<std::int64_t>& expect) const {
  return read<float>(ds, H5T_NATIVE_FLOAT, expect);
}
std::vector<std::int32_t> Reader::read_i32(const std::string& ds, const std::vector<std::int64_t>& expect) const {
  return read<std::int32_t>(ds, H5T_NATIVE_INT32, expect);
}
std::vector<std::uint8_t> Reader::read_u8(const std::string& ds, const std::vector<std::int64_t>& expect) const {
  return read<std::uint8_t>(ds, H5T_NATIVE_UINT8, expect);
}

std::uint64_t Reader::storage_bytes(const std::string& dataset) const {
  std::lock_guard<std::recursive_mutex> g(mutex());
  std::uint64_t storage = 0;
  open_dataset(dataset, nullptr, &storage);
  return storage;
}

// ---------------------------------------------------------------------------------------------------------------

namespace {
bool legacy_layout() {
  const char* e = std::getenv("RPTQ_HDF5_LEGACY_LAYOUT");
  return e && std::string(e) == "1";
}
}  // namespace

Writer::Writer(const std::filesystem::path& target, bool overwrite) : target_(target), legacy_(legacy_layout()) {
  quiet();
  std::lock_guard<std::recursive_mutex> g(mutex());
  check_output_target(target, overwrite);
  std::error_code ec;
  const auto dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(dir, ec)) throw InputError(target.string() + ": no such directory " + dir.string());
  std::random_device rd;
  std::string name = std::string(".").append(target.filename().string()).append(".tmp-");
  name.append(std::to_string(::getpid())).append("-").append(std::to_string(rd() % 1000000));
  temp_ = dir / name;
  // The 1.10 file format: superblock v3, v2 object headers and the new chunk indexes, all with checksums, so a
  // damaged byte in the metadata is reported instead of being trusted.
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!legacy_) H5Pset_libver_bounds(fapl.id(), H5F_LIBVER_V110, H5F_LIBVER_V110);
  const hid_t f = H5Fcreate(temp_.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.id());
  if (f < 0) throw InputError(target.string() + ": cannot create a file in " + dir.string());
  file_ = Handle(f, H5Fclose);
}

Writer::~Writer() {
  std::lock_guard<std::recursive_mutex> g(mutex());
  if (!committed_) {
    file_.reset();
    std::error_code ec;
    std::filesystem::remove(temp_, ec);
  }
}

void Writer::fail(const std::string& what) const { throw std::runtime_error(target_.string() + ": " + what); }

void Writer::group(const std::string& path) {
  std::lock_guard<std::recursive_mutex> lock(mutex());
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.id(), 1);
  Handle g(H5Gcreate2(file_.id(), path.c_str(), lcpl.id(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g.valid()) fail("cannot create group " + path);
}

void Writer::attr(const std::string& object, const std::string& name, const std::string& value) {
  std::lock_guard<std::recursive_mutex> g(mutex());
  // Fixed-length (null-padded UTF-8): kept in the checksummed object header, never in the global heap.
  if (value.size() > kMaxAttrString) fail("attribute " + name + " on " + object + " is too long");
  // The legacy layout's variable-length string, or a fixed-length one of the value's size (at least one byte).
  std::string padded = value;
  padded.resize(std::max<std::size_t>(value.size(), 1), '\0');
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.id(), legacy_ ? H5T_VARIABLE : padded.size());
  if (!legacy_) H5Tset_strpad(t.id(), H5T_STR_NULLPAD);
  H5Tset_cset(t.id(), H5T_CSET_UTF8);
  Handle sp(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate_by_name(file_.id(), object.c_str(), name.c_str(), t.id(), sp.id(), H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT),
           H5Aclose);
  const char* vl = value.c_str();
  const void* buf = legacy_ ? static_cast<const void*>(&vl) : static_cast<const void*>(padded.data());
  if (!a.valid() || H5Awrite(a.id(), t.id(), buf) < 0) fail("cannot write attribute " + name + " on " + object);
}

void Writer::attr(const std::string& object, const std::string& name, std::int64_t value) {
  std::lock_guard<std::recursive_mutex> g(mutex());
  Handle sp(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate_by_name(file_.id(), object.c_str(), name.c_str(), H5T_STD_I64LE, sp.id(), H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  if (!a.valid() || H5Awrite(a.id(), H5T_NATIVE_INT64, &value) < 0)
    fail("cannot write attribute " + name + " on " + object);
}

void Writer::attr(const std::string& object, const std::string& name, double value) {
  std::lock_guard<std::recursive_mutex> g(mutex());
  Handle sp(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate_by_name(file_.id(), object.c_str(), name.c_str(), H5T_IEEE_F64LE, sp.id(), H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  if (!a.valid() || H5Awrite(a.id(), H5T_NATIVE_DOUBLE, &value) < 0)
    fail("cannot write attribute " + name + " on " + object);
}

void Writer::write(const std::string& path, const std::vector<std::int64_t>& shape, hid_t file_type, hid_t mem_type,
                   const void* data, std::size_t elem_size, bool compress) {
  std::lock_guard<std::recursive_mutex> g(mutex());
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle sp(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  std::uint64_t n = 1;
  for (auto d : dims) n *= d;
  if (n > 0 && !dims.empty() && (compress || !legacy_)) {
    // Chunked, so that every chunk carries a Fletcher-32 checksum: chunks of at most about 1 MiB, cut along the
    // first dimension (and the next ones when a single row is larger).
    std::vector<hsize_t> chunk(dims);
    for (auto& c : chunk) c = std::max<hsize_t>(c, 1);
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      std::uint64_t bytes = elem_size;
      for (hsize_t c : chunk) bytes *= c;
      if (bytes <= (1u << 20)) break;
      const std::uint64_t others = bytes / chunk[i];
      chunk[i] = std::max<hsize_t>(1, static_cast<hsize_t>((1u << 20) / others));
    }
    H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data());
    if (compress) {
      H5Pset_shuffle(dcpl.id());
      H5Pset_deflate(dcpl.id(), 4);
    }
    if (!legacy_) H5Pset_fletcher32(dcpl.id());
  }
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.id(), 1);
  Handle d(H5Dcreate2(file_.id(), path.c_str(), file_type, sp.id(), lcpl.id(), dcpl.id(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) fail("cannot create dataset " + path);
  if (n && H5Dwrite(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) fail("cannot write dataset " + path);
}

void Writer::write_f32(const std::string& path, const std::vector<std::int64_t>& shape, const float* data,
                       bool compress) {
  write(path, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, 4, compress);
}
void Writer::write_i32(const std::string& path, const std::vector<std::int64_t>& shape, const std::int32_t* data,
                       bool compress) {
  write(path, shape, H5T_STD_I32LE, H5T_NATIVE_INT32, data, 4, compress);
}
void Writer::write_u8(const std::string& path, const std::vector<std::int64_t>& shape, const std::uint8_t* data,
                      bool compress) {
  write(path, shape, H5T_STD_U8LE, H5T_NATIVE_UINT8, data, 1, compress);
}
void Writer::write_f16(const std::string& path, const std::vector<std::int64_t>& shape, const std::uint16_t* data,
                       bool compress) {
  // The memory buffer already holds binary16 bits: same type in memory and in the file, no conversion.
  write(path, shape, f16_type(), f16_type(), data, 2, compress);
}

void Writer::write_i8(const std::string& path, const std::vector<std::int64_t>& shape, const std::int8_t* data,
                      bool compress) {
  write(path, shape, H5T_STD_I8LE, H5T_NATIVE_INT8, data, 1, compress);
}

void Writer::write_i16(const std::string& path, const std::vector<std::int64_t>& shape, const std::int16_t* data,
                       bool compress) {
  write(path, shape, H5T_STD_I16LE, H5T_NATIVE_INT16, data, 2, compress);
}

void Writer::commit() {
  std::lock_guard<std::recursive_mutex> g(mutex());
  if (H5Fflush(file_.id(), H5F_SCOPE_GLOBAL) < 0) fail("flush failed");
  file_.reset();
  const int fd = ::open(temp_.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    fail("cannot sync " + temp_.string() + " to disk");
  }
  ::close(fd);
  std::error_code ec;
  std::filesystem::rename(temp_, target_, ec);
  if (ec) fail("cannot move the finished file into place: " + ec.message());
  committed_ = true;
  // Make the rename itself durable.
  const auto dir = target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace rptq::h5
