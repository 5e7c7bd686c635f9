#include "io/hdf5_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <random>

#include "rptq/base/error.h"

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

Reader::Reader(const std::filesystem::path& path) : path_(path.string()) {
  quiet();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw InputError(path_ + ": no such file");
  const htri_t is = H5Fis_hdf5(path_.c_str());
  if (is <= 0) throw InputError(path_ + ": not an HDF5 file (or truncated before its superblock)");
  const hid_t f = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw InputError(path_ + ": HDF5 file cannot be opened (truncated or corrupt)");
  file_ = Handle(f, H5Fclose);
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
  // Check each prefix: H5Lexists fails (rather than returning false) when an intermediate group is missing.
  std::string p;
  std::size_t pos = 0;
  const std::string o = object.front() == '/' ? object.substr(1) : object;
  while (pos <= o.size()) {
    const std::size_t next = o.find('/', pos);
    p += '/';
    p += o.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (H5Lexists(file_.id(), p.c_str(), H5P_DEFAULT) <= 0) return false;
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return true;
}

bool Reader::has_attr(const std::string& object, const std::string& name) const {
  if (!exists(object) && object != "/") return false;
  return H5Aexists_by_name(file_.id(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

std::string Reader::attr_string(const std::string& object, const std::string& name) const {
  if (!has_attr(object, name)) fail("missing attribute \"" + name + "\" on " + object);
  Handle a(H5Aopen_by_name(file_.id(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle t(H5Aget_type(a.id()), H5Tclose);
  if (!a.valid() || !t.valid() || H5Tget_class(t.id()) != H5T_STRING)
    fail("attribute \"" + name + "\" on " + object + " is not a string");
  if (H5Tis_variable_str(t.id()) > 0) {
    char* s = nullptr;
    Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.id(), H5T_VARIABLE);
    H5Tset_cset(mt.id(), H5T_CSET_UTF8);
    if (H5Aread(a.id(), mt.id(), &s) < 0 || !s) fail("attribute \"" + name + "\" on " + object + " is unreadable");
    std::string out(s);
    H5free_memory(s);
    return out;
  }
  const std::size_t n = H5Tget_size(t.id());
  if (n > (64u << 20)) fail("attribute \"" + name + "\" on " + object + " claims an implausible size");
  std::string out(n, '\0');
  Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mt.id(), n);
  if (H5Aread(a.id(), mt.id(), out.data()) < 0) fail("attribute \"" + name + "\" on " + object + " is unreadable");
  out.erase(std::find(out.begin(), out.end(), '\0'), out.end());
  return out;
}

std::int64_t Reader::attr_int(const std::string& object, const std::string& name) const {
  if (!has_attr(object, name)) fail("missing attribute \"" + name + "\" on " + object);
  Handle a(H5Aopen_by_name(file_.id(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle t(H5Aget_type(a.id()), H5Tclose);
  Handle sp(H5Aget_space(a.id()), H5Sclose);
  if (!t.valid() || H5Tget_class(t.id()) != H5T_INTEGER || H5Sget_simple_extent_npoints(sp.id()) != 1)
    fail("attribute \"" + name + "\" on " + object + " is not one integer");
  std::int64_t v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_INT64, &v) < 0) fail("attribute \"" + name + "\" on " + object + " is unreadable");
  return v;
}

double Reader::attr_double(const std::string& object, const std::string& name) const {
  if (!has_attr(object, name)) fail("missing attribute \"" + name + "\" on " + object);
  Handle a(H5Aopen_by_name(file_.id(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle t(H5Aget_type(a.id()), H5Tclose);
  Handle sp(H5Aget_space(a.id()), H5Sclose);
  const H5T_class_t c = t.valid() ? H5Tget_class(t.id()) : H5T_NO_CLASS;
  if ((c != H5T_FLOAT && c != H5T_INTEGER) || H5Sget_simple_extent_npoints(sp.id()) != 1)
    fail("attribute \"" + name + "\" on " + object + " is not one number");
  double v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_DOUBLE, &v) < 0) fail("attribute \"" + name + "\" on " + object + " is unreadable");
  return v;
}

std::vector<std::int64_t> Reader::shape(const std::string& dataset) const {
  if (!exists(dataset)) fail("missing dataset " + dataset);
  Handle d(H5Dopen2(file_.id(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) fail(dataset + " is not a dataset");
  Handle sp(H5Dget_space(d.id()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(sp.id());
  if (rank < 0 || rank > 8) fail(dataset + " has an unreadable shape");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(sp.id(), dims.data(), nullptr);
  return {dims.begin(), dims.end()};
}

template <typename T>
std::vector<T> Reader::read(const std::string& dataset, hid_t mem_type, const std::vector<std::int64_t>& expect) const {
  const std::vector<std::int64_t> s = shape(dataset);
  if (!expect.empty() && s != expect)
    fail(dataset + " has shape " + shape_text(s) + ", expected " + shape_text(expect));
  std::uint64_t n = 1;
  for (auto d : s) {
    if (d < 0 || (d > 0 && n > (std::uint64_t{1} << 40) / static_cast<std::uint64_t>(d)))
      fail(dataset + " claims an implausible size " + shape_text(s));
    n *= static_cast<std::uint64_t>(d);
  }
  Handle d(H5Dopen2(file_.id(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  Handle t(H5Dget_type(d.id()), H5Tclose);
  const H5T_class_t c = t.valid() ? H5Tget_class(t.id()) : H5T_NO_CLASS;
  if (c != H5T_FLOAT && c != H5T_INTEGER) fail(dataset + " is not numeric");
  std::vector<T> out(static_cast<std::size_t>(n));
  if (n && H5Dread(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail(dataset + " cannot be read (truncated or corrupt data)");
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
  if (!exists(dataset)) fail("missing dataset " + dataset);
  Handle d(H5Dopen2(file_.id(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) fail(dataset + " is not a dataset");
  return H5Dget_storage_size(d.id());
}

// ---------------------------------------------------------------------------------------------------------------

Writer::Writer(const std::filesystem::path& target, bool overwrite) : target_(target) {
  quiet();
  std::error_code ec;
  if (!overwrite && std::filesystem::exists(target, ec))
    throw OutputExists(target.string() + ": exists, and overwriting it was not asked for");
  const auto dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(dir, ec)) throw InputError(target.string() + ": no such directory " + dir.string());
  std::random_device rd;
  std::string name = std::string(".").append(target.filename().string()).append(".tmp-");
  name.append(std::to_string(::getpid())).append("-").append(std::to_string(rd() % 1000000));
  temp_ = dir / name;
  const hid_t f = H5Fcreate(temp_.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) throw InputError(target.string() + ": cannot create a file in " + dir.string());
  file_ = Handle(f, H5Fclose);
}

Writer::~Writer() {
  if (!committed_) {
    file_.reset();
    std::error_code ec;
    std::filesystem::remove(temp_, ec);
  }
}

void Writer::fail(const std::string& what) const { throw std::runtime_error(target_.string() + ": " + what); }

void Writer::group(const std::string& path) {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.id(), 1);
  Handle g(H5Gcreate2(file_.id(), path.c_str(), lcpl.id(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g.valid()) fail("cannot create group " + path);
}

void Writer::attr(const std::string& object, const std::string& name, const std::string& value) {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.id(), H5T_VARIABLE);
  H5Tset_cset(t.id(), H5T_CSET_UTF8);
  Handle sp(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate_by_name(file_.id(), object.c_str(), name.c_str(), t.id(), sp.id(), H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT),
           H5Aclose);
  const char* s = value.c_str();
  if (!a.valid() || H5Awrite(a.id(), t.id(), &s) < 0) fail("cannot write attribute " + name + " on " + object);
}

void Writer::attr(const std::string& object, const std::string& name, std::int64_t value) {
  Handle sp(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate_by_name(file_.id(), object.c_str(), name.c_str(), H5T_STD_I64LE, sp.id(), H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  if (!a.valid() || H5Awrite(a.id(), H5T_NATIVE_INT64, &value) < 0)
    fail("cannot write attribute " + name + " on " + object);
}

void Writer::attr(const std::string& object, const std::string& name, double value) {
  Handle sp(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate_by_name(file_.id(), object.c_str(), name.c_str(), H5T_IEEE_F64LE, sp.id(), H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  if (!a.valid() || H5Awrite(a.id(), H5T_NATIVE_DOUBLE, &value) < 0)
    fail("cannot write attribute " + name + " on " + object);
}

void Writer::write(const std::string& path, const std::vector<std::int64_t>& shape, hid_t file_type, hid_t mem_type,
                   const void* data, std::size_t elem_size, bool compress) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle sp(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  std::uint64_t n = 1;
  for (auto d : dims) n *= d;
  if (compress && n > 0 && !dims.empty()) {
    // Chunks of about 1 MiB along the first dimension.
    std::vector<hsize_t> chunk(dims);
    std::uint64_t row = elem_size;
    for (std::size_t i = 1; i < dims.size(); ++i) row *= std::max<hsize_t>(dims[i], 1);
    chunk[0] = std::clamp<hsize_t>(static_cast<hsize_t>((1u << 20) / std::max<std::uint64_t>(row, 1)), 1, dims[0]);
    for (auto& c : chunk) c = std::max<hsize_t>(c, 1);
    H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data());
    H5Pset_shuffle(dcpl.id());
    H5Pset_deflate(dcpl.id(), 4);
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
