#include "ort_op/moe_mnist_op.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "native/native_kernel.h"

namespace moe {

namespace {

constexpr int64_t kRowsPerTask = 32;  // rows per ParallelFor task: small enough to split batch 64

OrtStatusPtr error(OrtErrorCode code, const std::string& what) {
  return Ort::GetApi().CreateStatus(code, ("ai.moe_mnist.MoeMnist: " + what).c_str());
}

std::string shape_string(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// The seven weight tensors -> FoldedModel, checking every shape against the one from the first.
template <typename GetInput>
FoldedModel folded_from_inputs(GetInput get, int64_t top_k) {
  auto tensor = [&](size_t i, std::vector<int64_t>& shape) {
    Ort::ConstValue v = get(i);
    auto info = v.GetTensorTypeAndShapeInfo();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
      throw std::invalid_argument("input " + std::to_string(i) + " is not float32");
    shape = info.GetShape();
    const float* p = v.GetTensorData<float>();
    return std::vector<float>(p, p + info.GetElementCount());
  };
  FoldedModel f;
  std::vector<int64_t> s;
  f.embed_gate_w = tensor(1, s);
  if (s.size() != 2) throw std::invalid_argument("embed_gate.weight must be [I, D+E], got " + shape_string(s));
  f.I = s[0];
  const int64_t G = s[1];
  f.fc1_w = tensor(3, s);
  if (s.size() != 3) throw std::invalid_argument("experts.fc1.weight must be [E, D, D], got " + shape_string(s));
  f.E = s[0], f.D = s[1];
  f.out_w = tensor(5, s);
  if (s.size() != 3) throw std::invalid_argument("experts.fc2+classifier.weight must be [E, D, C], got " + shape_string(s));
  f.C = s[2];
  f.K = top_k;
  if (G != f.D + f.E) throw std::invalid_argument("embed_gate.weight has " + std::to_string(G) + " columns, expected D+E = " + std::to_string(f.D + f.E));
  f.embed_gate_b = tensor(2, s);
  f.fc1_b = tensor(4, s);
  f.out_b_expert = tensor(6, s);
  f.out_b = tensor(7, s);
  f.check("ai.moe_mnist.MoeMnist weights");  // sizes, limits and every tensor's length
  return f;
}

struct MoeMnistKernel {
  int64_t top_k = 0;
  Isa isa = Isa::scalar;
  Embed embed = Embed::auto_;
  bool packed = false;  // the weights were constant and are packed in `model`
  PackedModel model;

  MoeMnistKernel(const OrtKernelInfo* info) {
    Ort::ConstKernelInfo ki(info);
    top_k = ki.GetAttribute<int64_t>("top_k");
    isa = isa_from_env();
    embed = embed_from_env();
    bool all_constant = true;
    std::vector<Ort::ConstValue> consts(8, Ort::ConstValue{nullptr});
    for (size_t i = 1; i < 8; ++i) {
      int is_constant = 0;
      consts[i] = ki.GetTensorConstantInput(i, &is_constant);
      all_constant = all_constant && is_constant;
    }
    if (all_constant) {
      model = pack_model(folded_from_inputs([&](size_t i) { return consts[i]; }, top_k), isa, embed);
      packed = true;
    }
  }

  template <class X>
  struct Job {
    const PackedModel* m;
    const X* x;
    int64_t n;
    float *logits, *probs;
    Embed embed;  // chosen for the whole batch, as `native` does
    std::atomic<bool> failed{false};  // a task threw (on an ORT pool thread, where it must not escape)
  };

  template <class X>
  OrtStatusPtr compute(OrtKernelContext* context) {
    Ort::KernelContext ctx(context);
    PackedModel fresh;
    if (!packed) fresh = pack_model(folded_from_inputs([&](size_t i) { return ctx.GetInput(i); }, top_k), isa, embed);
    const PackedModel& m = packed ? model : fresh;
    Ort::ConstValue input = ctx.GetInput(0);
    const std::vector<int64_t> shape = input.GetTensorTypeAndShapeInfo().GetShape();
    int64_t per_row = 1;
    for (size_t i = 1; i < shape.size(); ++i) per_row *= shape[i];
    if (shape.empty() || per_row != m.I)
      return error(ORT_INVALID_ARGUMENT, "input must be [N, 1, 28, 28] or [N, " + std::to_string(m.I) + "], got " + shape_string(shape));
    const int64_t n = shape[0];
    Job<X> job{&m, input.GetTensorData<X>(), n, ctx.GetOutput(0, {n, m.C}).GetTensorMutableData<float>(),
            ctx.GetOutput(1, {n, m.E}).GetTensorMutableData<float>(), choose_embed(m, n, sizeof(X) == 1)};
    const int64_t n_tasks = (n + kRowsPerTask - 1) / kRowsPerTask;
    if (n_tasks <= 1) {
      native_forward(m, job.x, n, job.logits, job.probs, job.embed);
      return nullptr;
    }
    ctx.ParallelFor(
        [](void* p, size_t task) {
          Job<X>& j = *static_cast<Job<X>*>(p);
          const int64_t begin = int64_t(task) * kRowsPerTask, end = std::min(j.n, begin + kRowsPerTask);
          try {
            native_forward(*j.m, j.x + begin * j.m->I, end - begin, j.logits + begin * j.m->C, j.probs + begin * j.m->E, j.embed);
          } catch (...) {
            j.failed = true;
          }
        },
        size_t(n_tasks), 0, &job);
    if (job.failed) return error(ORT_RUNTIME_EXCEPTION, "moe_mnist op: a parallel task failed (out of memory?)");
    return nullptr;
  }

  bool uint8_input = false;  // op MoeMnistU8

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    try {  // ONNX Runtime calls this through C: nothing may be thrown across it
      return uint8_input ? compute<uint8_t>(context) : compute<float>(context);
    } catch (const std::exception& e) {
      return error(ORT_RUNTIME_EXCEPTION, e.what());
    } catch (...) {
      return error(ORT_RUNTIME_EXCEPTION, "moe_mnist op: an exception that is not a std::exception");
    }
  }
};

struct MoeMnistOp : Ort::CustomOpBase<MoeMnistOp, MoeMnistKernel, /*WithStatus=*/true> {
  explicit MoeMnistOp(bool uint8_input) : uint8_input_(uint8_input) {}
  bool uint8_input_;

  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
    try {
      auto* k = new MoeMnistKernel(info);
      k->uint8_input = uint8_input_;
      *kernel = k;
      return nullptr;
    } catch (const std::exception& e) {
      return error(ORT_INVALID_ARGUMENT, e.what());
    } catch (...) {
      return error(ORT_INVALID_ARGUMENT, "moe_mnist op: an exception that is not a std::exception");
    }
  }
  const char* GetName() const { return uint8_input_ ? kFusedOpNameU8 : kFusedOpName; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 8; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 0 && uint8_input_ ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

void add_moe_mnist_ops(OrtSessionOptions* options) {
  static MoeMnistOp op(false), op_u8(true);
  static Ort::CustomOpDomain* domain = [] {
    auto* d = new Ort::CustomOpDomain(kFusedOpDomain);  // lives as long as the process: sessions keep a pointer
    d->Add(&op);
    d->Add(&op_u8);
    return d;
  }();
  Ort::UnownedSessionOptions(options).Add(*domain);
}

}  // namespace moe
