#include "base/progress.h"

#include <unistd.h>

#include <cstdio>

namespace moe {

bool Progress::stderr_is_terminal() { return ::isatty(2) == 1; }

std::string format_duration(double seconds) {
  const int64_t s = int64_t(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

Progress::Progress(std::string label, int64_t total, int64_t log_every)
    : label_(std::move(label)), total_(total), log_every_(log_every), tty_(stderr_is_terminal()),
      t0_(std::chrono::steady_clock::now()), last_draw_(t0_) {}

void Progress::update(int64_t done, const std::string& extra) {
  const auto now = std::chrono::steady_clock::now();
  if (start_done_ < 0) {  // a resumed run starts part-way; rates count only this run's steps
    start_done_ = done > 0 ? done - 1 : 0;
    t0_ = now;
  }
  const double elapsed = std::chrono::duration<double>(now - t0_).count();
  const double rate = elapsed > 0 ? double(done - start_done_) / elapsed : 0.0;
  const double eta = rate > 0 ? double(total_ - done) / rate : 0.0;
  if (tty_) {
    if (done != total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const int width = 30;
    const int filled = total_ ? int(width * done / total_) : width;
    std::string bar(size_t(filled), '=');
    if (filled < width) bar += '>' + std::string(size_t(width - filled - 1), ' ');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %.0f it/s %s ETA %s\x1b[K", label_.c_str(), bar.c_str(),
                 (long long)done, (long long)total_, rate, extra.c_str(), format_duration(eta).c_str());
  } else if (done % log_every_ == 0 || done == total_) {
    std::fprintf(stderr, "%s iter %lld %s (%.0f it/s)\n", label_.c_str(), (long long)done, extra.c_str(), rate);
  }
}

void Progress::finish() {
  if (tty_) std::fputc('\n', stderr);
}

}  // namespace moe
