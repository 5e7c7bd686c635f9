#include "rptq/io/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "rptq/base/error.h"

namespace rptq {

namespace {
const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a folder, not a file";
  if (S_ISFIFO(m)) return "a FIFO (named pipe), not a regular file";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device, not a regular file";
  if (S_ISSOCK(m)) return "a socket, not a regular file";
  return "not a regular file";
}
}  // namespace

std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  const std::string name = path.string();
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. fstat then refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw InputError(name + ": no such file");
    throw InputError(name + ": cannot open (" + std::strerror(err) + ")");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const mode_t m = st.st_mode;
    ::close(fd);
    throw InputError(name + ": is " + kind_of(m));
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_bytes) {
    ::close(fd);
    throw InputError(name + ": " + std::to_string(size) + " bytes, more than the " + std::to_string(max_bytes) +
                     " this file may have");
  }
  std::string out(static_cast<std::size_t>(size), '\0');
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = errno;
      ::close(fd);
      throw InputError(name + (r < 0 ? ": read error (" + std::string(std::strerror(err)) + ")"
                                     : std::string(": file shrank while being read")));
    }
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  return out;
}

void require_model_folder(const std::filesystem::path& folder) {
  struct stat st {};
  if (::stat(folder.c_str(), &st) != 0) {
    const int err = errno;
    throw InputError(folder.string() + (err == ENOENT ? std::string(": model folder does not exist")
                                                      : ": cannot open (" + std::string(std::strerror(err)) + ")"));
  }
  if (S_ISDIR(st.st_mode)) return;
  if (S_ISREG(st.st_mode))
    throw InputError(folder.string() + ": a file, not a model folder (a Hugging Face model folder holds config.json "
                                       "and the weights)");
  throw InputError(folder.string() + ": is " + kind_of(st.st_mode) + ", not a model folder");
}

void check_output_target(const std::filesystem::path& target, bool overwrite) {
  struct stat st {};
  if (::lstat(target.c_str(), &st) != 0) return;  // a new path
  if (S_ISLNK(st.st_mode) && ::stat(target.c_str(), &st) != 0) {
    // A dangling symlink: renaming over it replaces the link itself, which is harmless.
    if (!overwrite) throw OutputExists(target.string() + ": exists, and overwriting it was not asked for");
    return;
  }
  if (!S_ISREG(st.st_mode))
    throw InputError(target.string() + ": is " + kind_of(st.st_mode) + "; rptq writes only regular files");
  if (!overwrite) throw OutputExists(target.string() + ": exists, and overwriting it was not asked for");
}

void write_file_atomic(const std::filesystem::path& target, const std::string& contents, bool overwrite) {
  check_output_target(target, overwrite);
  std::string temp = target.string() + ".tmp-XXXXXX";
  const int fd = ::mkstemp(temp.data());
  if (fd < 0)
    throw InputError(target.string() + ": cannot create a file beside it: " + std::strerror(errno));
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    return InputError(target.string() + ": " + what + ": " + std::strerror(err));
  };
  std::size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw fail("cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, 0644) != 0 || ::fsync(fd) != 0) throw fail("cannot write");
  if (::close(fd) != 0) {
    ::unlink(temp.c_str());
    throw InputError(target.string() + ": cannot write: " + std::strerror(errno));
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    throw InputError(target.string() + ": cannot move the new file into place: " + std::strerror(err));
  }
}

}  // namespace rptq
