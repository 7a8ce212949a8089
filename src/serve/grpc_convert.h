// The gRPC messages of the KServe v2 protocol (inference.ModelInferRequest / ModelInferResponse) to
// and from the transport-independent InferRequest and BatchResult: the same checks and messages as
// the HTTP side's parse_infer_request. Pure functions of messages, so they are fuzzed without a socket.
#pragma once
#include <grpcpp/support/status.h>

#include <string>

#include "grpc_service.pb.h"
#include "serve/batcher.h"
#include "serve/kserve.h"

namespace moe::serve {

// The gRPC status of an HttpError's HTTP status (404 NOT_FOUND, 413 RESOURCE_EXHAUSTED, 503
// UNAVAILABLE, 500 INTERNAL, other 4xx INVALID_ARGUMENT), with the same message.
grpc::Status grpc_status(const HttpError& e);

// A ModelInferRequest for model `m` (already looked up by name) as the batcher's input and the
// response's plan. Throws HttpError(400) naming the field.
InferRequest parse_grpc_infer(const inference::ModelInferRequest& q, const ModelInfo& m);

// The batch result of `r` as a ModelInferResponse: every output in raw_output_contents, as Triton
// sends them (FP32 little-endian, or BYTES length-prefixed strings for classification).
void grpc_infer_response(const InferRequest& r, const ModelInfo& m, const BatchResult& b, inference::ModelInferResponse* out);

}  // namespace moe::serve
