#include "data/image.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "data/exif_orientation.h"

// Our own static copy of the decoder, limited to the formats we promise: a smaller attack surface than
// Debian's libstb (which also parses GIF, PSD, HDR, PIC, TGA), and static symbols cannot clash with a
// libstb linked in elsewhere.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
// Every buffer stb_image allocates starts zeroed: a decoder path that leaves pixels unwritten (a
// progressive JPEG whose scans skip coefficients) then shows black, never bytes of an earlier request
// that the allocator handed back.
#define STBI_MALLOC(size) calloc(1, size)
#define STBI_REALLOC(p, size) realloc(p, size)
#define STBI_FREE(p) free(p)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace moe {

namespace {

constexpr int64_t kMaxPixels = int64_t(64) << 20;  // decoding allocates up to 4 bytes per pixel
constexpr int kFrame = 28;
constexpr int kBox = 20;
constexpr float kMinContrast = 32.0f;  // ink must stand this far (of 255) above the background
constexpr float kInkThreshold = 0.15f;  // of the ink-to-paper contrast; fainter is not ink
constexpr float kNoiseSigmas = 4.0f;    // ink must also stand this many noise deviations above the paper

struct StbFree {
  void operator()(stbi_uc* p) const { stbi_image_free(p); }
};

// Resampling weights for one axis: out[o] = sum of w * in[i] over taps[o].
struct Tap {
  int i;
  float w;
};

std::vector<std::vector<Tap>> axis_weights(int in, int out) {
  std::vector<std::vector<Tap>> taps(out);
  const double step = double(in) / out;
  for (int o = 0; o < out; ++o) {
    if (out <= in) {
      // Area averaging: each output pixel is the mean of the source interval it covers, so thin strokes
      // in large images fade rather than vanish between samples.
      const double a = o * step, b = (o + 1) * step;
      for (int i = int(std::floor(a)); i < int(std::ceil(b)) && i < in; ++i) {
        const double overlap = std::min<double>(b, i + 1) - std::max<double>(a, i);
        if (overlap > 0) taps[o].push_back({i, float(overlap / step)});
      }
    } else {
      // Enlarging: linear interpolation between source pixel centres, smoother than repeating pixels.
      const double src = (o + 0.5) * step - 0.5;
      const int i0 = int(std::floor(src));
      const float f = float(src - i0);
      taps[o].push_back({std::clamp(i0, 0, in - 1), 1.0f - f});
      taps[o].push_back({std::clamp(i0 + 1, 0, in - 1), f});
    }
  }
  return taps;
}

// Resizes a [h, w] float image to [nh, nw], separably.
std::vector<float> resample(const std::vector<float>& src, int w, int h, int nw, int nh) {
  const auto tx = axis_weights(w, nw), ty = axis_weights(h, nh);
  std::vector<float> rows(size_t(h) * nw, 0.0f);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < nw; ++x)
      for (const Tap& t : tx[x]) rows[size_t(y) * nw + x] += t.w * src[size_t(y) * w + t.i];
  std::vector<float> out(size_t(nh) * nw, 0.0f);
  for (int y = 0; y < nh; ++y)
    for (const Tap& t : ty[y])
      for (int x = 0; x < nw; ++x) out[size_t(y) * nw + x] += t.w * rows[size_t(t.i) * nw + x];
  return out;
}

uint32_t be32(const std::string& b, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data() + at);
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

std::string pixel_limit_error(const std::string& path, const std::string& format, int64_t w, int64_t h, int64_t limit) {
  return path + ": " + format + " header says " + std::to_string(w) + "x" + std::to_string(h) + " pixels, expected 1 to " +
         std::to_string(limit) + " pixels in all";
}

// stb_image grows its PNG data buffer to whatever size a chunk header claims before reading the chunk,
// so a 79-byte file claiming a 1.6 GB IDAT chunk allocates 1.6 GB (found by fuzz_predict_image). Every
// chunk must fit in the bytes we actually have, and the file must reach its IEND chunk: a cut-off
// upload is refused as such. The header's size is checked here too, because stb_image reports a huge
// one as "unknown image type".
void check_png(const std::string& bytes, const std::string& path, int64_t max_pixels) {
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 8 || bytes.compare(0, 8, kSignature, 8) != 0) return;
  if (bytes.size() >= 8 + 8 + 13 && bytes.compare(12, 4, "IHDR") == 0) {
    const int64_t w = be32(bytes, 16), h = be32(bytes, 20);
    if (w <= 0 || h <= 0 || w > max_pixels || h > max_pixels || w * h > max_pixels) throw InputError(pixel_limit_error(path, "PNG", w, h, max_pixels));
  }
  size_t at = 8;
  bool seen_data = false;
  while (at + 8 <= bytes.size()) {
    const uint64_t length = be32(bytes, at);
    const std::string type = bytes.substr(at + 4, 4);
    if (length + 4 > bytes.size() - at - 8)  // data and CRC
      throw InputError(path + ": truncated or corrupt PNG: a '" + type + "' chunk claims " + std::to_string(length) +
                       " bytes, but only " + std::to_string(bytes.size() - at - 8) + " follow");
    // stb_image would copy a first, empty IDAT chunk through a null pointer.
    if (type == "IDAT" && length == 0 && !seen_data) throw InputError(path + ": corrupt PNG: empty first IDAT chunk");
    seen_data = seen_data || type == "IDAT";
    if (type == "IEND") return;
    at += 8 + size_t(length) + 4;  // length, type, data, CRC
  }
  throw InputError(path + ": truncated PNG: the file ends after " + std::to_string(bytes.size()) + " bytes, before its IEND chunk");
}

// A DHT segment's tables: each is a class/id byte, 16 code counts and as many symbols as the counts
// sum to, at most 256. stb_image 2.27 (Debian's) does not check that sum and writes past its tables
// when it is larger (found by fuzz_predict_image), so the file is refused before it gets there.
void check_huffman_tables(const unsigned char* p, size_t len, const std::string& path) {
  while (len > 0) {
    if (len < 17) throw InputError(path + ": malformed JPEG: a Huffman table (DHT) ends inside its 16 code counts");
    size_t codes = 0;
    for (int i = 1; i <= 16; ++i) codes += p[i];
    if (codes > 256)
      throw InputError(path + ": malformed JPEG: a Huffman table (DHT) claims " + std::to_string(codes) + " codes, at most 256");
    if (len < 17 + codes) throw InputError(path + ": malformed JPEG: a Huffman table (DHT) ends inside its symbols");
    p += 17 + codes;
    len -= 17 + codes;
  }
}

// A JPEG must reach its end-of-image marker: stb_image decodes a cut-off file as if the missing data
// were zeros, giving a grey smear that the model would still call a digit. The walk follows the
// marker segments (whose lengths it trusts only as far as the bytes go) and the entropy-coded scans
// (where a 0xFF data byte is always followed by 0x00 or a restart marker).
// A segment that runs past the file or a malformed Huffman table is refused too, saying where.
void check_jpeg(const std::string& bytes, const std::string& path) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  // stb_image takes a file as JPEG when its first marker is SOI, after any 0xFF fill bytes.
  size_t start = 0;
  while (start + 1 < n && b[start] == 0xFF && b[start + 1] == 0xFF) ++start;
  if (start + 1 >= n || b[start] != 0xFF || b[start + 1] != 0xD8) return;
  const std::string truncated = path + ": truncated JPEG: the file ends after " + std::to_string(n) + " bytes, before its end-of-image marker";
  size_t at = start + 2;
  for (;;) {
    if (at + 2 > n) throw InputError(truncated);
    if (b[at] != 0xFF)  // stb_image would fail here too ("expected marker"); say where
      throw InputError(path + ": malformed JPEG: byte " + std::to_string(at) + " should start a marker (0xFF)");
    const unsigned marker = b[at + 1];
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0xD9) return;
    if ((marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {  // markers without a length
      at += 2;
      continue;
    }
    if (at + 4 > n) throw InputError(truncated);
    const size_t length = size_t(b[at + 2]) << 8 | b[at + 3];
    if (length < 2) throw InputError(path + ": malformed JPEG: a marker segment at byte " + std::to_string(at) + " has length " + std::to_string(length));
    if (at + 2 + length > n) throw InputError(truncated);
    if (marker == 0xC4) check_huffman_tables(b + at + 4, length - 2, path);
    at += 2 + length;
    if (marker != 0xDA) continue;
    while (at + 1 < n && !(b[at] == 0xFF && b[at + 1] != 0x00 && !(b[at + 1] >= 0xD0 && b[at + 1] <= 0xD7))) ++at;
    if (at + 1 >= n) throw InputError(truncated);
  }
}

// The formats people try that we do not read, named, so the answer is not "unknown image type".
void refuse_other_formats(const std::string& bytes, const std::string& path) {
  auto starts = [&](const char* magic, size_t len) { return bytes.size() >= len && bytes.compare(0, len, magic, len) == 0; };
  std::string format;
  if (starts("BM", 2)) format = "a BMP";
  else if (starts("GIF8", 4)) format = "a GIF";
  else if (starts("II*\0", 4) || starts("MM\0*", 4)) format = "a TIFF";
  else if (starts("RIFF", 4) && bytes.size() >= 12 && bytes.compare(8, 4, "WEBP") == 0) format = "a WebP";
  else if (starts("P1", 2) || starts("P4", 2)) format = "a PBM (bitmap)";
  else if (starts("P7", 2)) format = "a PAM";
  if (!format.empty()) throw InputError(path + ": " + format + " file; supported are PNG, JPEG, PGM (P2, P5) and PPM (P3, P6)");
}

// PGM (P2 ASCII, P5 binary) and PPM (P3 ASCII, P6 binary), 8 or 16 bits per sample, decoded here and
// not by stb_image: its PNM loader ignores a short read, so a truncated file came back with the rest
// of its pixels being whatever the allocator held (another request's image), and its 16-bit colour
// path reads past its buffer (found by fuzz_predict_image). Every byte of the result is written from
// the file, or the file is refused.
GreyImage decode_pnm(const std::string& bytes, const std::string& path, int64_t max_pixels) {
  const char kind = bytes[1];
  const bool ascii = kind == '2' || kind == '3';
  const int channels = kind == '3' || kind == '6' ? 3 : 1;
  const std::string format = std::string(channels == 3 ? "PPM" : "PGM") + " (P" + kind + ")";
  size_t at = 2;
  auto skip_space = [&]() {
    while (at < bytes.size() && (std::isspace(static_cast<unsigned char>(bytes[at])) || bytes[at] == '#')) {
      if (bytes[at] == '#')
        while (at < bytes.size() && bytes[at] != '\n' && bytes[at] != '\r') ++at;
      else
        ++at;
    }
  };
  // Header numbers and ASCII samples: 1-6 digits (no overflow, and nothing plausible is longer).
  auto number = [&](const char* what) -> int64_t {
    skip_space();
    int64_t v = 0;
    size_t digits = 0;
    while (at < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[at]))) {
      if (++digits > 6) throw InputError(path + ": " + format + ": " + what + " has more than 6 digits, at byte " + std::to_string(at));
      v = v * 10 + (bytes[at++] - '0');
    }
    if (digits == 0)
      throw InputError(path + ": " + format + ": expected " + what + " (a number) at byte " + std::to_string(at) +
                       (at >= bytes.size() ? ", found the end of the file" : ""));
    return v;
  };
  const int64_t w = number("the width"), h = number("the height");
  if (w <= 0 || h <= 0 || w * h > max_pixels) throw InputError(pixel_limit_error(path, format, w, h, max_pixels));
  const int64_t maxval = number("the maximum value");
  if (maxval < 1 || maxval > 65535) throw InputError(path + ": " + format + ": maximum value " + std::to_string(maxval) + ", expected 1 to 65535");
  const size_t samples = size_t(w * h) * size_t(channels);
  std::vector<uint16_t> raw(samples);
  if (ascii) {
    for (size_t i = 0; i < samples; ++i) {
      skip_space();
      if (at >= bytes.size())
        throw InputError(path + ": " + format + ": " + std::to_string(w) + "x" + std::to_string(h) + " needs " +
                         std::to_string(samples) + " samples, found " + std::to_string(i));
      raw[i] = uint16_t(std::min(number("a sample"), maxval));
    }
  } else {
    // Exactly one whitespace byte separates the header from the pixels.
    if (at >= bytes.size() || !std::isspace(static_cast<unsigned char>(bytes[at])))
      throw InputError(path + ": " + format + ": expected a whitespace byte after the maximum value, at byte " + std::to_string(at));
    ++at;
    const size_t bytes_per_sample = maxval > 255 ? 2 : 1;
    const size_t need = samples * bytes_per_sample, found = bytes.size() - at;
    if (found < need)
      throw InputError(path + ": " + format + ": " + std::to_string(w) + "x" + std::to_string(h) + " at " +
                       std::to_string(8 * bytes_per_sample) + " bits needs " + std::to_string(need) + " bytes of pixels, found " +
                       std::to_string(found));
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + at);
    for (size_t i = 0; i < samples; ++i)
      raw[i] = uint16_t(std::min<int64_t>(bytes_per_sample == 2 ? (p[2 * i] << 8 | p[2 * i + 1]) : p[i], maxval));
  }
  GreyImage img;
  img.width = int(w);
  img.height = int(h);
  img.pixels.resize(size_t(w * h));
  auto to8 = [&](uint32_t v) { return uint32_t((v * 255 + uint32_t(maxval) / 2) / uint32_t(maxval)); };
  for (size_t i = 0; i < img.pixels.size(); ++i) {
    if (channels == 1) {
      img.pixels[i] = uint8_t(to8(raw[i]));
    } else {  // luma with the weights stb_image uses for colour PNG and JPEG
      const uint32_t r = to8(raw[3 * i]), g = to8(raw[3 * i + 1]), b = to8(raw[3 * i + 2]);
      img.pixels[i] = uint8_t((r * 77 + g * 150 + b * 29) >> 8);
    }
  }
  return img;
}

// The shade (0 or 255) that transparent pixels of a grey+alpha image take: the paper's, opposite to the
// ink. Compositing over a fixed white turned white strokes on a transparent canvas into a blank white
// image that no --invert could rescue. When most of the image is transparent, the opaque pixels are the
// strokes and the paper is the opposite shade of their mean; otherwise the opaque pixels are mostly
// paper themselves (a scan with a transparent margin) and transparent ones take their shade.
unsigned transparent_shade(const stbi_uc* grey_alpha, size_t n) {
  double opaque = 0, shade = 0;  // alpha-weighted: sum of alpha, sum of grey * alpha
  for (size_t i = 0; i < n; ++i) {
    opaque += grey_alpha[2 * i + 1];
    shade += double(grey_alpha[2 * i]) * grey_alpha[2 * i + 1];
  }
  if (opaque == 0) return 255;  // nothing drawn: white, as a viewer shows it (no ink either way)
  const bool light_opaque = shade / opaque >= 127.5;
  const bool mostly_transparent = opaque < 127.5 * double(n);
  return (light_opaque != mostly_transparent) ? 255u : 0u;
}

// The pixels of the image's edge: almost all background even when a stroke touches the edge, so their
// median is a robust estimate of the paper level.
std::vector<float> border_pixels(const std::vector<float>& v, int W, int H) {
  std::vector<float> border;
  for (int x = 0; x < W; ++x) {
    border.push_back(v[size_t(x)]);
    if (H > 1) border.push_back(v[size_t(H - 1) * W + x]);
  }
  for (int y = 1; y + 1 < H; ++y) {
    border.push_back(v[size_t(y) * W]);
    if (W > 1) border.push_back(v[size_t(y) * W + W - 1]);
  }
  return border;
}

}  // namespace

GreyImage load_grey_image(const std::string& path) { return decode_grey_image(read_file(path, kMaxImageBytes, "image"), path); }

GreyImage decode_grey_image(const std::string& bytes, const std::string& path, int64_t max_pixels) {
  if (bytes.empty()) throw InputError(path + ": empty file (PNG, JPEG or PGM expected)");
  if (bytes.size() > size_t(INT_MAX)) throw InputError(path + ": file too large for an image (over 2 GiB)");
  max_pixels = std::min(max_pixels, kMaxPixels);
  refuse_other_formats(bytes, path);
  if (bytes.size() >= 2 && bytes[0] == 'P' && (bytes[1] == '2' || bytes[1] == '3' || bytes[1] == '5' || bytes[1] == '6'))
    return decode_pnm(bytes, path, max_pixels);
  check_png(bytes, path, max_pixels);
  check_jpeg(bytes, path);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = int(bytes.size());

  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp))
    throw InputError(path + ": not an image (PNG, JPEG or PGM expected): " + stbi_failure_reason());
  if (w <= 0 || h <= 0)
    throw InputError(path + ": image has zero size (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  if (int64_t(w) * h > max_pixels)
    throw InputError(path + ": image is " + std::to_string(w) + "x" + std::to_string(h) + ", larger than the " +
                     std::to_string(max_pixels) + " pixel limit");

  // Keep alpha when there is one: drawing programs often export black strokes whose only trace is the
  // alpha channel, over transparent pixels that are also black.
  const bool alpha = comp == 2 || comp == 4;
  const int want = alpha ? 2 : 1;
  std::unique_ptr<stbi_uc, StbFree> px(stbi_load_from_memory(data, len, &w, &h, &comp, want));
  if (!px) throw InputError(path + ": cannot decode image: " + stbi_failure_reason());

  GreyImage img;
  img.width = w;
  img.height = h;
  const size_t n = size_t(w) * h;
  img.pixels.resize(n);
  if (alpha) {
    const unsigned paper = transparent_shade(px.get(), n);
    for (size_t i = 0; i < n; ++i) {
      const unsigned g = px.get()[2 * i], a = px.get()[2 * i + 1];
      img.pixels[i] = uint8_t((g * a + paper * (255u - a) + 127u) / 255u);
    }
  } else {
    std::copy(px.get(), px.get() + n, img.pixels.begin());
  }
  // stb_image returns the pixels as stored; a phone's JPEG (or a PNG's eXIf chunk) says in EXIF how
  // to turn them upright.
  return apply_exif_orientation(img, exif_orientation(bytes));
}

std::vector<float> to_mnist_input(const GreyImage& img, bool invert) {
  std::vector<float> out(kFrame * kFrame, 0.0f);
  const int W = img.width, H = img.height;
  if (W <= 0 || H <= 0) return out;
  if (img.pixels.size() != size_t(W) * H)
    throw std::invalid_argument("to_mnist_input: GreyImage has " + std::to_string(img.pixels.size()) +
                                " pixels, expected " + std::to_string(W) + "x" + std::to_string(H));

  std::vector<float> v(img.pixels.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = invert ? 255.0f - img.pixels[i] : float(img.pixels[i]);

  std::vector<float> border = border_pixels(v, W, H);
  const size_t mid = border.size() / 2;
  std::nth_element(border.begin(), border.begin() + ptrdiff_t(mid), border.end());
  const float bg = border[mid];
  // Paper grain and JPEG noise: the median absolute deviation of the border, scaled to a standard
  // deviation; ink must clear it by a wide margin or every speck of a photo widens the bounding box.
  for (float& b : border) b = std::abs(b - bg);
  std::nth_element(border.begin(), border.begin() + ptrdiff_t(mid), border.end());
  const float noise = 1.4826f * border[mid];
  const float peak = *std::max_element(v.begin(), v.end());
  if (peak - bg < kMinContrast) return out;
  const float cut = std::max(kInkThreshold * (peak - bg), kNoiseSigmas * noise);

  std::vector<uint8_t> ink(v.size());
  for (size_t i = 0; i < v.size(); ++i) ink[i] = v[i] - bg >= cut;
  int x0 = W, x1 = -1, y0 = H, y1 = -1;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const size_t i = size_t(y) * W + x;
      // A lone pixel is a speck, not a stroke.
      bool lone = ink[i];
      for (int dy = -1; dy <= 1 && lone; ++dy)
        for (int dx = -1; dx <= 1 && lone; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if ((dy || dx) && yy >= 0 && yy < H && xx >= 0 && xx < W && ink[size_t(yy) * W + xx]) lone = false;
        }
      if (!ink[i] || lone) {
        v[i] = 0.0f;
        continue;
      }
      v[i] = std::min((v[i] - bg) / (peak - bg), 1.0f);
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  if (x1 < 0) return out;

  const int w = x1 - x0 + 1, h = y1 - y0 + 1;
  std::vector<float> crop(size_t(w) * h);
  for (int y = 0; y < h; ++y)
    std::copy_n(v.begin() + ptrdiff_t(y0 + y) * W + x0, w, crop.begin() + ptrdiff_t(y) * w);

  const double s = double(kBox) / std::max(w, h);
  const int nw = std::clamp(int(std::lround(w * s)), 1, kBox);
  const int nh = std::clamp(int(std::lround(h * s)), 1, kBox);
  std::vector<float> box = resample(crop, w, h, nw, nh);

  // MNIST strokes peak at full intensity; area averaging thin strokes would otherwise leave them faint.
  const float top = *std::max_element(box.begin(), box.end());
  if (top <= 0.0f) return out;
  double mass = 0, mx = 0, my = 0;
  for (int y = 0; y < nh; ++y)
    for (int x = 0; x < nw; ++x) {
      float& p = box[size_t(y) * nw + x];
      p = std::min(p / top, 1.0f);
      mass += p;
      mx += double(p) * x;
      my += double(p) * y;
    }
  const int ox = std::clamp(int(std::lround(kFrame / 2 - mx / mass)), 0, kFrame - nw);
  const int oy = std::clamp(int(std::lround(kFrame / 2 - my / mass)), 0, kFrame - nh);
  for (int y = 0; y < nh; ++y)
    std::copy_n(box.begin() + ptrdiff_t(y) * nw, nw, out.begin() + ptrdiff_t(oy + y) * kFrame + ox);
  return out;
}

DigitInput prepare_digit(const GreyImage& img, bool invert, const std::string& what, const std::string& invert_option) {
  DigitInput d;
  d.pixels = to_mnist_input(img, invert);
  auto blank = [](const std::vector<float>& x) { return std::all_of(x.begin(), x.end(), [](float v) { return v == 0.0f; }); };
  const std::string change = (invert ? "drop " : "add ") + invert_option;
  if (blank(d.pixels)) {
    if (img.width > 0 && img.height > 0 && !blank(to_mnist_input(img, !invert)))
      throw InputError(what + ": no ink found; the image looks like a " +
                       (invert ? "light digit on dark paper" : "dark digit on light paper") + ": " + change);
    throw InputError(what + ": no ink found, with or without " + invert_option + " (a blank, uniform or fully transparent image)");
  }
  if (img.width > 0 && img.height > 0) {
    std::vector<float> border = border_pixels(std::vector<float>(img.pixels.begin(), img.pixels.end()), img.width, img.height);
    const size_t mid = border.size() / 2;
    std::nth_element(border.begin(), border.begin() + ptrdiff_t(mid), border.end());
    const bool light_paper = border[mid] > 127.5f;
    if (light_paper != invert)
      d.warning = what + " looks like a " + (light_paper ? "dark digit on light" : "light digit on dark") + " paper; " + change;
  }
  return d;
}

std::string ascii_art(const float* pixels784) {
  static const char kRamp[] = " .:-=+*#%@";
  constexpr int kLevels = sizeof kRamp - 1;
  std::string s;
  s.reserve(kFrame * (2 * kFrame + 1));
  for (int y = 0; y < kFrame; ++y) {
    for (int x = 0; x < kFrame; ++x) {
      const float p = pixels784[y * kFrame + x];
      const int level = p > 0.0f ? std::min(kLevels - 1, int(p * (kLevels - 1) + 0.5f)) : 0;  // NaN -> blank
      s.append(2, kRamp[level]);
    }
    s += '\n';
  }
  return s;
}

}  // namespace moe
