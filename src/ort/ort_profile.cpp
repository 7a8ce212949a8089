#include "ort/ort_profile.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/errors.h"

namespace moe {

ProfileSummary summarize_profile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot read the profile");
  ProfileSummary s;
  std::map<std::string, ProfileEntry> nodes, ops;
  const std::string suffix = "_kernel_time";
  auto add = [&](const nlohmann::json& e) {
    if (!e.is_object() || !e.contains("name") || !e.contains("dur") || !e["name"].is_string() || !e["dur"].is_number()) return;
    const std::string name = e["name"];
    const double dur = e["dur"].get<double>();
    const std::string cat = e.value("cat", "");
    if (cat == "Session" && name == "model_run") {
      ++s.n_runs;
      s.run_us += dur;
    }
    if (cat != "Node" || name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return;
    std::string op = "?";
    if (e.contains("args") && e["args"].is_object() && e["args"].contains("op_name") && e["args"]["op_name"].is_string())
      op = e["args"]["op_name"];
    const std::string node = name.substr(0, name.size() - suffix.size());
    for (auto* m : {&nodes, &ops}) {
      ProfileEntry& x = (*m)[m == &nodes ? node : op];
      x.name = m == &nodes ? node : op;
      x.op = op;
      ++x.calls;
      x.total_us += dur;
    }
    s.kernel_us += dur;
  };
  // One trace event at a time: each element of the top-level array is summed as soon as it is parsed
  // and then dropped, so a 552 MB trace (ONNX Runtime's 1M-event cap) no longer becomes a 4 GB tree.
  bool top_is_array = false;
  const nlohmann::json rest = nlohmann::json::parse(
      in,
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        if (depth == 0 && event == nlohmann::json::parse_event_t::array_start) top_is_array = true;
        if (depth == 1 && top_is_array && event == nlohmann::json::parse_event_t::object_end) {
          add(parsed);
          return false;  // not kept in the result
        }
        return true;
      },
      /*allow_exceptions=*/false);
  if (rest.is_discarded() || !rest.is_array() || !top_is_array)
    throw InputError(path + ": not an ONNX Runtime profile (expected a JSON array of trace events)");
  for (const auto& e : rest) add(e);  // none left unless an element was not an object
  auto sorted = [](const std::map<std::string, ProfileEntry>& m) {
    std::vector<ProfileEntry> v;
    for (const auto& [k, e] : m) v.push_back(e);
    std::stable_sort(v.begin(), v.end(), [](const ProfileEntry& a, const ProfileEntry& b) { return a.total_us > b.total_us; });
    return v;
  };
  s.nodes = sorted(nodes);
  s.ops = sorted(ops);
  return s;
}

std::string to_text(const ProfileSummary& s, size_t n_top) {
  std::ostringstream o;
  char line[256];
  const double per_run = s.n_runs ? s.run_us / double(s.n_runs) : 0;
  std::snprintf(line, sizeof line, "%lld runs, %.1f us per run; kernels %.1f us per run, %.1f us per run outside them (%zu nodes)\n",
                (long long)s.n_runs, per_run, s.n_runs ? s.kernel_us / double(s.n_runs) : 0.0,
                s.n_runs ? (s.run_us - s.kernel_us) / double(s.n_runs) : 0.0, s.nodes.size());
  o << line;
  auto table = [&](const std::vector<ProfileEntry>& v, const char* title) {
    std::snprintf(line, sizeof line, "  %-40s %-22s %8s %12s %7s\n", title, "op", "calls", "total us", "%");
    o << line;
    for (size_t i = 0; i < v.size() && i < n_top; ++i) {
      std::snprintf(line, sizeof line, "  %-40s %-22s %8lld %12.0f %6.1f%%\n", v[i].name.c_str(), v[i].op.c_str(), (long long)v[i].calls,
                    v[i].total_us, s.kernel_us > 0 ? 100.0 * v[i].total_us / s.kernel_us : 0.0);
      o << line;
    }
  };
  table(s.nodes, "node");
  table(s.ops, "op type");
  return o.str();
}

}  // namespace moe
