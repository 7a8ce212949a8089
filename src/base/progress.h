// Progress for long work on stderr: a redrawn bar with rate and ETA on a terminal, plain log lines
// otherwise (so CI logs stay readable).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace moe {

class Progress {
 public:
  // `label` prefixes every line, e.g. "epoch 3/50"; `total` steps; plain lines every `log_every` steps.
  Progress(std::string label, int64_t total, int64_t log_every = 200);
  // Reports that `done` steps are complete; `extra` is appended (e.g. "loss 0.1234").
  void update(int64_t done, const std::string& extra);
  // Ends the bar line (terminal) so the next output starts on a fresh line.
  void finish();
  static bool stderr_is_terminal();

 private:
  std::string label_;
  int64_t total_, log_every_, start_done_ = -1;
  bool tty_;
  std::chrono::steady_clock::time_point t0_, last_draw_;
};

// "1:02:03" or "02:03".
std::string format_duration(double seconds);

}  // namespace moe
