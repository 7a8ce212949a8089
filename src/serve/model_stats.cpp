#include "serve/model_stats.h"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

namespace moe::serve {

namespace {

uint64_t now_ms() {
  return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void add(Duration& d, uint64_t ns) {
  ++d.count;
  d.ns += ns;
}

void write(std::string& s, const char* key, const Duration& d) {
  fmt::format_to(std::back_inserter(s), "\"{}\":{{\"count\":{},\"ns\":{}}}", key, d.count, d.ns);
}

}  // namespace

void ModelStats::execution(int64_t images, const RunTimes& t) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.inference_count += uint64_t(images);
  ++s_.execution_count;
  BatchStats& b = s_.batches[images];
  add(b.input, t.input_ns);
  add(b.infer, t.infer_ns);
  add(b.output, t.output_ns);
}

void ModelStats::success(uint64_t queue_ns, uint64_t total_ns, const RunTimes& t) {
  const uint64_t ms = now_ms();
  std::lock_guard<std::mutex> lock(mu_);
  add(s_.success, total_ns);
  add(s_.queue, queue_ns);
  add(s_.input, t.input_ns);
  add(s_.infer, t.infer_ns);
  add(s_.output, t.output_ns);
  s_.last_inference_ms = ms;
}

void ModelStats::failure(uint64_t total_ns) {
  const uint64_t ms = now_ms();
  std::lock_guard<std::mutex> lock(mu_);
  add(s_.fail, total_ns);
  s_.last_inference_ms = ms;
}

std::string ModelStats::json(const std::string& name, const std::string& version) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string s = "{\"name\":";
  s += nlohmann::json(name).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  s += ",\"version\":";
  s += nlohmann::json(version).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  fmt::format_to(std::back_inserter(s), ",\"last_inference\":{},\"inference_count\":{},\"execution_count\":{},\"inference_stats\":{{",
                 s_.last_inference_ms, s_.inference_count, s_.execution_count);
  write(s, "success", s_.success);
  s += ',';
  write(s, "fail", s_.fail);
  s += ',';
  write(s, "queue", s_.queue);
  s += ',';
  write(s, "compute_input", s_.input);
  s += ',';
  write(s, "compute_infer", s_.infer);
  s += ',';
  write(s, "compute_output", s_.output);
  s += ',';
  write(s, "cache_hit", Duration{});  // no response cache: always zero, present because perf_analyzer reads it
  s += ',';
  write(s, "cache_miss", Duration{});
  s += "},\"response_stats\":{},\"batch_stats\":[";
  bool first = true;
  for (const auto& [size, b] : s_.batches) {
    if (!first) s += ',';
    first = false;
    fmt::format_to(std::back_inserter(s), "{{\"batch_size\":{},", size);
    write(s, "compute_input", b.input);
    s += ',';
    write(s, "compute_infer", b.infer);
    s += ',';
    write(s, "compute_output", b.output);
    s += '}';
  }
  s += "],\"memory_usage\":[]}";
  return s;
}

ModelStats::Snapshot ModelStats::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return s_;
}

std::string model_stats_document(const std::string& elements) { return "{\"model_stats\":[" + elements + "]}"; }

}  // namespace moe::serve
