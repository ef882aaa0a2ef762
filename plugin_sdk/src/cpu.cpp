#include "kvq_sdk/cpu.hpp"

#include "attention_kernels.hpp"

#if defined(KVQ_X86_KERNELS)
#include <cpuid.h>
#endif

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace kvq::sdk {

std::string cpu_features() {
  std::string out;
#if defined(__x86_64__)
  __builtin_cpu_init();
  const auto add = [&out](bool has, const char* name) {
    if (has) out += out.empty() ? name : std::string(" ") + name;
  };
  add(__builtin_cpu_supports("sse4.2"), "sse4.2");
  add(__builtin_cpu_supports("avx"), "avx");
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx512vl"), "avx512vl");
  add(__builtin_cpu_supports("avx512vnni"), "avx512_vnni");
  add(__builtin_cpu_supports("avx512bf16"), "avx512_bf16");
  add(__builtin_cpu_supports("avx512vbmi"), "avx512_vbmi");
#endif
  return out;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    const size_t first = line.find_first_not_of(" \t", colon + 1);
    if (first != std::string::npos) return line.substr(first);
  }
  return "CPU";
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512: return "avx512";
    case SimdLevel::kAvx2: return "avx2";
    case SimdLevel::kPortable: break;
  }
  return "portable";
}

#if defined(KVQ_X86_KERNELS)
namespace {
// F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does
// not know "f16c", and the fuzz build compiles the SDK with clang.
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
}  // namespace
#endif

bool simd_level_supported(SimdLevel level) {
  if (level == SimdLevel::kPortable) return true;
#if defined(KVQ_X86_KERNELS)
  // __builtin_cpu_supports also checks that the OS saves the YMM/ZMM state.
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  if (level == SimdLevel::kAvx2) return avx2;
  return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         // int8 Q·K, bf16 rounding and e4m3 byte tables (kernels_avx512.cpp)
         __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16") &&
         __builtin_cpu_supports("avx512vbmi");
#else
  return false;
#endif
}

namespace {

SimdLevel choose_level() {
  if (const char* forced = std::getenv("KVQ_SIMD")) {
    for (SimdLevel l : {SimdLevel::kAvx512, SimdLevel::kAvx2, SimdLevel::kPortable})
      if (std::strcmp(forced, simd_level_name(l)) == 0 && simd_level_supported(l)) return l;
  }
  for (SimdLevel l : {SimdLevel::kAvx512, SimdLevel::kAvx2})
    if (simd_level_supported(l)) return l;
  return SimdLevel::kPortable;
}

}  // namespace

SimdLevel simd_choice() {
  static const SimdLevel level = choose_level();  // immutable once chosen
  return level;
}

const char* simd_level() {
  return simd_level_name(simd_choice());
}

namespace kernels {

const KernelSet& active_kernels() {
  switch (simd_choice()) {
#if defined(KVQ_X86_KERNELS)
    case SimdLevel::kAvx512: return avx512_kernels();
    case SimdLevel::kAvx2: return avx2_kernels();
#endif
    default: return portable_kernels();
  }
}

}  // namespace kernels
}  // namespace kvq::sdk
