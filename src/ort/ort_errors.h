// ONNX Runtime's exception texts, made fit for users. They carry its source paths, C++ signatures and
// bare errno numbers ("model_load_utils.h:46 void onnxruntime::model_load_utils::ValidateOpsetForDomain(
// const std::unordered_map<...>&, ...) ...", "system error number 13"); where a model file is opened they
// are translated into one line: the file, what was expected, what was found.
#pragma once
#include <string>

namespace moe {

// ONNX Runtime's message without its decoration, on one line: no "[ONNXRuntimeError] : 1 : FAIL :"
// prefix, no "Load model from PATH failed:", no "file.cc:123" source locations nor the C++ signatures
// after them; at most 400 characters.
std::string strip_ort_message(const std::string& what);

// The one-line error for `path` failing to load in ONNX Runtime with message `what`: known causes (an
// opset or IR version newer than this ONNX Runtime, an unreadable file, memory or threads that could
// not be had, bytes that are not an ONNX protobuf) are said in words; anything else is
// "PATH: ONNX Runtime cannot load it (stripped message)".
std::string explain_ort_load_error(const std::string& path, const std::string& what);

}  // namespace moe
