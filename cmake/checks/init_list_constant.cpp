// Debian's GCC 12.2 at -O2 with AVX-512 enabled builds `std::vector<double>{0.5, 0.5, 0, 0}` as
// {0.5, 0.5, 0.5, 0.5}: its SLP vectoriser stores one broadcast of 0.5 for the whole constant. This
// program is compiled with the exact flags of each instruction-set target of the build and run at
// configure time (cmake/compiler_check.cmake); exit 0 = right answer, 1 = wrong code, 77 = this CPU
// cannot run the target. The float and int variants cover the other element types the code uses.
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <cstdio>
#include <vector>

__attribute__((noinline)) int check_double(const std::vector<double>& v) {
  const double want[] = {0.5, 0.5, 0, 0};
  for (int i = 0; i < 4; ++i)
    if (v.size() != 4 || v[i] != want[i]) return 1;
  return 0;
}
__attribute__((noinline)) int check_float(const std::vector<float>& v) {
  const float want[] = {0.5f, 0.5f, 0.5f, 0.5f, 0, 0, 0, 0};
  for (int i = 0; i < 8; ++i)
    if (v.size() != 8 || v[i] != want[i]) return 1;
  return 0;
}
__attribute__((noinline)) int check_int(const std::vector<long long>& v) {
  const long long want[] = {7, 7, 0, 0};
  for (int i = 0; i < 4; ++i)
    if (v.size() != 4 || v[i] != want[i]) return 1;
  return 0;
}

// The constructs under test, compiled for the target; called only once the CPU is known to run it.
__attribute__((noinline)) int run_checks() {
  int bad = check_double(std::vector<double>{0.5, 0.5, 0, 0});
  bad |= check_float(std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f, 0, 0, 0, 0});
  bad |= check_int(std::vector<long long>{7, 7, 0, 0});
  return bad;
}

int main() {
#if defined(__AMX_INT8__)
  // cpuid leaf 7, EDX bits 24 and 25 (AMX-TILE, AMX-INT8): not every compiler's
  // __builtin_cpu_supports knows their names. The program runs no tile instruction, so the
  // process's tile permission (src/native/cpu_int8.cpp) is not needed.
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25)) ||
      !__builtin_cpu_supports("avx512f"))
    return 77;
#elif defined(__AVX512VNNI__)
  if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw")) return 77;
#elif defined(__AVX512F__)
  if (!__builtin_cpu_supports("avx512f")) return 77;
#elif defined(__AVX2__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 77;
#endif
  const int bad = run_checks();
  std::printf("%s\n", bad ? "wrong" : "right");
  return bad;
}
