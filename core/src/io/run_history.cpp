#include "rptq/io/run_history.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>

#include "rptq/base/error.h"
#include "rptq/io/files.h"
#include "rptq/method/quant_config_json.h"
#include "rptq/version_info.h"

namespace rptq {

namespace {
constexpr const char* kFormat = "rptq-run-history";
constexpr int kVersion = 1;
constexpr std::uint64_t kMaxFileBytes = std::uint64_t{256} << 20;

std::string absolute_path(const std::string& p) {
  if (p.empty()) return p;
  std::error_code ec;
  const auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

// An exclusive advisory lock on FILE.lock for as long as it lives.
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& file) {
    const std::string lock = file.string() + ".lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd_ < 0) throw InputError(lock + ": cannot open the run history's lock: " + std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) {
        const int err = errno;
        ::close(fd_);
        throw InputError(lock + ": cannot lock the run history: " + std::strerror(err));
      }
  }
  ~FileLock() { ::close(fd_); }  // closing releases the lock
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

void write_history(const std::filesystem::path& file, const std::vector<RunRecord>& runs) {
  nlohmann::json j = {{"format", kFormat}, {"version", kVersion}, {"runs", nlohmann::json::array()}};
  for (const RunRecord& r : runs) j["runs"].push_back(run_record_json(r));
  // Invalid UTF-8 in a path or a generated text becomes U+FFFD instead of failing the write.
  write_file_atomic(file, j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", true);
}
}  // namespace

RunRecord new_run_record(const std::string& kind, const std::string& model, const std::string& stats,
                         const QuantConfig& setting) {
  RunRecord r;
  r.kind = kind;
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char stamp[32], id[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::strftime(id, sizeof id, "%Y%m%dT%H%M%SZ", &tm);
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "-%06x", static_cast<unsigned>(rd() & 0xffffffu));
  r.created = stamp;
  r.id = std::string(id) + suffix;
  r.tool_version = RPTQ_VERSION_STRING;
  r.model = absolute_path(model);
  r.model_name = std::filesystem::path(r.model).filename().string();
  r.stats = absolute_path(stats);
  r.setting = setting;
  return r;
}

nlohmann::json run_record_json(const RunRecord& r) {
  return {{"id", r.id},           {"kind", r.kind},   {"created", r.created},
          {"tool_version", r.tool_version},            {"model", r.model},
          {"model_name", r.model_name},                {"stats", r.stats},
          {"setting", quant_config_json(r.setting)},   {"options", r.options},
          {"results", r.results}};
}

RunRecord run_record_from_json(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object()) throw InputError(what + ": a run record is not a JSON object");
  auto text = [&](const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string()) throw InputError(what + ": run record: \"" + key + "\" is missing or not text");
    return it->get<std::string>();
  };
  RunRecord r;
  r.id = text("id");
  r.kind = text("kind");
  r.created = text("created");
  r.tool_version = text("tool_version");
  r.model = text("model");
  r.model_name = text("model_name");
  r.stats = text("stats");
  const auto s = j.find("setting");
  if (s == j.end()) throw InputError(what + ": run record " + r.id + ": \"setting\" is missing");
  r.setting = quant_config_from_json(*s, what + ": run record " + r.id);
  for (const char* key : {"options", "results"}) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_object())
      throw InputError(what + ": run record " + r.id + ": \"" + key + "\" is missing or not an object");
    (std::string(key) == "options" ? r.options : r.results) = *it;
  }
  return r;
}

std::vector<RunRecord> RunHistory::load() const {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(file_, ec))) return {};
  const std::string text = read_file(file_, kMaxFileBytes);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(file_.string() + ": damaged run history (not valid JSON: " + e.what() + ")");
  }
  const std::string what = file_.string();
  if (!j.is_object() || j.value("format", std::string()) != kFormat)
    throw InputError(what + ": not an RPTQ run history (no \"format\": \"" + kFormat + "\")");
  const auto v = j.find("version");
  if (v == j.end() || !v->is_number_integer()) throw InputError(what + ": run history without a version");
  if (v->get<std::int64_t>() > kVersion)
    throw InputError(what + ": run history version " + std::to_string(v->get<std::int64_t>()) +
                     " is newer than this tool reads (" + std::to_string(kVersion) + ")");
  const auto runs = j.find("runs");
  if (runs == j.end() || !runs->is_array()) throw InputError(what + ": run history without a \"runs\" list");
  std::vector<RunRecord> out;
  out.reserve(runs->size());
  for (const nlohmann::json& r : *runs) out.push_back(run_record_from_json(r, what));
  return out;
}

template <class F>
void RunHistory::update(F&& change) const {
  std::error_code ec;
  if (file_.has_parent_path()) std::filesystem::create_directories(file_.parent_path(), ec);
  if (ec) throw InputError(file_.parent_path().string() + ": cannot create the run history's folder: " + ec.message());
  FileLock lock(file_);
  std::vector<RunRecord> runs = load();
  change(runs);
  write_history(file_, runs);
}

void RunHistory::append(const RunRecord& r) const {
  update([&](std::vector<RunRecord>& runs) {
    runs.push_back(r);
    if (runs.size() > kMaxRuns) runs.erase(runs.begin(), runs.end() - static_cast<std::ptrdiff_t>(kMaxRuns));
  });
}

bool RunHistory::remove(const std::string& id) const {
  bool found = false;
  update([&](std::vector<RunRecord>& runs) {
    const auto it = std::remove_if(runs.begin(), runs.end(), [&](const RunRecord& r) { return r.id == id; });
    found = it != runs.end();
    runs.erase(it, runs.end());
  });
  return found;
}

std::vector<RunRecord> RunHistory::of_model(const std::vector<RunRecord>& all, const std::string& model) {
  const std::string want = absolute_path(model);
  std::vector<RunRecord> out;
  for (const RunRecord& r : all)
    if (r.model == want) out.push_back(r);
  return out;
}

std::filesystem::path RunHistory::default_file() {
  if (const char* h = std::getenv("RPTQ_HISTORY")) {
    const std::string s = h;
    if (s.empty() || s == "off") return {};
    return s;
  }
  std::filesystem::path base;
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x == '/')
    base = x;
  else if (const char* home = std::getenv("HOME"); home && *home)
    base = std::filesystem::path(home) / ".local" / "share";
  else
    return {};
  return base / "RPTQ" / "rptq-workbench" / "history.json";
}

}  // namespace rptq
