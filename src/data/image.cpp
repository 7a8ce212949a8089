#include "data/image.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <memory>
#include <stdexcept>

#include "base/atomic_file.h"
#include "base/errors.h"

// Our own static copy of the decoder, limited to the formats we promise: a smaller attack surface than
// Debian's libstb (which also parses GIF, PSD, HDR, PIC, TGA), and static symbols cannot clash with a
// libstb linked in elsewhere.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNM
#define STBI_NO_STDIO
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

// stb_image grows its PNG data buffer to whatever size a chunk header claims before reading the chunk,
// so a 79-byte file claiming a 1.6 GB IDAT chunk allocates 1.6 GB (found by fuzz_predict_image). Every
// chunk must fit in the bytes we actually have.
void check_png_chunks(const std::string& bytes, const std::string& path) {
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 8 || bytes.compare(0, 8, kSignature, 8) != 0) return;
  size_t at = 8;
  bool seen_data = false;
  while (at + 8 <= bytes.size()) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + at);
    const uint64_t length = uint64_t(p[0]) << 24 | uint64_t(p[1]) << 16 | uint64_t(p[2]) << 8 | p[3];
    const std::string type = bytes.substr(at + 4, 4);
    if (length + 4 > bytes.size() - at - 8)  // data and CRC
      throw InputError(path + ": corrupt PNG: a '" + type + "' chunk claims " + std::to_string(length) + " bytes, but only " +
                       std::to_string(bytes.size() - at - 8) + " follow");
    // stb_image would copy a first, empty IDAT chunk through a null pointer.
    if (type == "IDAT" && length == 0 && !seen_data) throw InputError(path + ": corrupt PNG: empty first IDAT chunk");
    seen_data = seen_data || type == "IDAT";
    if (type == "IEND") return;
    at += 8 + size_t(length) + 4;  // length, type, data, CRC
  }
}

// stb_image reads a PGM/PPM header's numbers into an int without an overflow check (undefined
// behaviour, found by fuzz_predict_image): refuse header numbers over 6 digits first.
void check_pnm_header(const std::string& bytes, const std::string& path) {
  if (bytes.size() < 2 || bytes[0] != 'P' || bytes[1] < '1' || bytes[1] > '7') return;
  size_t at = 2;
  for (int field = 0; field < 3 && at < bytes.size(); ++field) {
    while (at < bytes.size() && (std::isspace(static_cast<unsigned char>(bytes[at])) || bytes[at] == '#')) {
      if (bytes[at] == '#')
        while (at < bytes.size() && bytes[at] != '\n' && bytes[at] != '\r') ++at;
      else
        ++at;
    }
    size_t digits = 0;
    while (at < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[at]))) ++at, ++digits;
    if (digits > 6) throw InputError(path + ": PGM/PPM header has a number with " + std::to_string(digits) + " digits (at most 6)");
    if (digits == 0) return;  // not a header stb accepts; it says so itself
  }
}

// An ASCII PGM (P2), which stb_image does not read: converted to the binary form (P5) it does.
std::string ascii_pgm_to_binary(const std::string& bytes, const std::string& path) {
  size_t at = 2;
  auto next = [&]() -> int64_t {
    while (at < bytes.size() && (std::isspace(static_cast<unsigned char>(bytes[at])) || bytes[at] == '#')) {
      if (bytes[at] == '#')
        while (at < bytes.size() && bytes[at] != '\n') ++at;
      else
        ++at;
    }
    int64_t v = 0;
    size_t digits = 0;
    while (at < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[at])) && digits < 7) v = v * 10 + (bytes[at++] - '0'), ++digits;
    if (digits == 0 || digits > 6) throw InputError(path + ": ASCII PGM (P2): expected a number of 1-6 digits at byte " + std::to_string(at));
    return v;
  };
  const int64_t w = next(), h = next(), maxval = next();
  if (w <= 0 || h <= 0 || w * h > kMaxPixels)
    throw InputError(path + ": ASCII PGM (P2) is " + std::to_string(w) + "x" + std::to_string(h) + ", expected 1.." +
                     std::to_string(kMaxPixels) + " pixels");
  if (maxval <= 0 || maxval > 255) throw InputError(path + ": ASCII PGM (P2) maxval " + std::to_string(maxval) + ", expected 1..255");
  std::string out = "P5\n" + std::to_string(w) + " " + std::to_string(h) + "\n255\n";
  out.reserve(out.size() + size_t(w * h));
  for (int64_t i = 0; i < w * h; ++i) out += char(std::min<int64_t>(next(), maxval) * 255 / maxval);
  return out;
}

}  // namespace

GreyImage load_grey_image(const std::string& path) { return decode_grey_image(read_file(path, kMaxImageBytes, "image"), path); }

GreyImage decode_grey_image(const std::string& bytes, const std::string& path, int64_t max_pixels) {
  if (bytes.empty()) throw InputError(path + ": empty file (PNG, JPEG or PGM expected)");
  if (bytes.size() > size_t(INT_MAX)) throw InputError(path + ": file too large for an image (over 2 GiB)");
  if (bytes.size() >= 2 && bytes[0] == 'P' && bytes[1] == '2') return decode_grey_image(ascii_pgm_to_binary(bytes, path), path, max_pixels);
  if (bytes.size() >= 2 && bytes[0] == 'P' && (bytes[1] == '1' || bytes[1] == '3' || bytes[1] == '4'))
    throw InputError(path + ": a P" + std::string(1, bytes[1]) + " PNM file; supported are PGM (P2 ASCII, P5 binary) and PPM (P6 binary)");
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = int(bytes.size());

  check_png_chunks(bytes, path);
  check_pnm_header(bytes, path);
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp))
    throw InputError(path + ": not an image (PNG, JPEG or PGM expected): " + stbi_failure_reason());
  if (w <= 0 || h <= 0)
    throw InputError(path + ": image has zero size (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  if (int64_t(w) * h > std::min(max_pixels, kMaxPixels))
    throw InputError(path + ": image is " + std::to_string(w) + "x" + std::to_string(h) + ", larger than the " +
                     std::to_string(std::min(max_pixels, kMaxPixels)) + " pixel limit");

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
    // Composite over white, as an image viewer or browser would show it.
    for (size_t i = 0; i < n; ++i) {
      const unsigned g = px.get()[2 * i], a = px.get()[2 * i + 1];
      img.pixels[i] = uint8_t((g * a + 255u * (255u - a) + 127u) / 255u);
    }
  } else {
    std::copy(px.get(), px.get() + n, img.pixels.begin());
  }
  return img;
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

  // The border is almost all background even when a stroke touches the edge, so its median is a robust
  // estimate of the paper level.
  std::vector<float> border;
  for (int x = 0; x < W; ++x) {
    border.push_back(v[x]);
    if (H > 1) border.push_back(v[size_t(H - 1) * W + x]);
  }
  for (int y = 1; y + 1 < H; ++y) {
    border.push_back(v[size_t(y) * W]);
    if (W > 1) border.push_back(v[size_t(y) * W + W - 1]);
  }
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
