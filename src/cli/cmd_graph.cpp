// `moe-mnist graph`
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "base/atomic_file.h"
#include "base/errors.h"

#ifdef MOE_MNIST_HAVE_ONNX
#include "onnx_export/graph_dot.h"
#endif

namespace moe {

void add_graph_command(CLI::App& app) {
#ifdef MOE_MNIST_HAVE_ONNX
  struct Args {
    std::string model = "runs/mnist/model.fp32.onnx", out, format;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("graph", "Draw an ONNX model with Graphviz: op types, tensor shapes, initialisers");
  cmd->add_option("--model", a->model, "The .onnx file")->capture_default_str();
  cmd->add_option("--out", a->out, "Output file (default: the model's name with the format's extension)");
  cmd->add_option("--format", a->format, "svg, png or dot (default: from --out's extension, else svg)")
      ->check(CLI::IsMember({"svg", "png", "dot"}));
  cmd->callback([a] {
    std::string format = a->format;
    if (format.empty()) {
      const auto dot = a->out.rfind('.');
      const std::string ext = dot == std::string::npos ? "" : a->out.substr(dot + 1);
      format = (ext == "png" || ext == "dot") ? ext : "svg";
    }
    std::string out = a->out;
    if (out.empty()) {
      const auto dot = a->model.rfind('.');
      out = (dot == std::string::npos ? a->model : a->model.substr(0, dot)) + "." + format;
    }
    check_output_file(out, a->out.empty() ? "graph output" : "--out", {format}, {a->model});
    render_dot(onnx_to_dot(a->model), format, out);
    std::fprintf(stderr, "wrote %s\n", out.c_str());
  });
#else
  app.add_subcommand("graph", "Draw an ONNX model (unavailable: built without libonnx-dev)")->callback([] {
    throw UnavailableError("graph: this build has no ONNX (apt install libonnx-dev and rebuild)");
  });
#endif
}

}  // namespace moe
