// Reader for the IDX files MNIST and Fashion-MNIST ship in (plain or gzipped).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct IdxImages {
  int64_t n = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // [n, rows, cols], 0 = background
};

// Reads an idx3-ubyte file (magic 0x00000803). Throws InputError naming the file on a missing file,
// wrong magic, or a payload shorter or longer than the header says.
IdxImages read_idx_images(const std::string& path);
// Reads an idx1-ubyte file (magic 0x00000801).
std::vector<uint8_t> read_idx_labels(const std::string& path);

// Whole file contents, transparently gunzipped when the name ends in ".gz".
std::string read_maybe_gzip(const std::string& path);

}  // namespace moe
