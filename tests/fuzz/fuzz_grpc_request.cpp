// libFuzzer target: the gRPC side of the KServe v2 protocol without a network. Each input is a
// serialized inference.ModelInferRequest (what ModelInfer receives, and what each ModelStreamInfer
// message is), put through the server's own conversion for an FP32 model and a UINT8 one: model
// lookup, parse_grpc_infer, then grpc_infer_response on a batch result of the right shape, and the
// response serialized. Any input must end in a response or an HttpError (404 for another model, 400
// otherwise): no crash, no sanitizer report, no unbounded allocation.
#include <cstdint>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "grpc_service.pb.h"
#include "serve/grpc_convert.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // protobuf logs every string field with invalid UTF-8 (refused as gRPC would)
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inference::ModelInferRequest q;
  if (!q.ParseFromArray(data, int(size))) return 0;  // not a message: the gRPC layer refuses it before us
  for (const char* datatype : {"FP32", "UINT8"}) {  // a model of each input datatype
    moe::serve::ModelInfo m;
    m.max_batch_request = 16;
    m.input_datatype = datatype;
    m.labels = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    try {
      const moe::serve::InferRequest r = moe::serve::parse_grpc_infer(q, m);
      const size_t count = size_t(r.n * moe::serve::kPixels);
      if (r.n < 1 || r.n > m.max_batch_request) __builtin_trap();
      if (moe::serve::takes_uint8(m) ? r.bytes.size() != count || !r.images.empty() : r.images.size() != count || !r.bytes.empty())
        __builtin_trap();
      moe::serve::BatchResult b;
      for (int64_t i = 0; i < r.n * m.n_classes; ++i) b.logits.push_back(float(i % 7) - 3.0f);
      b.gate_probs.assign(size_t(r.n * m.n_experts), 0.125f);
      inference::ModelInferResponse out;
      moe::serve::grpc_infer_response(r, m, b, &out);
      if (out.outputs_size() != out.raw_output_contents_size() || out.outputs_size() < 1) __builtin_trap();
      std::string wire;
      if (!out.SerializeToString(&wire)) __builtin_trap();
    } catch (const moe::serve::HttpError& e) {
      if (e.status != 400) __builtin_trap();
    }
  }
  return 0;
}
