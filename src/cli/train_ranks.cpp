#include "cli/train_ranks.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "base/errors.h"
#include "base/free_port.h"

namespace moe {

namespace {

volatile std::sig_atomic_t g_forward_signal = 0;
// How long a rank has to exit after the launcher told it to stop, before it is killed.
constexpr std::chrono::seconds kStopGrace{10};
constexpr double kMinDistTimeout = 0.1, kMaxDistTimeout = 86400;
extern "C" void on_launcher_signal(int sig) { g_forward_signal = sig; }

// This process's arguments as it was started, without --nproc and its value.
std::vector<std::string> own_arguments_without_nproc() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::string> args;
  for (size_t i = 0; i < all.size();) {
    const size_t end = all.find('\0', i);
    args.push_back(all.substr(i, end - i));
    i = end == std::string::npos ? all.size() : end + 1;
  }
  std::vector<std::string> kept;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    kept.push_back(args[i]);
  }
  return kept;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "ended with wait status " + std::to_string(status);
}

bool interrupted_status(int status) {
  return (WIFEXITED(status) && WEXITSTATUS(status) == kExitInterrupted) ||
         (WIFSIGNALED(status) && (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM));
}

}  // namespace

void add_distributed_options(CLI::App* cmd, DistOptions& d) {
  cmd->add_option("--nproc", d.nproc,
                  "Data-parallel ranks to start on this machine (c10d + Gloo over loopback); each computes its share of "
                  "every --batch and one all-reduce sums their gradients into the whole batch's. 1 = a single process: "
                  "on 2 cores this 17k-parameter model trains fastest that way (see docs/distributed.md)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--rank", d.rank,
                  "This process's rank, 0..--world-size - 1, for ranks started by hand (several machines); rank 0 hosts "
                  "the rendezvous and saves the checkpoint. No default: without it the process is not a rank")
      ->check(CLI::Range(0, 1023));
  cmd->add_option("--world-size", d.world_size,
                  "Number of ranks in a run started by hand (with --rank and --master); 1 = not distributed")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--master", d.master,
                  "ADDR:PORT where rank 0 listens (its TCPStore rendezvous, on every interface), reachable from every "
                  "rank. No default: --nproc picks a free loopback port itself");
  cmd->add_option("--dist-timeout", d.timeout_s,
                  "Seconds within which every rank must arrive and every all-reduce must finish; a dead or unreachable "
                  "rank ends every rank with an error after at most this long. 60 leaves room for rank 0's evaluation "
                  "and saves, during which the others wait")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            // CLI11's own range text for a double prints 309 digits; say it plainly.
            char* end = nullptr;
            const double t = std::strtod(v.c_str(), &end);
            if (end == v.c_str() || *end != '\0' || !(t >= kMinDistTimeout && t <= kMaxDistTimeout))
              return "expected seconds from 0.1 to 86400 (one day), got " + v;
            return "";
          },
          "POSITIVE"));
}

void check_distributed_options(const DistOptions& d) {
  const bool by_hand = d.rank >= 0 || d.world_size > 1 || !d.master.empty();
  if (d.nproc > 1 && by_hand)
    throw InputError("--nproc starts the ranks itself: leave out --rank, --world-size and --master (or --nproc, to start ranks by hand)");
  if (!by_hand) return;
  if (d.rank < 0 || d.world_size < 2 || d.master.empty())
    throw InputError("a rank started by hand needs all of --rank R, --world-size W (>= 2) and --master ADDR:PORT");
  if (d.rank >= d.world_size)
    throw InputError("--rank " + std::to_string(d.rank) + " must be below --world-size " + std::to_string(d.world_size));
}

void launch_local_ranks(const DistOptions& d) {
  char exe[4096];
  const ssize_t len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) throw InputError(std::string("--nproc: cannot find this program (/proc/self/exe): ") + std::strerror(errno));
  exe[len] = '\0';
  int port = 0;
  try {
    port = free_port_below_ephemeral_range();
  } catch (const InputError& e) {
    throw InputError(std::string("--nproc: ") + e.what() + "; give --master HOST:PORT with --rank/--world-size instead");
  }
  const std::string master = "127.0.0.1:" + std::to_string(port);
  const std::vector<std::string> base = own_arguments_without_nproc();

  struct sigaction sa{}, old_int{}, old_term{};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: waitpid returns so the signal can be forwarded
  g_forward_signal = 0;
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  std::vector<pid_t> pids(static_cast<size_t>(d.nproc), -1);
  for (int r = 0; r < d.nproc; ++r) {
    std::vector<std::string> args{exe};
    args.insert(args.end(), base.begin(), base.end());
    for (const std::string& a : {std::string("--rank"), std::to_string(r), std::string("--world-size"), std::to_string(d.nproc),
                                 std::string("--master"), master})
      args.push_back(a);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::sigaction(SIGINT, &old_int, nullptr);
      ::sigaction(SIGTERM, &old_term, nullptr);
      // c10d logs its own socket errors through glog before ours say what happened; keep only ours
      // (unless the user asked for glog's output).
      ::setenv("GLOG_minloglevel", "3", /*overwrite=*/0);
      ::execv(exe, argv.data());
      std::fprintf(stderr, "moe-mnist: error: --nproc: cannot start %s: %s\n", exe, std::strerror(errno));
      ::_exit(kExitError);
    }
    if (pid < 0) {
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGTERM);
      throw InputError(std::string("--nproc: cannot start rank ") + std::to_string(r) + ": " + std::strerror(errno));
    }
    pids[static_cast<size_t>(r)] = pid;
  }

  int n_running = d.nproc, failed_rank = -1, failed_status = 0;
  bool interrupted = false;
  // Once the ranks were told to stop (a rank failed, or Ctrl-C), each gets kStopGrace to exit; one that
  // does not (stopped with SIGSTOP, or stuck in a system call) is killed, so the launcher never waits
  // for ever. A rank stopped by SIGSTOP does not even see SIGTERM until it is continued.
  using Clock = std::chrono::steady_clock;
  bool stopping = false, sent_kill = false;
  Clock::time_point kill_at;
  auto arm = [&](Clock::duration grace) {
    if (!stopping) kill_at = Clock::now() + grace;
    stopping = true;
  };
  std::vector<int> killed;
  // After Ctrl-C the ranks finish their step first, which a stuck rank delays by up to --dist-timeout.
  const auto step_grace = kStopGrace + std::chrono::seconds(int64_t(d.timeout_s));
  auto stop_all = [&](int sig, Clock::duration grace) {
    for (pid_t p : pids)
      if (p > 0) ::kill(p, sig);
    arm(grace);
  };
  while (n_running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, stopping ? WNOHANG : 0);
    if (pid == 0 || (pid < 0 && errno == EINTR)) {
      if (const int sig = g_forward_signal) {
        // Ctrl-C on a terminal reaches the ranks too (same process group); a second SIGINT only sets
        // the same flag, and a signal sent to this launcher alone still reaches every rank.
        g_forward_signal = 0;
        interrupted = true;
        stop_all(sig, step_grace);
      }
      if (stopping && !sent_kill && Clock::now() >= kill_at) {
        for (int r = 0; r < d.nproc; ++r)
          if (pids[size_t(r)] > 0 && ::kill(pids[size_t(r)], SIGKILL) == 0) killed.push_back(r);
        sent_kill = true;
      }
      if (pid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if (pid < 0) break;
    int rank = -1;
    for (int r = 0; r < d.nproc; ++r)
      if (pids[static_cast<size_t>(r)] == pid) rank = r;
    if (rank < 0) continue;
    pids[static_cast<size_t>(rank)] = -1;
    --n_running;
    if (std::find(killed.begin(), killed.end(), rank) != killed.end()) continue;
    if (interrupted_status(status)) {
      interrupted = true;  // the others stop at the same step (the stop flag travels with the gradients)
      // They stop at the next step; one that cannot (stopped) is killed after the grace period.
      arm(step_grace);
      continue;
    }
    if ((WIFEXITED(status) && WEXITSTATUS(status) == 0) || failed_rank >= 0) continue;
    failed_rank = rank;
    failed_status = status;
    stop_all(SIGTERM, kStopGrace);  // they would fail within --dist-timeout anyway; do not make the user wait
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  std::string killed_note;
  if (!killed.empty()) {
    killed_note = "; rank";
    if (killed.size() > 1) killed_note += "s";
    for (size_t i = 0; i < killed.size(); ++i) killed_note += (i ? ", " : " ") + std::to_string(killed[i]);
    killed_note += " did not exit within " + std::to_string(kStopGrace.count()) + " s of being told to stop (stopped or stuck) and " +
                   (killed.size() > 1 ? "were" : "was") + " killed (SIGKILL)";
  }
  if (failed_rank >= 0)
    throw InputError("train --nproc " + std::to_string(d.nproc) + ": rank " + std::to_string(failed_rank) + " " +
                     describe(failed_status) + (WIFEXITED(failed_status) ? " (its error is above)" : "") +
                     "; the other ranks were stopped" + killed_note);
  if (!killed.empty()) throw InputError("train --nproc " + std::to_string(d.nproc) + ": interrupted" + killed_note);
  if (interrupted) throw Interrupted("train --nproc " + std::to_string(d.nproc) + ": every rank stopped");
}

}  // namespace moe
