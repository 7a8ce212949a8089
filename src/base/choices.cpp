#include "base/choices.h"

#include <utility>

#include "base/errors.h"

namespace moe {

namespace {

template <typename E>
using Table = std::vector<std::pair<E, const char*>>;

template <typename E>
const Table<E>& table();
template <>
const Table<Precision>& table() {
  static const Table<Precision> t = {{Precision::fp32, "fp32"}, {Precision::fp16, "fp16"}, {Precision::int8, "int8"}};
  return t;
}
template <>
const Table<Routing>& table() {
  static const Table<Routing> t = {{Routing::dense, "dense"}, {Routing::gather, "gather"}, {Routing::moe, "moe"}, {Routing::fused, "fused"}};
  return t;
}
template <>
const Table<Int8Input>& table() {
  static const Table<Int8Input> t = {{Int8Input::dynamic, "dynamic"}, {Int8Input::static_scale, "static"}};
  return t;
}
template <>
const Table<Backend>& table() {
  static const Table<Backend> t = {
      {Backend::torch, "torch"}, {Backend::cpu, "cpu"}, {Backend::cuda, "cuda"}, {Backend::tensorrt, "tensorrt"}, {Backend::native, "native"}};
  return t;
}
template <>
const Table<OptLevel>& table() {
  static const Table<OptLevel> t = {
      {OptLevel::disable, "disable"}, {OptLevel::basic, "basic"}, {OptLevel::extended, "extended"}, {OptLevel::all, "all"}};
  return t;
}
template <>
const Table<TorchStyle>& table() {
  static const Table<TorchStyle> t = {{TorchStyle::sparse, "sparse"}, {TorchStyle::loop, "loop"}, {TorchStyle::batched, "batched"}};
  return t;
}
template <>
const Table<LrSchedule>& table() {
  static const Table<LrSchedule> t = {{LrSchedule::constant, "constant"}, {LrSchedule::cosine, "cosine"}, {LrSchedule::onecycle, "onecycle"}};
  return t;
}
template <>
const Table<Keep>& table() {
  static const Table<Keep> t = {{Keep::best, "best"}, {Keep::last, "last"}};
  return t;
}

template <typename E>
std::string name_of(E v) {
  for (const auto& [e, s] : table<E>())
    if (e == v) return s;
  return "?";
}

}  // namespace

template <typename E>
E parse_choice(const std::string& s, const std::string& flag) {
  std::string expected;
  for (const auto& [e, name] : table<E>()) {
    if (s == name) return e;
    expected += (expected.empty() ? "" : ", ") + std::string(name);
  }
  throw InputError(flag + ": expected one of " + expected + ", got '" + s + "'");
}

template <typename E>
std::vector<std::string> spellings() {
  std::vector<std::string> v;
  for (const auto& [e, s] : table<E>()) v.push_back(s);
  return v;
}
template std::vector<std::string> spellings<Precision>();
template Precision parse_choice<Precision>(const std::string&, const std::string&);
template std::vector<std::string> spellings<Routing>();
template Routing parse_choice<Routing>(const std::string&, const std::string&);
template std::vector<std::string> spellings<Int8Input>();
template Int8Input parse_choice<Int8Input>(const std::string&, const std::string&);
template std::vector<std::string> spellings<Backend>();
template Backend parse_choice<Backend>(const std::string&, const std::string&);
template std::vector<std::string> spellings<OptLevel>();
template OptLevel parse_choice<OptLevel>(const std::string&, const std::string&);
template std::vector<std::string> spellings<TorchStyle>();
template TorchStyle parse_choice<TorchStyle>(const std::string&, const std::string&);
template std::vector<std::string> spellings<LrSchedule>();
template LrSchedule parse_choice<LrSchedule>(const std::string&, const std::string&);
template std::vector<std::string> spellings<Keep>();
template Keep parse_choice<Keep>(const std::string&, const std::string&);

std::string to_string(Precision v) { return name_of(v); }
std::string to_string(Routing v) { return name_of(v); }
std::string to_string(Int8Input v) { return name_of(v); }
std::string to_string(Backend v) { return name_of(v); }
std::string to_string(OptLevel v) { return name_of(v); }
std::string to_string(TorchStyle v) { return name_of(v); }
std::string to_string(LrSchedule v) { return name_of(v); }
std::string to_string(Keep v) { return name_of(v); }

std::string model_file_name(Precision precision, Routing routing, Int8Input int8_input, bool uint8_input) {
  std::string name = "model." + to_string(precision);
  if (routing != Routing::dense) name += "-" + to_string(routing);
  if (precision == Precision::int8 && int8_input == Int8Input::static_scale) name += "-static";
  if (uint8_input) name += "-u8";
  return name + ".onnx";
}

}  // namespace moe
