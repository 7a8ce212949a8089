// Typed errors thrown by the library and caught once in main(), which maps them to exit codes
// (and, in a server, to HTTP statuses). Messages name the file or field, what was expected and
// what was found, on one line.
#pragma once
#include <stdexcept>
#include <string>

namespace moe {

// Anything wrong with what the user handed us: a flag value, a file's contents, a missing file.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A backend or feature that this build or this machine cannot provide (no GPU, no provider library).
struct UnavailableError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The user pressed Ctrl-C; work was saved where that makes sense.
struct Interrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum ExitCode { kExitOk = 0, kExitError = 1, kExitUsage = 2, kExitUnavailable = 3, kExitInterrupted = 130 };

}  // namespace moe
