#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "device_args.h"
#include "rptq/engine.h"
#include "rptq/method/calibration.h"
#include "rptq/base/error.h"
#include "rptq/io/files.h"
#include "rptq/model/model.h"
#include "rptq/model/model_info.h"
#include "rptq/export/stats_file.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::cli {

namespace {
struct CalibrateArgs {
  std::string model, data, out, stat = "ema";
  std::int64_t samples = 128, seqlen = 0;
  std::uint64_t seed = 2;
  int threads = 0;
  std::int64_t batch = 8;
  bool force = false, json = false;
  DeviceArgs device;
};

void run_calibrate(const CalibrateArgs& a) {
  // Before any work: an existing output without --force, or a FIFO, device or folder at --out (never replaced).
  check_output_target(a.out, a.force);
  apply_threads(a.threads);
  const Device device = pick_device(a.device);
  CalibrationSettings cs;
  cs.samples = a.samples;
  cs.seed = a.seed;
  cs.stat = parse_range_stat(a.stat);
  const std::string text = read_text_file(a.data);
  auto tok = Tokenizer::load(a.model);
  const auto ids = tok->encode(text, true);
  std::unique_ptr<Model> model = load_model(a.model);
  // Reference: 2048-token windows, shortened to what the model's positions allow.
  cs.seqlen = a.seqlen > 0 ? a.seqlen : std::min<std::int64_t>(2048, model->config().max_positions);
  if (cs.seqlen > model->config().max_positions)
    throw InputError("--seqlen " + std::to_string(cs.seqlen) + " is longer than the model's " +
                     std::to_string(model->config().max_positions) + " positions (max_position_embeddings)");
  Progress p("calibrating");
  const LayerwiseCallback progress = [&](const LayerwiseProgress& lp) {
    p.update(static_cast<double>(lp.done), static_cast<double>(lp.total), " layer-samples");
    return true;
  };
  const std::string sha = sha256_file(a.data);
  const ChannelStats st = calibrate(*model, a.model, ids, a.data, sha, cs, progress, Execution::on(device, a.batch));
  p.finish();
  save_stats(a.out, st, a.force);
  if (a.json) {
    nlohmann::json j;
    j["stats"] = a.out;
    j["model"] = a.model;
    j["data"] = a.data;
    j["data_sha256"] = st.data_sha256;
    j["samples"] = cs.samples;
    j["seqlen"] = cs.seqlen;
    j["seed"] = cs.seed;
    j["stat"] = range_stat_name(cs.stat);
    j["layers"] = st.layers;
    j["seconds"] = st.seconds;
    j["file_bytes"] = std::filesystem::file_size(a.out);
    add_device_json(j, device);
    std::cout << json_text(j) << "\n";
    return;
  }
  std::printf("calibrated %lld layers on %lld windows of %lld tokens (seed %llu) in %.2f s\n", (long long)st.layers,
              (long long)cs.samples, (long long)cs.seqlen, (unsigned long long)cs.seed, st.seconds);
  std::printf("wrote %s (%s)\n", a.out.c_str(), human_bytes(std::filesystem::file_size(a.out)).c_str());
}
}  // namespace

void add_calibrate(CLI::App& app) {
  auto a = std::make_shared<CalibrateArgs>();
  auto* cmd = app.add_subcommand("calibrate", "Record per-channel activation ranges into a statistics file (HDF5)");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder")->required();
  cmd->add_option("--data", a->data, "Calibration text file (tokenized whole; windows drawn at random)")->required();
  cmd->add_option("--out", a->out, "Statistics file to write (.h5)")->required();
  cmd->add_option("--samples", a->samples, "Calibration windows (default 128)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--seqlen", a->seqlen, "Tokens per window (default 2048, or the model's positions)")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--seed", a->seed, "Seed of the window offsets (default 2, the reference's)")
      ->check(unsigned_number());
  cmd->add_option("--stat", a->stat, "Range statistic quantization uses by default: ema (reference) or minmax")
      ->check(CLI::IsMember({"ema", "minmax"}));
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 4096));
  cmd->add_option("--batch", a->batch, "With --device cuda: windows per layer step (default 8; all windows' hidden "
                                       "states stay on the GPU)")->check(CLI::Range(1, 1 << 20));
  add_device_option(cmd, a->device);
  cmd->add_flag("--force", a->force, "Overwrite an existing statistics file");
  cmd->add_flag("--json", a->json, "Print a JSON summary");
  cmd->callback([a] { run_calibrate(*a); });
}

}  // namespace rptq::cli
