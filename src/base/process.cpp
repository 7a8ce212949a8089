#include "base/process.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/errors.h"

namespace moe {

namespace {

std::string first_line(const std::string& s) {
  const size_t start = s.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "";
  const size_t end = s.find_first_of("\r\n", start);
  return s.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

}  // namespace

// Resolved up front so that "not installed" is a clean UnavailableError rather than an exit status
// from the child.
std::string find_program(const std::string& name) {
  auto runnable = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (name.find('/') != std::string::npos) return runnable(name) ? name : "";
  const char* env = std::getenv("PATH");
  const std::string path = env ? env : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    const std::string dir = end > start ? path.substr(start, end - start) : ".";
    if (runnable(dir + "/" + name)) return dir + "/" + name;
    start = end + 1;
  }
  return "";
}

void run_tool(const std::vector<std::string>& argv_in, const std::string& missing, const std::string& context) {
  std::vector<std::string> args = argv_in;
  const std::string exe = find_program(args.at(0));
  if (exe.empty()) throw UnavailableError(missing);
  std::string shown = args[0];
  for (size_t i = 1; i < args.size(); ++i) shown += " " + args[i];
  args[0] = exe;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0)
    throw ToolError(context + ": cannot create a pipe for '" + shown + "' (" + std::strerror(errno) + ")");
  const pid_t pid = ::fork();
  if (pid < 0) {
    const std::string why = std::strerror(errno);
    ::close(err_pipe[0]);
    ::close(err_pipe[1]);
    throw ToolError(context + ": cannot start '" + shown + "' (" + why + ")");
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on (the parent may have other threads).
    const int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
      ::dup2(null_fd, 0);
      ::dup2(null_fd, 1);
    }
    ::dup2(err_pipe[1], 2);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(err_pipe[1]);
  std::string err;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(err_pipe[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (err.size() < 65536) err.append(buf, static_cast<size_t>(n));
  }
  ::close(err_pipe[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw ToolError(context + ": waiting for '" + shown + "' failed (" + std::strerror(errno) + ")");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && err.empty()) throw UnavailableError(missing + " (" + exe + " could not be run)");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                              : "killed by signal " + std::to_string(WTERMSIG(status));
    const std::string msg = first_line(err);
    throw ToolError(context + ": '" + shown + "' failed (" + how + (msg.empty() ? "" : ": " + msg) + ")");
  }
}

}  // namespace moe
