// Response compression as Triton's HTTP server offers it: when the client's Accept-Encoding picks
// gzip or deflate (q-values honoured; deflate is a zlib stream), the body is compressed and sent with
// Content-Encoding. Only bodies of at least kMinCompressBytes are compressed: below that the zlib
// header and the CPU time cost more than the bytes saved. Inference-Header-Content-Length keeps
// describing the uncompressed body, as on Triton.
#pragma once
#include <string>

namespace moe::serve {

constexpr size_t kMinCompressBytes = 1024;

// "gzip", "deflate" or "" (send as is) for an Accept-Encoding value (null: header absent).
std::string pick_encoding(const std::string* accept_encoding);

// `body` compressed as `encoding` ("gzip" or "deflate").
std::string compress(const std::string& body, const std::string& encoding);

}  // namespace moe::serve
