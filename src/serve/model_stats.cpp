#include "serve/model_stats.h"

#include <fmt/format.h>

#include <chrono>
#include <initializer_list>
#include <utility>
#include <nlohmann/json.hpp>

namespace moe::serve {

namespace {

uint64_t now_ms() {
  return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// "key":{"count":N,"ns":T} for each pair, comma-separated.
void write(std::string& s, std::initializer_list<std::pair<const char*, Duration>> durations) {
  bool first = true;
  for (const auto& [key, d] : durations) {
    fmt::format_to(std::back_inserter(s), "{}\"{}\":{{\"count\":{},\"ns\":{}}}", first ? "" : ",", key, d.count, d.ns);
    first = false;
  }
}

}  // namespace

void ModelStats::execution(int64_t images, const RunTimes& t) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.inference_count += uint64_t(images);
  ++s_.execution_count;
  BatchStats& b = s_.batches[images];
  b.input.add(t.input_ns);
  b.infer.add(t.infer_ns);
  b.output.add(t.output_ns);
}

void ModelStats::success(uint64_t queue_ns, uint64_t total_ns, const RunTimes& t) {
  const uint64_t ms = now_ms();
  std::lock_guard<std::mutex> lock(mu_);
  s_.success.add(total_ns);
  s_.queue.add(queue_ns);
  s_.input.add(t.input_ns);
  s_.infer.add(t.infer_ns);
  s_.output.add(t.output_ns);
  s_.last_inference_ms = ms;
}

void ModelStats::failure(uint64_t total_ns) {
  const uint64_t ms = now_ms();
  std::lock_guard<std::mutex> lock(mu_);
  s_.fail.add(total_ns);
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
  // cache_hit and cache_miss: no response cache, always zero; present because perf_analyzer reads them.
  write(s, {{"success", s_.success}, {"fail", s_.fail}, {"queue", s_.queue}, {"compute_input", s_.input},
            {"compute_infer", s_.infer}, {"compute_output", s_.output}, {"cache_hit", Duration{}}, {"cache_miss", Duration{}}});
  s += "},\"response_stats\":{},\"batch_stats\":[";
  bool first = true;
  for (const auto& [size, b] : s_.batches) {
    if (!first) s += ',';
    first = false;
    fmt::format_to(std::back_inserter(s), "{{\"batch_size\":{},", size);
    write(s, {{"compute_input", b.input}, {"compute_infer", b.infer}, {"compute_output", b.output}});
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
