#pragma once
// The run history from the command line: each run that quantizes (eval --stats, compare, export, sweep,
// sensitivity) is recorded in the user's run history (the GUI lists the same file) and its --json output carries
// the record as "run".
#include <nlohmann/json.hpp>
#include <string>

#include "quant_args.h"
#include "rptq/io/run_history.h"

namespace rptq::cli {

// A record of `kind` for the command's model and statistics: the setting, and the quantization options as
// options (sequential, stat, seed, reorder_only, device added by the caller).
RunRecord command_record(const std::string& kind, const std::string& model, const QuantConfig& setting,
                         const QuantArgs& a);

// Appends r to RunHistory::default_file() (unless RPTQ_HISTORY=off). A history that cannot be written (damaged,
// read-only) never fails the command: a note goes to stderr. Returns r as JSON, with "history" naming the file it
// went to ("" when not recorded).
nlohmann::json record_run(const RunRecord& r);

}  // namespace rptq::cli
