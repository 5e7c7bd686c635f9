#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <thread>

#include "cli.h"
#include "rptq/base/error.h"

namespace rptq::cli {

Progress::Progress(std::string label)
    : label_(std::move(label)), enabled_(isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { finish(); }

void Progress::update(double done, double total, const std::string& unit) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const double frac = total > 0 ? std::min(1.0, done / total) : 0.0;
  const int width = 30;
  const int fill = static_cast<int>(std::lround(frac * width));
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  std::string eta = "";
  if (frac > 0 && frac < 1) eta = " ETA " + std::to_string(static_cast<int>(elapsed / frac - elapsed)) + "s";
  std::fprintf(stderr, "\r%s [%s%s] %.0f/%.0f%s%s\033[K", label_.c_str(), std::string(fill, '#').c_str(),
               std::string(width - fill, ' ').c_str(), done, total, unit.c_str(), eta.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (enabled_ && drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    drawn_ = false;
  }
}

std::string human_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

CLI::Validator finite_range(double lo, double hi) {
  const std::string desc = "FLOAT in [" + CLI::detail::to_string(lo) + " - " + CLI::detail::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi](std::string& in) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(in, v)) return "\"" + in + "\" is not a number";
        if (!std::isfinite(v)) return "\"" + in + "\" is not a finite number";
        if (v < lo || v > hi)
          return "value " + in + " is outside " + CLI::detail::to_string(lo) + ".." + CLI::detail::to_string(hi);
        return {};
      },
      desc);
}

CLI::Validator unsigned_number() {
  return CLI::Validator(
      [](std::string& in) -> std::string {
        const auto first = in.find_first_not_of(" \t");
        if (first != std::string::npos && in[first] == '-') return "\"" + in + "\" is negative; give 0 or more";
        return {};
      },
      "UINT");
}

void apply_threads(int requested) {
  if (requested < 0) throw InputError("--threads must be 0 (all cores) or more; got " + std::to_string(requested));
  const int cpus = available_cpus();
  if (requested > cpus)
    std::fprintf(stderr, "note: --threads %d is more than the %d CPUs available; using %d\n", requested, cpus, cpus);
  set_num_threads(requested);
}

std::string json_text(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void add_window_options(CLI::App* cmd, WindowArgs& a) {
  cmd->add_option("--seqlen", a.seqlen, "Window length in tokens (default 2048, or the model's positions)")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--max-windows", a.max_windows, "Evaluate at most this many windows (default: all)")
      ->check(CLI::Range(1, 1 << 30));
}

PerplexityOptions window_options(const WindowArgs& a, const ModelConfig& m) {
  PerplexityOptions po;
  po.seqlen = a.seqlen > 0 ? a.seqlen : std::min<std::int64_t>(2048, m.max_positions);
  // OPT has no embeddings past its positions; a LLaMA-family model was not trained on them, and a window's
  // attention costs its length squared (--seqlen 1048576 would run for hours).
  if (po.seqlen > m.max_positions)
    throw InputError("--seqlen " + std::to_string(po.seqlen) + " is longer than the model's " +
                     std::to_string(m.max_positions) + " positions (max_position_embeddings)");
  po.max_windows = a.max_windows;
  return po;
}

std::unique_ptr<Model> load_model(const std::string& dir) {
  Progress p("loading");
  LoadOptions lo;
  lo.progress = [&](double f, const std::string&) {
    p.update(f * 100.0, 100.0, "%");
    return true;
  };
  return Model::load(dir, lo);
}

}  // namespace rptq::cli
