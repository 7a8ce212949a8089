#include "data/image.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "data/exif_orientation.h"
#include "test_util.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace fs = std::filesystem;

namespace {

struct Stats {
  double mass = 0, cx = 0, cy = 0;  // centre of mass in pixel-index coordinates
  int x0 = 28, x1 = -1, y0 = 28, y1 = -1;
  float lo = 1, hi = 0;
  int width() const { return x1 - x0 + 1; }
  int height() const { return y1 - y0 + 1; }
};

Stats stats(const std::vector<float>& p) {
  EXPECT_EQ(p.size(), 784u);
  Stats s;
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) {
      const float v = p[y * 28 + x];
      s.lo = std::min(s.lo, v);
      s.hi = std::max(s.hi, v);
      if (v <= 0) continue;
      s.mass += v;
      s.cx += v * x;
      s.cy += v * y;
      s.x0 = std::min(s.x0, x);
      s.x1 = std::max(s.x1, x);
      s.y0 = std::min(s.y0, y);
      s.y1 = std::max(s.y1, y);
    }
  if (s.mass > 0) {
    s.cx /= s.mass;
    s.cy /= s.mass;
  }
  return s;
}

// A w x h canvas of `paper` with rectangles of `ink` drawn on it.
struct Canvas {
  int w, h;
  std::vector<uint8_t> px;
  Canvas(int w_, int h_, uint8_t paper) : w(w_), h(h_), px(size_t(w_) * h_, paper) {}
  void rect(int x0, int y0, int rw, int rh, uint8_t ink) {
    for (int y = y0; y < y0 + rh; ++y)
      for (int x = x0; x < x0 + rw; ++x) px[size_t(y) * w + x] = ink;
  }
  moe::GreyImage image() const { return {w, h, px}; }
};

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = moe::test::temp_dir("files"); }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string write_bytes(const std::string& name, const std::string& bytes) const {
    moe::test::write_bytes(path(name), bytes);
    return path(name);
  }

  std::string write_pgm(const std::string& name, const Canvas& c) const {
    std::ostringstream s;
    s << "P5\n" << c.w << " " << c.h << "\n255\n";
    s.write(reinterpret_cast<const char*>(c.px.data()), std::streamsize(c.px.size()));
    return write_bytes(name, s.str());
  }

  fs::path dir_;
};

TEST_F(ImageTest, LoadsPgmPixelsExactly) {
  Canvas c(100, 60, 255);
  c.rect(20, 15, 50, 25, 0);
  const moe::GreyImage img = moe::load_grey_image(write_pgm("rect.pgm", c));
  EXPECT_EQ(img.width, 100);
  EXPECT_EQ(img.height, 60);
  EXPECT_EQ(img.pixels, c.px);
}

TEST_F(ImageTest, DarkRectangleOnLightIsScaledTo20AndCentred) {
  Canvas c(100, 60, 255);
  c.rect(20, 15, 50, 25, 0);  // 50x25, off-centre in the canvas
  const auto out = moe::to_mnist_input(moe::load_grey_image(write_pgm("rect.pgm", c)), /*invert=*/true);
  const Stats s = stats(out);
  EXPECT_GE(s.lo, 0.0f);
  EXPECT_FLOAT_EQ(s.hi, 1.0f);
  EXPECT_EQ(s.width(), 20);
  EXPECT_NEAR(s.height(), 10, 1);
  EXPECT_NEAR(s.cx, 14.0, 1.0);
  EXPECT_NEAR(s.cy, 14.0, 1.0);
}

TEST_F(ImageTest, WithoutInvertDarkInkOnWhiteIsBlank) {
  // Read as white-on-black, the white page is the background level and nothing rises above it.
  Canvas c(100, 60, 255);
  c.rect(20, 15, 50, 25, 0);
  EXPECT_EQ(stats(moe::to_mnist_input(c.image(), /*invert=*/false)).mass, 0.0);
}

TEST_F(ImageTest, OffCentreShapeHasItsCentreOfMassCentred) {
  // An "L": heavy vertical bar and a thin foot, so the centre of mass is far from the box centre.
  Canvas c(200, 300, 0);
  c.rect(40, 20, 40, 240, 255);
  c.rect(40, 250, 140, 10, 255);
  const std::string p = path("l.png");
  ASSERT_TRUE(stbi_write_png(p.c_str(), c.w, c.h, 1, c.px.data(), c.w));
  const Stats s = stats(moe::to_mnist_input(moe::load_grey_image(p), /*invert=*/false));
  EXPECT_EQ(s.height(), 20);
  EXPECT_NEAR(s.width(), 140.0 * 20 / 240, 1);
  EXPECT_NEAR(s.cx, 14.0, 0.5);
  EXPECT_NEAR(s.cy, 14.0, 0.5);
  // The box itself is not centred: its left edge sits well right of column 4.
  EXPECT_GT(s.x0, 6);
}

TEST_F(ImageTest, InkNeverFallsOffTheFrame) {
  // A heavy bar at the top with a long thin tail: centring the mass exactly would push the tail out.
  Canvas c(100, 100, 0);
  c.rect(0, 0, 100, 30, 255);
  c.rect(48, 30, 4, 70, 255);
  const Stats s = stats(moe::to_mnist_input(c.image(), false));
  EXPECT_EQ(s.height(), 20);
  EXPECT_EQ(s.width(), 20);
  EXPECT_EQ(s.y1, 27);  // pushed as far up as it goes
  EXPECT_NEAR(s.cx, 14.0, 0.5);
}

TEST_F(ImageTest, TinyImageIsEnlarged) {
  Canvas c(5, 7, 255);
  c.rect(1, 1, 3, 5, 0);  // 3x5 of ink
  const Stats s = stats(moe::to_mnist_input(c.image(), true));
  EXPECT_EQ(s.height(), 20);
  EXPECT_EQ(s.width(), 12);
  EXPECT_NEAR(s.cx, 14.0, 0.5);
  EXPECT_NEAR(s.cy, 14.0, 0.5);
}

TEST_F(ImageTest, GreyPaperJpegPhotoIsCleanedUp) {
  // Grey, slightly noisy paper with a pencil-grey stroke: the paper must not count as ink.
  Canvas c(300, 200, 190);
  uint32_t seed = 1;
  for (auto& v : c.px) {
    seed = seed * 1664525u + 1013904223u;
    v = uint8_t(180 + (seed >> 24) % 21);
  }
  c.rect(130, 40, 30, 120, 70);
  const std::string p = path("photo.jpg");
  ASSERT_TRUE(stbi_write_jpg(p.c_str(), c.w, c.h, 1, c.px.data(), 90));
  const Stats s = stats(moe::to_mnist_input(moe::load_grey_image(p), true));
  EXPECT_EQ(s.height(), 20);
  EXPECT_NEAR(s.width(), 5, 1);
  EXPECT_FLOAT_EQ(s.hi, 1.0f);
  EXPECT_NEAR(s.cx, 14.0, 0.5);
}

TEST_F(ImageTest, LoneSpecksDoNotWidenTheBox) {
  Canvas c(200, 200, 255);
  c.rect(90, 50, 20, 100, 0);
  c.rect(5, 5, 1, 1, 0);
  c.rect(190, 180, 1, 1, 0);
  const Stats s = stats(moe::to_mnist_input(c.image(), true));
  EXPECT_EQ(s.height(), 20);
  EXPECT_EQ(s.width(), 4);
  c.rect(5, 5, 2, 2, 0);  // a 2x2 blot is ink, not a speck: the box now spans x 5..109, y 5..149
  const Stats t = stats(moe::to_mnist_input(c.image(), true));
  EXPECT_EQ(t.height(), 20);
  EXPECT_NEAR(t.width(), 105.0 * 20 / 145, 1);
}

TEST_F(ImageTest, TransparentPngStrokesAreCompositedOverWhite) {
  // Black everywhere; only alpha says where the stroke is, as canvas exports often do.
  const int w = 40, h = 40;
  std::vector<uint8_t> rgba(size_t(w) * h * 4, 0);
  for (int y = 5; y < 35; ++y)
    for (int x = 18; x < 24; ++x) rgba[(size_t(y) * w + x) * 4 + 3] = 255;
  const std::string p = path("alpha.png");
  ASSERT_TRUE(stbi_write_png(p.c_str(), w, h, 4, rgba.data(), w * 4));
  const moe::GreyImage img = moe::load_grey_image(p);
  EXPECT_EQ(img.pixels[0], 255);
  EXPECT_EQ(img.pixels[size_t(20) * w + 20], 0);
  const Stats s = stats(moe::to_mnist_input(img, true));
  EXPECT_EQ(s.height(), 20);
  EXPECT_EQ(s.width(), 4);
}

// Issue #20: white strokes on a transparent canvas were composited over white, a blank image that no
// --invert could rescue. Transparent pixels take the paper's shade, the opposite of the strokes'.
TEST_F(ImageTest, TransparentBackgroundTakesThePapersShade) {
  const int w = 40, h = 40;
  auto png = [&](const std::string& name, uint8_t stroke, uint8_t margin_alpha, uint8_t inside) {
    std::vector<uint8_t> rgba(size_t(w) * h * 4, 0);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        uint8_t* q = &rgba[(size_t(y) * w + x) * 4];
        const bool bar = y >= 5 && y < 35 && x >= 18 && x < 24;
        const bool margin = x < 3 || y < 3 || x >= w - 3 || y >= h - 3;
        q[0] = q[1] = q[2] = bar ? stroke : inside;
        q[3] = bar ? 255 : margin ? margin_alpha : inside == stroke ? 0 : 255;
      }
    const std::string p = path(name);
    EXPECT_TRUE(stbi_write_png(p.c_str(), w, h, 4, rgba.data(), w * 4));
    return moe::load_grey_image(p);
  };
  // White strokes on a transparent canvas: black paper, read without --invert like MNIST.
  const moe::GreyImage white = png("white.png", 255, 0, 255);
  EXPECT_EQ(white.pixels[0], 0);
  EXPECT_EQ(white.pixels[size_t(20) * w + 20], 255);
  EXPECT_EQ(stats(moe::prepare_digit(white, false, "white.png", "--invert").pixels).height(), 20);
  // An opaque white page with a black bar and a transparent margin: the margin is paper too (white).
  const moe::GreyImage page = png("page.png", 0, 0, 255);
  EXPECT_EQ(page.pixels[0], 255);
  EXPECT_EQ(page.pixels[size_t(20) * w + 20], 0);
  const Stats s = stats(moe::prepare_digit(page, true, "page.png", "--invert").pixels);
  EXPECT_EQ(s.height(), 20);
  EXPECT_EQ(s.width(), 4);
}

// Issue #20: `predict --image` and /v1/predict share this judgement, so both refuse an image without
// ink and say which option would find it.
TEST_F(ImageTest, PrepareDigitRefusesNoInkAndNamesTheInvertOption) {
  Canvas dark_on_light(60, 60, 255);
  dark_on_light.rect(25, 10, 8, 40, 0);
  auto message = [](const moe::GreyImage& img, bool invert, const std::string& option) -> std::string {
    try {
      moe::prepare_digit(img, invert, "seven.png", option);
    } catch (const moe::InputError& e) {
      return e.what();
    }
    return "(accepted)";
  };
  EXPECT_EQ(message(dark_on_light.image(), false, "?invert=1"),
            "seven.png: no ink found; the image looks like a dark digit on light paper: add ?invert=1");
  const moe::DigitInput ok = moe::prepare_digit(dark_on_light.image(), true, "seven.png", "--invert");
  EXPECT_EQ(stats(ok.pixels).height(), 20);
  EXPECT_EQ(ok.warning, "");
  Canvas light_on_dark(60, 60, 0);
  light_on_dark.rect(25, 10, 8, 40, 255);
  EXPECT_EQ(message(light_on_dark.image(), true, "--invert"),
            "seven.png: no ink found; the image looks like a light digit on dark paper: drop --invert");
  EXPECT_EQ(moe::prepare_digit(light_on_dark.image(), false, "seven.png", "--invert").pixels,
            moe::to_mnist_input(light_on_dark.image(), false));
  for (uint8_t shade : {0, 128, 255})
    for (bool invert : {false, true})
      EXPECT_EQ(message(Canvas(30, 30, shade).image(), invert, "--invert"),
                "seven.png: no ink found, with or without --invert (a blank, uniform or fully transparent image)");
  EXPECT_EQ(message(moe::GreyImage{}, false, "--invert"),
            "seven.png: no ink found, with or without --invert (a blank, uniform or fully transparent image)");
  // Ink that stands out, but on paper of the other polarity (a bright glare on white paper): classified,
  // with a warning.
  Canvas glare(60, 60, 200);
  glare.rect(25, 10, 8, 40, 255);
  const moe::DigitInput warned = moe::prepare_digit(glare.image(), false, "seven.png", "--invert");
  EXPECT_EQ(stats(warned.pixels).height(), 20);
  EXPECT_EQ(warned.warning, "seven.png looks like a dark digit on light paper; add --invert");
}

TEST_F(ImageTest, ColourImageIsConvertedToGrey) {
  const int w = 4, h = 2;
  std::vector<uint8_t> rgb(size_t(w) * h * 3, 255);
  rgb[0] = 0, rgb[1] = 0, rgb[2] = 0;  // black
  rgb[3] = 255, rgb[4] = 0, rgb[5] = 0;  // red
  const std::string p = path("colour.png");
  ASSERT_TRUE(stbi_write_png(p.c_str(), w, h, 3, rgb.data(), w * 3));
  const moe::GreyImage img = moe::load_grey_image(p);
  ASSERT_EQ(img.pixels.size(), 8u);
  EXPECT_EQ(img.pixels[0], 0);
  EXPECT_NEAR(img.pixels[1], 0.299 * 255, 2);
  EXPECT_EQ(img.pixels[2], 255);
}

TEST_F(ImageTest, BlankImagesGiveAllZeros) {
  EXPECT_EQ(moe::to_mnist_input(Canvas(50, 40, 255).image(), true), std::vector<float>(784, 0.0f));
  EXPECT_EQ(moe::to_mnist_input(Canvas(50, 40, 0).image(), false), std::vector<float>(784, 0.0f));
  EXPECT_EQ(moe::to_mnist_input(Canvas(50, 40, 128).image(), true), std::vector<float>(784, 0.0f));
  EXPECT_EQ(moe::to_mnist_input(Canvas(1, 1, 255).image(), false), std::vector<float>(784, 0.0f));
  EXPECT_EQ(moe::to_mnist_input(moe::GreyImage{}, true), std::vector<float>(784, 0.0f));
}

TEST_F(ImageTest, PreparedMnistImageIsAFixedPoint) {
  Canvas c(100, 60, 255);
  c.rect(20, 15, 50, 25, 0);
  c.rect(20, 15, 10, 45, 0);
  const auto once = moe::to_mnist_input(c.image(), true);
  moe::GreyImage again{28, 28, {}};
  for (float v : once) again.pixels.push_back(uint8_t(std::lround(v * 255)));
  const auto twice = moe::to_mnist_input(again, false);
  const Stats a = stats(once), b = stats(twice);
  EXPECT_EQ(a.x0, b.x0);
  EXPECT_EQ(a.y0, b.y0);
  EXPECT_EQ(a.x1, b.x1);
  EXPECT_EQ(a.y1, b.y1);
  EXPECT_NEAR(a.cx, b.cx, 0.2);
  EXPECT_NEAR(a.cy, b.cy, 0.2);
}

TEST_F(ImageTest, TextFileIsNotAnImage) {
  const std::string p = write_bytes("digit.png", "this is not a picture\n");
  try {
    moe::load_grey_image(p);
    FAIL() << "expected InputError";
  } catch (const moe::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_NE(msg.find("not an image"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST_F(ImageTest, TruncatedPngIsRejected) {
  Canvas c(64, 64, 255);
  c.rect(10, 10, 20, 40, 0);
  const std::string full = path("full.png");
  ASSERT_TRUE(stbi_write_png(full.c_str(), c.w, c.h, 1, c.px.data(), c.w));
  const std::string bytes = moe::test::read_bytes(full);
  const std::string p = write_bytes("cut.png", bytes.substr(0, bytes.size() / 2));
  EXPECT_THROW(moe::load_grey_image(p), moe::InputError);
}

namespace {

// A 28x28 white-on-black digit-like shape whose last pixel is black (0), so an ASCII file's last
// sample is the single digit "0" and every cut before it removes a whole sample.
Canvas digit_canvas() {
  Canvas c(28, 28, 0);
  c.rect(8, 4, 4, 20, 255);
  c.rect(8, 4, 12, 4, 200);
  return c;
}

std::string pnm(const std::string& magic, const Canvas& c, int maxval, int channels) {
  std::ostringstream s;
  s << magic << "\n" << c.w << " " << c.h << "\n" << maxval << "\n";
  const bool ascii = magic == "P2" || magic == "P3";
  for (uint8_t v : c.px)
    for (int ch = 0; ch < channels; ++ch) {
      const unsigned sample = (unsigned(v) * unsigned(maxval) + 127) / 255;
      if (ascii) s << sample << (&v == &c.px.back() && ch == channels - 1 ? "\n" : " ");
      else if (maxval > 255) s << char(sample >> 8) << char(sample & 255);
      else s << char(sample);
    }
  return s.str();
}

void write_to_string(void* context, void* data, int size) { static_cast<std::string*>(context)->append(static_cast<char*>(data), size_t(size)); }

struct Encoded {
  std::string name, bytes;
  bool lossless;
  size_t complete;  // the shortest prefix that is still the whole image
};

std::vector<Encoded> every_format(const Canvas& c) {
  std::vector<Encoded> out;
  std::string png1, png3, png4, jpg1, jpg3;
  std::vector<uint8_t> rgb, rgba;
  for (uint8_t v : c.px) {
    rgb.insert(rgb.end(), {v, v, v});
    rgba.insert(rgba.end(), {v, v, v, 255});
  }
  EXPECT_TRUE(stbi_write_png_to_func(write_to_string, &png1, c.w, c.h, 1, c.px.data(), c.w));
  EXPECT_TRUE(stbi_write_png_to_func(write_to_string, &png3, c.w, c.h, 3, rgb.data(), 3 * c.w));
  EXPECT_TRUE(stbi_write_png_to_func(write_to_string, &png4, c.w, c.h, 4, rgba.data(), 4 * c.w));
  EXPECT_TRUE(stbi_write_jpg_to_func(write_to_string, &jpg1, c.w, c.h, 1, c.px.data(), 95));
  EXPECT_TRUE(stbi_write_jpg_to_func(write_to_string, &jpg3, c.w, c.h, 3, rgb.data(), 95));
  out.push_back({"grey.png", png1, true, png1.size()});
  out.push_back({"rgb.png", png3, true, png3.size()});
  out.push_back({"rgba.png", png4, true, png4.size()});
  out.push_back({"grey.jpg", jpg1, false, jpg1.size()});
  out.push_back({"rgb.jpg", jpg3, false, jpg3.size()});
  for (const auto& [magic, channels] : {std::pair<std::string, int>{"P2", 1}, {"P3", 3}, {"P5", 1}, {"P6", 3}})
    for (int maxval : {255, 1000}) {
      const std::string b = pnm(magic, c, maxval, channels);
      const bool ascii = magic == "P2" || magic == "P3";
      out.push_back({magic + "-" + std::to_string(maxval) + (channels == 3 ? ".ppm" : ".pgm"), b, true, ascii ? b.size() - 1 : b.size()});
    }
  return out;
}

}  // namespace

// Issue #20, cause 2: a cut-off upload in any format we read is refused, naming the source, and is
// never decoded with pixels the file did not contain.
TEST_F(ImageTest, EveryFormatDecodesWholeAndRefusesEveryTruncation) {
  const Canvas c = digit_canvas();
  for (const Encoded& e : every_format(c)) {
    SCOPED_TRACE(e.name);
    const moe::GreyImage whole = moe::decode_grey_image(e.bytes, e.name);
    ASSERT_EQ(whole.width, 28);
    ASSERT_EQ(whole.height, 28);
    if (e.lossless) {
      // PNM luma of a grey pixel and 16-bit rescaling may be one level off; nothing more.
      for (size_t i = 0; i < c.px.size(); ++i) ASSERT_NEAR(int(whole.pixels[i]), int(c.px[i]), 1) << "pixel " << i;
    }
    for (size_t len = 0; len < e.complete; ++len) {
      try {
        const moe::GreyImage img = moe::decode_grey_image(e.bytes.substr(0, len), e.name);
        ADD_FAILURE() << "a " << len << "-byte prefix of " << e.bytes.size() << " was decoded as " << img.width << "x" << img.height;
        break;
      } catch (const moe::InputError& err) {
        const std::string msg = err.what();
        ASSERT_NE(msg.find(e.name), std::string::npos) << msg;
        ASSERT_EQ(msg.find('\n'), std::string::npos) << msg;
      }
    }
  }
}

TEST_F(ImageTest, ShortPgmSaysHowManyBytesItNeedsAndFound) {
  try {
    moe::decode_grey_image("P5\n28 28\n255\n" + std::string(10, '\x7f'), "cut.pgm");
    FAIL() << "expected InputError";
  } catch (const moe::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.pgm: PGM (P5): 28x28 at 8 bits needs 784 bytes of pixels, found 10"), std::string::npos) << e.what();
  }
  // The 16-bit colour file that overflowed stb_image's buffer (fuzz_predict_image).
  const std::string found = moe::test::read_bytes(std::string(MOE_MNIST_SOURCE_DIR) + "/tests/fuzz/regressions/image/pnm-p6-maxval256-truncated");
  try {
    moe::decode_grey_image(found, "found.ppm");
    FAIL() << "expected InputError";
  } catch (const moe::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("PPM (P6): 28x28 at 16 bits needs 4704 bytes of pixels, found"), std::string::npos) << e.what();
  }
}

TEST_F(ImageTest, SixteenBitSamplesAreScaledToEightBits) {
  // 2x1 P5 at maxval 1000: 0 and 1000 are black and white, 500 is mid-grey.
  const std::string b = std::string("P5\n3 1\n1000\n") + '\0' + '\0' + char(0x01) + char(0xF4) + char(0x03) + char(0xE8);
  const moe::GreyImage img = moe::decode_grey_image(b, "deep.pgm");
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{0, 128, 255}));
}

TEST_F(ImageTest, PngHeaderWithHugeDimensionsIsReportedAsSuch) {
  std::string b("\x89PNG\r\n\x1a\n", 8);
  b += std::string("\0\0\0\x0dIHDR", 8);
  b += std::string("\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x00\x00\x00\x00", 13);  // 100000 x 100000, grey
  b += std::string(4, '\0');                                                      // CRC (not checked)
  try {
    moe::decode_grey_image(b, "huge.png");
    FAIL() << "expected InputError";
  } catch (const moe::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("huge.png: PNG header says 100000x100000 pixels"), std::string::npos) << e.what();
  }
}

TEST_F(ImageTest, UnsupportedFormatsAreNamed) {
  for (const auto& [bytes, name] : {std::pair<std::string, std::string>{"BM\x36\0\0\0", "BMP"}, {"GIF89a\x01\0\x01\0", "GIF"},
                                    {std::string("II*\0\x08\0\0\0", 8), "TIFF"}, {"P4\n8 1\n\xff", "PBM"}}) {
    try {
      moe::decode_grey_image(bytes, "upload");
      ADD_FAILURE() << name << " accepted";
    } catch (const moe::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("a " + name), std::string::npos) << e.what();
    }
  }
}

TEST_F(ImageTest, MissingAndEmptyFilesAreInputErrors) {
  const std::string missing = path("nope.png");
  try {
    moe::load_grey_image(missing);
    FAIL() << "expected InputError";
  } catch (const moe::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  const std::string empty = write_bytes("empty.png", "");
  try {
    moe::load_grey_image(empty);
    FAIL() << "expected InputError";
  } catch (const moe::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(empty), std::string::npos) << e.what();
  }
}

TEST_F(ImageTest, ZeroSizePgmIsRejected) {
  EXPECT_THROW(moe::load_grey_image(write_bytes("zero.pgm", "P5\n0 0\n255\n")), moe::InputError);
}

TEST_F(ImageTest, AsciiArtIs28SquareLines) {
  std::vector<float> p(784, 0.0f);
  p[0] = 1.0f;
  p[27 * 28 + 27] = 0.5f;
  const std::string art = moe::ascii_art(p.data());
  std::istringstream in(art);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 28u);
  for (const auto& l : lines) EXPECT_EQ(l.size(), 56u);
  EXPECT_EQ(lines[0].substr(0, 4), "@@  ");
  EXPECT_EQ(lines[1], std::string(56, ' '));
  EXPECT_NE(lines[27].substr(54, 2), "  ");
  EXPECT_NE(lines[27].substr(54, 2), "@@");
  EXPECT_EQ(art.back(), '\n');
}

}  // namespace

namespace {

// An APP1 Exif segment holding one IFD0 entry, Orientation (0x0112, SHORT, 1 value) = `orientation`.
std::string exif_segment(unsigned orientation, bool little = true) {
  auto u16 = [&](unsigned v) { return little ? std::string{char(v & 255), char(v >> 8)} : std::string{char(v >> 8), char(v & 255)}; };
  auto u32 = [&](uint32_t v) { return little ? u16(v & 0xFFFF) + u16(v >> 16) : u16(v >> 16) + u16(v & 0xFFFF); };
  std::string tiff = std::string(little ? "II" : "MM") + u16(42) + u32(8);
  tiff += u16(1) + u16(0x0112) + u16(3) + u32(1) + u16(orientation) + u16(0) + u32(0);
  const std::string payload = std::string("Exif\0\0", 6) + tiff;
  const size_t length = payload.size() + 2;
  return std::string{char(0xFF), char(0xE1), char(length >> 8), char(length & 255)} + payload;
}

// A 48x24 JPEG, black with a white 16x8 block in its stored top-left corner, with `app1` spliced in
// after the start-of-image marker.
std::string jpeg_with(const std::string& app1) {
  Canvas c(48, 24, 0);
  c.rect(0, 0, 16, 8, 255);
  std::string jpg;
  stbi_write_jpg_to_func([](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size_t(size)); },
                         &jpg, c.w, c.h, 1, c.px.data(), 100);
  return jpg.substr(0, 2) + app1 + jpg.substr(2);
}

// The mean of the rectangle [x0, x0 + w) x [y0, y0 + h) of `img`, and of everything outside it.
std::pair<double, double> inside_outside(const moe::GreyImage& img, int x0, int y0, int w, int h) {
  double in = 0, out = 0;
  int n_in = 0, n_out = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const bool inside = x >= x0 && x < x0 + w && y >= y0 && y < y0 + h;
      (inside ? in : out) += img.pixels[size_t(y) * img.width + x];
      ++(inside ? n_in : n_out);
    }
  return {in / std::max(n_in, 1), out / std::max(n_out, 1)};
}

}  // namespace

// Issue #20: a phone photo's EXIF Orientation was ignored, so a 7 shot sideways was read sideways.
TEST_F(ImageTest, JpegExifOrientationIsApplied) {
  struct Case {
    unsigned orientation;
    int w, h, x0, y0, bw, bh;  // the upright image's size and where the stored top-left block shows
  };
  for (const Case& k : {Case{1, 48, 24, 0, 0, 16, 8}, Case{3, 48, 24, 32, 16, 16, 8}, Case{6, 24, 48, 16, 0, 8, 16},
                        Case{8, 24, 48, 0, 32, 8, 16}}) {
    for (bool little : {true, false}) {
      SCOPED_TRACE("orientation " + std::to_string(k.orientation) + (little ? " II" : " MM"));
      const std::string jpg = jpeg_with(exif_segment(k.orientation, little));
      EXPECT_EQ(moe::jpeg_exif_orientation(jpg), int(k.orientation));
      const moe::GreyImage img = moe::load_grey_image(write_bytes("o.jpg", jpg));
      ASSERT_EQ(img.width, k.w);
      ASSERT_EQ(img.height, k.h);
      const auto [in, out] = inside_outside(img, k.x0, k.y0, k.bw, k.bh);
      EXPECT_GT(in, 230);
      EXPECT_LT(out, 25);
    }
  }
}

TEST_F(ImageTest, EveryExifOrientationTurnsPixelsExactly) {
  // 3x2, stored as  a b c / d e f.
  const moe::GreyImage img{3, 2, {1, 2, 3, 4, 5, 6}};
  const std::vector<std::vector<uint8_t>> want = {
      {1, 2, 3, 4, 5, 6}, {3, 2, 1, 6, 5, 4}, {6, 5, 4, 3, 2, 1}, {4, 5, 6, 1, 2, 3},  // 1-4: 3 wide
      {1, 4, 2, 5, 3, 6}, {4, 1, 5, 2, 6, 3}, {6, 3, 5, 2, 4, 1}, {3, 6, 2, 5, 1, 4}};  // 5-8: 2 wide
  for (int o = 1; o <= 8; ++o) {
    const moe::GreyImage t = moe::apply_exif_orientation(img, o);
    EXPECT_EQ(t.width, o >= 5 ? 2 : 3) << o;
    EXPECT_EQ(t.pixels, want[size_t(o - 1)]) << o;
  }
  EXPECT_EQ(moe::apply_exif_orientation(img, 9).pixels, img.pixels);
}

// A malformed EXIF block is ignored: the image decodes as stored, never a crash or a read past the end.
TEST_F(ImageTest, MalformedExifIsIgnored) {
  const std::string good = exif_segment(6);
  std::vector<std::string> bad = {
      exif_segment(0), exif_segment(9), exif_segment(0xFFFF),
      good.substr(0, 2) + "\xFF\xF0" + good.substr(4),  // segment longer than the file
      good.substr(0, 2) + std::string("\x00\x09", 2) + good.substr(4, 7),  // too short for its TIFF header
  };
  std::string far_ifd = good;  // IFD0 offset past the segment
  far_ifd[14] = char(0xF0);
  bad.push_back(far_ifd);
  std::string many = good;  // 65535 entries claimed, one present (not the orientation)
  many[18] = many[19] = char(0xFF);
  many[20] = 0, many[21] = 1;
  bad.push_back(many);
  std::string wrong_type = good;  // LONG instead of SHORT
  wrong_type[22] = 4;
  bad.push_back(wrong_type);
  std::string not_tiff = good;
  not_tiff[10] = 'X';
  bad.push_back(not_tiff);
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    const std::string jpg = jpeg_with(bad[i]);
    if (i == 3) {  // the JPEG's own structure is broken too: refused as truncated, or as stored
      EXPECT_EQ(moe::jpeg_exif_orientation(jpg), 1);
      continue;
    }
    EXPECT_EQ(moe::jpeg_exif_orientation(jpg), 1);
    const moe::GreyImage img = moe::decode_grey_image(jpg, "bad exif");
    EXPECT_EQ(img.width, 48);
    EXPECT_EQ(img.height, 24);
  }
  // Every prefix of a JPEG with a valid Exif segment: an orientation or 1, never past the bytes given.
  const std::string jpg = jpeg_with(good);
  for (size_t n = 0; n < 64; ++n) {
    const std::string cut = jpg.substr(0, n);  // a copy of exactly n bytes, so ASan sees any overread
    const int o = moe::jpeg_exif_orientation(cut);
    EXPECT_TRUE(o == 1 || (o == 6 && n >= 2 + good.size())) << n;
  }
  EXPECT_EQ(moe::jpeg_exif_orientation(jpg.substr(0, 2 + good.size())), 6);
}

namespace {
// A PNG chunk with its CRC-32 (ISO 3309, over type and data, as PNG requires).
std::string png_chunk(const std::string& type, const std::string& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char ch : type + data) {
    crc ^= ch;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xFFFFFFFFu;
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16 & 255), char(v >> 8 & 255), char(v & 255)}; };
  return be32(uint32_t(data.size())) + type + data + be32(crc);
}

// The 48x24 image of jpeg_with as a PNG with an eXIf chunk holding `tiff` right after IHDR.
std::string png_with_exif(const std::string& tiff) {
  Canvas c(48, 24, 0);
  c.rect(0, 0, 16, 8, 255);
  std::string png;
  stbi_write_png_to_func([](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size_t(size)); },
                         &png, c.w, c.h, 1, c.px.data(), c.w);
  const size_t after_ihdr = 8 + 12 + 13;
  return png.substr(0, after_ihdr) + png_chunk("eXIf", tiff) + png.substr(after_ihdr);
}
}  // namespace

// A PNG's eXIf chunk is honoured as JPEG's Exif segment is (the TIFF structure without "Exif\0\0").
TEST_F(ImageTest, PngExifOrientationIsApplied) {
  for (unsigned o : {1u, 3u, 6u, 8u}) {
    const std::string tiff = exif_segment(o).substr(4 + 6);
    const std::string png = png_with_exif(tiff);
    EXPECT_EQ(moe::png_exif_orientation(png), int(o));
    const moe::GreyImage img = moe::load_grey_image(write_bytes("o.png", png));
    ASSERT_EQ(img.width, o >= 5 ? 24 : 48) << o;
    const auto [in, out] = inside_outside(img, o == 3 ? 32 : o == 8 ? 0 : o == 6 ? 16 : 0, o == 3 ? 16 : o == 8 ? 32 : 0,
                                          o >= 5 ? 8 : 16, o >= 5 ? 16 : 8);
    EXPECT_GT(in, 230) << o;
    EXPECT_LT(out, 25) << o;
  }
  // Every prefix, and a chunk claiming more bytes than the file has: 1, never a read past the bytes.
  const std::string png = png_with_exif(exif_segment(6).substr(10));
  for (size_t n = 0; n < 80; ++n) {
    const int o = moe::png_exif_orientation(png.substr(0, n));
    EXPECT_TRUE(o == 1 || (o == 6 && n >= 33 + 12 + 26)) << n;
  }
  std::string huge = png;
  huge[33] = char(0x7F);
  EXPECT_EQ(moe::png_exif_orientation(huge), 1);
  EXPECT_EQ(moe::exif_orientation(png), 6);
  EXPECT_EQ(moe::exif_orientation(jpeg_with(exif_segment(3))), 3);
}

namespace moe {
namespace {
// fuzz_predict_image found a JPEG whose Huffman table (DHT) claims more than 256 codes: Debian's
// stb_image 2.27 writes past its tables for it. It is refused before stb_image sees it, naming why.
TEST(JpegGuard, AHuffmanTableOfOver256CodesIsRefused) {
  const std::string bytes =
      read_file(std::string(MOE_MNIST_SOURCE_DIR) + "/tests/fuzz/regressions/image/jpeg-dht-claims-over-256-codes");
  try {
    decode_grey_image(bytes, "x.jpg");
    ADD_FAILURE() << "decoded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("x.jpg: malformed JPEG"), std::string::npos) << e.what();
  }
  // The same after 0xFF fill bytes before SOI, which stb_image skips too.
  try {
    decode_grey_image(std::string(40, '\xFF') + bytes, "f.jpg");
    ADD_FAILURE() << "decoded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("f.jpg: malformed JPEG"), std::string::npos) << e.what();
  }
  // The smallest such table, in an otherwise well-formed header: 16 counts of 17 codes each.
  std::string dht = "\xFF\xD8\xFF\xC4";
  const size_t length = 2 + 17 + 272;
  dht += char(length >> 8);
  dht += char(length & 0xFF);
  dht += '\x00';
  dht += std::string(16, '\x11');
  dht += std::string(272, '\x00');
  dht += "\xFF\xD9";
  try {
    decode_grey_image(dht, "y.jpg");
    ADD_FAILURE() << "decoded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("claims 272 codes, at most 256"), std::string::npos) << e.what();
  }
}
}  // namespace
}  // namespace moe
