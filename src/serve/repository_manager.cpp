#include "serve/repository_manager.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace moe::serve {

namespace {

namespace fs = std::filesystem;

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// What changes when a file is replaced or rewritten: inode, size and modification time ("" = absent).
std::string file_fingerprint(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

std::string config_path(const std::string& dir, const std::string& name) { return dir + "/" + name + "/config.pbtxt"; }

std::string join(const std::vector<std::string>& parts) {
  std::string s;
  for (const std::string& p : parts) s += (s.empty() ? "" : ", ") + p;
  return s;
}

}  // namespace

RepositoryManager::RepositoryManager(RepositoryOptions options, EngineFactory open_engine, ModelRegistry& registry, Metrics& metrics,
                                     std::function<void(const std::string&)> log)
    : options_(std::move(options)), open_engine_(std::move(open_engine)), registry_(registry), metrics_(metrics), log_(std::move(log)) {}

RepositoryManager::~RepositoryManager() { stop(); }

std::vector<std::string> RepositoryManager::model_folders() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(options_.dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // Hidden folders are not models: they are where a deployment stages a version before its `mv`.
    if (name[0] != '.' && valid_model_name(name) && it->is_directory(ec)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void RepositoryManager::start() {
  std::error_code ec;
  if (!fs::is_directory(options_.dir, ec))
    throw InputError("--model-repository: '" + options_.dir + "' is not a folder (expected <model>/config.pbtxt and <model>/<version>/model.onnx)");
  if (options_.control == ModelControl::explicit_) {
    const bool all = std::find(options_.load_at_start.begin(), options_.load_at_start.end(), "*") != options_.load_at_start.end();
    for (const std::string& name : all ? model_folders() : options_.load_at_start) sync_model(name, true);
  } else {
    sync_all();
  }
  thread_ = std::thread([this] { run(); });
}

void RepositoryManager::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::deque<Command> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(commands_);
  }
  for (auto& c : left) c.fail(503, "the server is shutting down");
  // Runs what every model has queued, so each request taken is answered.
  for (const std::string& name : model_folders()) unload_model(name, "the server is stopping");
  for (const auto& m : registry_.ready()) unload_model(m->info().name, "the server is stopping");
  reap(true);
}

void RepositoryManager::enqueue(Command c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      commands_.push_back(std::move(c));
      cv_.notify_all();
      return;
    }
  }
  c.fail(503, "the server is shutting down");
}

void RepositoryManager::load(const std::string& name, Done done) {
  enqueue({[this, name, done] {
    std::error_code ec;
    if (!valid_model_name(name) || !fs::is_directory(options_.dir + "/" + name, ec))
      return done(404, "no model '" + name + "' in the repository " + options_.dir);
    sync_model(name, true);
    if (registry_.ready_versions(name).empty()) {
      std::string why = "no version of '" + name + "' could be loaded";
      for (const VersionState& s : registry_.index())
        if (s.name == name && !s.reason.empty()) why += "; " + (s.version ? "version " + std::to_string(s.version) : "model") + ": " + s.reason;
      return done(400, why);
    }
    done(200, "");
  }, done});
}

void RepositoryManager::unload(const std::string& name, Done done) {
  enqueue({[this, name, done] {
             if (!registry_.knows(name)) return done(404, "model '" + name + "' is not loaded");
             unload_model(name, "unloaded");
             done(200, "");
           },
           done});
}

void RepositoryManager::run() {
  double next_poll = now_s() + options_.poll_s;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    // Wake for a command, the next poll, or (while versions drain) every 20 ms to unload them.
    const double wake = std::min(options_.control == ModelControl::poll ? next_poll : now_s() + 3600,
                                 retiring_.empty() ? now_s() + 3600 : now_s() + 0.02);
    cv_.wait_for(lock, std::chrono::duration<double>(std::max(0.0, wake - now_s())),
                 [&] { return stopping_ || !commands_.empty(); });
    if (stopping_) break;
    std::deque<Command> todo;
    todo.swap(commands_);
    lock.unlock();
    for (auto& c : todo) {
      try {
        c.run();
      } catch (const std::exception& e) {  // a command's own failure must not end the thread
        log_(std::string("model repository: ") + e.what());
        c.fail(500, std::string("model repository: ") + e.what());
      }
    }
    if (options_.control == ModelControl::poll && now_s() >= next_poll) {
      try {
        sync_all();
      } catch (const std::exception& e) {
        log_(std::string("model repository: ") + e.what());
      }
      next_poll = now_s() + options_.poll_s;
    }
    reap(false);
    lock.lock();
  }
}

void RepositoryManager::sync_all() {
  const std::vector<std::string> folders = model_folders();
  for (const std::string& name : folders) sync_model(name, false);
  // Models whose folder went away.
  std::set<std::string> gone;
  for (const VersionState& s : registry_.index())
    if (!std::binary_search(folders.begin(), folders.end(), s.name)) gone.insert(s.name);
  for (const std::string& name : gone) {
    unload_model(name, "removed from the repository");
    registry_.forget_unready(name);
    loaded_.erase(name);
    failed_.erase(name);
    config_failed_.erase(name);
  registry_.clear(name, 0);  // a config problem reported before is over
  }
}

void RepositoryManager::sync_model(const std::string& name, bool retry_failed) {
  const std::string dir = options_.dir + "/" + name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return unload_model(name, "removed from the repository");
  if (retry_failed) {
    failed_.erase(name);
    config_failed_.erase(name);
  }
  const std::string cfg_file = config_path(options_.dir, name);
  const std::string cfg_print = file_fingerprint(cfg_file);
  if (auto f = config_failed_.find(name); f != config_failed_.end() && f->second == cfg_print) return;
  RepositoryModelConfig cfg;
  try {
    cfg = parse_model_config(cfg_print.empty() ? "" : read_file(cfg_file, kMaxConfigBytes, "config.pbtxt"), name, cfg_file);
    cfg.from_file = !cfg_print.empty();
  } catch (const std::exception& e) {
    config_failed_[name] = cfg_print;
    registry_.set_state(name, 0, "UNAVAILABLE", e.what());
    log_("model '" + name + "': not loaded: " + e.what() +
         (registry_.ready_versions(name).empty() ? "" : " (the versions already ready keep serving)"));
    return;
  }
  config_failed_.erase(name);

  // The version folders that hold the model file.
  std::vector<int64_t> found;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string folder = it->path().filename().string();
    const int64_t v = parse_version(folder);
    // Only the plain spelling ("7", not "007"): the version's files are found by that name.
    if (v > 0 && std::to_string(v) == folder && it->is_directory(ec)) found.push_back(v);
  }
  auto fingerprint = [&](int64_t v) {
    return file_fingerprint(dir + "/" + std::to_string(v) + "/" + cfg.model_filename) + "|" + cfg_print;
  };
  // The policy picks among the versions that load: one that fails drops out and the next one in line
  // is tried, so a broken new version leaves the one before it serving.
  std::vector<int64_t> candidates = found, wanted;
  for (bool changed = true; changed;) {
    changed = false;
    wanted = cfg.policy.select(candidates);
    for (int64_t v : wanted) {
      const std::string print = fingerprint(v);
      const auto ready = registry_.ready_versions(name);
      if (loaded_[name][v] == print && std::binary_search(ready.begin(), ready.end(), v)) continue;
      auto& failed = failed_[name];
      const bool serving = std::binary_search(ready.begin(), ready.end(), v);  // a copy loaded before serves
      if (auto f = failed.find(v); f != failed.end() && f->second == print) {
        if (serving) continue;  // its new copy failed; the old one stays selected
        candidates.erase(std::find(candidates.begin(), candidates.end(), v));
        changed = true;
        break;
      }
      registry_.set_state(name, v, "LOADING", "");
      int engines = 0;
      try {
        std::shared_ptr<ServedModel> m = load_version(name, v, cfg, engines);
        std::shared_ptr<ServedModel> replaced = registry_.publish(m);
        loaded_[name][v] = print;
        failed.erase(v);
        log_("model '" + name + "' version " + std::to_string(v) + ": ready (" + m->info().backend + " " + m->info().precision + ", " +
             std::to_string(engines) + (engines == 1 ? " engine" : " engines") + (replaced ? ", replacing the version loaded before)" : ")"));
        if (replaced) {
          const int old_engines = engines_of_.count(replaced.get()) ? engines_of_[replaced.get()] : 0;
          retire(std::move(replaced), old_engines);
        }
      } catch (const std::exception& e) {
        failed[v] = print;
        registry_.set_state(name, v, "UNAVAILABLE", e.what());
        log_("model '" + name + "' version " + std::to_string(v) + ": not loaded: " + e.what() +
             (serving ? " (the copy loaded before keeps serving)" : ""));
        if (serving) continue;
        candidates.erase(std::find(candidates.begin(), candidates.end(), v));
        changed = true;
        break;
      }
    }
  }
  // Ready versions the policy no longer selects (or whose folder went): no new requests from now,
  // unloaded once the ones they took are answered.
  for (int64_t v : registry_.ready_versions(name)) {
    if (std::binary_search(wanted.begin(), wanted.end(), v)) continue;
    const bool present = std::find(found.begin(), found.end(), v) != found.end();
    if (auto m = registry_.withdraw(name, v)) {
      log_("model '" + name + "' version " + std::to_string(v) + ": unloading (" +
           (present ? "not selected by version_policy " + cfg.policy.describe() : std::string("removed from the repository")) + ")");
      const int engines = engines_of_.count(m.get()) ? engines_of_[m.get()] : 0;
      retire(std::move(m), engines);
    }
    loaded_[name].erase(v);
  }
  // Failed versions whose folder went away are forgotten.
  for (auto f = failed_[name].begin(); f != failed_[name].end();)
    f = std::find(found.begin(), found.end(), f->first) == found.end() ? failed_[name].erase(f) : std::next(f);
}

std::shared_ptr<ServedModel> RepositoryManager::load_version(const std::string& name, int64_t version, const RepositoryModelConfig& cfg,
                                                             int& engines) {
  const std::string file = options_.dir + "/" + name + "/" + std::to_string(version) + "/" + cfg.model_filename;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw InputError(file + ": missing (expected the version's ONNX file)");
  engines = int(cfg.instances > 0 ? cfg.instances : options_.instances);
  if (engines_in_use_ + engines > options_.max_engines)
    throw InputError("needs " + std::to_string(engines) + " engine(s), and " + std::to_string(engines_in_use_) + " of --max-engines " +
                     std::to_string(options_.max_engines) + " are in use");
  std::vector<std::unique_ptr<Classifier>> opened;
  for (int i = 0; i < engines; ++i) opened.push_back(open_engine_(file));
  if (!cfg.input_datatype.empty() && opened[0]->backend() != "native") {  // native reads either: the config decides
    const std::string graph = declared_input_datatype(*opened[0]);
    if (graph != cfg.input_datatype)
      throw InputError(config_path(options_.dir, name) + ": input data_type TYPE_" + cfg.input_datatype + ", but " + file +
                       " takes " + graph);
  }
  ModelInfo info;
  info.name = name;
  info.version = std::to_string(version);
  info.max_batch_request = cfg.max_batch_size;
  BatcherOptions batching = options_.batching;
  if (cfg.from_file) {
    if (!cfg.dynamic_batching) {  // Triton's rule: no dynamic_batching, no batching (one request per run)
      batching.max_delay_us = 0;
      batching.max_batch = 1;
    } else {
      batching.max_delay_us = cfg.max_queue_delay_us;
      if (cfg.preferred_batch > 0) batching.max_batch = cfg.preferred_batch;
    }
  }
  if (!cfg.ignored.empty())
    log_("model '" + name + "' version " + std::to_string(version) + ": config.pbtxt fields not honoured: " + join(cfg.ignored));
  auto m = std::make_shared<ServedModel>(info, batching, std::move(opened), metrics_, cfg.input_datatype);
  engines_of_[m.get()] = engines;
  engines_in_use_ += engines;
  try {
    m->warm_up(options_.warmup_timeout_s);
  } catch (...) {
    engines_in_use_ -= engines;
    engines_of_.erase(m.get());
    throw;
  }
  return m;
}

void RepositoryManager::unload_model(const std::string& name, const std::string& reason) {
  for (int64_t v : registry_.ready_versions(name)) {
    if (auto m = registry_.withdraw(name, v)) {
      log_("model '" + name + "' version " + std::to_string(v) + ": unloading (" + reason + ")");
      const int engines = engines_of_.count(m.get()) ? engines_of_[m.get()] : 0;
      retire(std::move(m), engines);
    }
  }
  loaded_.erase(name);
}

void RepositoryManager::retire(std::shared_ptr<ServedModel> m, int engines) {
  registry_.set_state(m->info().name, parse_version(m->info().version), "UNLOADING", "");
  retiring_.push_back({std::move(m), engines, now_s() + options_.drain_timeout_s});
}

void RepositoryManager::reap(bool all) {
  for (auto r = retiring_.begin(); r != retiring_.end();) {
    // use_count 1: no request holds it any more (a request holds it from lookup to answer). Past the
    // deadline (or at stop) the batcher is stopped here first: it answers what is queued and joins its
    // threads, so the last holder, whoever it is, never destroys a batcher from its own worker thread.
    if (!all && r->model.use_count() > 1 && now_s() < r->deadline) {
      ++r;
      continue;
    }
    r->model->batcher().stop();
    const std::string name = r->model->info().name;
    const int64_t v = parse_version(r->model->info().version);
    engines_in_use_ -= r->engines;
    engines_of_.erase(r->model.get());
    r = retiring_.erase(r);
    registry_.set_state(name, v, "UNAVAILABLE", "unloaded");
  }
}

std::string RepositoryManager::refusal_of_explicit(const std::string& action) const {
  if (options_.control == ModelControl::explicit_) return "";
  return "explicit model " + action + " is not allowed: the server runs with --model-control-mode " +
         (options_.control == ModelControl::poll ? "poll" : "none") + " (start it with --model-control-mode explicit)";
}

std::string RepositoryManager::refusal_of_parameter(const std::string& action, const std::string& key, bool is_bool) {
  if (action == "unload" && key == "unload_dependents" && is_bool) return "";
  return "parameters: '" + key + "' is not supported (the model is " + action + "ed from its folder as it is)";
}

std::vector<VersionState> RepositoryManager::index(bool ready_only) const {
  std::vector<VersionState> out = registry_.index(ready_only);
  if (ready_only) return out;
  for (const std::string& name : model_folders())
    if (std::none_of(out.begin(), out.end(), [&](const VersionState& s) { return s.name == name; })) out.push_back({name, 0, "", ""});
  std::sort(out.begin(), out.end(), [](const VersionState& a, const VersionState& b) {
    return a.name != b.name ? a.name < b.name : a.version < b.version;
  });
  return out;
}

}  // namespace moe::serve
