// Builds the static ONNX graph from the checkpoint's weights.
//
// Linear layers that meet without a nonlinearity are folded, computed here in double precision:
//   - the gate reads the embedding, so one [784, emb+E] Gemm yields both (then Split);
//   - each expert's fc2 and the classifier meet (the top-k weights are scalars per row), so the
//     classifier is folded into the stacked fc2 weights: logits = [c_e * relu_e, c] @ C + b.
// Gather routing: each row gathers its k experts' stacked weights and runs only those.
// Dense routing (default): combine = ScatterElements(zeros, TopK indices, softmax(TopK values));
// all experts' fc1 run as one Gemm over stacked weights [emb, E*emb]; each expert's hidden units
// are scaled by its combine weight (expanded by a constant 0/1 MatMul); one Gemm does fc2 +
// classifier for all experts. Unselected experts get weight 0, so this equals the sparse model.
#include <onnx/checker.h>
#include <onnx/common/version.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "native/folded_model.h"
#include "onnx_export/export_model.h"
#include "onnx_export/onnx_builder.h"

namespace moe {

namespace {

constexpr int kOpset = 17;
constexpr const char* kFusedDomain = "ai.moe_mnist";  // src/ort_op/moe_mnist_op.h (not included: no ONNX Runtime here)
constexpr const char* kFusedOpNameU8 = "MoeMnistU8";  // the same op reading UINT8 images
using Matrix = std::vector<double>;  // row-major

struct Folded {
  int64_t I, D, E, C;
  std::vector<float> embed_gate_w, embed_gate_b;  // [I, D+E], [D+E]
  std::vector<float> fc1_w, fc1_b;                // [D, E*D], [E*D]  (dense)
  std::vector<float> expand;                      // [E, E*D] 0/1     (dense)
  std::vector<float> out_w, out_b;                // [E*D+E, C], [C]  (dense)
};

// The dense graph's tensors are the native kernel's folded model (fold_model: one folding, in double
// precision, for every engine) laid out for Gemms over all experts at once.
Folded fold(const Checkpoint& ck) {
  FoldedModel n = fold_model(ck);
  const int64_t D = n.D, E = n.E, C = n.C;
  Folded f{n.I, D, E, C, std::move(n.embed_gate_w), std::move(n.embed_gate_b), {}, n.fc1_b, {}, {}, n.out_b};
  f.fc1_w.assign(size_t(D * E * D), 0.f);
  f.expand.assign(size_t(E * E * D), 0.f);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t i = 0; i < D; ++i)
      for (int64_t j = 0; j < D; ++j) f.fc1_w[i * E * D + e * D + j] = n.fc1_w[(e * D + i) * D + j];  // [E, in, out] -> [in, E*out]
  for (int64_t e = 0; e < E; ++e)
    for (int64_t j = 0; j < D; ++j) f.expand[e * E * D + e * D + j] = 1.f;
  // Rows e*D+j: the classifier folded into expert e's fc2; rows E*D+e: its folded fc2 bias, which the
  // expert's constant-1 hidden unit picks up (scaled by the combine weight c_e).
  f.out_w = n.out_w;  // [E*D, C]
  f.out_w.insert(f.out_w.end(), n.out_b_expert.begin(), n.out_b_expert.end());  // + [E, C]
  return f;
}

// x [N, I] -> [N, D+E] in the graph's float type; int8 quantises the weights here and the
// activations at run time (DynamicQuantizeLinear + MatMulInteger, which ORT fuses on the CPU).
void embed_and_gate(GraphBuilder& b, const Folded& f, const ExportOptions& o, int ftype, const std::string& x,
                    const std::string& y) {
  const int64_t cols = f.D + f.E;
  if (o.precision != Precision::int8) {
    b.floats("embedding+moe.gate.weight", {f.I, cols}, f.embed_gate_w, ftype);
    b.floats("embedding+moe.gate.bias", {cols}, f.embed_gate_b, ftype);
    b.node("Gemm", {x, "embedding+moe.gate.weight", "embedding+moe.gate.bias"}, {y}, "embedding+moe.gate");
    return;
  }
  // Symmetric weights q = round(w / s) with s = max|w| / 63 per column (or per tensor): 7 bits, not 8.
  // On x86 without VNNI, ORT's u8 x s8 kernel sums pairs of products in int16 (vpmaddubsw), which
  // saturates with full-range weights: measured here, 8-bit weights cost 0.35 accuracy points on
  // MNIST test, 7-bit ones 0.02. The inputs are exact either way: pixels are k/255.
  constexpr float kQmax = 63.f;
  std::vector<float> scale(size_t(cols), 0.f);
  float all = 0.f;
  for (int64_t i = 0; i < f.I; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const float a = std::fabs(f.embed_gate_w[i * cols + j]);
      scale[j] = std::max(scale[j], a);
      all = std::max(all, a);
    }
  for (auto& s : scale) s = (o.per_channel ? s : all) / kQmax;
  for (auto& s : scale) if (s == 0.f) s = 1.f;
  std::vector<int8_t> q(f.embed_gate_w.size());
  for (int64_t i = 0; i < f.I; ++i)
    for (int64_t j = 0; j < cols; ++j)
      q[i * cols + j] = int8_t(std::lround(std::clamp(f.embed_gate_w[i * cols + j] / scale[j], -kQmax, kQmax)));
  b.int8s("embedding+moe.gate.weight_quantized", {f.I, cols}, q);
  b.int8s("embedding+moe.gate.weight_zero_point", {}, {0});
  b.floats("embedding+moe.gate.weight_scale", {cols}, scale);
  b.floats("embedding+moe.gate.bias", {cols}, f.embed_gate_b);
  if (o.int8_input == Int8Input::static_scale) {
    // The input contract is [0, 1], so scale 1/255 and zero point 0 are known at export: exact for
    // 8-bit images, and no per-batch min/max pass. Values outside [0, 1] saturate. ORT does not fuse
    // this form itself, so the fused contrib op is written directly (an ORT-only graph, like the
    // int8 model is a CPU variant anyway).
    b.floats("input_scale", {}, {1.0f / 255.0f});
    b.uint8s("input_zero_point", {}, {0});
    b.node("QuantizeLinear", {x, "input_scale", "input_zero_point"}, {"input_quantized"});
    b.node("MatMulIntegerToFloat",
           {"input_quantized", "embedding+moe.gate.weight_quantized", "input_scale", "embedding+moe.gate.weight_scale",
            "input_zero_point", "embedding+moe.gate.weight_zero_point", "embedding+moe.gate.bias"},
           {y}, "embedding+moe.gate", "com.microsoft");
    return;
  }
  b.node("DynamicQuantizeLinear", {x}, {"input_quantized", "input_scale", "input_zero_point"});
  b.node("MatMulInteger", {"input_quantized", "embedding+moe.gate.weight_quantized", "input_zero_point",
                           "embedding+moe.gate.weight_zero_point"},
         {"embedding+moe.gate.int32"});
  set_attr(b.node("Cast", {"embedding+moe.gate.int32"}, {"embedding+moe.gate.int32_as_float"}), "to",
           int64_t(onnx::TensorProto::FLOAT));
  b.node("Mul", {"input_scale", "embedding+moe.gate.weight_scale"}, {"embedding+moe.gate.scale"});
  b.node("Mul", {"embedding+moe.gate.int32_as_float", "embedding+moe.gate.scale"}, {"embedding+moe.gate.matmul"});
  b.node("Add", {"embedding+moe.gate.matmul", "embedding+moe.gate.bias"}, {y});
}

// probs [N, E] -> "moe.topk.indices" [N, k] and "moe.topk.weights" [N, k], the softmax over the k
// selected probabilities: the routing rule every non-contrib graph shares.
void add_topk(GraphBuilder& b, const std::string& probs, int64_t k) {
  b.int64s("moe.top_k", {1}, {k});
  b.node("TopK", {probs, "moe.top_k"}, {"moe.topk.values", "moe.topk.indices"}, "moe.topk");
  set_attr(b.node("Softmax", {"moe.topk.values"}, {"moe.topk.weights"}, "moe.topk.softmax"), "axis", int64_t(1));
}

void add_metadata(onnx::ModelProto& m, const Checkpoint& ck, const ExportOptions& o) {
  auto put = [&](const std::string& k, const std::string& v) {
    auto* p = m.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  };
  put("model_config", to_json(ck.meta.model).dump());
  put("dataset", ck.meta.dataset);
  put("weights_hash", weights_hash(ck.weights));
  if (ck.meta.training.contains("test_accuracy")) put("test_accuracy", ck.meta.training["test_accuracy"].dump());
  put("precision", to_string(o.precision));
  put("routing", to_string(o.routing));
  put("input", o.uint8_input ? "uint8" : "float");
  put("producer", std::string("moe-mnist ") + MOE_MNIST_VERSION);
}

// What every routing shares: the builder, the folded weights, the graph's float type, and the
// tensors a routing starts from ("embedding.out" [N, D], the gate probabilities [N, E]) and the
// logits [N, C] it must write (in the graph's float type).
struct Frame {
  GraphBuilder& b;
  const Checkpoint& ck;
  const Folded& f;
  int64_t top_k;
  int ftype;
  std::string probs, logits;
};

// ONNX Runtime's com.microsoft.MoE kernel applies its own softmax to the router input, takes the
// top-k and (normalize_routing_weights=1) divides by their sum. Fed the gate *probabilities* p, that
// equals our softmax over the selected p; fed logits it would not. Expert weights are [E, out, in].
void build_moe_routing(Frame& fr) {
  GraphBuilder& b = fr.b;
  const int64_t D = fr.f.D, E = fr.f.E, C = fr.f.C;
  std::vector<float> w1, b1, w2, b2;
  for (int64_t e = 0; e < E; ++e) {
    for (const char* layer : {"fc1", "fc2"}) {
      const auto& W = fr.ck.weights.at(expert_param(e, layer, "weight")).data;  // [out, in]
      const auto& B = fr.ck.weights.at(expert_param(e, layer, "bias")).data;
      auto& dw = layer[2] == '1' ? w1 : w2;
      auto& db = layer[2] == '1' ? b1 : b2;
      dw.insert(dw.end(), W.begin(), W.end());
      db.insert(db.end(), B.begin(), B.end());
    }
  }
  b.floats("moe.experts.fc1.weight", {E, D, D}, w1);
  b.floats("moe.experts.fc1.bias", {E, D}, b1);
  b.floats("moe.experts.fc2.weight", {E, D, D}, w2);
  b.floats("moe.experts.fc2.bias", {E, D}, b2);
  auto* moe = b.node("MoE", {"embedding.out", fr.probs, "moe.experts.fc1.weight", "moe.experts.fc1.bias",
                             "moe.experts.fc2.weight", "moe.experts.fc2.bias"},
                     {"moe.out"}, "moe", "com.microsoft");
  set_attr(moe, "k", fr.top_k);
  set_attr(moe, "activation_type", std::string("relu"));
  set_attr(moe, "normalize_routing_weights", int64_t(1));
  b.floats("classifier.weight", {C, D}, fr.ck.weights.at("classifier.weight").data);
  b.floats("classifier.bias", {C}, fr.ck.weights.at("classifier.bias").data);
  set_attr(b.node("Gemm", {"moe.out", "classifier.weight", "classifier.bias"}, {fr.logits}, "classifier"), "transB",
           int64_t(1));
}

// Each row gathers its k experts' weights and runs only those: [N,k,D,D] and [N,k,D,C] per batch.
void build_gather_routing(Frame& fr) {
  GraphBuilder& b = fr.b;
  const Folded& f = fr.f;
  const int64_t D = f.D, E = f.E, C = f.C;
  add_topk(b, fr.probs, fr.top_k);
  std::vector<float> w1(static_cast<size_t>(E * D * D)), b1(static_cast<size_t>(E * D));
  for (int64_t e = 0; e < E; ++e) {
    const auto& W = fr.ck.weights.at(expert_param(e, "fc1", "weight")).data;  // [out, in]
    const auto& B = fr.ck.weights.at(expert_param(e, "fc1", "bias")).data;
    for (int64_t i = 0; i < D; ++i)
      for (int64_t j = 0; j < D; ++j) w1[size_t(e * D * D + i * D + j)] = W[size_t(j * D + i)];
    std::copy(B.begin(), B.end(), b1.begin() + e * D);
  }
  const std::vector<float> w2(f.out_w.begin(), f.out_w.begin() + E * D * C);  // [E, D, C]: Wc @ fc2_e, as [in, out]
  const std::vector<float> b2(f.out_w.begin() + E * D * C, f.out_w.end());     // [E, C]:    Wc @ fc2_e.bias
  b.floats("moe.experts.fc1.weight", {E, D, D}, w1, fr.ftype);
  b.floats("moe.experts.fc1.bias", {E, 1, D}, b1, fr.ftype);
  b.floats("moe.experts.fc2+classifier.weight", {E, D, C}, w2, fr.ftype);
  b.floats("moe.experts.fc2+classifier.bias", {E, 1, C}, b2, fr.ftype);
  b.floats("classifier.bias", {C}, f.out_b, fr.ftype);
  b.int64s("axes_1_2", {2}, {1, 2});
  b.int64s("axes_2_3", {2}, {2, 3});
  b.node("Unsqueeze", {"embedding.out", "axes_1_2"}, {"embedding.out.4d"});  // [N, 1, 1, D]
  for (const char* t : {"moe.experts.fc1.weight", "moe.experts.fc1.bias", "moe.experts.fc2+classifier.weight",
                        "moe.experts.fc2+classifier.bias"})
    set_attr(b.node("Gather", {t, "moe.topk.indices"}, {std::string(t) + ".chosen"}), "axis", int64_t(0));
  b.node("MatMul", {"embedding.out.4d", "moe.experts.fc1.weight.chosen"}, {"moe.experts.fc1.matmul"});  // [N,k,1,D]
  b.node("Add", {"moe.experts.fc1.matmul", "moe.experts.fc1.bias.chosen"}, {"moe.experts.fc1.out"});
  b.node("Relu", {"moe.experts.fc1.out"}, {"moe.experts.relu"});
  b.node("MatMul", {"moe.experts.relu", "moe.experts.fc2+classifier.weight.chosen"}, {"moe.experts.out.matmul"});
  b.node("Add", {"moe.experts.out.matmul", "moe.experts.fc2+classifier.bias.chosen"}, {"moe.experts.out"});  // [N,k,1,C]
  b.node("Unsqueeze", {"moe.topk.weights", "axes_2_3"}, {"moe.topk.weights.4d"});  // [N, k, 1, 1]
  b.node("Mul", {"moe.experts.out", "moe.topk.weights.4d"}, {"moe.experts.weighted"});
  set_attr(b.node("ReduceSum", {"moe.experts.weighted", "axes_1_2"}, {"moe.out"}), "keepdims", int64_t(0));  // [N, C]
  b.node("Add", {"moe.out", "classifier.bias"}, {fr.logits}, "classifier.bias.add");
}

// Every expert runs on every row; unselected experts get combine weight 0 (see the file comment).
void build_dense_routing(Frame& fr) {
  GraphBuilder& b = fr.b;
  const Folded& f = fr.f;
  const int64_t D = f.D, E = f.E, C = f.C;
  add_topk(b, fr.probs, fr.top_k);
  // Exact zeros of shape [N, E]; unlike Shape + ConstantOfShape this keeps every shape inferable.
  b.node("Sub", {fr.probs, fr.probs}, {"moe.zeros"});
  set_attr(b.node("ScatterElements", {"moe.zeros", "moe.topk.indices", "moe.topk.weights"}, {"moe.combine"},
                  "moe.combine"),
           "axis", int64_t(1));  // [N, E]: the renormalised top-k weights, zeros elsewhere

  // Each expert gets one more hidden unit, weight 0 and bias 1, so relu gives 1 and the combine
  // weight scales it: that unit carries the expert's (folded) fc2 bias into the last Gemm, which
  // otherwise needs the combine weights concatenated to the hidden units (one node more, measured
  // ~5% of the graph's kernel time at batch 64). H = D + 1 units per expert.
  const int64_t H = D + 1;
  std::vector<float> fc1_w(size_t(D * E * H), 0.f), fc1_b(size_t(E * H), 0.f), expand(size_t(E * E * H), 0.f),
      out_w(size_t(E * H * C), 0.f);
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t j = 0; j < D; ++j) {
      for (int64_t i = 0; i < D; ++i) fc1_w[size_t(i * E * H + e * H + j)] = f.fc1_w[size_t(i * E * D + e * D + j)];
      fc1_b[size_t(e * H + j)] = f.fc1_b[size_t(e * D + j)];
      for (int64_t k = 0; k < C; ++k) out_w[size_t((e * H + j) * C + k)] = f.out_w[size_t((e * D + j) * C + k)];
    }
    fc1_b[size_t(e * H + D)] = 1.f;
    for (int64_t k = 0; k < C; ++k) out_w[size_t((e * H + D) * C + k)] = f.out_w[size_t((E * D + e) * C + k)];
    for (int64_t j = 0; j < H; ++j) expand[size_t(e * E * H + e * H + j)] = 1.f;
  }
  b.floats("moe.experts.fc1.weight", {D, E * H}, fc1_w, fr.ftype);
  b.floats("moe.experts.fc1.bias", {E * H}, fc1_b, fr.ftype);
  b.node("Gemm", {"embedding.out", "moe.experts.fc1.weight", "moe.experts.fc1.bias"}, {"moe.experts.fc1.out"},
         "moe.experts.fc1");  // [N, E*H]
  b.node("Relu", {"moe.experts.fc1.out"}, {"moe.experts.relu"});
  b.floats("moe.combine.expand", {E, E * H}, expand, fr.ftype);
  b.node("MatMul", {"moe.combine", "moe.combine.expand"}, {"moe.combine.per_unit"});  // [N, E*H]
  b.node("Mul", {"moe.experts.relu", "moe.combine.per_unit"}, {"moe.experts.weighted"});
  b.floats("moe.experts.fc2+classifier.weight", {E * H, C}, out_w, fr.ftype);
  b.floats("moe.experts.fc2+classifier.bias", {C}, f.out_b, fr.ftype);
  b.node("Gemm", {"moe.experts.weighted", "moe.experts.fc2+classifier.weight", "moe.experts.fc2+classifier.bias"},
         {fr.logits}, "moe.experts.fc2+classifier");
}

// One ai.moe_mnist.MoeMnist node (src/ort_op/moe_mnist_op.h) from the pixels to both outputs, with
// the folded weights (src/native/folded_model.h) as its initialisers. ONNX Runtime runs it with
// libmoe_mnist_ops.so registered (moe-mnist registers it itself); the other routings are portable.
void build_fused_model(onnx::ModelProto& m, const Checkpoint& ck, const ExportOptions& o) {
  if (o.precision != Precision::fp32)
    throw InputError("--routing fused is fp32 only (the native kernel), got --precision " + to_string(o.precision));
  const FoldedModel f = fold_model(ck);
  const int F32 = onnx::TensorProto::FLOAT;
  GraphBuilder b(m.mutable_graph());
  b.input("input", o.uint8_input ? int(onnx::TensorProto::UINT8) : F32, {-1, 1, 28, 28});
  b.output("logits", F32, {-1, f.C});
  b.output("gate_probs", F32, {-1, f.E});
  b.floats("embedding+moe.gate.weight", {f.I, f.D + f.E}, f.embed_gate_w);
  b.floats("embedding+moe.gate.bias", {f.D + f.E}, f.embed_gate_b);
  b.floats("moe.experts.fc1.weight", {f.E, f.D, f.D}, f.fc1_w);
  b.floats("moe.experts.fc1.bias", {f.E, f.D}, f.fc1_b);
  b.floats("moe.experts.fc2+classifier.weight", {f.E, f.D, f.C}, f.out_w);
  b.floats("moe.experts.fc2+classifier.bias", {f.E, f.C}, f.out_b_expert);
  b.floats("classifier.bias", {f.C}, f.out_b);
  auto* node = b.node("MoeMnist",
                      {"input", "embedding+moe.gate.weight", "embedding+moe.gate.bias", "moe.experts.fc1.weight",
                       "moe.experts.fc1.bias", "moe.experts.fc2+classifier.weight", "moe.experts.fc2+classifier.bias",
                       "classifier.bias"},
                      {"logits", "gate_probs"}, "moe_mnist", kFusedDomain);
  if (o.uint8_input) node->set_op_type(kFusedOpNameU8);  // the same weights; the kernel folds in 1/255
  set_attr(node, "top_k", f.K);
  auto* opset = m.add_opset_import();
  opset->set_domain(kFusedDomain);
  opset->set_version(1);
}

}  // namespace

onnx::ModelProto build_onnx_model(const Checkpoint& ck, const ExportOptions& o) {
  if (o.routing == Routing::moe && o.precision == Precision::fp16)
    throw InputError("--routing moe supports fp32 and int8 (the contrib MoE kernel's fp16 path is CUDA-only); use --routing dense for fp16");
  const ModelConfig& c = ck.meta.model;
  c.validate();
  if (c.input_size != 784) throw InputError("export: input_size must be 784 (28x28 images), got " + std::to_string(c.input_size));
  if (o.uint8_input && (o.precision != Precision::fp32 || (o.routing != Routing::dense && o.routing != Routing::fused)))
    throw InputError("--input uint8 is for --precision fp32 with --routing dense or fused, got --precision " +
                     to_string(o.precision) + " --routing " + to_string(o.routing));
  Folded f = fold(ck);
  const int F32 = onnx::TensorProto::FLOAT;
  const int ftype = o.precision == Precision::fp16 ? int(onnx::TensorProto::FLOAT16) : F32;

  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("moe-mnist");
  m.set_producer_version(MOE_MNIST_VERSION);
  m.set_doc_string("Mixture-of-Experts MNIST classifier: embedding -> top-" + std::to_string(c.top_k) + " of " +
                   std::to_string(f.E) + " experts -> classifier");
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name("moe_mnist");
  if (o.routing == Routing::fused) {
    build_fused_model(m, ck, o);
    add_metadata(m, ck, o);
    return m;
  }
  GraphBuilder b(g);
  b.input("input", o.uint8_input ? int(onnx::TensorProto::UINT8) : F32, {-1, 1, 28, 28});
  b.output("logits", F32, {-1, f.C});
  b.output("gate_probs", F32, {-1, f.E});

  set_attr(b.node("Flatten", {"input"}, {"input.flat"}), "axis", int64_t(1));  // [N, 784]
  std::string x = "input.flat";
  if (o.uint8_input) {  // bytes -> floats 0..255, and the embedding weights take the 1/255
    set_attr(b.node("Cast", {x}, {"input.float"}), "to", int64_t(F32));
    x = "input.float";
    for (float& w : f.embed_gate_w) w /= 255.f;
  }
  if (ftype != F32) {
    set_attr(b.node("Cast", {x}, {"input.fp16"}), "to", int64_t(ftype));
    x = "input.fp16";
  }
  embed_and_gate(b, f, o, ftype, x, "embedding+moe.gate.out");  // [N, D+E]
  b.int64s("split_sizes", {2}, {f.D, f.E});
  set_attr(b.node("Split", {"embedding+moe.gate.out", "split_sizes"}, {"embedding.out", "moe.gate.logits"}, "split"),
           "axis", int64_t(1));
  Frame fr{b, ck, f, c.top_k, ftype, ftype == F32 ? "gate_probs" : "moe.gate.probs", ftype == F32 ? "logits" : "logits.fp16"};
  set_attr(b.node("Softmax", {"moe.gate.logits"}, {fr.probs}, "moe.gate.softmax"), "axis", int64_t(1));  // [N, E]

  switch (o.routing) {
    case Routing::dense: build_dense_routing(fr); break;
    case Routing::gather: build_gather_routing(fr); break;
    case Routing::moe: build_moe_routing(fr); break;
    case Routing::fused: break;  // built above
  }
  if (ftype != F32) {  // keep_io_types: float32 at the edges
    set_attr(b.node("Cast", {fr.logits}, {"logits"}, "logits.cast"), "to", int64_t(F32));
    set_attr(b.node("Cast", {fr.probs}, {"gate_probs"}, "gate_probs.cast"), "to", int64_t(F32));
  }
  const auto& nodes = g->node();
  if (std::any_of(nodes.begin(), nodes.end(), [](const onnx::NodeProto& n) { return n.domain() == "com.microsoft"; })) {
    auto* ms = m.add_opset_import();
    ms->set_domain("com.microsoft");
    ms->set_version(1);
  }
  add_metadata(m, ck, o);
  return m;
}

void check_onnx_model(const onnx::ModelProto& model) {
  // The checker knows no schema for the fused op's domain: it checks the graph's structure, the
  // initialisers and the opset imports; here each of the node's inputs must also exist, and shape
  // inference (then not strict, it cannot infer the custom node) checks the rest.
  const auto& nodes = model.graph().node();
  const bool fused = std::any_of(nodes.begin(), nodes.end(), [](const onnx::NodeProto& n) { return n.domain() == kFusedDomain; });
  if (fused) {
    std::set<std::string> known;
    for (const auto& t : model.graph().initializer()) known.insert(t.name());
    for (const auto& i : model.graph().input()) known.insert(i.name());
    for (const auto& n : nodes)
      for (const auto& in : n.input())
        if (!known.count(in)) throw InputError("exported graph: node " + n.name() + " reads '" + in + "', which nothing defines");
  }
  try {
    onnx::checker::check_model(model);
    onnx::ModelProto copy = model;
    onnx::shape_inference::InferShapes(copy, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict=*/fused ? 0 : 1));
  } catch (const std::exception& e) {
    throw InputError(std::string("exported graph failed the ONNX checker: ") + e.what());
  }
}

ExportSummary export_onnx(const Checkpoint& ck, const ExportOptions& o, const std::string& out_path) {
  const onnx::ModelProto m = build_onnx_model(ck, o);
  check_onnx_model(m);
  std::string bytes;
  if (!m.SerializeToString(&bytes)) throw InputError(out_path + ": could not serialise the model");
  write_file_atomically(out_path, bytes);
  ExportSummary s;
  s.n_nodes = m.graph().node_size();
  s.n_initializers = m.graph().initializer_size();
  for (const auto& t : m.graph().initializer()) {
    int64_t n = 1;
    for (int64_t d : t.dims()) n *= d;
    s.n_parameters += n;
  }
  for (const auto& n : m.graph().node()) ++s.op_counts[n.op_type()];
  s.bytes = int64_t(bytes.size());
  return s;
}

std::string onnx_version() { return onnx::LAST_RELEASE_VERSION; }

}  // namespace moe
