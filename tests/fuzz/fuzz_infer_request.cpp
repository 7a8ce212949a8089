// libFuzzer target: the KServe v2 request parser (JSON and the binary tensor extension) and the
// response writer, for an FP32 model and a UINT8 one. Any input must end in a parsed request or an
// HttpError: no crash, no sanitizer report, no unbounded allocation.
#include <cstdint>
#include <string_view>
#include <vector>

#include "serve/kserve.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // First two bytes (little-endian): the Inference-Header-Content-Length value; 0xffff: no header.
  if (size < 2) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  const unsigned prefix = unsigned(data[0]) | unsigned(data[1]) << 8;
  const int64_t header_length = prefix == 0xffff ? -1 : int64_t(prefix);
  for (const char* datatype : {"FP32", "UINT8"}) {  // a model of each input datatype
    moe::serve::ModelInfo m;
    m.max_batch_request = 16;
    m.input_datatype = datatype;
    try {
      const auto r = moe::serve::parse_infer_request(body, header_length, m);
      const size_t count = size_t(r.n * moe::serve::kPixels);
      if (moe::serve::takes_uint8(m) ? r.bytes.size() != count || !r.images.empty() : r.images.size() != count || !r.bytes.empty())
        __builtin_trap();
      std::vector<float> logits(size_t(r.n * m.n_classes), 0.5f), probs(size_t(r.n * m.n_experts), 0.125f);
      (void)moe::serve::infer_response(r, m, logits.data(), probs.data());
    } catch (const moe::serve::HttpError& e) {
      if (e.status != 400) __builtin_trap();
    }
  }
  return 0;
}
