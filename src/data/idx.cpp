#include "data/idx.h"

#include <zlib.h>

#include <cstring>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace moe {

std::string read_maybe_gzip(const std::string& path) {
  if (path.size() < 3 || path.compare(path.size() - 3, 3, ".gz") != 0) return read_file(path, kMaxIdxBytes, "IDX");
  check_input_file(path, kMaxIdxBytes, "gzip-compressed IDX");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  std::string out;
  char buf[1 << 16];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) {
    out.append(buf, got);
    if (out.size() > kMaxIdxBytes) {
      gzclose(f);
      throw InputError(path + ": decompresses to more than the " + std::to_string(kMaxIdxBytes / kMiB) + " MiB limit for an IDX file");
    }
  }
  int err = 0;
  const char* msg = gzerror(f, &err);
  const bool bad = got < 0 || (err != Z_OK && err != Z_STREAM_END);
  const std::string why = bad ? msg : "";
  gzclose(f);
  if (bad) throw InputError(path + ": corrupt gzip data (" + why + ")");
  return out;
}

namespace {

uint32_t be32(const std::string& b, size_t at) {
  return (uint32_t(uint8_t(b[at])) << 24) | (uint32_t(uint8_t(b[at + 1])) << 16) |
         (uint32_t(uint8_t(b[at + 2])) << 8) | uint32_t(uint8_t(b[at + 3]));
}

std::string hex(uint32_t v) {
  char s[16];
  std::snprintf(s, sizeof s, "0x%08x", v);
  return s;
}

// Checks the magic and that the payload after `header_bytes` is exactly `payload` bytes.
void check_layout(const std::string& path, const std::string& b, uint32_t magic, size_t header_bytes,
                  uint64_t payload, const char* what) {
  if (b.size() < header_bytes)
    throw InputError(path + ": truncated IDX header (" + std::to_string(b.size()) + " bytes, expected " +
                     std::to_string(header_bytes) + ")");
  if (be32(b, 0) != magic)
    throw InputError(path + ": wrong magic " + hex(be32(b, 0)) + ", expected " + hex(magic) + " (" + what + ")");
  const uint64_t have = b.size() - header_bytes;
  if (have < payload)
    throw InputError(path + ": truncated payload: " + std::to_string(have) + " bytes, header promises " +
                     std::to_string(payload));
  if (have > payload)
    throw InputError(path + ": " + std::to_string(have - payload) + " unexpected bytes after the payload");
}

}  // namespace

IdxImages read_idx_images(const std::string& path) {
  const std::string b = read_maybe_gzip(path);
  if (b.size() >= 4 && be32(b, 0) != 0x00000803)
    throw InputError(path + ": wrong magic " + hex(be32(b, 0)) + ", expected 0x00000803 (idx3-ubyte images)");
  IdxImages im;
  if (b.size() >= 16) {
    im.n = be32(b, 4);
    im.rows = be32(b, 8);
    im.cols = be32(b, 12);
  }
  check_layout(path, b, 0x00000803, 16, uint64_t(im.n) * im.rows * im.cols, "idx3-ubyte images");
  if (im.rows != 28 || im.cols != 28)
    throw InputError(path + ": images are " + std::to_string(im.rows) + "x" + std::to_string(im.cols) +
                     ", expected 28x28");
  im.pixels.assign(b.begin() + 16, b.end());
  return im;
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  const std::string b = read_maybe_gzip(path);
  const uint64_t n = b.size() >= 8 ? be32(b, 4) : 0;
  check_layout(path, b, 0x00000801, 8, n, "idx1-ubyte labels");
  std::vector<uint8_t> labels(b.begin() + 8, b.end());
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] > 9)
      throw InputError(path + ": label " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
                       " is outside 0..9");
  return labels;
}

}  // namespace moe
