#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "run_record.h"
#include "device_args.h"
#include "quant_args.h"
#include "rptq/base/error.h"
#include "rptq/io/files.h"
#include "rptq/export/hf_export.h"
#include "rptq/export/qcheckpoint.h"

namespace rptq::cli {

namespace {
struct ExportArgs {
  std::string model, out, format = "hdf5";
  bool force = false, json = false;
  int threads = 0;
  QuantArgs quant;
  DeviceArgs device;
};

std::uint64_t folder_bytes(const std::filesystem::path& p) {
  std::uint64_t n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(p))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

void run_export(const ExportArgs& a) {
  // Before any work: an existing output without --force; a FIFO, device or socket at --out is never replaced.
  if (a.format == "hdf5" || !std::filesystem::is_directory(a.out)) {
    check_output_target(a.out, a.force);
  } else if (!a.force) {
    throw OutputExists(a.out + ": exists, and overwriting it was not asked for");
  }
  apply_threads(a.threads);
  const Device device = pick_device(a.device);
  ChannelStats stats;
  QuantArgs quant = a.quant;
  if (a.format == "compressed-tensors") {
    quant.target = "compressed-tensors";  // the format's own quantization: what is evaluated is what is served
  } else if (quant.target != "none") {
    throw InputError("--serving " + quant.target + " is exported with --format " + quant.target);
  }
  auto q = load_and_quantize(a.model, quant, &stats, device);
  std::uint64_t bytes = 0;
  if (a.format == "hdf5") {
    Progress p("exporting");
    ExportOptions eo;
    eo.overwrite = a.force;
    eo.progress = [&](double f, const std::string&) {
      p.update(f * 100.0, 100.0, "%");
      return true;
    };
    export_checkpoint(*q, stats, a.model, a.out, eo);
    p.finish();
    bytes = std::filesystem::file_size(a.out);
  } else {
    Progress p("exporting");
    auto report = [&](double f, const std::string&) {
      p.update(f * 100.0, 100.0, "%");
      return true;
    };
    if (a.format == "compressed-tensors")
      export_compressed_tensors(*q, a.model, a.out, a.force, report);
    else
      export_hf_folder(*q, a.model, a.out, a.force, DType::F32, report);
    p.finish();
    bytes = folder_bytes(a.out);
  }
  const std::string abs = std::filesystem::absolute(a.out).string();
  RunRecord rec = command_record("export", a.model, q->config(), quant);
  rec.options["device"] = device_name(device);
  rec.options["format"] = a.format;
  rec.results = {{"out", abs}, {"bytes", bytes}, {"quantize_seconds", q->seconds}};
  const nlohmann::json run = record_run(rec);
  if (a.json) {
    nlohmann::json j = quant_settings_json(q->config(), quant);
    j["model"] = a.model;
    j["out"] = abs;
    j["format"] = a.format;
    j["bytes"] = bytes;
    add_quantize_time_json(j, *q);
    add_device_json(j, device);
    j["run"] = run;
    std::cout << json_text(j) << "\n";
    return;
  }
  std::printf("%s\n", q->config().describe().c_str());
  std::printf("wrote %s (%s, %s)\n", abs.c_str(),
              a.format == "hdf5"                 ? "RPTQ checkpoint"
              : a.format == "compressed-tensors" ? "compressed-tensors folder for vLLM / SGLang"
                                                 : "Hugging Face folder",
              human_bytes(bytes).c_str());
}
}  // namespace

void add_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  auto* cmd = app.add_subcommand("export", "Quantize and write a packed RPTQ checkpoint (HDF5), a dequantized "
                                           "Hugging Face folder (safetensors) or a compressed-tensors folder that "
                                           "vLLM and SGLang serve");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder")->required();
  cmd->add_option("--out", a->out, "Output: OUT.h5 (hdf5) or a folder (safetensors, compressed-tensors)")->required();
  cmd->add_option("--format", a->format,
                  "hdf5 (packed, default), safetensors (reorders undone, weights dequantized) or compressed-tensors "
                  "(packed int weights that vLLM and SGLang serve; quantizes with --serving compressed-tensors)")
      ->check(CLI::IsMember({"hdf5", "safetensors", "compressed-tensors"}));
  cmd->add_flag("--force", a->force, "Overwrite an existing output");
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 4096));
  cmd->add_flag("--json", a->json, "Print a JSON summary");
  add_quant_options(cmd, a->quant, /*stats_required=*/true);
  add_device_option(cmd, a->device);
  cmd->callback([a] { run_export(*a); });
}

}  // namespace rptq::cli
