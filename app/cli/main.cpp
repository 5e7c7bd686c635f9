// rptq: the command-line face of RPTQ Workbench. Exit status: 0 success, 2 bad input or usage, 1 internal failure.
// Errors are one line on stderr.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "cli.h"
#include "rptq/device.h"
#include "rptq/base/error.h"
#include "rptq/version_info.h"

namespace {

// An error message as one short line: control characters (newlines, tabs, escapes) become spaces and a long message
// (a hostile file can put kilobytes into one) is cut at a character boundary after kMaxChars bytes, saying how long
// it was.
std::string one_line(const std::string& msg) {
  constexpr std::size_t kMaxChars = 500;
  std::string s;
  s.reserve(std::min(msg.size(), kMaxChars + 64));
  for (char c : msg) {
    if (s.size() >= kMaxChars) break;
    s += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c;
  }
  if (msg.size() <= kMaxChars) return s;
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();  // continuation bytes
  if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();              // a lead byte left alone
  return s + "\u2026 (" + std::to_string(msg.size()) + " bytes in all)";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rptq: reorder-based post-training quantization (RPTQ) of large language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("rptq ") + RPTQ_VERSION_STRING + " (git " + RPTQ_GIT_REVISION +
                                        (rptq::cuda_compiled_in() ? ", CUDA kernels compiled in" : ", CPU only") +
                                        ")");
  rptq::cli::add_inspect(app);
  rptq::cli::add_tokenize(app);
  rptq::cli::add_eval(app);
  rptq::cli::add_generate(app);
  rptq::cli::add_calibrate(app);
  rptq::cli::add_clusters(app);
  rptq::cli::add_compare(app);
  rptq::cli::add_sensitivity(app);
  rptq::cli::add_sweep(app);
  rptq::cli::add_export(app);
  rptq::cli::add_memory(app);
  rptq::cli::add_history(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "rptq: " << one_line(e.what()) << " (see rptq --help)\n";
    return 2;
  } catch (const rptq::OutputExists& e) {
    std::cout.flush();
    std::cerr << "rptq: error: " << one_line(e.what()) << " (use --force to overwrite)\n";
    return 2;
  } catch (const rptq::InputError& e) {
    std::cout.flush();
    std::cerr << "rptq: error: " << one_line(e.what()) << "\n";
    return 2;
  } catch (const rptq::Cancelled&) {
    std::cerr << "rptq: cancelled\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "rptq: internal error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "rptq: internal error: " << one_line(e.what()) << "\n";
    return 1;
  }
  return 0;
}
