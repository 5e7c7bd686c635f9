#pragma once
// Shared pieces of the `rptq` subcommands.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "rptq/model/model.h"
#include "rptq/eval/perplexity.h"

namespace rptq::cli {

// Registers each subcommand on the app; the callback it sets runs the command.
void add_inspect(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_eval(CLI::App& app);
void add_generate(CLI::App& app);
void add_calibrate(CLI::App& app);
void add_clusters(CLI::App& app);
void add_compare(CLI::App& app);
void add_sensitivity(CLI::App& app);
void add_sweep(CLI::App& app);
void add_export(CLI::App& app);
void add_memory(CLI::App& app);
void add_history(CLI::App& app);

// A one-line progress bar on stderr, drawn only when stderr is a terminal.
class Progress {
 public:
  explicit Progress(std::string label);
  ~Progress();
  void update(double done, double total, const std::string& unit = "");
  void finish();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
};

std::string human_bytes(std::uint64_t bytes);  // "31.0 MiB"

// A floating-point option's check: a finite number in [lo, hi]. CLI::Range lets NaN through (every comparison with
// it is false), and "inf" or "nan" parse as numbers.
CLI::Validator finite_range(double lo, double hi);
// An unsigned option's check (seeds): CLI11 turns "-1" into 2^64 - 1 for a uint64 without a word.
CLI::Validator unsigned_number();

// --threads N: sets the CPU threads (0 = all cores). More threads than the CPUs this process may run on only
// oversubscribe them (and OpenBLAS, short of memory for its per-thread buffers, can spin): the count is clamped to
// the available CPUs, with a note on stderr.
void apply_threads(int requested);

// JSON as the --json outputs print it: text that is not valid UTF-8 (a data file's bytes, a generated token that
// ends inside a character, a file name) is written with U+FFFD in place of the bad bytes instead of failing.
std::string json_text(const nlohmann::json& j, int indent = 2);

// Model::load with a "loading" progress bar.
std::unique_ptr<Model> load_model(const std::string& dir);

// The evaluation windows of `eval`, `compare` and `sensitivity`: --seqlen and --max-windows.
struct WindowArgs {
  std::int64_t seqlen = 0, max_windows = 0;
};
void add_window_options(CLI::App* cmd, WindowArgs& a);
// The reference convention: 2048-token windows, shortened to what the model's positions allow; throws InputError
// for a --seqlen longer than the model's positions.
PerplexityOptions window_options(const WindowArgs& a, const ModelConfig& m);

}  // namespace rptq::cli
