// The entry point ONNX Runtime looks for in a custom-op library: libmoe_mnist_ops.so is built with
// ORT_API_MANUAL_INIT, links no onnxruntime library, and takes the API from the loading runtime.
#include "ort_op/moe_mnist_op.h"

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                                             const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (!api) return nullptr;  // an older runtime: nothing to report through
  Ort::InitApi(api);
  try {
    moe::add_moe_mnist_ops(options);
  } catch (const std::exception& e) {
    return api->CreateStatus(ORT_FAIL, e.what());
  } catch (...) {  // nothing may cross this C entry point
    return api->CreateStatus(ORT_FAIL, "moe_mnist ops: registration failed with a non-standard exception");
  }
  return nullptr;
}
