// Writing files so that a reader never sees a half-written one: write "<path>.tmp.<pid>", then rename.
#pragma once
#include <functional>
#include <string>
#include <string_view>

namespace moe {

// Calls write(tmp_path) to produce the file, then renames it over `path`. On any exception the
// temporary file is removed and the exception is rethrown.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp_path)>& write);

// Convenience: writes `bytes` to `path` atomically.
void write_file_atomically(const std::string& path, std::string_view bytes);

// Reads a whole file; throws InputError naming the file when it cannot be opened.
std::string read_file(const std::string& path);

}  // namespace moe
