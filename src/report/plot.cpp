#include "report/plot.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/errors.h"
#include "base/process.h"

namespace moe {

namespace fs = std::filesystem;

namespace {

// A gnuplot single-quoted string: no escapes inside except '' for a quote.
std::string q(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("''") : std::string(1, c);
  return r + "'";
}

std::string tics(const std::vector<std::string>& names, double step = 1.0, double offset = 0.0) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < names.size(); ++i) s << (i ? ", " : "") << q(names[i]) << " " << offset + step * double(i);
  s << ")";
  return s.str();
}

struct TempDir {
  std::string path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "moe-mnist-plot-XXXXXX").string();
    if (!::mkdtemp(t.data())) throw ToolError("plot: cannot create a temp folder under " + fs::temp_directory_path().string());
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

std::vector<std::string> run_gnuplot(const std::string& body, const std::vector<std::pair<std::string, std::string>>& data,
                                     int width, int height, const std::string& out_base,
                                     const std::vector<std::string>& formats) {
  TempDir tmp;
  for (const auto& [name, contents] : data) std::ofstream(tmp.path + "/" + name, std::ios::binary) << contents;
  std::ostringstream script;
  script << "cd " << q(tmp.path) << "\n";
  const std::pair<const char*, const char*> terminals[] = {
      {"png", "pngcairo noenhanced font 'sans,10' background '#ffffff'"},
      {"svg", "svg noenhanced font 'sans,10' background '#ffffff'"}};
  for (const auto& [ext, term] : terminals) {
    if (std::find(formats.begin(), formats.end(), ext) == formats.end()) continue;
    script << "reset\nset terminal " << term << " size " << width << "," << height << "\n"
           << "set output 'picture." << ext << "'\n" << body << "\nunset multiplot\nset output\n";
  }
  std::ofstream(tmp.path + "/picture.gp") << script.str();
  run_tool({"gnuplot", tmp.path + "/picture.gp"}, "gnuplot not found: plots need it (apt install gnuplot-nox, see scripts/setup.sh)",
           "plot " + out_base);
  std::vector<std::string> written;
  const fs::path parent = fs::path(out_base).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  for (const auto& ext : formats) {
    const std::string src = tmp.path + "/picture." + ext, dst = out_base + "." + ext;
    if (!fs::exists(src)) throw ToolError("plot " + out_base + ": gnuplot wrote no " + ext + " file");
    std::error_code ec;
    fs::copy_file(src, dst, fs::copy_options::overwrite_existing, ec);
    if (ec) throw InputError(dst + ": cannot write (" + ec.message() + ")");
    written.push_back(dst);
  }
  return written;
}

std::vector<std::string> plot_heatmap(const HeatmapSpec& s, const std::string& out_base) {
  const size_t rows = s.values.size(), cols = rows ? s.values[0].size() : 0;
  std::ostringstream dat;
  double mx = 0;
  for (const auto& r : s.values) {
    for (size_t c = 0; c < r.size(); ++c) {
      dat << (c ? " " : "") << r[c];
      mx = std::max(mx, r[c]);
    }
    dat << "\n";
  }
  std::ostringstream b;
  b << "set title " << q(s.title) << "\nset xlabel " << q(s.x_label) << "\nset ylabel " << q(s.y_label) << "\n"
    << "set xtics " << tics(s.x_names) << " scale 0\nset ytics " << tics(s.y_names) << " scale 0\n"
    << "set xrange [-0.5:" << double(cols) - 0.5 << "]\nset yrange [" << double(rows) - 0.5 << ":-0.5]\n"
    << "set palette defined (0 '#ffffff', 0.5 '#9ecae1', 1 '#2171b5')\n"
    << "set cbrange [0:" << (mx > 0 ? mx : 1) << "]\nunset key\nset tics nomirror\n"
    << "plot 'values.dat' matrix with image, '' matrix using 1:2:(sprintf(" << q(s.cell_format)
    << ", $3)) with labels font ',8'\n";
  const int w = std::max(560, int(140 + 44 * cols)), h = std::max(360, int(120 + 34 * rows));
  return run_gnuplot(b.str(), {{"values.dat", dat.str()}}, w, h, out_base);
}

std::vector<std::string> plot_bars(const BarSpec& s, const std::string& out_base) {
  std::ostringstream dat;
  for (size_t i = 0; i < s.categories.size(); ++i) {
    dat << '"' << s.categories[i] << '"';
    for (const auto& series : s.values) dat << " " << series.at(i);
    dat << "\n";
  }
  std::ostringstream b;
  b << "set title " << q(s.title) << "\nset ylabel " << q(s.y_label) << "\nset xlabel " << q(s.x_label) << "\n"
    << "set style data histogram\nset style histogram cluster gap 1\nset style fill solid 0.85 border -1\n"
    << "set boxwidth 0.9\nset yrange [0:*]\nset key top right\nset grid ytics\nset xtics scale 0\n"
    << "set xrange [-0.6:" << double(s.categories.size()) - 0.4 << "]\n"
    << "set linetype 1 lc rgb '#2171b5'\nset linetype 2 lc rgb '#fd8d3c'\nset linetype 3 lc rgb '#74c476'\nplot ";
  for (size_t i = 0; i < s.series.size(); ++i)
    b << (i ? ", '' using " : "'bars.dat' using ") << i + 2 << (i ? "" : ":xtic(1)") << " title " << q(s.series[i]);
  if (s.reference >= 0) b << ", " << s.reference << " with lines dt 2 lw 1.5 lc rgb '#333333' title " << q(s.reference_name);
  b << "\n";
  const int w = std::max(560, int(160 + 50 * s.categories.size()));
  return run_gnuplot(b.str(), {{"bars.dat", dat.str()}}, w, 380, out_base);
}

std::vector<std::string> plot_image_grid(const ImageGridSpec& s, const std::string& out_base) {
  constexpr int kCell = 30;  // 28 px digit + 2 px gap
  const size_t rows = s.images.size();
  size_t m = 0;
  for (const auto& r : s.images) m = std::max(m, r.size());
  const size_t H = rows * kCell, W = std::max<size_t>(m, 1) * kCell;
  std::vector<float> canvas(H * W, 0.35f);  // grey gaps between the black digit tiles
  for (size_t r = 0; r < rows; ++r)
    for (size_t i = 0; i < s.images[r].size(); ++i)
      for (size_t y = 0; y < 28; ++y)
        for (size_t x = 0; x < 28; ++x) canvas[(r * kCell + 1 + y) * W + i * kCell + 1 + x] = s.images[r][i].at(y * 28 + x);
  std::ostringstream dat;
  for (size_t y = 0; y < H; ++y) {
    for (size_t x = 0; x < W; ++x) dat << (x ? " " : "") << canvas[y * W + x];
    dat << "\n";
  }
  std::ostringstream b;
  b << "set title " << q(s.title) << "\nunset key\nunset colorbox\nunset xtics\nset size ratio -1\n"
    << "set ytics " << tics(s.row_names, kCell, kCell / 2.0 - 0.5) << " scale 0\n"
    << "set xrange [-0.5:" << double(W) - 0.5 << "]\nset yrange [" << double(H) - 0.5 << ":-0.5]\n"
    << "set palette grey\nset cbrange [0:1]\nplot 'grid.dat' matrix with image\n";
  const int w = int(std::min<size_t>(2000, 120 + W * 2)), h = int(std::min<size_t>(2400, 80 + H * 2));
  return run_gnuplot(b.str(), {{"grid.dat", dat.str()}}, w, h, out_base);
}

std::vector<std::string> plot_line_panels(const LinePanelsSpec& s, const std::string& out_base) {
  std::ostringstream dat;
  for (size_t i = 0; i < s.x.size(); ++i) {
    dat << s.x[i];
    for (const auto& y : s.y) dat << " " << y.at(i);
    dat << "\n";
  }
  std::ostringstream b;
  b << "set multiplot layout 1," << s.y.size() << " title " << q(s.title) << "\nunset key\nset grid\n"
    << "set xlabel " << q(s.x_label) << "\n";
  if (s.x.size() <= 15) b << "set xtics 1\n";  // few epochs: whole-number ticks
  for (size_t p = 0; p < s.y.size(); ++p)
    b << "set title " << q(s.panel_titles.at(p)) << "\nplot 'lines.dat' using 1:" << p + 2
      << " with linespoints pt 7 ps 0.5 lw 1.5 lc rgb '#2171b5'\n";
  return run_gnuplot(b.str(), {{"lines.dat", dat.str()}}, int(360 * std::max<size_t>(s.y.size(), 1)), 340, out_base);
}

std::vector<std::string> plot_series(const SeriesSpec& s, const std::string& out_base, const std::vector<std::string>& formats) {
  std::ostringstream dat;  // one gnuplot data block per series, separated by two blank lines
  for (const auto& pts : s.points) {
    for (const auto& [x, y] : pts) dat << x << " " << y << "\n";
    dat << "\n\n";
  }
  std::ostringstream b;
  b << "set title " << q(s.title) << "\nset xlabel " << q(s.x_label) << "\nset ylabel " << q(s.y_label) << "\n"
    << "set grid\nset key outside right top\nset yrange [0:*]\nset format y '%.0f'\n";
  if (s.log_x) b << "set logscale x\n";
  if (s.log_x && !s.x_ticks.empty() && s.x_ticks.front() > 0)  // a margin of half a decade-ish either side
    b << "set xrange [" << s.x_ticks.front() / 1.6 << ":" << s.x_ticks.back() * 1.6 << "]\n";
  if (!s.x_ticks.empty()) {
    b << "set xtics (";
    for (size_t i = 0; i < s.x_ticks.size(); ++i) b << (i ? ", " : "") << s.x_ticks[i];
    b << ")\n";
  }
  b << "plot ";
  for (size_t i = 0; i < s.names.size(); ++i)
    b << (i ? ", " : "") << "'series.dat' index " << i << " using 1:2 with linespoints lw 2 pt 7 ps 0.8 title " << q(s.names[i]);
  if (s.names.empty()) b << "NaN notitle";
  b << "\n";
  return run_gnuplot(b.str(), {{"series.dat", dat.str()}}, 900, 460, out_base, formats);
}

}  // namespace moe
