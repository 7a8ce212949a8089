#include "base/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/errors.h"

namespace moe {

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw InputError(path + ": cannot write (" + why + ")");
  }
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(path + ": cannot open for writing (" + std::strerror(errno) + ")");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) throw InputError(path + ": write failed (disk full?)");
  });
}

namespace {

std::string a_file(const std::string& kind) {
  const bool vowel = !kind.empty() && std::string("aeioAEIOU").find(kind[0]) != std::string::npos;
  return (vowel ? "an " : "a ") + kind + " file";
}

}  // namespace

void check_input_file(const std::string& path, uint64_t max_bytes, const std::string& kind) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw InputError(path + ": cannot open " + kind + " (" + std::strerror(errno) + ")");
  if (S_ISDIR(st.st_mode)) throw InputError(path + ": is a directory, expected a " + kind + " file");
  if (!S_ISREG(st.st_mode))
    throw InputError(path + ": not a regular file (a device, pipe or socket), expected a " + kind + " file");
  if (uint64_t(st.st_size) > max_bytes)
    throw InputError(path + ": " + std::to_string(st.st_size) + " bytes, more than the " + std::to_string(max_bytes / kMiB) +
                     " MiB limit for " + a_file(kind));
}

std::string read_file(const std::string& path, uint64_t max_bytes, const std::string& kind) {
  check_input_file(path, max_bytes, kind);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  std::string out;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    out.append(buf, size_t(in.gcount()));
    if (out.size() > max_bytes)  // the file grew after the check
      throw InputError(path + ": more than the " + std::to_string(max_bytes / kMiB) + " MiB limit for " + a_file(kind));
  }
  return out;
}

namespace {

std::string extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  if (!ext.empty()) ext.erase(0, 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  return ext;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "." : ", .") + x;
  return s;
}

// The nearest existing folder at or above `p` ("." for a relative path with no existing part).
std::filesystem::path existing_parent(std::filesystem::path p) {
  std::error_code ec;
  while (!p.empty() && !std::filesystem::exists(p, ec)) p = p.parent_path();
  return p.empty() ? std::filesystem::path(".") : p;
}

void check_writable_dir(const std::filesystem::path& dir, const std::string& what) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw InputError(what + ": " + dir.string() + " is not a folder");
  // Creating a file is the only test that holds for root, read-only mounts and pseudo file systems.
  const std::string probe = (dir / (".moe-mnist-probe." + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) throw InputError(what + ": cannot write in " + dir.string() + " (" + std::strerror(errno) + ")");
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace

namespace {

// `train --out --help` would train into a folder named "--help": an output path that starts with '-'
// is almost always a flag that lost its value. Such a name is still reachable as ./-name.
void refuse_flag_like(const std::string& path, const std::string& flag) {
  if (path[0] == '-')
    throw InputError(flag + ": '" + path + "' looks like a flag, not a path (did the flag lose its value?); write ./" + path +
                     " to mean that name");
}

}  // namespace

void check_output_file(const std::string& out, const std::string& flag, const std::vector<std::string>& allowed_exts,
                       const std::vector<std::string>& inputs) {
  static const std::vector<std::string> known = {"onnx", "safetensors", "json", "pt", "svg", "png", "dot", "csv",
                                                 "pgm",  "jpg",         "jpeg", "gz", "pbtxt", "ubyte"};
  const std::string what = flag + " " + out;
  if (out.empty()) throw InputError(flag + ": empty path");
  refuse_flag_like(out, flag);
  const std::string ext = extension(out);
  if (std::find(known.begin(), known.end(), ext) != known.end() &&
      std::find(allowed_exts.begin(), allowed_exts.end(), ext) == allowed_exts.end())
    throw InputError(what + ": a ." + ext + " name for a file that will hold " + join(allowed_exts) +
                     " content; use a matching extension");
  std::error_code ec;
  const auto status = std::filesystem::status(out, ec);
  if (std::filesystem::is_directory(status)) throw InputError(what + ": is a folder, expected a file name");
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    throw InputError(what + ": not a regular file (a device, pipe or socket)");
  for (const auto& in : inputs) {
    std::error_code e2;
    if (!in.empty() && std::filesystem::exists(out, e2) && std::filesystem::equivalent(out, in, e2))
      throw InputError(what + ": is the same file as the input " + in + "; writing it would destroy the input");
  }
  std::filesystem::path parent = std::filesystem::path(out).parent_path();
  if (parent.empty()) parent = ".";
  if (!std::filesystem::exists(parent, ec)) throw InputError(what + ": the folder " + parent.string() + " does not exist");
  check_writable_dir(parent, what);
}

void check_output_dir(const std::string& dir, const std::string& flag) {
  const std::string what = flag + " " + dir;
  if (dir.empty()) throw InputError(flag + ": empty path");
  refuse_flag_like(dir, flag);
  std::error_code ec;
  const std::filesystem::path p(dir);
  if (std::filesystem::exists(p, ec) && !std::filesystem::is_directory(p, ec))
    throw InputError(what + ": exists and is not a folder");
  check_writable_dir(existing_parent(p), what);
}

}  // namespace moe
