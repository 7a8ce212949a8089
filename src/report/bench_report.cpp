#include "report/bench_report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace moe {

std::string BenchRow::name() const {
  std::string s = backend + " " + precision;
  if (!variant.empty()) s += " " + variant;
  return s;
}

BenchRow BenchRow::of(std::string backend, std::string precision, std::string variant, std::string mode, int threads,
                      int64_t batch) {
  BenchRow r;
  r.backend = std::move(backend);
  r.precision = std::move(precision);
  r.variant = std::move(variant);
  r.mode = std::move(mode);
  r.threads = threads;
  r.batch = batch;
  return r;
}

namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// 1234567 -> "1,234,567"
std::string grouped(double v) {
  std::string s = std::to_string(int64_t(std::llround(v)));
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return s;
}

struct Column {
  std::string title;
  bool left;
};

const std::vector<Column> kColumns = {
    {"backend", true},      {"precision", true},   {"variant", true},     {"mode", true},
    {"threads", false},     {"batch", false},      {"accuracy %", false}, {"seconds", false}, {"images/s (median)", false},
    {"images/s min-max", false}, {"x native", false}, {"x read bound", false}, {"batch p50 us", false}, {"batch p90 us", false}, {"batch p99 us", false},
    {"session ms", false},  {"first run ms", false}};

std::vector<std::string> cells(const BenchRow& r) {
  if (!r.available) return {r.backend, r.precision, r.variant, "-", "-", "-", "not available: " + r.reason};
  std::vector<std::string> c = {r.backend, r.precision, r.variant, r.mode, std::to_string(r.threads),
                                r.batch > 0 ? std::to_string(r.batch) : "-"};
  const bool read_bound = r.backend == "memory";  // no model ran: no accuracy, no per-batch latency
  c.push_back(read_bound ? "-" : fmt("%.2f", 100.0 * r.accuracy));
  c.push_back(fmt("%.3f", r.seconds));
  c.push_back(grouped(r.images_per_second));
  c.push_back(grouped(r.ips_min) + " - " + grouped(r.ips_max));
  c.push_back(r.vs_native > 0 ? fmt("%.2f", r.vs_native) : "-");
  c.push_back(r.vs_read_bound > 0 ? fmt("%.2f", r.vs_read_bound) : "-");
  for (double us : {r.p50_us, r.p90_us, r.p99_us}) c.push_back(read_bound ? "-" : fmt("%.1f", us));
  c.push_back(read_bound ? "-" : fmt("%.1f", r.session_ms));
  c.push_back(read_bound ? "-" : fmt("%.2f", r.first_run_ms));
  return c;
}

std::string context_lines(const BenchContext& c, const std::string& prefix) {
  std::ostringstream s;
  s << prefix << "CPU: " << c.cpu << ", " << c.cores << " cores; build: " << c.build_type << "; commit " << c.commit
    << "; " << c.date << "\n";
  s << prefix << "versions:";
  for (const auto& [k, v] : c.versions) s << " " << k << " " << v;
  s << "\n";
  s << prefix << "workload: " << c.passes << " pass(es) over " << c.images_per_pass << " " << c.split
    << " images per timed run, " << c.repeats << " timed runs after 1 warm-up pass; accuracy from the timed runs\n";
  if (c.build_type != "Release")
    s << prefix << "WARNING: " << c.build_type << " build: timings are not representative, rebuild with -DCMAKE_BUILD_TYPE=Release\n";
  return s.str();
}

}  // namespace

BenchContext machine_context() {
  BenchContext c;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      c.cpu = line.substr(line.find(':') + 2);
      break;
    }
  if (c.cpu.empty()) c.cpu = "unknown CPU";
  c.cores = int(std::thread::hardware_concurrency());
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  c.date = date;
  c.commit = MOE_MNIST_COMMIT;  // recorded when CMake configured the build
  c.build_type = MOE_MNIST_BUILD_TYPE;
  return c;
}

std::string to_table(const BenchReport& r) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& row : r.rows) rows.push_back(cells(row));
  std::vector<size_t> width(kColumns.size());
  for (size_t i = 0; i < kColumns.size(); ++i) width[i] = kColumns[i].title.size();
  for (const auto& row : rows) {
    const bool short_row = row.size() < kColumns.size();  // "not available: ..." runs to the line's end
    for (size_t i = 0; i < row.size() && !(short_row && i + 1 == row.size()); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::ostringstream s;
  s << context_lines(r.context, "");
  auto put = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) {
      const bool last = i + 1 == row.size();
      const size_t w = last && row.size() < kColumns.size() ? 0 : width[i];
      const std::string pad(w > row[i].size() ? w - row[i].size() : 0, ' ');
      s << (kColumns[i].left ? row[i] + pad : pad + row[i]) << (last ? "" : "  ");
    }
    s << "\n";
  };
  std::vector<std::string> titles;
  for (const auto& c : kColumns) titles.push_back(c.title);
  put(titles);
  for (const auto& row : rows) put(row);
  for (const auto& line : r.summary) s << line << "\n";
  return s.str();
}

std::string to_markdown(const BenchReport& r) {
  std::ostringstream s;
  s << context_lines(r.context, "> ") << "\n|";
  for (const auto& c : kColumns) s << " " << c.title << " |";
  s << "\n|";
  for (const auto& c : kColumns) s << (c.left ? " --- |" : " ---: |");
  s << "\n";
  for (const auto& row : r.rows) {
    auto c = cells(row);
    c.resize(kColumns.size());
    s << "|";
    for (const auto& cell : c) s << " " << cell << " |";
    s << "\n";
  }
  if (!r.summary.empty()) s << "\n";
  for (const auto& line : r.summary) s << "- " << line << "\n";
  return s.str();
}

std::string to_json(const BenchReport& r) {
  nlohmann::json ctx = {{"cpu", r.context.cpu},           {"cores", r.context.cores},
                        {"date", r.context.date},         {"commit", r.context.commit},
                        {"build_type", r.context.build_type}, {"split", r.context.split},
                        {"images_per_pass", r.context.images_per_pass}, {"passes", r.context.passes},
                        {"repeats", r.context.repeats},   {"warmup_passes", 1}};
  for (const auto& [k, v] : r.context.versions) ctx["versions"][k] = v;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& x : r.rows) {
    nlohmann::json j = {{"backend", x.backend}, {"precision", x.precision}, {"variant", x.variant}, {"mode", x.mode},
                        {"threads", x.threads}, {"batch", x.batch},         {"available", x.available}};
    if (!x.available) {
      j["reason"] = x.reason;
    } else {
      j.update({{"accuracy", x.accuracy},
                {"seconds", x.seconds},
                {"images_per_second", x.images_per_second},
                {"images_per_second_min", x.ips_min},
                {"images_per_second_max", x.ips_max},
                {"vs_native", x.vs_native},
                {"vs_read_bound", x.vs_read_bound},
                {"batch_latency_us", {{"p50", x.p50_us}, {"p90", x.p90_us}, {"p99", x.p99_us}}},
                {"session_ms", x.session_ms},
                {"first_run_ms", x.first_run_ms}});
    }
    if (!x.working_set.empty()) j["working_set"] = x.working_set;
    if (x.read_bound_ips > 0) j["read_bound_in_alternation"] = x.read_bound_ips;
    rows.push_back(j);
  }
  nlohmann::json j = {{"context", ctx}, {"results", rows}, {"summary", r.summary}};
  if (!r.profiles.empty()) j["profiles"] = r.profiles;
  return j.dump(2) + "\n";
}

std::string to_csv(const BenchReport& r) {
  std::ostringstream s;
  s << "backend,precision,variant,mode,threads,batch,available,reason,accuracy,seconds,images_per_second,images_per_second_min,"
       "images_per_second_max,vs_native,vs_read_bound,p50_us,p90_us,p99_us,session_ms,first_run_ms\n";
  for (const auto& x : r.rows) {
    std::string reason = x.reason;
    std::replace(reason.begin(), reason.end(), '"', '\'');
    s << x.backend << "," << x.precision << "," << x.variant << "," << x.mode << "," << x.threads << "," << x.batch << ","
      << (x.available ? "true" : "false") << ",\"" << reason << "\",";
    if (x.available)
      s << x.accuracy << "," << x.seconds << "," << x.images_per_second << "," << x.ips_min << "," << x.ips_max << "," << x.vs_native << "," << x.vs_read_bound << "," << x.p50_us << ","
        << x.p90_us << "," << x.p99_us << "," << x.session_ms << "," << x.first_run_ms;
    else
      s << ",,,,,,,,,,,";
    s << "\n";
  }
  return s.str();
}

SeriesSpec throughput_series(const BenchReport& r) {
  // Best throughput per (name, batch) over threads and modes.
  std::map<std::string, std::map<int64_t, double>> lines;
  std::vector<double> batches;
  for (const auto& x : r.rows) {
    if (!x.available) continue;
    double& v = lines[x.name()][x.batch];
    v = std::max(v, x.images_per_second);
    if (std::find(batches.begin(), batches.end(), double(x.batch)) == batches.end()) batches.push_back(double(x.batch));
  }
  std::sort(batches.begin(), batches.end());
  SeriesSpec s;
  s.title = "Throughput vs batch size (" + r.context.cpu + ", " + r.context.date + ")";
  s.x_label = "batch size (log scale)";
  s.y_label = "images/s";
  s.log_x = true;
  s.x_ticks = batches;
  for (const auto& [name, pts] : lines) {
    s.names.push_back(name);
    s.points.emplace_back();
    for (const auto& [b, v] : pts) s.points.back().push_back({double(b), v});
  }
  return s;
}

void set_native_ratios(std::vector<BenchRow>& rows) {
  for (auto& r : rows) {
    if (!r.available || r.backend == "native" || r.backend == "memory" || r.vs_native > 0) continue;  // > 0: measured in pairs
    double best = 0;
    for (const auto& n : rows)
      if (n.available && n.backend == "native" && (n.precision == "uint8") == (r.precision == "uint8") && n.batch == r.batch &&
          n.threads == r.threads)
        best = std::max(best, n.images_per_second);
    if (best > 0) r.vs_native = r.images_per_second / best;
  }
}

void set_read_bound_ratios(std::vector<BenchRow>& rows) {
  for (auto& r : rows) {
    if (!r.available || r.backend == "memory" || r.read_bound_ips > 0) continue;  // > 0: measured in alternation
    const std::string input = r.precision == "uint8" ? "uint8" : "fp32";
    for (const auto& m : rows)
      if (m.available && m.backend == "memory" && m.precision == input && m.threads == r.threads && m.images_per_second > 0)
        r.vs_read_bound = r.images_per_second / m.images_per_second;
  }
}

namespace {

// Issue #13's targets, each a line saying the figures and whether the target was met.
void target_lines(const std::vector<BenchRow>& rows, std::vector<std::string>& out) {
  auto best = [&](auto pred) {
    const BenchRow* b = nullptr;
    for (const auto& r : rows)
      if (r.available && pred(r) && (!b || r.images_per_second > b->images_per_second)) b = &r;
    return b;
  };
  auto verdict = [](bool met) { return met ? std::string("met") : std::string("MISSED"); };
  auto ort_fp32 = [](const BenchRow& r, bool fused) { return r.backend == "cpu" && r.precision == "fp32" && (r.variant == "fused") == fused; };
  for (int64_t batch : {int64_t(64)})
    for (int threads : {2}) {
      const BenchRow* native = best([&](const BenchRow& r) { return r.backend == "native" && r.precision == "fp32" && r.batch == batch && r.threads == threads; });
      if (!native) continue;
      const std::string at = "batch " + std::to_string(batch) + ", " + std::to_string(threads) + " threads: ";
      for (bool fused : {false, true}) {
        const BenchRow* ort = nullptr;  // the closest to native (the highest ratio) of the matching rows
        for (const auto& r : rows)
          if (r.available && ort_fp32(r, fused) && r.batch == batch && r.threads == threads && r.vs_native > 0 &&
              (!ort || r.vs_native > ort->vs_native))
            ort = &r;
        if (!ort) continue;
        const double ratio = ort->vs_native, target = fused ? 0.85 : 0.5;
        out.push_back(at + (fused ? "ONNX Runtime with the fused operator (" : "best portable ONNX Runtime graph (") + ort->variant + ", " +
                      ort->mode + ") " + grouped(ort->images_per_second) + " images/s = " + fmt("%.2f", ratio) +
                      "x native in the same mode, measured in alternation (native's own best row: " +
                      grouped(native->images_per_second) + ", " + native->mode + "); target >= " + fmt("%.2f", target) + ": " +
                      verdict(ratio >= target));
      }
    }
  for (bool fused : {true, false}) {
    const BenchRow* lowest = nullptr;
    for (const auto& r : rows)
      if (r.available && ort_fp32(r, fused) && r.batch == 1 && (!lowest || r.p50_us < lowest->p50_us)) lowest = &r;
    if (!lowest) continue;
    out.push_back(std::string("batch 1: ONNX Runtime p50 ") + fmt("%.1f", lowest->p50_us) + " us per image with the " +
                  (fused ? "fused operator" : "portable graph (" + lowest->variant + ")") +
                  (fused ? "; target <= 4 us: " + verdict(lowest->p50_us <= 4.0) : std::string("")));
  }
  // Issue #24's targets: native fp32 at batch 64 >= 0.8x the float read bound on 1 thread, >= 0.7x on 2.
  for (const auto& mem : rows) {
    if (!mem.available || mem.backend != "memory" || mem.precision != "fp32") continue;
    const BenchRow* native = best([&](const BenchRow& r) {
      return r.backend == "native" && r.precision == "fp32" && r.batch == 64 && r.threads == mem.threads;
    });
    if (!native) continue;
    // The read bound timed in alternation with native where bench did so, else its own row.
    const bool paired = native->read_bound_ips > 0;
    const double bound = paired ? native->read_bound_ips : mem.images_per_second;
    const double ratio = native->images_per_second / bound, target = mem.threads == 1 ? 0.8 : 0.7;
    out.push_back("batch 64, " + std::to_string(mem.threads) + " thread(s): native fp32 " + grouped(native->images_per_second) +
                  " images/s; reading float images from memory (" + mem.working_set + ") runs at " + grouped(bound) +
                  " images/s" + (paired ? " in alternation with it" : "") + ": native = " + fmt("%.2f", ratio) +
                  "x the read bound; target >= " + fmt("%.1f", target) + ": " + verdict(ratio >= target));
  }
  {
    const BenchRow* f = best([&](const BenchRow& r) { return r.backend == "native" && r.precision == "fp32" && r.batch == 64 && r.threads == 1; });
    const BenchRow* u = best([&](const BenchRow& r) { return r.backend == "native" && r.precision == "uint8" && r.batch == 64 && r.threads == 1; });
    if (f && u) {
      // Timed in alternation with native on floats where it could be (vs_native), else the two rows.
      const bool paired = u->vs_native > 0;
      const double ratio = paired ? u->vs_native : u->images_per_second / f->images_per_second;
      out.push_back("batch 64, 1 thread: native reading bytes " + grouped(u->images_per_second) + " images/s = " + fmt("%.2f", ratio) +
                    "x native on floats" + (paired ? ", measured in alternation" : "") + "; target >= 1.5: " + verdict(ratio >= 1.5));
    }
  }
  for (const char* input : {"fp32", "uint8"}) {  // issue #24: the fused operator >= 0.95x native, on floats and on bytes
    const BenchRow* ort = nullptr;
    for (const auto& r : rows)
      if (r.available && r.backend == "cpu" && r.variant == "fused" && r.precision == input && r.batch == 64 && r.threads == 1 &&
          r.vs_native > 0)
        ort = &r;
    if (ort)
      out.push_back(std::string("batch 64, 1 thread, ") + input + " input: ONNX Runtime with the fused operator " +
                    grouped(ort->images_per_second) + " images/s = " + fmt("%.2f", ort->vs_native) +
                    "x native, measured in alternation; target >= 0.95: " + verdict(ort->vs_native >= 0.95));
  }
}

}  // namespace

std::vector<std::string> summarize(const std::vector<BenchRow>& rows) {
  auto best = [&](auto pred) {
    const BenchRow* b = nullptr;
    for (const auto& r : rows)
      if (r.available && pred(r) && (!b || r.images_per_second > b->images_per_second)) b = &r;
    return b;
  };
  auto describe = [](const BenchRow* r) {
    return r->name() + " (" + r->mode + ", " + std::to_string(r->threads) + " thread" + (r->threads > 1 ? "s" : "") + ")";
  };
  std::vector<std::string> out;
  for (int64_t batch : {int64_t(64), int64_t(1024)}) {
    const BenchRow* ort = best([&](const BenchRow& r) { return r.backend == "cpu" && r.precision == "fp32" && r.batch == batch; });
    if (!ort) continue;
    std::string line = "batch " + std::to_string(batch) + ": best ONNX Runtime CPU fp32 is " + describe(ort) + " at " +
                       grouped(ort->images_per_second) + " images/s";
    if (const BenchRow* ref = best([&](const BenchRow& r) { return r.backend == "reference" && r.batch == batch; }))
      line += "; " + fmt("%.0f", 100.0 * ort->images_per_second / ref->images_per_second) + "% of the reference (" +
              grouped(ref->images_per_second) + ")";
    if (const BenchRow* loop = best([&](const BenchRow& r) { return r.backend == "torch" && r.variant == "loop" && r.batch == batch; }))
      line += "; " + fmt("%.1f", ort->images_per_second / loop->images_per_second) + "x LibTorch original-style (" +
              grouped(loop->images_per_second) + ")";
    out.push_back(line);
    const BenchRow* i8 = best([&](const BenchRow& r) { return r.backend == "cpu" && r.precision == "int8" && r.batch == batch; });
    if (i8)
      out.push_back("batch " + std::to_string(batch) + ": int8 " + grouped(i8->images_per_second) + " images/s = " +
                    fmt("%.2f", i8->images_per_second / ort->images_per_second) + "x fp32, accuracy " +
                    fmt("%+.2f", 100.0 * (i8->accuracy - ort->accuracy)) + " points");
  }
  if (const BenchRow* b1 = best([&](const BenchRow& r) { return r.backend == "cpu" && r.precision == "fp32" && r.batch == 1; })) {
    const BenchRow* lowest = b1;
    for (const auto& r : rows)
      if (r.available && r.backend == "cpu" && r.precision == "fp32" && r.batch == 1 && r.p50_us < lowest->p50_us) lowest = &r;
    out.push_back("batch 1: ONNX Runtime CPU fp32 p50 latency " + fmt("%.1f", lowest->p50_us) + " us per image (" +
                  describe(lowest) + ")");
  }
  target_lines(rows, out);
  return out;
}

}  // namespace moe
