#include "onnx_export/onnx_builder.h"

#include <cmath>
#include <cstring>

namespace moe {

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));  // inf / nan
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);                                      // rounds past 65504
  if (abs < 0x38800000u) {                                                                       // fp16 subnormal or zero
    const float scaled = std::fabs(f) * 16777216.0f;  // 2^24: one fp16 subnormal ulp becomes 1.0
    return uint16_t(sign | uint32_t(std::nearbyint(scaled)));
  }
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even.
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return uint16_t(sign | h);
}

onnx::NodeProto* GraphBuilder::node(const std::string& op, std::vector<std::string> inputs,
                                    std::vector<std::string> outputs, const std::string& name,
                                    const std::string& domain) {
  onnx::NodeProto* n = g_->add_node();
  n->set_op_type(op);
  n->set_name(name.empty() ? outputs.at(0) : name);
  if (!domain.empty()) n->set_domain(domain);
  for (auto& i : inputs) n->add_input(i);
  for (auto& o : outputs) n->add_output(o);
  return n;
}

namespace {

onnx::TensorProto* new_initializer(onnx::GraphProto* g, const std::string& name, const std::vector<int64_t>& shape,
                                   int dtype) {
  onnx::TensorProto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(dtype);
  for (int64_t d : shape) t->add_dims(d);
  return t;
}

void add_value_info(onnx::ValueInfoProto* v, const std::string& name, int dtype, const std::vector<int64_t>& shape) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(dtype);
  auto* s = tt->mutable_shape();
  for (int64_t d : shape) {
    auto* dim = s->add_dim();
    if (d < 0)
      dim->set_dim_param("N");
    else
      dim->set_dim_value(d);
  }
}

}  // namespace

void GraphBuilder::floats(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& data,
                          int dtype) {
  onnx::TensorProto* t = new_initializer(g_, name, shape, dtype);
  if (dtype == onnx::TensorProto::FLOAT16) {
    std::vector<uint16_t> h(data.size());
    for (size_t i = 0; i < data.size(); ++i) h[i] = float_to_half(data[i]);
    t->set_raw_data(h.data(), h.size() * 2);
  } else {
    t->set_raw_data(data.data(), data.size() * 4);
  }
}

void GraphBuilder::int8s(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int8_t>& data) {
  new_initializer(g_, name, shape, onnx::TensorProto::INT8)->set_raw_data(data.data(), data.size());
}

void GraphBuilder::uint8s(const std::string& name, const std::vector<int64_t>& shape, const std::vector<uint8_t>& data) {
  new_initializer(g_, name, shape, onnx::TensorProto::UINT8)->set_raw_data(data.data(), data.size());
}

void GraphBuilder::int64s(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& data) {
  new_initializer(g_, name, shape, onnx::TensorProto::INT64)->set_raw_data(data.data(), data.size() * 8);
}

void GraphBuilder::input(const std::string& name, int dtype, const std::vector<int64_t>& shape) {
  add_value_info(g_->add_input(), name, dtype, shape);
}

void GraphBuilder::output(const std::string& name, int dtype, const std::vector<int64_t>& shape) {
  add_value_info(g_->add_output(), name, dtype, shape);
}

void set_attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void set_attr(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

void set_attr(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}

void set_attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

void set_attr(onnx::NodeProto* n, const std::string& name, const onnx::TensorProto& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::TENSOR);
  *a->mutable_t() = v;
}

}  // namespace moe
