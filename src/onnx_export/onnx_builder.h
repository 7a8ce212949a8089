// Small helpers for writing an ONNX GraphProto by hand: nodes with attributes, typed initialisers.
#pragma once
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace moe {

// IEEE fp32 -> fp16 bits, round to nearest even (overflow to inf, subnormals kept).
uint16_t float_to_half(float f);

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* graph) : g_(graph) {}

  // Adds a node and returns it so attributes can be set; name defaults to the first output.
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> inputs, std::vector<std::string> outputs,
                        const std::string& name = "", const std::string& domain = "");

  // Initialisers, stored as raw little-endian data. `dtype` is an onnx::TensorProto::DataType.
  void floats(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& data,
              int dtype = onnx::TensorProto::FLOAT);  // FLOAT or FLOAT16
  void int8s(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int8_t>& data);
  void uint8s(const std::string& name, const std::vector<int64_t>& shape, const std::vector<uint8_t>& data);
  void int64s(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& data);

  // Graph inputs / outputs with element type and shape; a negative dim becomes the symbolic "N".
  void input(const std::string& name, int dtype, const std::vector<int64_t>& shape);
  void output(const std::string& name, int dtype, const std::vector<int64_t>& shape);

 private:
  onnx::GraphProto* g_;
};

void set_attr(onnx::NodeProto* n, const std::string& name, int64_t v);
void set_attr(onnx::NodeProto* n, const std::string& name, float v);
void set_attr(onnx::NodeProto* n, const std::string& name, const std::string& v);
void set_attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v);
void set_attr(onnx::NodeProto* n, const std::string& name, const onnx::TensorProto& v);

}  // namespace moe
