#include "onnx_export/graph_dot.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <onnx/onnx_pb.h>

#include "base/errors.h"
#include "base/process.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using moe::test::contains;

// The line of the DOT text that starts (after indentation) with `prefix`, or "" when none does.
std::string line_starting(const std::string& dot, const std::string& prefix) {
  std::istringstream in(dot);
  std::string line;
  while (std::getline(in, line)) {
    const size_t start = line.find_first_not_of(' ');
    if (start != std::string::npos && line.compare(start, prefix.size(), prefix) == 0) return line;
  }
  return "";
}

void add_tensor_value_info(onnx::ValueInfoProto* vi, const std::string& name, bool with_shape,
                           std::initializer_list<const char*> dims) {
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  if (!with_shape) return;
  auto* shape = tt->mutable_shape();
  for (const char* d : dims) {
    auto* dim = shape->add_dim();
    if (std::isdigit(static_cast<unsigned char>(d[0])))
      dim->set_dim_value(std::atoll(d));
    else
      dim->set_dim_param(d);
  }
}

void add_initialiser(onnx::GraphProto* g, const std::string& name, std::initializer_list<int64_t> dims) {
  auto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  int64_t n = 1;
  for (int64_t d : dims) {
    t->add_dims(d);
    n *= d;
  }
  for (int64_t i = 0; i < n; ++i) t->add_float_data(0.1f * static_cast<float>(i));
}

// input float [N,4] -> Gemm(classifier.weight [4,3], classifier.bias [3]) -> hidden -> Relu -> logits.
// "logits" is declared without a shape and "hidden" not at all, so any [N,3] comes from shape inference.
onnx::ModelProto tiny_model() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("test_graph_dot");
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(17);
  auto* meta = m.add_metadata_props();
  meta->set_key("dataset");
  meta->set_value("mnist");
  auto* g = m.mutable_graph();
  g->set_name("tiny");
  add_tensor_value_info(g->add_input(), "input", true, {"N", "4"});
  add_initialiser(g, "classifier.weight", {4, 3});
  add_initialiser(g, "classifier.bias", {3});
  auto* gemm = g->add_node();
  gemm->set_op_type("Gemm");
  gemm->set_name("/classifier/Gemm");
  gemm->add_input("input");
  gemm->add_input("classifier.weight");
  gemm->add_input("classifier.bias");
  gemm->add_output("hidden");
  auto* relu = g->add_node();
  relu->set_op_type("Relu");
  relu->set_name("/relu");
  relu->add_input("hidden");
  relu->add_output("logits");
  add_tensor_value_info(g->add_output(), "logits", false, {});
  return m;
}

class GraphDotTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = moe::test::temp_dir("files"); }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string save(const onnx::ModelProto& m, const std::string& name = "model.onnx") const {
    const std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    EXPECT_TRUE(m.SerializeToOstream(&out));
    return p;
  }

  static bool have_dot() { return !moe::find_program("dot").empty(); }

  fs::path dir_;
};

TEST_F(GraphDotTest, DescribesOpsShapesAndInitialisers) {
  const std::string dot = moe::onnx_to_dot(save(tiny_model()));
  EXPECT_EQ(dot.rfind("digraph onnx {", 0), 0u) << dot;

  // One box per node, op type then node name, then the initialisers it consumes.
  EXPECT_TRUE(contains(line_starting(dot, "n0 ["),
                       "label=\"Gemm\\n/classifier/Gemm\\nclassifier.weight: float [4,3]\\nclassifier.bias: float [3]\""))
      << dot;
  EXPECT_TRUE(contains(line_starting(dot, "n1 ["), "label=\"Relu\\n/relu\"")) << dot;

  // Edges carry dtype and shape; the Gemm -> Relu shape exists only after shape inference.
  EXPECT_TRUE(contains(line_starting(dot, "n0 -> n1 "), "label=\"float [N,3]\", tooltip=\"hidden\"")) << dot;
  EXPECT_TRUE(contains(line_starting(dot, "i0 -> n0 "), "label=\"float [N,4]\"")) << dot;
  EXPECT_TRUE(contains(line_starting(dot, "n1 -> o0 "), "label=\"float [N,3]\"")) << dot;
  EXPECT_TRUE(contains(line_starting(dot, "i0 ["), "label=\"input\\nfloat [N,4]\"")) << dot;
  EXPECT_TRUE(contains(line_starting(dot, "o0 ["), "label=\"logits\\nfloat [N,3]\"")) << dot;

  // Initialisers are listed, never drawn as nodes or edges of their own.
  EXPECT_FALSE(contains(dot, "tooltip=\"classifier.weight\"")) << dot;
  EXPECT_EQ(line_starting(dot, "i1 "), "") << dot;
  EXPECT_TRUE(contains(line_starting(dot, "initialisers ["),
                       "label=\"initialisers: 2 tensors, 15 parameters\\lclassifier.weight: float [4,3]\\l"
                       "classifier.bias: float [3]\\l\""))
      << dot;

  // Caption: graph name, producer, opset, metadata.
  const std::string graph_line = line_starting(dot, "graph [");
  EXPECT_TRUE(contains(graph_line, "tiny\\nproducer: test_graph_dot\\nir 8, opset ai.onnx 17\\ndataset: mnist"))
      << graph_line;
}

TEST_F(GraphDotTest, ShowsNonDefaultDomainAndSurvivesUnknownOps) {
  onnx::ModelProto m = tiny_model();
  auto* opset = m.add_opset_import();
  opset->set_domain("com.microsoft");
  opset->set_version(1);
  m.mutable_graph()->mutable_node(1)->set_op_type("QuickGelu");
  m.mutable_graph()->mutable_node(1)->set_domain("com.microsoft");
  const std::string dot = moe::onnx_to_dot(save(m));
  EXPECT_TRUE(contains(line_starting(dot, "n1 ["), "label=\"QuickGelu (com.microsoft)\\n/relu\"")) << dot;
  EXPECT_TRUE(contains(line_starting(dot, "n0 -> n1 "), "label=\"float [N,3]\"")) << dot;
  // Nothing infers QuickGelu's output, so the output edge falls back to the declared type.
  EXPECT_TRUE(contains(line_starting(dot, "n1 -> o0 "), "label=\"float\"")) << dot;
}

TEST_F(GraphDotTest, KeepsDrawingWhenShapeInferenceThrows) {
  onnx::ModelProto m = tiny_model();
  // Contradicts what inference derives ([N,3]); ONNX throws on the merge, we keep the declared shape.
  add_tensor_value_info(m.mutable_graph()->add_value_info(), "hidden", true, {"N", "5"});
  std::string dot;
  ASSERT_NO_THROW(dot = moe::onnx_to_dot(save(m)));
  EXPECT_TRUE(contains(line_starting(dot, "n0 -> n1 "), "label=\"float [N,5]\"")) << dot;
  EXPECT_TRUE(contains(line_starting(dot, "n1 -> o0 "), "label=\"float\"")) << dot;
}

TEST_F(GraphDotTest, EscapesLabels) {
  onnx::ModelProto m = tiny_model();
  m.mutable_graph()->mutable_node(0)->set_name("we\"ird\\N name\nwith newline");
  const std::string dot = moe::onnx_to_dot(save(m));
  EXPECT_TRUE(contains(line_starting(dot, "n0 ["), "\\nwe\\\"ird\\\\N name with newline\\n")) << dot;
  if (!have_dot()) GTEST_SKIP() << "graphviz 'dot' not installed";
  // Graphviz itself must accept what we wrote.
  ASSERT_NO_THROW(moe::render_dot(dot, "svg", path("weird.svg")));
  EXPECT_TRUE(contains(moe::test::read_bytes(path("weird.svg")), "<svg"));
}

TEST_F(GraphDotTest, RendersSvgPngAndDot) {
  const std::string dot = moe::onnx_to_dot(save(tiny_model()));

  moe::render_dot(dot, "dot", path("g.dot"));
  EXPECT_EQ(moe::test::read_bytes(path("g.dot")), dot);

  if (!have_dot()) GTEST_SKIP() << "graphviz 'dot' not installed";
  moe::render_dot(dot, "svg", path("g.svg"));
  const std::string svg = moe::test::read_bytes(path("g.svg"));
  EXPECT_TRUE(svg.rfind("<?xml", 0) == 0 || contains(svg, "<svg")) << svg.substr(0, 200);
  EXPECT_TRUE(contains(svg, "Gemm"));
  EXPECT_TRUE(contains(svg, "float [N,3]"));

  moe::render_dot(dot, "png", path("g.png"));
  EXPECT_EQ(moe::test::read_bytes(path("g.png")).rfind("\x89PNG", 0), 0u);

  // Atomic writes leave nothing else behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 4);  // model.onnx, g.dot, g.svg, g.png
}

TEST_F(GraphDotTest, GraphvizFailureIsReportedAndLeavesNoFile) {
  if (!have_dot()) GTEST_SKIP() << "graphviz 'dot' not installed";
  try {
    moe::render_dot("digraph { this is not dot ", "svg", path("bad.svg"));
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(contains(e.what(), path("bad.svg"))) << e.what();
    EXPECT_TRUE(contains(e.what(), "graphviz")) << e.what();
  }
  EXPECT_FALSE(fs::exists(path("bad.svg")));
}

TEST_F(GraphDotTest, GarbageIsAnInputErrorNamingThePath) {
  const std::string p = path("garbage.onnx");
  {
    std::ofstream out(p, std::ios::binary);
    out << "this is not an ONNX model \xff\xfe\x01\x02 at all";
  }
  try {
    moe::onnx_to_dot(p);
    FAIL() << "expected InputError";
  } catch (const moe::InputError& e) {
    EXPECT_TRUE(contains(e.what(), p + ": not a valid ONNX model (")) << e.what();
  }
}

TEST_F(GraphDotTest, MissingAndEmptyFilesAreInputErrors) {
  const std::string missing = path("missing.onnx");
  try {
    moe::onnx_to_dot(missing);
    FAIL() << "expected InputError";
  } catch (const moe::InputError& e) {
    EXPECT_TRUE(contains(e.what(), missing + ": cannot open ONNX model")) << e.what();
  }
  const std::string empty = path("empty.onnx");
  std::ofstream(empty).close();
  EXPECT_THROW(moe::onnx_to_dot(empty), moe::InputError);
  // A protobuf that parses but is not a model (no graph) is rejected too.
  onnx::ModelProto no_graph;
  no_graph.set_ir_version(8);
  EXPECT_THROW(moe::onnx_to_dot(save(no_graph, "no_graph.onnx")), moe::InputError);
}

TEST_F(GraphDotTest, UnknownFormatIsAnInputError) {
  EXPECT_THROW(moe::render_dot("digraph {}", "jpg", path("g.jpg")), moe::InputError);
  EXPECT_FALSE(fs::exists(path("g.jpg")));
}

TEST_F(GraphDotTest, MissingGraphvizIsUnavailable) {
  const char* old = std::getenv("PATH");
  const std::string saved = old ? old : "";
  ::setenv("PATH", dir_.c_str(), 1);  // an existing directory with no 'dot' in it
  bool threw_unavailable = false;
  try {
    moe::render_dot("digraph {}", "svg", path("g.svg"));
  } catch (const moe::UnavailableError& e) {
    threw_unavailable = true;
    EXPECT_TRUE(contains(e.what(), "graphviz 'dot' not found")) << e.what();
  } catch (...) {
  }
  if (old)
    ::setenv("PATH", saved.c_str(), 1);
  else
    ::unsetenv("PATH");
  EXPECT_TRUE(threw_unavailable);
  EXPECT_FALSE(fs::exists(path("g.svg")));
  // --format dot needs no graphviz.
  ::setenv("PATH", dir_.c_str(), 1);
  EXPECT_NO_THROW(moe::render_dot("digraph {}", "dot", path("g.dot")));
  if (old)
    ::setenv("PATH", saved.c_str(), 1);
  else
    ::unsetenv("PATH");
}

}  // namespace
