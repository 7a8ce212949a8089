#include "repository/triton_repo.h"

#include <cctype>

#include "base/errors.h"

namespace moe {

namespace {

// The version_policy block of config.pbtxt ("" for Triton's default, the latest version).
std::string version_policy_pbtxt(const std::string& policy) {
  if (policy == "latest:1") return "";
  if (policy == "all") return "version_policy: { all: {} }\n";
  if (policy.rfind("latest:", 0) == 0) return "version_policy: { latest: { num_versions: " + policy.substr(7) + " } }\n";
  return "version_policy: { specific: { versions: [ " + policy.substr(9) + " ] } }\n";
}

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 18 || s[0] == '0') return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

void check_version_policy(const std::string& policy, const std::string& flag) {
  bool ok = policy == "all" || (policy.rfind("latest:", 0) == 0 && all_digits(policy.substr(7)));
  if (policy.rfind("specific:", 0) == 0) {
    ok = true;
    std::string rest = policy.substr(9) + ",";
    for (size_t start = 0, comma; (comma = rest.find(',', start)) != std::string::npos; start = comma + 1)
      ok = ok && all_digits(rest.substr(start, comma - start));
  }
  if (!ok) throw InputError(flag + ": '" + policy + "': expected latest:N, all, or specific:V[,V...] (versions >= 1)");
}

std::string triton_config_pbtxt(const TritonModelConfig& c) {
  const auto n = [](int64_t v) { return std::to_string(v); };
  return "# Written by `moe-mnist export --triton-repo`; serve with `tritonserver --model-repository <repo>`.\n"
         "name: \"" + c.name + "\"\n"
         "platform: \"onnxruntime_onnx\"\n"
         "max_batch_size: " + n(c.max_batch) + "\n" + version_policy_pbtxt(c.version_policy) +
         "input [\n"
         "  { name: \"input\" data_type: " + std::string(c.uint8_input ? "TYPE_UINT8" : "TYPE_FP32") + " dims: [ 1, 28, 28 ] }\n"
         "]\n"
         "output [\n"
         "  { name: \"logits\" data_type: TYPE_FP32 dims: [ " + n(c.n_classes) + " ] },\n"
         "  { name: \"gate_probs\" data_type: TYPE_FP32 dims: [ " + n(c.n_experts) + " ] }\n"
         "]\n"
         "dynamic_batching {\n"
         "  preferred_batch_size: [ " + n(c.preferred_batch) + " ]\n"
         "  max_queue_delay_microseconds: " + n(c.max_queue_delay_us) + "\n"
         "}\n"
         "instance_group [\n"
         "  { kind: KIND_CPU count: " + n(c.instances) + " }\n"
         "]\n";
}

std::string default_triton_model_name(bool uint8_input) { return uint8_input ? "moe-mnist-u8" : "moe-mnist"; }

void check_model_name(const std::string& name, const std::string& flag) {
  bool ok = !name.empty() && name.size() <= 64 && name != "." && name != "..";
  for (char ch : name) ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-');
  if (!ok) throw InputError(flag + ": '" + name + "' is not a usable model name (1-64 of A-Z a-z 0-9 _ . -)");
}

std::string triton_model_file(const std::string& repo, const std::string& name, int64_t version) {
  return repo + "/" + name + "/" + std::to_string(version) + "/model.onnx";
}
std::string triton_config_file(const std::string& repo, const std::string& name) { return repo + "/" + name + "/config.pbtxt"; }

}  // namespace moe
