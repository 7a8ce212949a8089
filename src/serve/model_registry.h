// The models a server answers for, by name and version, and the state of every version it knows of
// (Triton's repository index: READY, LOADING, UNLOADING, UNAVAILABLE with a reason). Lookups hand out
// shared_ptr, so a request keeps its version alive until it is answered, whatever is swapped meanwhile.
// Thread-safe: one short lock per call.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "serve/served_model.h"

namespace moe::serve {

struct VersionState {
  std::string name;
  int64_t version = 0;  // 0: the model as a whole (e.g. its config.pbtxt does not parse)
  std::string state;    // "READY", "LOADING", "UNLOADING", "UNAVAILABLE"
  std::string reason;   // why it is not READY ("" when it is)
};

class ModelRegistry {
 public:
  // The ready version `version` of model `name`; "" = the highest ready version (Triton's rule).
  // Throws HttpError 404 naming what exists, or 503 when the model is known but has no ready version.
  std::shared_ptr<ServedModel> find(const std::string& name, const std::string& version = "") const;
  // Every ready version of `name` ("" = of every model), ascending by name then version.
  std::vector<std::shared_ptr<ServedModel>> ready(const std::string& name = "") const;
  // The ready version numbers of `name`, ascending.
  std::vector<int64_t> ready_versions(const std::string& name) const;
  // Whether the registry knows `name` at all (ready or not).
  bool knows(const std::string& name) const;

  // `m` takes requests from now on (its info's name and numeric version); returns the ready model it
  // replaces (the same version loaded before), if any, in the same step, so no request finds neither.
  std::shared_ptr<ServedModel> publish(std::shared_ptr<ServedModel> m);
  // Stops new requests reaching (name, version) and returns it (null if it was not ready); its state
  // becomes UNLOADING until set_state says otherwise.
  std::shared_ptr<ServedModel> withdraw(const std::string& name, int64_t version);
  // Records a version's state (not READY: READY is what publish makes).
  void set_state(const std::string& name, int64_t version, const std::string& state, const std::string& reason);
  // Forgets the entry of (name, version) unless it is ready.
  void clear(const std::string& name, int64_t version);
  // Forgets a model's entries that are not ready (a model removed from the repository).
  void forget_unready(const std::string& name);

  // Every version known, ascending; `ready_only` as the index request's "ready" field.
  std::vector<VersionState> index(bool ready_only = false) const;

 private:
  struct Entry {
    std::shared_ptr<ServedModel> model;  // null unless READY
    std::string state, reason;
  };
  mutable std::mutex mu_;
  std::map<std::string, std::map<int64_t, Entry>> models_;
};

// A model name that routes reach as one path segment: 1-64 of [A-Za-z0-9._-], not "." or "..".
bool valid_model_name(const std::string& name);

// A version as a request names it: decimal digits, 1 .. 2^63-1; -1 when it is not one.
int64_t parse_version(const std::string& text);

}  // namespace moe::serve
