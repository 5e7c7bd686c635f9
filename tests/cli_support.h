#pragma once
// Runs the built `rptq` binary in a shell, capturing exit code, stdout and stderr (tests of the command line).
#include <sys/wait.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "test_support.h"

namespace rptq::test {

struct CliRun {
  int code = -1;
  std::string out, err;
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// `env`: "NAME=VALUE" settings for the run. The run history is off unless env sets RPTQ_HISTORY (tests never
// write into the user's data folder).
inline CliRun rptq_cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  static int n = 0;
  const auto dir = temp_dir("cli-run-" + std::to_string(n++));
  std::string cmd = "env RPTQ_HISTORY=off";
  for (const auto& e : env) cmd.append(" ").append(shell_quote(e));
  cmd.append(" ").append(shell_quote(RPTQ_CLI_PATH));
  for (const auto& a : args) cmd.append(" ").append(shell_quote(a));
  cmd.append(" >").append(shell_quote((dir / "out").string()));
  cmd.append(" 2>").append(shell_quote((dir / "err").string())).append(" </dev/null");
  const int status = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(dir / "out");
  r.err = read_file(dir / "err");
  return r;
}

}  // namespace rptq::test
