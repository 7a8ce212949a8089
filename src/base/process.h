// Running an external tool (Graphviz `dot`, `rsvg-convert`): one way, with an argument vector and
// no shell, so paths need no quoting; the tool's stdin/stdout are /dev/null and its stderr is kept
// for the error message. Library code never lets a child write to our terminal.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

namespace moe {

// The tool started but failed (non-zero exit, killed by a signal, or could not be started).
struct ToolError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The executable that execvp would run for `name` (searched on $PATH unless it has a '/'), or "".
std::string find_program(const std::string& name);

// Runs argv[0] (found with find_program) with argv[1..]. Throws UnavailableError "<missing>" when
// the program is not found (so say how to install it there), and ToolError "<context>: '<tool
// args>' failed (exit N: first line of its stderr)" when it fails.
void run_tool(const std::vector<std::string>& argv, const std::string& missing, const std::string& context);

}  // namespace moe
