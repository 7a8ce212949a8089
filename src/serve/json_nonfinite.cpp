#include "serve/json_nonfinite.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace moe::serve {

namespace {

// The marker strings start with U+0000, which no client writes into a tensor element by accident
// (and a string where a number belongs is refused anyway, so the marker widens nothing useful).
constexpr const char* kNaN = "\\u0000NaN";
constexpr const char* kPosInf = "\\u0000+Infinity";
constexpr const char* kNegInf = "\\u0000-Infinity";

bool starts_with(std::string_view s, size_t at, const char* word) {
  const size_t n = std::strlen(word);
  return s.size() - at >= n && s.compare(at, n, word) == 0;
}

}  // namespace

std::string quote_nonfinite_tokens(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      out.push_back(c);
      continue;
    }
    if (c == '"') in_string = true;
    const bool minus = c == '-';
    const size_t at = i + (minus ? 1 : 0);
    // rapidjson's grammar: NaN, Inf, Infinity, each with an optional leading minus (-NaN is NaN).
    if (starts_with(text, at, "NaN")) {
      out += '"', out += kNaN, out += '"';
      i = at + 2;
    } else if (starts_with(text, at, "Infinity")) {
      out += '"', out += minus ? kNegInf : kPosInf, out += '"';
      i = at + 7;
    } else if (starts_with(text, at, "Inf")) {
      out += '"', out += minus ? kNegInf : kPosInf, out += '"';
      i = at + 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool nonfinite_marker(const nlohmann::json& v, double* out) {
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  if (s.empty() || s[0] != '\0') return false;
  if (s == std::string("\0NaN", 4)) *out = std::numeric_limits<double>::quiet_NaN();
  else if (s == std::string("\0+Infinity", 10)) *out = std::numeric_limits<double>::infinity();
  else if (s == std::string("\0-Infinity", 10)) *out = -std::numeric_limits<double>::infinity();
  else return false;
  return true;
}

void append_json_float(std::string& s, float v) {
  if (std::isnan(v)) s += "NaN";
  else if (std::isinf(v)) s += v > 0 ? "Infinity" : "-Infinity";
  else fmt::format_to(std::back_inserter(s), "{}", v);
}

}  // namespace moe::serve
