// `moe-mnist graph`: an ONNX model as a Graphviz picture.
//
// Label formats (the tests pin these):
//   op node (box)      "<op_type>" or "<op_type> (<domain>)" when the domain is not ai.onnx, then the node name
//                      if it has one, then one "<name>: <dtype> [<dims>]" line per initialiser the node consumes
//                      (at most 8, then "... and K more").
//   graph input/output (ellipse)  "<tensor name>\n<dtype> [<dims>]"
//   edge               "<dtype> [<dims>]", e.g. "float [N,784]" (symbolic dims by name, unknown dims as "?",
//                      unknown rank as just "<dtype>"); the tensor's name when no type is known. The tensor name
//                      is always the edge's tooltip (shown on hover in SVG).
//   summary (note)     "initialisers: N tensors, M parameters" followed by one "<name>: <dtype> [<dims>]" line
//                      per initialiser (at most 64, then "... and K more").
//   caption            graph name, producer, ir/opset versions and "key: value" per metadata prop.
// dtypes are lower-case ONNX names: float, double, float16, bfloat16, int8..int64, uint8..uint64, bool, string.
#pragma once
#include <string>

namespace moe {

// Reads an ONNX file and describes it in DOT. Shapes come from ONNX shape inference run on a copy of the model;
// when inference fails the picture is drawn with whatever types the file itself declares.
// Throws InputError("<path>: not a valid ONNX model (...)") when the file is missing or does not parse.
std::string onnx_to_dot(const std::string& onnx_path);

// Writes `dot_text` to out_path as "dot" (the text itself), "svg" or "png" (rendered by Graphviz `dot`), atomically.
// Throws UnavailableError when `dot` is not installed, InputError for an unknown format, std::runtime_error when
// `dot` fails.
void render_dot(const std::string& dot_text, const std::string& format, const std::string& out_path);

}  // namespace moe
