#pragma once
// Errors are exceptions whose message names the file, tensor or option at fault, so the CLI can print it as one
// line and the GUI can show it in a dialog. Nothing in core/ aborts.
#include <stdexcept>
#include <string>

namespace rptq {

// The user's input is wrong: a corrupt or hostile file, a missing tensor, an unsupported architecture, a bad
// option. The CLI exits with status 2.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The output path exists and overwriting it was not asked for (an InputError: the front end says how to allow
// it, e.g. the CLI's --force).
class OutputExists : public InputError {
 public:
  using InputError::InputError;
};

// The user cancelled a long operation through its progress callback.
class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled") {}
};

}  // namespace rptq
