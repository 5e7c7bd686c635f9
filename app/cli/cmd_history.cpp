#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "rptq/base/error.h"
#include "rptq/io/run_history.h"

namespace rptq::cli {

namespace {
struct HistoryArgs {
  std::string model, kind, show, file;
  bool json = false;
};

// The one or two numbers a run is known by: perplexity and KL for a comparison, the sweep's points, ...
std::string headline(const RunRecord& r) {
  const nlohmann::json& res = r.results;
  char buf[160] = "";
  auto num = [&](const char* k) { return res.contains(k) && res[k].is_number() ? res[k].get<double>() : -1.0; };
  if (num("ppl_q") >= 0 && num("kl") >= 0)
    std::snprintf(buf, sizeof buf, "ppl %.4f (FP %.4f), KL %.5f", num("ppl_q"), num("ppl_fp"), num("kl"));
  else if (num("ppl") >= 0)
    std::snprintf(buf, sizeof buf, "ppl %.4f", num("ppl"));
  else if (res.contains("points") && res["points"].is_array())
    std::snprintf(buf, sizeof buf, "%zu points", res["points"].size());
  else if (num("bytes") >= 0)
    std::snprintf(buf, sizeof buf, "%.0f bytes written", num("bytes"));
  return buf;
}

void run_history(const HistoryArgs& a) {
  const std::filesystem::path file = a.file.empty() ? RunHistory::default_file() : std::filesystem::path(a.file);
  if (file.empty()) throw InputError("the run history is off (RPTQ_HISTORY=off) and no --file was given");
  const std::vector<RunRecord> all = RunHistory(file).load();
  std::vector<RunRecord> runs = a.model.empty() ? all : RunHistory::of_model(all, a.model);
  if (!a.kind.empty())
    std::erase_if(runs, [&](const RunRecord& r) { return r.kind != a.kind; });
  if (!a.show.empty()) {
    for (const RunRecord& r : runs)
      if (r.id == a.show) {
        std::cout << json_text(run_record_json(r)) << "\n";
        return;
      }
    throw InputError(file.string() + ": no run " + a.show + (a.model.empty() ? "" : " of " + a.model));
  }
  if (a.json) {
    nlohmann::json j = {{"history", file.string()}, {"runs", nlohmann::json::array()}};
    for (const RunRecord& r : runs) j["runs"].push_back(run_record_json(r));
    std::cout << json_text(j) << "\n";
    return;
  }
  std::printf("%zu run%s in %s\n", runs.size(), runs.size() == 1 ? "" : "s", file.string().c_str());
  for (const RunRecord& r : runs)
    std::printf("%-24s %-20s %-11s %-16s %-8s %s\n", r.id.c_str(), r.created.c_str(), r.kind.c_str(),
                r.model_name.c_str(), r.setting.name.c_str(), headline(r).c_str());
}
}  // namespace

void add_history(CLI::App& app) {
  auto a = std::make_shared<HistoryArgs>();
  auto* cmd = app.add_subcommand("history", "The run history: the quantizations, comparisons, sweeps and sensitivity "
                                            "runs recorded by rptq and the workbench");
  cmd->add_option("MODEL", a->model, "Only the runs of this model folder");
  cmd->add_option("--kind", a->kind, "Only runs of this kind")
      ->check(CLI::IsMember({"quantize", "compare", "export", "eval", "sweep", "sensitivity"}));
  cmd->add_option("--show", a->show, "Print one run's whole record (JSON) by its id");
  cmd->add_option("--file", a->file, "A history file other than the default (RPTQ_HISTORY, else "
                                     "$XDG_DATA_HOME/RPTQ/rptq-workbench/history.json)");
  cmd->add_flag("--json", a->json, "Print JSON: history (the file) and runs (whole records, oldest first)");
  cmd->callback([a] { run_history(*a); });
}

}  // namespace rptq::cli
