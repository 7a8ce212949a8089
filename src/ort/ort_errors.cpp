#include "ort/ort_errors.h"

#include <cstring>
#include <regex>

namespace moe {

namespace {

std::string find(const std::string& s, const std::regex& re, int group = 1) {
  std::smatch m;
  return std::regex_search(s, m, re) ? m[group].str() : std::string();
}

}  // namespace

std::string strip_ort_message(const std::string& what) {
  std::string s = what;
  for (char& ch : s)
    if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
  s = std::regex_replace(s, std::regex(R"(\[ONNXRuntimeError\] : \d+ : \w+ : )"), "");
  s = std::regex_replace(s, std::regex(R"(Load model from .*? failed: ?)"), "");
  // A source location ("/onnxruntime_src/.../model.cc:192 " or "tensorprotoutils.cc:1453 "), then
  // maybe the C++ signature of the function that threw: a name with "::" up to its balanced parentheses.
  static const std::regex location(R"((?:[\w./-]*/)?[\w.-]+\.(?:cc|cpp|cxx|h|hpp):\d+ ?)");
  std::string out;
  std::smatch m;
  while (std::regex_search(s, m, location)) {
    out += m.prefix().str();
    std::string rest = m.suffix().str();
    const size_t open = rest.find('(');
    if (open != std::string::npos && rest.substr(0, open).find("::") != std::string::npos &&
        rest.substr(0, open).find(". ") == std::string::npos) {
      int depth = 0;
      size_t i = open;
      for (; i < rest.size(); ++i) {
        if (rest[i] == '(') ++depth;
        if (rest[i] == ')' && --depth == 0) break;
      }
      if (i < rest.size()) {
        rest.erase(0, i + 1);
        if (rest.compare(0, 6, " const") == 0) rest.erase(0, 6);
      }
    }
    s = rest;
  }
  out += s;
  out = std::regex_replace(out, std::regex(" {2,}"), " ");
  const size_t b = out.find_first_not_of(' '), e = out.find_last_not_of(' ');
  out = b == std::string::npos ? std::string() : out.substr(b, e - b + 1);
  return out.size() > 400 ? out.substr(0, 400) + "..." : out;
}

std::string explain_ort_load_error(const std::string& path, const std::string& what) {
  const std::string why = strip_ort_message(what);
  if (const std::string opset = find(why, std::regex(R"(Opset (\d+) is under development)")); !opset.empty()) {
    std::smatch m;
    std::string domain = "ai.onnx", latest;
    if (std::regex_search(why, m, std::regex(R"(domain (\S+) is till opset (\d+))"))) domain = m[1].str(), latest = m[2].str();
    return path + ": opset " + opset + " of domain " + domain + " is newer than this ONNX Runtime supports" +
           (latest.empty() ? "" : " (up to " + latest + ")") + "; export it with a released opset";
  }
  std::smatch m;
  if (std::regex_search(why, m, std::regex(R"(Unsupported model IR version: (\d+), max supported IR version: (\d+))")))
    return path + ": ONNX IR version " + m[1].str() + " is newer than this ONNX Runtime supports (up to " + m[2].str() + ")";
  if (const std::string n = find(why, std::regex(R"(system error number (\d{1,6})\b)")); !n.empty()) {
    return path + ": cannot read the ONNX model (" + std::strerror(std::stoi(n)) + ")";
  }
  if (const std::string bytes = find(why, std::regex(R"(Failed to allocate memory for requested buffer of size (\d+))")); !bytes.empty())
    return path + ": not enough memory to load the model: ONNX Runtime could not allocate " + bytes + " bytes";
  if (why.find("bad_alloc") != std::string::npos || why.find("Failed to allocate") != std::string::npos)
    return path + ": not enough memory to load the model (" + why + ")";
  if (why.find("pthread_create failed") != std::string::npos || why.find("Resource temporarily unavailable") != std::string::npos)
    return path + ": ONNX Runtime could not start its threads (" + why + "); lower --threads (and serve's --workers), or raise ulimit -u / -v";
  if (why.find("Protobuf parsing failed") != std::string::npos || why.find("No graph was found in the protobuf") != std::string::npos)
    return path + ": not an ONNX model (its bytes do not parse as an ONNX ModelProto)";
  return path + ": ONNX Runtime cannot load it (" + why + ")";
}

}  // namespace moe
