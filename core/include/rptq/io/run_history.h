#pragma once
// The run history: every quantization, comparison, sweep and sensitivity run, with its full setting, statistics
// file and results, kept in one small JSON file in the user's data folder so that runs can be listed per model,
// put side by side and taken up again. The GUI and `rptq` write the same records (and `rptq`'s --json outputs carry
// the record they wrote).
//
// The file: {"format": "rptq-run-history", "version": 1, "runs": [RECORD, ...]}, oldest first, at most kMaxRuns
// (the oldest are dropped). A RECORD:
//   {"id": "20261207T143000Z-1a2b3c", "kind": "compare", "created": "2026-12-07T14:30:00Z", "tool_version": "...",
//    "model": "/abs/model/folder", "model_name": "tiny-opt-16m", "stats": "/abs/stats.h5",
//    "setting": {quant_config_json}, "options": {...}, "results": {...}}
// "options" holds what the run was made with beside the setting (sequential, device, data files, windows); "results"
// what it measured (kind-specific: ppl_fp, ppl_q, kl, top1_agreement, seconds, ...).
#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rptq/method/quant_config.h"

namespace rptq {

struct RunRecord {
  std::string id;            // unique: creation time and a random suffix
  std::string kind;          // "quantize", "compare", "export", "sweep", "sensitivity", "eval"
  std::string created;       // UTC, ISO 8601
  std::string tool_version;  // rptq version that ran it
  std::string model;         // the model folder, absolute
  std::string model_name;    // its folder name
  std::string stats;         // the statistics file, absolute ("" when none)
  QuantConfig setting;
  nlohmann::json options = nlohmann::json::object();
  nlohmann::json results = nlohmann::json::object();
};

// A record of `kind` for `model` with `stats`, created now (id, created, tool_version filled in; paths made
// absolute).
RunRecord new_run_record(const std::string& kind, const std::string& model, const std::string& stats,
                         const QuantConfig& setting);

nlohmann::json run_record_json(const RunRecord& r);
// Throws InputError naming `what` and the bad key.
RunRecord run_record_from_json(const nlohmann::json& j, const std::string& what);

class RunHistory {
 public:
  static constexpr std::size_t kMaxRuns = 2000;

  explicit RunHistory(std::filesystem::path file) : file_(std::move(file)) {}
  const std::filesystem::path& file() const { return file_; }

  // Every record, oldest first; none when the file does not exist. Throws InputError naming the file when it is
  // damaged or not a run history (records that fail to parse make the whole file refused: nothing is dropped
  // silently).
  std::vector<RunRecord> load() const;
  // Adds a record: the file is re-read and rewritten atomically under an exclusive lock (another GUI or `rptq`
  // process appending at the same time is waited for, not overwritten). Creates the folder when missing.
  void append(const RunRecord& r) const;
  // Removes the record with this id (false when there is none).
  bool remove(const std::string& id) const;

  // The records of one model folder (compared as absolute, normalised paths), oldest first.
  static std::vector<RunRecord> of_model(const std::vector<RunRecord>& all, const std::string& model);

  // $RPTQ_HISTORY when set (a file path; "off" or "" turns recording off: returns an empty path), else
  // $XDG_DATA_HOME/RPTQ/rptq-workbench/history.json (~/.local/share when XDG_DATA_HOME is unset): the GUI's
  // application data folder.
  static std::filesystem::path default_file();

 private:
  template <class F>
  void update(F&& change) const;
  std::filesystem::path file_;
};

}  // namespace rptq
