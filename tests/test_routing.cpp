// The routing rule and its statistics on gate outputs made by hand, so every answer is known, and
// the gnuplot pictures as files (real PNG/SVG of the stated size that an image reader opens).
#include <cmath>
#include <numeric>
#include <random>
#include <regex>

#include "base/errors.h"
#include "data/image.h"
#include "report/plot.h"
#include "base/process.h"
#include "model/reference.h"
#include "model/routing.h"
#include "test_util.h"

namespace moe {
namespace {

// n identical rows of `p`.
std::vector<float> rows(const std::vector<float>& p, int64_t n) {
  std::vector<float> v;
  for (int64_t i = 0; i < n; ++i) v.insert(v.end(), p.begin(), p.end());
  return v;
}

TEST(Route, WeightsAreTheSoftmaxOfTheChosenProbabilities) {
  const float p[] = {0.1f, 0.6f, 0.3f};
  int64_t e[2];
  float w[2];
  route(p, 3, 2, e, w);
  EXPECT_EQ(e[0], 1);
  EXPECT_EQ(e[1], 2);
  EXPECT_NEAR(w[0], std::exp(0.6) / (std::exp(0.6) + std::exp(0.3)), 1e-6);
  EXPECT_NEAR(w[0] + w[1], 1.0, 1e-6);
}

TEST(Route, TiesGoToTheLowerIndex) {
  const float p[] = {0.2f, 0.4f, 0.4f};
  int64_t e[2];
  float w[2];
  route(p, 3, 1, e, w);
  EXPECT_EQ(e[0], 1);
  EXPECT_FLOAT_EQ(w[0], 1.f);
  route(p, 3, 2, e, w);
  EXPECT_EQ(e[0], 1);
  EXPECT_EQ(e[1], 2);
  EXPECT_FLOAT_EQ(w[0], 0.5f);
}

TEST(RoutingStats, UniformGateTakesTheFirstKAndIsPerfectlyUncertain) {
  const int64_t n = 10, E = 4, k = 2;
  const auto g = rows({0.25f, 0.25f, 0.25f, 0.25f}, n);
  const RoutingStats s = routing_stats(g.data(), n, E, k);
  EXPECT_EQ(s.load, (std::vector<double>{0.5, 0.5, 0, 0}));  // ties -> experts 0 and 1
  for (double v : s.importance) EXPECT_NEAR(v, 0.25, 1e-7);
  EXPECT_NEAR(s.importance_cv, 0.0, 1e-6);
  // load CV by hand: mean 0.25, sample std sqrt(4 * 0.25^2 / 3)
  EXPECT_NEAR(s.load_cv, std::sqrt(4 * 0.0625 / 3) / 0.25, 1e-9);
  EXPECT_NEAR(s.gate_entropy, std::log(4.0), 1e-6);
  EXPECT_NEAR(s.load_entropy, std::log(2.0), 1e-9);
  EXPECT_NEAR(s.mean_margin, 0.0, 1e-7);
  EXPECT_EQ(s.dead, (std::vector<int64_t>{2, 3}));
  EXPECT_NEAR(s.mean_weight[0], 0.5, 1e-6);
  EXPECT_EQ(s.mean_weight[2], 0.0);
  EXPECT_EQ(s.co_selection[0][1], n);
  EXPECT_EQ(s.co_selection[0][0], n);
  ASSERT_EQ(s.top_pairs.size(), 1u);
  EXPECT_EQ(s.top_pairs[0].first, std::make_pair(int64_t(0), int64_t(1)));
}

TEST(RoutingStats, AGateThatAlwaysPicksExpertZero) {
  const int64_t n = 7, E = 4, k = 1;
  const auto g = rows({0.7f, 0.1f, 0.1f, 0.1f}, n);
  const RoutingStats s = routing_stats(g.data(), n, E, k);
  EXPECT_EQ(s.load, (std::vector<double>{1, 0, 0, 0}));
  EXPECT_NEAR(s.importance[0], 0.7, 1e-6);
  EXPECT_NEAR(s.importance_cv, 1.2, 1e-5);  // mean 0.25, sample std sqrt((0.45^2 + 3 * 0.15^2) / 3) = 0.3
  EXPECT_NEAR(s.load_cv, 2.0, 1e-9);        // mean 0.25, sample std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5
  EXPECT_NEAR(s.gate_entropy, -(0.7 * std::log(0.7) + 3 * 0.1 * std::log(0.1)), 1e-6);
  EXPECT_NEAR(s.load_entropy, 0.0, 1e-12);
  EXPECT_NEAR(s.mean_margin, 0.6, 1e-6);
  EXPECT_EQ(s.dead, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_NEAR(s.mean_weight[0], 1.0, 1e-7);
  EXPECT_TRUE(s.top_pairs.empty());
  EXPECT_EQ(s.accuracy_all, -1);  // no labels given
}

TEST(RoutingStats, SharesSumToOneAndMatricesAreConsistentOnRandomGates) {
  const int64_t n = 500, E = 6, k = 2, C = 10;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> g(static_cast<size_t>(n * E));
  std::vector<uint8_t> labels(static_cast<size_t>(n));
  std::vector<int64_t> pred(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    float sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += g[size_t(r * E + e)] = std::pow(u(rng), 3.f);
    for (int64_t e = 0; e < E; ++e) g[size_t(r * E + e)] /= sum;
    labels[size_t(r)] = uint8_t(r % C);
    pred[size_t(r)] = r % 3 == 0 ? (r + 1) % C : r % C;  // a third wrong
  }
  const RoutingStats s = routing_stats(g.data(), n, E, k, labels.data(), pred.data(), C, 5);
  EXPECT_NEAR(std::accumulate(s.load.begin(), s.load.end(), 0.0), 1.0, 1e-12);
  EXPECT_NEAR(std::accumulate(s.importance.begin(), s.importance.end(), 0.0), 1.0, 1e-5);
  EXPECT_NEAR(s.accuracy_all, double(n - (n + 2) / 3) / double(n), 1e-12);
  ASSERT_EQ(s.class_expert.size(), size_t(C));
  for (const auto& row : s.class_expert) EXPECT_NEAR(std::accumulate(row.begin(), row.end(), 0.0), 1.0, 1e-12);
  int64_t pair_sum = 0;
  for (int64_t i = 0; i < E; ++i) {
    EXPECT_EQ(s.co_selection[size_t(i)][size_t(i)], s.rows_served[size_t(i)]);
    for (int64_t j = 0; j < E; ++j) EXPECT_EQ(s.co_selection[size_t(i)][size_t(j)], s.co_selection[size_t(j)][size_t(i)]);
    ASSERT_EQ(s.top_rows[size_t(i)].size(), 5u);
  }
  for (const auto& p : s.top_pairs) pair_sum += p.second;
  EXPECT_EQ(pair_sum, n);  // k = 2: exactly one pair per image
  EXPECT_GE(s.top_pairs.front().second, s.top_pairs.back().second);
  // top_rows holds each expert's highest combine weights, best first.
  for (int64_t e = 0; e < E; ++e) {
    std::vector<float> w;
    for (int64_t r : s.top_rows[size_t(e)]) {
      int64_t chosen[2];
      float cw[2];
      route(g.data() + r * E, E, k, chosen, cw);
      w.push_back(chosen[0] == e ? cw[0] : cw[1]);
      EXPECT_TRUE(chosen[0] == e || chosen[1] == e);
    }
    EXPECT_TRUE(std::is_sorted(w.rbegin(), w.rend()));
  }
}

TEST(RoutingStats, DropExpertRenormalisesAndTheReferenceNeverRoutesThere) {
  float p[] = {0.5f, 0.3f, 0.2f};
  drop_expert(p, 3, 0);
  EXPECT_FLOAT_EQ(p[0], 0.f);
  EXPECT_FLOAT_EQ(p[1], 0.6f);
  EXPECT_FLOAT_EQ(p[2], 0.4f);

  ModelConfig c;
  ReferenceClassifier ref(test::random_checkpoint(c, 5));
  const int64_t n = 64;
  const auto x = test::random_images(n, 6);
  std::vector<float> logits(size_t(n * c.n_classes)), g(size_t(n * c.n_experts));
  ref.set_dropped_expert(3);
  ref.classify(x.data(), n, logits.data(), g.data());
  const RoutingStats s = routing_stats(g.data(), n, c.n_experts, c.top_k);
  EXPECT_EQ(s.load[3], 0.0);
  EXPECT_NEAR(std::accumulate(s.importance.begin(), s.importance.end(), 0.0), 1.0, 1e-5);
  EXPECT_THROW(ref.set_dropped_expert(c.n_experts), InputError);
}

// PNG: 8-byte signature, then the IHDR chunk with big-endian width and height.
std::pair<int, int> png_size(const std::string& b) {
  EXPECT_EQ(b.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(b.substr(12, 4), "IHDR");
  auto be32 = [&](size_t at) {
    return int((uint8_t(b[at]) << 24) | (uint8_t(b[at + 1]) << 16) | (uint8_t(b[at + 2]) << 8) | uint8_t(b[at + 3]));
  };
  return {be32(16), be32(20)};
}

void expect_picture(const std::vector<std::string>& files, const std::string& base) {
  ASSERT_EQ(files, (std::vector<std::string>{base + ".png", base + ".svg"}));
  const auto [w, h] = png_size(test::read_bytes(base + ".png"));
  EXPECT_GT(w, 100);
  EXPECT_GT(h, 100);
  const GreyImage img = load_grey_image(base + ".png");  // decodes
  EXPECT_EQ(img.width, w);
  EXPECT_EQ(img.height, h);
  int64_t distinct = 0;
  for (uint8_t v : img.pixels) distinct += v != img.pixels[0];
  EXPECT_GT(distinct, 1000) << base << ".png is blank";
  const std::string svg = test::read_bytes(base + ".svg");
  EXPECT_TRUE(test::contains(svg, "<svg")) << base;
  EXPECT_TRUE(test::contains(svg, "</svg>")) << base;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex(R"re(width="(\d+)" height="(\d+)")re"))) << base;
  EXPECT_EQ(std::stoi(m[1]), w);
  EXPECT_EQ(std::stoi(m[2]), h);
}

TEST(Plot, HeatmapBarsImageGridAndLinesAreRealPngAndSvg) {
  if (find_program("gnuplot").empty()) GTEST_SKIP() << "gnuplot not installed (scripts/setup.sh installs gnuplot-nox)";
  const std::string dir = test::temp_dir("plots");
  HeatmapSpec hm;
  hm.title = "it's a heatmap";  // a quote in a title must not break the script
  hm.x_names = {"0", "1", "2"};
  hm.y_names = {"a", "b"};
  hm.values = {{1, 2, 3}, {4, 5, 6}};
  expect_picture(plot_heatmap(hm, dir + "/heat"), dir + "/heat");
  EXPECT_EQ(png_size(test::read_bytes(dir + "/heat.png")), std::make_pair(560, 360));

  BarSpec bars;
  bars.categories = {"0", "1", "2", "3"};
  bars.series = {"load", "importance"};
  bars.values = {{0.1, 0.2, 0.3, 0.4}, {0.25, 0.25, 0.25, 0.25}};
  bars.reference = 0.25;
  bars.reference_name = "uniform";
  expect_picture(plot_bars(bars, dir + "/bars"), dir + "/bars");

  ImageGridSpec grid;
  grid.row_names = {"expert 0", "expert 1"};
  grid.images = {{std::vector<float>(784, 1.f), std::vector<float>(784, 0.5f)}, {std::vector<float>(784, 0.f)}};
  expect_picture(plot_image_grid(grid, dir + "/grid"), dir + "/grid");

  LinePanelsSpec lines;
  lines.x = {1, 2, 3};
  lines.panel_titles = {"loss", "accuracy"};
  lines.y = {{1.0, 0.5, 0.3}, {0.9, 0.95, 0.96}};
  expect_picture(plot_line_panels(lines, dir + "/lines"), dir + "/lines");

  SeriesSpec series;
  series.log_x = true;
  series.x_ticks = {1, 64, 1024};
  series.names = {"cpu fp32", "reference"};
  series.points = {{{1, 5e4}, {64, 7e5}, {1024, 9e5}}, {{1, 3e5}, {64, 3.2e5}}};
  expect_picture(plot_series(series, dir + "/series"), dir + "/series");
  EXPECT_EQ(plot_series(series, dir + "/only", {"svg"}), std::vector<std::string>{dir + "/only.svg"});
  EXPECT_FALSE(std::filesystem::exists(dir + "/only.png"));
}

}  // namespace
}  // namespace moe
