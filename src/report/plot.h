// Pictures drawn by gnuplot (Debian gnuplot-nox), the project's one way of drawing charts: the data
// and the script go to a fresh temp folder, gnuplot runs there through run_tool (no shell, no user
// path inside the script), and each picture is written as <out_base>.png (pngcairo) and
// <out_base>.svg (svg terminal). Throws UnavailableError when gnuplot is missing, ToolError when it fails.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

// A matrix drawn as coloured cells with each value printed in its cell.
struct HeatmapSpec {
  std::string title, x_label, y_label;
  std::vector<std::string> x_names, y_names;  // [cols], [rows]
  std::vector<std::vector<double>> values;    // [rows][cols]
  std::string cell_format = "%.2f";           // gnuplot sprintf format of the printed value
};

// Categories along x, one bar per series in each category, and an optional dashed horizontal line.
struct BarSpec {
  std::string title, y_label, x_label;
  std::vector<std::string> categories;         // [n]
  std::vector<std::string> series;             // [s]
  std::vector<std::vector<double>> values;     // [s][n]
  double reference = -1;                       // drawn as a dashed line when >= 0
  std::string reference_name;
};

// Rows of grey 28x28 images ([rows][m][784] values in [0,1]), one labelled row per entry.
struct ImageGridSpec {
  std::string title;
  std::vector<std::string> row_names;                  // [rows]
  std::vector<std::vector<std::vector<float>>> images; // [rows][m][784]
};

// Several panels side by side sharing an x axis (e.g. epochs): one line per panel.
struct LinePanelsSpec {
  std::string title, x_label;
  std::vector<double> x;                       // [n]
  std::vector<std::string> panel_titles;       // [p]
  std::vector<std::vector<double>> y;          // [p][n]
};

// Lines over a shared x axis (optionally log scale), one per named series, each point marked.
struct SeriesSpec {
  std::string title, x_label, y_label;
  bool log_x = false;
  std::vector<double> x_ticks;                               // labelled x positions ([] = gnuplot's)
  std::vector<std::string> names;                            // [s]
  std::vector<std::vector<std::pair<double, double>>> points; // [s][(x, y)]
};

// Each returns the files it wrote: {out_base.png, out_base.svg}.
std::vector<std::string> plot_heatmap(const HeatmapSpec& spec, const std::string& out_base);
std::vector<std::string> plot_bars(const BarSpec& spec, const std::string& out_base);
std::vector<std::string> plot_image_grid(const ImageGridSpec& spec, const std::string& out_base);
std::vector<std::string> plot_line_panels(const LinePanelsSpec& spec, const std::string& out_base);
// `formats`: which of "png", "svg" to write.
std::vector<std::string> plot_series(const SeriesSpec& spec, const std::string& out_base,
                                     const std::vector<std::string>& formats = {"png", "svg"});

// Lower-level: runs `body` (gnuplot commands that draw one picture, reading the named data files
// from the current folder) once per terminal, `data` being {file name, contents} written first.
// width/height in pixels. Returns the written files.
std::vector<std::string> run_gnuplot(const std::string& body, const std::vector<std::pair<std::string, std::string>>& data,
                                     int width, int height, const std::string& out_base,
                                     const std::vector<std::string>& formats = {"png", "svg"});

}  // namespace moe
