// The model repository behind `serve --model-repository DIR`, in Triton's layout
// (DIR/<model>/config.pbtxt, DIR/<model>/<version>/model.onnx) and with Triton's model control modes:
// none (load everything at start), poll (follow the folder every --repository-poll-secs) and explicit
// (load/unload through the repository extension). One thread makes every change, so changes never
// race each other; requests never wait for it.
//
// A version is loaded beside the one serving, answers a warm-up request, and only then takes
// requests; the version it replaces stops taking new ones at that moment and is unloaded once the
// requests it took are answered. A version that fails to load (missing or truncated file, wrong
// input, NaN weights, a config.pbtxt that does not parse) is recorded UNAVAILABLE with the reason and
// never replaces a ready one; it is tried again only once its files change.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/classifier.h"
#include "serve/model_registry.h"
#include "serve/repository_config.h"

namespace moe::serve {

enum class ModelControl { none, poll, explicit_ };

struct RepositoryOptions {
  std::string dir;
  ModelControl control = ModelControl::none;
  double poll_s = 15;                      // poll: how often the folder is read again
  std::vector<std::string> load_at_start;  // explicit: the models loaded at start ("*": every one)
  BatcherOptions batching;                 // used as is for a model without config.pbtxt
  int instances = 1;                       // engines per version when the config has no instance_group
  int max_engines = 16;                    // engines of every version together, those draining included
  double warmup_timeout_s = 30;            // a version's warm-up request must be answered within this
  double drain_timeout_s = 30;             // a replaced version is stopped after this even if requests remain
};

// Opens one inference engine on an ONNX file (serve's --backend and its options). Throws on failure.
using EngineFactory = std::function<std::unique_ptr<Classifier>(const std::string& onnx_file)>;

class RepositoryManager {
 public:
  // `log` receives one line per change (loaded, unloaded, failed, fields not honoured).
  RepositoryManager(RepositoryOptions options, EngineFactory open_engine, ModelRegistry& registry, Metrics& metrics,
                    std::function<void(const std::string&)> log);
  ~RepositoryManager();

  // Loads what the control mode says at start and returns when that is done (failures are in the
  // index); then starts the thread that polls and unloads. Throws InputError when DIR is no folder.
  void start();
  // Every change done, every model unloaded (their queued requests answered). Idempotent.
  void stop();

  using Done = std::function<void(int http_status, const std::string& error)>;  // 200 and "" when done
  // Explicit control (Triton's load/unload): loads or reloads model `name` from its folder (all
  // versions its policy selects), or unloads every version of it. `done` is called from the
  // manager's thread when the change is over.
  void load(const std::string& name, Done done);
  void unload(const std::string& name, Done done);

  // Every model in the folder and every version known, as Triton's repository index lists them
  // (a model present but never loaded has no version and no state).
  std::vector<VersionState> index(bool ready_only) const;
  const RepositoryOptions& options() const { return options_; }
  // Why load/unload (`action`) through the API is refused in this control mode, as Triton refuses it
  // outside explicit mode; "" when it is allowed. The HTTP and gRPC handlers answer with it.
  std::string refusal_of_explicit(const std::string& action) const;
  // Why a load/unload request parameter is refused, or "" when it is accepted: only Triton's
  // `unload_dependents` (a boolean) on unload, which changes nothing here (no ensembles).
  static std::string refusal_of_parameter(const std::string& action, const std::string& key, bool is_bool);

 private:
  struct Command {
    std::function<void()> run;  // on the manager's thread
    Done fail;                  // when it throws, or the server stops before it ran: its caller still gets an answer
  };
  struct Retiring {
    std::shared_ptr<ServedModel> model;
    int engines;
    double deadline;  // seconds on the steady clock
  };
  void run();
  void sync_all();
  void sync_model(const std::string& name, bool retry_failed);
  void unload_model(const std::string& name, const std::string& reason);
  std::shared_ptr<ServedModel> load_version(const std::string& name, int64_t version, const RepositoryModelConfig& cfg,
                                            int& engines);
  void retire(std::shared_ptr<ServedModel> m, int engines);
  void reap(bool all);
  void enqueue(Command c);
  std::vector<std::string> model_folders() const;

  const RepositoryOptions options_;
  EngineFactory open_engine_;
  ModelRegistry& registry_;
  Metrics& metrics_;
  std::function<void(const std::string&)> log_;

  // Owned by the manager's thread (and start()):
  std::map<std::string, std::map<int64_t, std::string>> loaded_;  // (model, version) -> fingerprint of its files
  std::map<std::string, std::map<int64_t, std::string>> failed_;  // the same for versions that failed
  std::map<std::string, std::string> config_failed_;              // model -> fingerprint of a config that failed
  std::map<const ServedModel*, int> engines_of_;                   // every version loaded or draining
  int engines_in_use_ = 0;
  std::vector<Retiring> retiring_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Command> commands_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace moe::serve
