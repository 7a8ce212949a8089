// Which integer dot-product instructions this process may use: cpuid for the CPU, XCR0 for the OS
// saving the state, and for AMX Linux's per-process permission (its tile data is 8 KB of state the
// kernel hands out only on request, since Linux 5.16; without it the first tile instruction faults).
// Nothing here executes a vector instruction.
#include <cstdint>

#include "native/native_kernel.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace moe {

bool cpu_has_avx512_vnni() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

bool cpu_has_amx_int8() {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!(d & (1u << 24)) || !(d & (1u << 25))) return false;  // AMX-TILE, AMX-INT8
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE: XGETBV usable
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const unsigned xtile = (1u << 17) | (1u << 18);  // XTILECFG, XTILEDATA enabled by the OS
  return (lo & xtile) == xtile && __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

bool request_amx_permission() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM
  constexpr long kXfeatureXtiledata = 18;  // XFEATURE_XTILEDATA
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

Int8Support int8_support_with(bool cpu_vnni, bool cpu_amx, bool (*request_amx)()) {
  Int8Support s;
  s.vnni = cpu_vnni;
  s.amx = cpu_amx && request_amx();
  return s;
}

Int8Support int8_support() {
  static const Int8Support s = int8_support_with(cpu_has_avx512_vnni(), cpu_has_amx_int8(), &request_amx_permission);
  return s;
}

}  // namespace moe
