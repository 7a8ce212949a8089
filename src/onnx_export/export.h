// `moe-mnist export`: a trained checkpoint -> a static ONNX graph (opset 17, symbolic batch N),
// checked by the ONNX checker and shape inference, written atomically. No LibTorch involved.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "model/checkpoint.h"
#include "base/choices.h"

namespace moe {

struct ExportOptions {
  Precision precision = Precision::fp32;  // fp16: fp16 inside, fp32 at the edges; int8: quantised weights
  // dense: TopK + combine matrix (ScatterElements), every expert in one MatMul (static, runs anywhere)
  // gather: TopK indices gather each row's k experts' weights ([N,k,emb,emb]); batched MatMuls
  // moe:   ONNX Runtime's com.microsoft.MoE contrib operator (ORT CPU/CUDA only)
  // fused: one ai.moe_mnist.MoeMnist node, the native kernel as a custom op (src/ort_op; fp32)
  Routing routing = Routing::dense;
  bool per_channel = true;  // int8: one weight scale per output column (else one per tensor)
  // int8 activations: dynamic (DynamicQuantizeLinear: scale from each batch's min/max) or static
  // (QuantizeLinear with scale 1/255, exact for inputs in [0, 1], the model's input contract)
  Int8Input int8_input = Int8Input::dynamic;
  // The graph's input as the image bytes, UINT8 [N,1,28,28] 0..255 (fp32 dense and fused only): the
  // dense graph casts them to float and has 1/255 folded into its embedding weights; the fused
  // node is ai.moe_mnist.MoeMnistU8, the native kernel reading bytes. Else float [N,1,28,28] in [0, 1].
  bool uint8_input = false;
};

struct ExportSummary {
  int64_t n_nodes = 0;
  int64_t n_initializers = 0;
  int64_t n_parameters = 0;
  int64_t bytes = 0;
  std::map<std::string, int> op_counts;  // op type -> count
};

// Builds, checks and writes the model. Throws InputError on a bad option or a checker failure.
ExportSummary export_onnx(const Checkpoint& checkpoint, const ExportOptions& options, const std::string& out_path);

// The version of the ONNX library the exporter and checker come from, e.g. "1.12.0".
std::string onnx_version();

}  // namespace moe
