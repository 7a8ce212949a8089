#include "data/exif_orientation.h"

#include <cstddef>
#include <cstdint>

namespace moe {

namespace {

// The Orientation tag (0x0112) of IFD0 of a TIFF structure (the body of an Exif segment), or 1.
// Every read is checked against `size`: offsets come from the file and may point anywhere.
int tiff_orientation(const unsigned char* t, size_t size) {
  if (size < 8) return 1;
  const bool little = t[0] == 'I' && t[1] == 'I';
  if (!little && !(t[0] == 'M' && t[1] == 'M')) return 1;
  auto u16 = [&](size_t at) { return little ? unsigned(t[at]) | unsigned(t[at + 1]) << 8 : unsigned(t[at]) << 8 | unsigned(t[at + 1]); };
  auto u32 = [&](size_t at) { return uint32_t(little ? u16(at) | u16(at + 2) << 16 : u16(at) << 16 | u16(at + 2)); };
  if (u16(2) != 42) return 1;
  const uint64_t ifd = u32(4);
  if (ifd + 2 > size) return 1;
  const unsigned entries = u16(size_t(ifd));
  for (unsigned i = 0; i < entries; ++i) {
    const uint64_t e = ifd + 2 + 12 * uint64_t(i);
    if (e + 12 > size) return 1;
    if (u16(size_t(e)) != 0x0112) continue;
    // Type SHORT (3), one value, kept in the first two bytes of the value field.
    if (u16(size_t(e) + 2) != 3 || u32(size_t(e) + 4) != 1) return 1;
    const unsigned v = u16(size_t(e) + 8);
    return v >= 1 && v <= 8 ? int(v) : 1;
  }
  return 1;
}

}  // namespace

int jpeg_exif_orientation(const std::string& bytes) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 4 || b[0] != 0xFF || b[1] != 0xD8) return 1;
  size_t at = 2;
  while (at + 4 <= n) {
    if (b[at] != 0xFF) return 1;
    const unsigned marker = b[at + 1];
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return 1;  // the scan (or the end) comes after every APPn
    if ((marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {
      at += 2;
      continue;
    }
    const size_t length = size_t(b[at + 2]) << 8 | b[at + 3];  // counts itself, not the marker
    if (length < 2 || at + 2 + length > n) return 1;
    static const char kExif[] = "Exif\0\0";
    if (marker == 0xE1 && length >= 2 + 6 && bytes.compare(at + 4, 6, kExif, 6) == 0)
      return tiff_orientation(b + at + 10, length - 8);  // the first Exif segment decides
    at += 2 + length;
  }
  return 1;
}

int png_exif_orientation(const std::string& bytes) {
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 8 || bytes.compare(0, 8, kSignature, 8) != 0) return 1;
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t at = 8;
  while (at + 12 <= n) {  // length (4, big-endian), type (4), data, CRC (4)
    const uint64_t length = uint64_t(b[at]) << 24 | uint64_t(b[at + 1]) << 16 | uint64_t(b[at + 2]) << 8 | b[at + 3];
    if (length > n - at - 12) return 1;
    if (bytes.compare(at + 4, 4, "eXIf") == 0) return tiff_orientation(b + at + 8, size_t(length));
    if (bytes.compare(at + 4, 4, "IEND") == 0) return 1;
    at += 12 + size_t(length);
  }
  return 1;
}

int exif_orientation(const std::string& bytes) {
  if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0xFF && static_cast<unsigned char>(bytes[1]) == 0xD8)
    return jpeg_exif_orientation(bytes);
  return png_exif_orientation(bytes);
}

GreyImage apply_exif_orientation(const GreyImage& img, int orientation) {
  if (orientation < 2 || orientation > 8 || img.pixels.size() != size_t(img.width) * size_t(img.height)) return img;
  const int w = img.width, h = img.height;
  const bool swap = orientation >= 5;
  GreyImage out;
  out.width = swap ? h : w;
  out.height = swap ? w : h;
  out.pixels.resize(img.pixels.size());
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;  // the stored pixel shown at (x, y)
      switch (orientation) {
        case 2: sx = w - 1 - x; break;
        case 3: sx = w - 1 - x, sy = h - 1 - y; break;
        case 4: sy = h - 1 - y; break;
        case 5: sx = y, sy = x; break;
        case 6: sx = y, sy = h - 1 - x; break;
        case 7: sx = w - 1 - y, sy = h - 1 - x; break;
        case 8: sx = w - 1 - y, sy = x; break;
      }
      out.pixels[size_t(y) * size_t(out.width) + size_t(x)] = img.pixels[size_t(sy) * size_t(w) + size_t(sx)];
    }
  return out;
}

}  // namespace moe
