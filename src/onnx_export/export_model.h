// The ModelProto construction behind export_onnx(), exposed for tests that inspect the graph.
#pragma once
#include <onnx/onnx_pb.h>

#include "onnx_export/export.h"

namespace moe {

// Node names and initialisers follow the checkpoint's parameter names where a tensor is one of
// them; folded tensors say what they fold, e.g. "embedding+moe.gate.weight".
onnx::ModelProto build_onnx_model(const Checkpoint& checkpoint, const ExportOptions& options);

// Runs the ONNX checker and strict shape inference (on a copy); throws InputError with the reason.
void check_onnx_model(const onnx::ModelProto& model);

}  // namespace moe
