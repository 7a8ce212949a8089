#include "serve/model_registry.h"

#include <algorithm>
#include <cctype>

#include "serve/kserve.h"

namespace moe::serve {

bool valid_model_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) || c == '.' || c == '_' || c == '-'; });
}

int64_t parse_version(const std::string& text) {
  if (text.empty() || text.size() > 18) return -1;
  int64_t v = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
    v = v * 10 + (c - '0');
  }
  return v >= 1 ? v : -1;
}

std::shared_ptr<ServedModel> ModelRegistry::find(const std::string& name, const std::string& version) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto m = models_.find(name);
  if (m == models_.end()) {
    std::string have;
    for (const auto& [n, versions] : models_) have += (have.empty() ? "'" : ", '") + n + "'";
    throw HttpError(404, "unknown model '" + name + "' (this server serves " + (have.empty() ? std::string("no model") : have) + ")");
  }
  std::string ready;
  for (const auto& [v, e] : m->second)
    if (e.model) ready += (ready.empty() ? "" : ", ") + std::to_string(v);
  if (version.empty()) {
    for (auto e = m->second.rbegin(); e != m->second.rend(); ++e)
      if (e->second.model) return e->second.model;
    throw HttpError(503, "model '" + name + "' has no ready version");
  }
  const int64_t v = parse_version(version);
  const auto e = v > 0 ? m->second.find(v) : m->second.end();
  if (e == m->second.end())
    throw HttpError(404, "model '" + name + "' has no version '" + version + "' (ready: " + (ready.empty() ? "none" : ready) + ")");
  if (!e->second.model)
    throw HttpError(503, "model '" + name + "' version " + version + " is not ready (" + e->second.state +
                             (e->second.reason.empty() ? "" : ": " + e->second.reason) + ")");
  return e->second.model;
}

std::vector<std::shared_ptr<ServedModel>> ModelRegistry::ready(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<ServedModel>> out;
  for (const auto& [n, versions] : models_)
    if (name.empty() || n == name)
      for (const auto& [v, e] : versions)
        if (e.model) out.push_back(e.model);
  return out;
}

std::vector<int64_t> ModelRegistry::ready_versions(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> out;
  if (const auto m = models_.find(name); m != models_.end())
    for (const auto& [v, e] : m->second)
      if (e.model) out.push_back(v);
  return out;
}

bool ModelRegistry::knows(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return models_.count(name) != 0;
}

std::shared_ptr<ServedModel> ModelRegistry::publish(std::shared_ptr<ServedModel> m) {
  const std::string name = m->info().name;
  const int64_t v = parse_version(m->info().version);
  std::lock_guard<std::mutex> lock(mu_);
  auto& versions = models_[name];
  versions.erase(0);  // a model-level problem (its config) is over once a version is ready
  std::shared_ptr<ServedModel> replaced = std::move(versions[v].model);
  versions[v] = Entry{std::move(m), "READY", ""};  // (also clears a failed reload's note)
  return replaced;
}

std::shared_ptr<ServedModel> ModelRegistry::withdraw(const std::string& name, int64_t version) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto m = models_.find(name);
  if (m == models_.end()) return nullptr;
  const auto e = m->second.find(version);
  if (e == m->second.end() || !e->second.model) return nullptr;
  std::shared_ptr<ServedModel> out = std::move(e->second.model);
  e->second = Entry{nullptr, "UNLOADING", ""};
  return out;
}

void ModelRegistry::set_state(const std::string& name, int64_t version, const std::string& state, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = models_[name][version];
  if (e.model) {  // a ready version keeps serving (its state changes by withdraw); a failed reload of it is noted
    if (state == "UNAVAILABLE") e.reason = "a new copy failed to load, the one loaded before serves: " + reason;
    return;
  }
  e.state = state;
  e.reason = reason;
}

void ModelRegistry::clear(const std::string& name, int64_t version) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto m = models_.find(name);
  if (m == models_.end()) return;
  if (const auto e = m->second.find(version); e != m->second.end() && !e->second.model) m->second.erase(e);
  if (m->second.empty()) models_.erase(m);
}

void ModelRegistry::forget_unready(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto m = models_.find(name);
  if (m == models_.end()) return;
  for (auto e = m->second.begin(); e != m->second.end();) e = e->second.model ? std::next(e) : m->second.erase(e);
  if (m->second.empty()) models_.erase(m);
}

std::vector<VersionState> ModelRegistry::index(bool ready_only) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<VersionState> out;
  for (const auto& [n, versions] : models_)
    for (const auto& [v, e] : versions)
      if (!ready_only || e.model) out.push_back({n, v, e.state, e.reason});
  return out;
}

}  // namespace moe::serve
