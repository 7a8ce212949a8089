#include "onnx_export/graph_dot.h"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "base/process.h"

namespace moe {
namespace {

constexpr int kMaxInitialiserLinesPerNode = 8;
constexpr int kMaxSummaryLines = 64;
constexpr size_t kMaxCaptionValue = 80;

// --- text ------------------------------------------------------------------------------------------

// Graphviz rejects (or mangles) invalid UTF-8, and tensor names come from arbitrary exporters.
std::string valid_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

// One line of a DOT double-quoted string: quotes and backslashes escaped (so "\N" in a name stays literal),
// control characters dropped so a name cannot break the line structure.
std::string escape_line(const std::string& s) {
  std::string out;
  for (char ch : valid_utf8(s)) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n' || ch == '\t') {
      out += ' ';
    } else if (static_cast<unsigned char>(ch) >= 0x20) {
      out += ch;
    }
  }
  return out;
}

// A quoted DOT label from lines; `left` left-justifies every line (\l) instead of centring them (\n).
std::string label(const std::vector<std::string>& lines, bool left = false) {
  std::string out = "\"";
  for (size_t i = 0; i < lines.size(); ++i) {
    out += escape_line(lines[i]);
    if (left)
      out += "\\l";
    else if (i + 1 < lines.size())
      out += "\\n";
  }
  return out + "\"";
}

std::string quoted(const std::string& s) { return label({s}); }

std::string dtype_name(int32_t t) {
  using T = onnx::TensorProto;
  switch (t) {
    case T::FLOAT: return "float";
    case T::DOUBLE: return "double";
    case T::FLOAT16: return "float16";
    case T::BFLOAT16: return "bfloat16";
    case T::INT8: return "int8";
    case T::INT16: return "int16";
    case T::INT32: return "int32";
    case T::INT64: return "int64";
    case T::UINT8: return "uint8";
    case T::UINT16: return "uint16";
    case T::UINT32: return "uint32";
    case T::UINT64: return "uint64";
    case T::BOOL: return "bool";
    case T::STRING: return "string";
    case T::COMPLEX64: return "complex64";
    case T::COMPLEX128: return "complex128";
    case T::UNDEFINED: return "?";
    default: return "dtype" + std::to_string(t);
  }
}

std::string dims_text(const std::vector<std::string>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? "," : "") + dims[i];
  return out + "]";
}

std::string tensor_text(int32_t elem_type, const google::protobuf::RepeatedField<int64_t>& dims) {
  std::vector<std::string> d;
  for (int64_t v : dims) d.push_back(std::to_string(v));
  return dtype_name(elem_type) + " " + dims_text(d);
}

std::string shape_text(const onnx::TensorShapeProto& shape) {
  std::vector<std::string> d;
  for (const auto& dim : shape.dim()) {
    if (dim.has_dim_value())
      d.push_back(std::to_string(dim.dim_value()));
    else if (dim.has_dim_param() && !dim.dim_param().empty())
      d.push_back(dim.dim_param());
    else
      d.push_back("?");
  }
  return dims_text(d);
}

// "" when the type says nothing.
std::string type_text(const onnx::TypeProto& t) {
  switch (t.value_case()) {
    case onnx::TypeProto::kTensorType: {
      const auto& tt = t.tensor_type();
      return dtype_name(tt.elem_type()) + (tt.has_shape() ? " " + shape_text(tt.shape()) : "");
    }
    case onnx::TypeProto::kSparseTensorType: {
      const auto& tt = t.sparse_tensor_type();
      return "sparse " + dtype_name(tt.elem_type()) + (tt.has_shape() ? " " + shape_text(tt.shape()) : "");
    }
    case onnx::TypeProto::kSequenceType:
      return "seq(" + type_text(t.sequence_type().elem_type()) + ")";
    case onnx::TypeProto::kMapType:
      return "map(" + dtype_name(t.map_type().key_type()) + ", " + type_text(t.map_type().value_type()) + ")";
    case onnx::TypeProto::kOptionalType:
      return "optional(" + type_text(t.optional_type().elem_type()) + ")";
    case onnx::TypeProto::kOpaqueType:
      return "opaque";
    default:
      return "";
  }
}

// How much a declared type tells us, so the most specific of input/output/value_info wins.
int type_score(const onnx::TypeProto& t) {
  if (t.value_case() == onnx::TypeProto::VALUE_NOT_SET) return 0;
  if (t.value_case() != onnx::TypeProto::kTensorType) return 1;
  const auto& tt = t.tensor_type();
  int score = tt.elem_type() != onnx::TensorProto::UNDEFINED ? 1 : 0;
  if (tt.has_shape()) {
    score += 1;
    for (const auto& dim : tt.shape().dim()) score += (dim.has_dim_value() || dim.has_dim_param()) ? 1 : 0;
  }
  return score;
}

int64_t element_count(const google::protobuf::RepeatedField<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d > 0 ? d : 0;
  return n;
}

std::string plural(int64_t n, const std::string& word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

bool is_default_domain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

std::string op_colour(const std::string& op) {
  static const std::unordered_set<std::string> linear = {"Gemm", "MatMul", "Conv", "ConvTranspose", "Einsum",
                                                         "MatMulInteger", "QLinearMatMul", "QLinearConv"};
  static const std::unordered_set<std::string> activation = {
      "Relu", "Gelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Erf", "LeakyRelu", "Elu", "Selu",
      "Softplus", "HardSigmoid", "HardSwish", "Mish", "PRelu"};
  // Routing ops are what makes a mixture of experts; worth seeing at a glance.
  static const std::unordered_set<std::string> routing = {
      "TopK", "ArgMax", "ArgMin", "Gather", "GatherElements", "GatherND", "ScatterElements", "ScatterND",
      "Where", "OneHot", "NonZero", "Compress"};
  if (linear.count(op)) return "#d6eaf8";
  if (activation.count(op)) return "#fdebd0";
  if (routing.count(op)) return "#e8daef";
  return "#f2f3f4";
}

std::string truncated(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n) + "..."; }

// --- model -----------------------------------------------------------------------------------------

onnx::ModelProto load_model(const std::string& path) {
  const std::string prefix = path + ": not a valid ONNX model (";
  const std::string bytes = read_file(path, kMaxOnnxBytes, "ONNX model");
  if (bytes.empty()) throw InputError(prefix + "empty file)");
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) throw InputError(prefix + "protobuf parse failed)");
  // Arbitrary bytes sometimes parse as *some* protobuf message; a real model has both of these.
  if (model.ir_version() <= 0 || !model.has_graph())
    throw InputError(prefix + "parsed, but has no " + (model.has_graph() ? "ir_version" : "graph") + ")");
  return model;
}

std::vector<std::string> caption(const onnx::ModelProto& model) {
  std::vector<std::string> lines;
  const auto& g = model.graph();
  lines.push_back(g.name().empty() ? "ONNX model" : g.name());
  if (!model.producer_name().empty())
    lines.push_back("producer: " + model.producer_name() +
                    (model.producer_version().empty() ? "" : " " + model.producer_version()));
  std::string opsets;
  for (const auto& op : model.opset_import())
    opsets += (opsets.empty() ? "" : ", ") + (op.domain().empty() ? std::string("ai.onnx") : op.domain()) + " " +
              std::to_string(op.version());
  lines.push_back("ir " + std::to_string(model.ir_version()) + (opsets.empty() ? "" : ", opset " + opsets));
  for (const auto& p : model.metadata_props())
    lines.push_back(p.key() + ": " + truncated(p.value(), kMaxCaptionValue));
  return lines;
}

}  // namespace

std::string onnx_to_dot(const std::string& onnx_path) {
  const onnx::ModelProto model = load_model(onnx_path);
  const onnx::GraphProto& g = model.graph();

  // Shapes of intermediate tensors exist only after inference. It runs on a copy because it may leave a model
  // half-annotated when it throws, and an exotic op or a broken model must not stop us drawing the rest.
  onnx::ModelProto inferred = model;
  try {
    onnx::shape_inference::InferShapes(inferred);
  } catch (const std::exception&) {
    inferred = model;
  }
  std::unordered_map<std::string, const onnx::TypeProto*> types;
  auto note_types = [&](const google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>& infos) {
    for (const auto& vi : infos) {
      if (!vi.has_type()) continue;
      const onnx::TypeProto*& slot = types[vi.name()];
      if (!slot || type_score(vi.type()) > type_score(*slot)) slot = &vi.type();
    }
  };
  note_types(inferred.graph().input());
  note_types(inferred.graph().output());
  note_types(inferred.graph().value_info());
  auto tensor_type = [&](const std::string& name) {
    const auto it = types.find(name);
    return it == types.end() ? std::string() : type_text(*it->second);
  };

  std::unordered_map<std::string, std::string> initialiser_text;  // name -> "dtype [dims]"
  std::vector<std::string> initialiser_lines;
  int64_t parameters = 0;
  for (const auto& t : g.initializer()) {
    initialiser_text[t.name()] = tensor_text(t.data_type(), t.dims());
    initialiser_lines.push_back(t.name() + ": " + initialiser_text[t.name()]);
    parameters += element_count(t.dims());
  }
  for (const auto& s : g.sparse_initializer()) {
    const std::string& name = s.values().name();
    initialiser_text[name] = "sparse " + tensor_text(s.values().data_type(), s.dims());
    initialiser_lines.push_back(name + ": " + initialiser_text[name]);
    parameters += element_count(s.values().dims());  // the stored non-zeros, not the dense size
  }

  std::ostringstream dot;
  dot << "digraph onnx {\n"
      << "  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=11, labelloc=t, label=" << label(caption(model))
      << "];\n"
      << "  node [fontname=\"Helvetica\", fontsize=10];\n"
      << "  edge [fontname=\"Helvetica\", fontsize=9];\n";

  std::unordered_map<std::string, std::string> producer;  // tensor name -> DOT node id
  auto edge = [&](const std::string& from, const std::string& to, const std::string& tensor) {
    const std::string type = tensor_type(tensor);
    dot << "  " << from << " -> " << to << " [label=" << quoted(type.empty() ? tensor : type)
        << ", tooltip=" << quoted(tensor) << "];\n";
  };

  int input_index = 0;
  for (const auto& in : g.input()) {
    if (initialiser_text.count(in.name())) continue;  // IR < 4 lists initialisers as inputs too
    const std::string id = "i" + std::to_string(input_index++);
    producer[in.name()] = id;
    const std::string type = tensor_type(in.name());
    std::vector<std::string> lines = {in.name()};
    if (!type.empty()) lines.push_back(type);
    dot << "  " << id << " [shape=ellipse, style=filled, fillcolor=\"#d5f5e3\", label=" << label(lines) << "];\n";
  }

  for (int i = 0; i < g.node_size(); ++i)
    for (const auto& out : g.node(i).output())
      if (!out.empty()) producer[out] = "n" + std::to_string(i);

  int undefined_index = 0;
  for (int i = 0; i < g.node_size(); ++i) {
    const onnx::NodeProto& node = g.node(i);
    const std::string id = "n" + std::to_string(i);
    std::vector<std::string> lines;
    lines.push_back(node.op_type() + (is_default_domain(node.domain()) ? "" : " (" + node.domain() + ")"));
    if (!node.name().empty()) lines.push_back(node.name());
    int shown = 0, hidden = 0;
    for (const auto& in : node.input()) {
      const auto it = initialiser_text.find(in);
      if (it == initialiser_text.end()) continue;
      if (shown < kMaxInitialiserLinesPerNode) {
        lines.push_back(in + ": " + it->second);
        ++shown;
      } else {
        ++hidden;
      }
    }
    if (hidden > 0) lines.push_back("... and " + plural(hidden, "more initialiser"));
    // Constant values and control-flow bodies are otherwise invisible in the picture.
    for (const auto& a : node.attribute()) {
      if (a.type() == onnx::AttributeProto::TENSOR)
        lines.push_back(a.name() + ": " + tensor_text(a.t().data_type(), a.t().dims()));
      else if (a.type() == onnx::AttributeProto::GRAPH)
        lines.push_back(a.name() + ": subgraph, " + plural(a.g().node_size(), "node"));
    }
    dot << "  " << id << " [shape=box, style=\"rounded,filled\", fillcolor=\"" << op_colour(node.op_type())
        << "\", label=" << label(lines) << "];\n";

    for (const auto& in : node.input()) {
      if (in.empty() || initialiser_text.count(in)) continue;  // "" marks an omitted optional input
      auto it = producer.find(in);
      if (it == producer.end()) {
        // A tensor nobody produces: the model is broken (or it is an outer-scope name); show it, dashed.
        const std::string uid = "u" + std::to_string(undefined_index++);
        dot << "  " << uid << " [shape=ellipse, style=dashed, label=" << label({in, "(no producer)"}) << "];\n";
        it = producer.emplace(in, uid).first;
      }
      edge(it->second, id, in);
    }
  }

  int output_index = 0;
  for (const auto& out : g.output()) {
    const std::string id = "o" + std::to_string(output_index++);
    const std::string type = tensor_type(out.name());
    std::vector<std::string> lines = {out.name()};
    if (!type.empty()) lines.push_back(type);
    dot << "  " << id << " [shape=ellipse, style=filled, fillcolor=\"#fadbd8\", label=" << label(lines) << "];\n";
    const auto it = producer.find(out.name());
    if (it != producer.end()) edge(it->second, id, out.name());
  }

  std::vector<std::string> summary = {"initialisers: " + plural(static_cast<int64_t>(initialiser_lines.size()), "tensor") +
                                      ", " + plural(parameters, "parameter")};
  for (size_t i = 0; i < initialiser_lines.size() && i < static_cast<size_t>(kMaxSummaryLines); ++i)
    summary.push_back(initialiser_lines[i]);
  if (initialiser_lines.size() > static_cast<size_t>(kMaxSummaryLines))
    summary.push_back("... and " + std::to_string(initialiser_lines.size() - kMaxSummaryLines) + " more");
  dot << "  initialisers [shape=note, style=filled, fillcolor=\"#fef9e7\", label=" << label(summary, true) << "];\n";
  dot << "}\n";
  return dot.str();
}

// --- rendering ---------------------------------------------------------------------------------------

namespace {

// A temporary file holding `text`, removed when this goes out of scope.
class TempInput {
 public:
  explicit TempInput(const std::string& text) {
    std::error_code ec;
    std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
    if (ec) dir = "/tmp";
    std::string tmpl = (dir / "moe-mnist-graph-XXXXXX").string();
    const int fd = ::mkstemp(tmpl.data());
    if (fd < 0) throw std::runtime_error(dir.string() + ": cannot create a temporary file (" + std::strerror(errno) + ")");
    path_ = tmpl;
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const std::string why = std::strerror(errno);
        ::close(fd);
        ::unlink(path_.c_str());
        throw std::runtime_error(path_ + ": cannot write temporary file (" + why + ")");
      }
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  }
  ~TempInput() { ::unlink(path_.c_str()); }
  TempInput(const TempInput&) = delete;
  TempInput& operator=(const TempInput&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

void render_dot(const std::string& dot_text, const std::string& format, const std::string& out_path) {
  if (format == "dot") {
    write_file_atomically(out_path, dot_text);
    return;
  }
  if (format != "svg" && format != "png")
    throw InputError(out_path + ": unknown graph format '" + format + "' (expected svg, png or dot)");
  const TempInput input(dot_text);
  write_atomically(out_path, [&](const std::string& tmp) {
    run_tool({"dot", "-T" + format, "-o", tmp, input.path()}, "graphviz 'dot' not found: apt install graphviz (or use --format dot)",
             out_path + ": graphviz");
    std::error_code ec;
    if (std::filesystem::file_size(tmp, ec) == 0 || ec) throw ToolError(out_path + ": graphviz 'dot -T" + format + "' wrote nothing");
  });
}

}  // namespace moe
