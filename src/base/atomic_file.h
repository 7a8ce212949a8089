// Writing files so that a reader never sees a half-written one: write "<path>.tmp.<pid>", then rename.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

// Calls write(tmp_path) to produce the file, then renames it over `path`. On any exception the
// temporary file is removed and the exception is rethrown.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp_path)>& write);

// Convenience: writes `bytes` to `path` atomically.
void write_file_atomically(const std::string& path, std::string_view bytes);

// Size limits for the files this tool reads, checked before reading (and while reading, for files
// that grow or lie about their size). Each is far above what a real one of its kind needs.
inline constexpr uint64_t kMiB = uint64_t(1) << 20;
inline constexpr uint64_t kMaxConfigBytes = 1 * kMiB;     // config.json (its size does not grow with the epochs)
inline constexpr uint64_t kMaxHistoryBytes = 256 * kMiB;  // history.csv: under 256 bytes per epoch, times kMaxEpochs
inline constexpr int64_t kMaxEpochs = 1000000;            // train --epochs
inline constexpr uint64_t kMaxWeightsBytes = 512 * kMiB;  // weights.safetensors (the largest allowed model is 256 MiB)
inline constexpr uint64_t kMaxIdxBytes = 256 * kMiB;      // one IDX file, after gunzip (MNIST's train images: 45 MiB)
inline constexpr uint64_t kMaxImageBytes = 64 * kMiB;     // a PNG / JPEG / PGM / PPM for predict
inline constexpr uint64_t kMaxOnnxBytes = 512 * kMiB;     // an .onnx model

// Checks that `path` is a regular file (not a directory, device, pipe or socket) of at most
// `max_bytes`; throws InputError naming the file, what was expected and what was found.
// `kind` names what the file should be ("ONNX model", "image"), for the message.
void check_input_file(const std::string& path, uint64_t max_bytes, const std::string& kind);

// Reads a whole regular file of at most `max_bytes` (checked before and while reading); throws
// InputError naming the file when it cannot be opened, is not a regular file, or is too large.
std::string read_file(const std::string& path, uint64_t max_bytes = kMaxWeightsBytes, const std::string& kind = "file");

// Checks an output file before any work is done, so a bad path fails in a second, not after a run:
// its folder exists and is writable, it is not a directory, it is not the same file as any of
// `inputs` (canonical path / inode), and its extension is one of `allowed_exts` (without the dot)
// whenever it is one of the kinds this tool reads or writes (.onnx, .safetensors, .json, .pt, .svg,
// .png, .dot, ...), so that e.g. DOT text never lands in a file named .onnx. `flag` names the
// option in errors. Throws InputError.
void check_output_file(const std::string& out, const std::string& flag, const std::vector<std::string>& allowed_exts,
                       const std::vector<std::string>& inputs = {});

// Checks an output folder (train --out) before any work: it is a folder or can be created as one
// (the nearest existing parent is a writable folder). Throws InputError naming `flag`.
void check_output_dir(const std::string& dir, const std::string& flag);

}  // namespace moe
