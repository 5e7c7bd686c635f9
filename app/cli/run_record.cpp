#include "run_record.h"

#include <iostream>

#include "rptq/base/error.h"

namespace rptq::cli {

RunRecord command_record(const std::string& kind, const std::string& model, const QuantConfig& setting,
                         const QuantArgs& a) {
  RunRecord r = new_run_record(kind, model, a.stats, setting);
  r.options["sequential"] = !a.no_sequential;
  r.options["reorder_only"] = a.reorder_only;
  if (!a.stat.empty()) r.options["stat"] = a.stat;
  if (a.seed) r.options["kmeans_seed"] = a.seed;
  return r;
}

nlohmann::json record_run(const RunRecord& r) {
  nlohmann::json j = run_record_json(r);
  j["history"] = "";
  const auto file = RunHistory::default_file();
  if (file.empty()) return j;
  try {
    RunHistory(file).append(r);
    j["history"] = file.string();
  } catch (const std::exception& e) {
    std::cerr << "rptq: note: the run was not recorded in the run history: " << e.what() << "\n";
  }
  return j;
}

}  // namespace rptq::cli
