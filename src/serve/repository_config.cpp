#include "serve/repository_config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <set>

#include "base/errors.h"
#include "model_config.pb.h"

namespace moe::serve {

namespace {

namespace pb = google::protobuf;

// The first parse error, with its place: protobuf's own messages are precise ("Expected integer").
class FirstError : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (text.empty()) text = "line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1) + ": " + message;
  }
  std::string text;
};

// Adds "prefix.field" for every field set in `m` whose name is not in `honoured`.
void list_ignored(const pb::Message& m, const std::set<std::string>& honoured, const std::string& prefix,
                  std::vector<std::string>& out) {
  std::vector<const pb::FieldDescriptor*> fields;
  m.GetReflection()->ListFields(m, &fields);
  for (const pb::FieldDescriptor* f : fields)
    if (!honoured.count(f->name())) out.push_back(prefix + f->name());
}

std::string datatype_name(inference::DataType t) {
  const std::string s = inference::DataType_Name(t);
  return s.rfind("TYPE_", 0) == 0 ? s.substr(5) : s;
}

}  // namespace

std::vector<int64_t> VersionPolicy::select(std::vector<int64_t> found) const {
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  if (kind == Kind::all) return found;
  if (kind == Kind::latest) {
    if (int64_t(found.size()) > latest) found.erase(found.begin(), found.end() - latest);
    return found;
  }
  std::vector<int64_t> out;
  for (int64_t v : found)
    if (std::find(versions.begin(), versions.end(), v) != versions.end()) out.push_back(v);
  return out;
}

std::string VersionPolicy::describe() const {
  if (kind == Kind::all) return "all";
  if (kind == Kind::latest) return "latest " + std::to_string(latest);
  std::string s = "specific ";
  for (size_t i = 0; i < versions.size(); ++i) s += (i ? "," : "") + std::to_string(versions[i]);
  return s;
}

RepositoryModelConfig parse_model_config(const std::string& text, const std::string& folder_name, const std::string& path) {
  RepositoryModelConfig c;
  c.name = folder_name;
  inference::ModelConfig m;
  pb::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &m))
    throw InputError(path + ": not a Triton model configuration (protobuf text format of inference.ModelConfig): " +
                     (errors.text.empty() ? std::string("parse error") : errors.text));
  auto fail = [&](const std::string& what) { throw InputError(path + ": " + what); };

  if (!m.name().empty() && m.name() != folder_name)
    fail("name '" + m.name() + "' differs from the model's folder name '" + folder_name + "' (Triton requires them equal)");
  if (!m.platform().empty() && m.platform() != "onnxruntime_onnx")
    fail("platform '" + m.platform() + "': this server runs ONNX models only (platform \"onnxruntime_onnx\")");
  if (!m.backend().empty() && m.backend() != "onnxruntime")
    fail("backend '" + m.backend() + "': this server runs ONNX models only (backend \"onnxruntime\")");

  // 0 (or absent) is completed from the graph, whose batch dimension is dynamic, as Triton completes
  // an ONNX model's configuration; the graphs have no fixed-batch form to serve without it.
  if (m.max_batch_size() < 0) fail("max_batch_size " + std::to_string(m.max_batch_size()) + ": expected >= 1 (or 0: the default)");
  if (m.max_batch_size() > 0) c.max_batch_size = m.max_batch_size();

  if (m.input_size() > 1) fail("input: the model has one input ('input'), the config declares " + std::to_string(m.input_size()));
  if (m.input_size() == 1) {
    const inference::ModelInput& in = m.input(0);
    if (in.name() != "input") fail("input name '" + in.name() + "': the exported graph's input is named 'input'");
    if (in.data_type() != inference::TYPE_FP32 && in.data_type() != inference::TYPE_UINT8)
      fail("input data_type " + inference::DataType_Name(in.data_type()) + ": expected TYPE_FP32 or TYPE_UINT8");
    int64_t elements = 1;
    for (int64_t d : in.dims()) elements = d > 0 && elements <= (1 << 20) ? elements * d : -1;
    if (elements != 784) fail("input dims: expected [1, 28, 28] (784 pixels per image, batch excluded)");
    c.input_datatype = datatype_name(in.data_type());
    list_ignored(in, {"name", "data_type", "dims", "format"}, "input.", c.ignored);
  }
  for (const inference::ModelOutput& out : m.output()) {
    if (out.name() != "logits" && out.name() != "gate_probs")
      fail("output name '" + out.name() + "': the exported graph's outputs are 'logits' and 'gate_probs'");
    if (out.data_type() != inference::TYPE_FP32) fail("output '" + out.name() + "' data_type: expected TYPE_FP32");
    list_ignored(out, {"name", "data_type", "dims", "label_filename"}, "output.", c.ignored);
  }

  if (m.has_version_policy()) {
    const inference::ModelVersionPolicy& p = m.version_policy();
    if (p.has_all()) {
      c.policy.kind = VersionPolicy::Kind::all;
    } else if (p.has_specific()) {
      c.policy.kind = VersionPolicy::Kind::specific;
      for (int64_t v : p.specific().versions()) {
        if (v < 1) fail("version_policy.specific.versions: " + std::to_string(v) + " is not a version number (>= 1)");
        c.policy.versions.push_back(v);
      }
      if (c.policy.versions.empty()) fail("version_policy.specific: lists no versions");
    } else if (p.has_latest()) {
      if (p.latest().num_versions() < 1) fail("version_policy.latest.num_versions: expected >= 1");
      c.policy.latest = p.latest().num_versions();
    }
  }

  if (m.has_dynamic_batching()) {
    const inference::ModelDynamicBatching& b = m.dynamic_batching();
    c.dynamic_batching = true;
    if (b.max_queue_delay_microseconds() > 1'000'000)
      fail("dynamic_batching.max_queue_delay_microseconds " + std::to_string(b.max_queue_delay_microseconds()) + ": at most 1000000");
    c.max_queue_delay_us = int64_t(b.max_queue_delay_microseconds());
    for (int32_t s : b.preferred_batch_size()) {
      if (s < 1 || s > 4096) fail("dynamic_batching.preferred_batch_size " + std::to_string(s) + ": expected 1..4096");
      c.preferred_batch = std::max<int64_t>(c.preferred_batch, s);
    }
    list_ignored(b, {"preferred_batch_size", "max_queue_delay_microseconds"}, "dynamic_batching.", c.ignored);
  }

  for (const inference::ModelInstanceGroup& g : m.instance_group()) {
    if (g.count() < 0) fail("instance_group.count " + std::to_string(g.count()) + ": expected >= 1");
    c.instances += g.count() == 0 ? 1 : g.count();  // Triton: a group without count has one instance
    if (g.kind() != inference::ModelInstanceGroup::KIND_AUTO && g.kind() != inference::ModelInstanceGroup::KIND_CPU)
      c.ignored.push_back("instance_group.kind " + inference::ModelInstanceGroup::Kind_Name(g.kind()) + " (serve's --backend decides)");
    list_ignored(g, {"name", "count", "kind"}, "instance_group.", c.ignored);
  }
  if (c.instances > 64) fail("instance_group: " + std::to_string(c.instances) + " instances, at most 64");

  if (!m.default_model_filename().empty()) {
    const std::string& f = m.default_model_filename();
    if (f.find('/') != std::string::npos || f == "." || f == "..") fail("default_model_filename '" + f + "': expected a file name");
    c.model_filename = f;
  }
  list_ignored(m,
               {"name", "platform", "backend", "max_batch_size", "input", "output", "version_policy", "dynamic_batching",
                "instance_group", "default_model_filename"},
               "", c.ignored);
  return c;
}

}  // namespace moe::serve
