// IEEE-754 non-finite numbers in KServe v2 JSON, as Triton handles them: Triton's JSON layer (rapidjson
// via triton::common::TritonJson) parses with kParseNanAndInfFlag, so a request may carry the bare
// tokens NaN, Inf and Infinity (each optionally with a leading '-'), and it writes with
// kWriteNanAndInfFlag, so a NaN or infinite output value is written as NaN, Infinity or -Infinity.
// Strict JSON has no such tokens; nlohmann's parser refuses them, so they are rewritten into marker
// strings before parsing and recognised again where a number is expected.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace moe::serve {

// `text` with every bare NaN / Inf / Infinity token outside strings (with an optional '-') replaced
// by a marker string that `nonfinite_marker` recognises. Anything else is copied unchanged.
std::string quote_nonfinite_tokens(std::string_view text);

// True when `v` is such a marker; then `*out` is its value (NaN, +inf or -inf).
bool nonfinite_marker(const nlohmann::json& v, double* out);

// Appends one FP32 value as Triton writes it: the shortest decimal that reads back as the same float,
// NaN, Infinity or -Infinity.
void append_json_float(std::string& s, float v);

}  // namespace moe::serve
