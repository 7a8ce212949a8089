#include "serve/response_compression.h"

#include <zlib.h>

#include <cctype>
#include <cstdlib>
#include <stdexcept>

namespace moe::serve {

namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

}  // namespace

std::string pick_encoding(const std::string* accept_encoding) {
  if (!accept_encoding) return "";
  double best_q = 0;
  std::string best;
  size_t i = 0;
  const std::string& h = *accept_encoding;
  while (i <= h.size()) {
    size_t j = h.find(',', i);
    if (j == std::string::npos) j = h.size();
    const std::string item = h.substr(i, j - i);
    i = j + 1;
    const size_t semi = item.find(';');
    std::string name = trim(item.substr(0, semi));
    for (char& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    double q = 1;
    if (semi != std::string::npos) {
      const std::string param = trim(item.substr(semi + 1));
      if (param.rfind("q=", 0) == 0) q = std::strtod(param.c_str() + 2, nullptr);
    }
    if (name == "*") name = "gzip";
    if ((name == "gzip" || name == "deflate") && q > best_q) best_q = q, best = name;  // ties: the first listed
  }
  return best;
}

std::string compress(const std::string& body, const std::string& encoding) {
  z_stream z{};
  // 15 + 16: a gzip wrapper; 15: a zlib stream, which is what HTTP's "deflate" means.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, encoding == "gzip" ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("zlib: cannot start deflating");
  std::string out(deflateBound(&z, uLong(body.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  z.avail_in = uInt(body.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("zlib: deflate did not finish");
  return out;
}

}  // namespace moe::serve
