// The project's closed choices as types. Strings exist only at the edges: flags, metadata, reports.
// parse_* throw InputError naming the flag (or field) and the accepted spellings; to_string gives
// the one spelling back.
#pragma once
#include <string>
#include <vector>

namespace moe {

enum class Precision { fp32, fp16, int8 };
enum class Routing { dense, gather, moe, fused };   // see ExportOptions::routing; fused: one ai.moe_mnist node (src/ort_op)
enum class Int8Input { dynamic, static_scale };     // spelled "dynamic" / "static"
enum class Backend { torch, cpu, cuda, tensorrt, native };  // cpu/cuda/tensorrt are ONNX Runtime providers; native: src/native
enum class OptLevel { disable, basic, extended, all };  // ONNX Runtime graph optimisation
enum class TorchStyle { sparse, loop, batched };    // LibTorch MoE forward, see MoEImpl::forward
enum class LrSchedule { constant, cosine, onecycle };  // train --lr-schedule
enum class Keep { best, last };                     // train --keep: the checkpoint's weights

std::string to_string(Precision v);
std::string to_string(Routing v);
std::string to_string(Int8Input v);
std::string to_string(Backend v);
std::string to_string(OptLevel v);
std::string to_string(TorchStyle v);
std::string to_string(LrSchedule v);
std::string to_string(Keep v);

// The value spelled `s`; throws InputError "<flag>: expected one of a, b, c, got 's'".
template <typename E>
E parse_choice(const std::string& s, const std::string& flag);

// Every spelling of an enum, in declaration order (for CLI checks and help texts).
template <typename E>
std::vector<std::string> spellings();

// The ONNX Runtime backends run on a GPU.
inline bool is_gpu(Backend b) { return b == Backend::cuda || b == Backend::tensorrt; }

// The file `export` writes by default and `bench` looks for in a checkpoint folder:
// model.fp32.onnx, model.fp16.onnx, model.int8.onnx, model.int8-static.onnx, model.fp32-gather.onnx,
// model.fp32-moe.onnx, model.fp32-fused.onnx (routing and int8 input appear only when not the default).
// model.<precision>[-<routing>][-static][-u8].onnx; -u8: the graph takes UINT8 images (export --input uint8).
std::string model_file_name(Precision precision, Routing routing = Routing::dense, Int8Input int8_input = Int8Input::dynamic,
                            bool uint8_input = false);

}  // namespace moe
