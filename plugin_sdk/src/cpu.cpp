#include "kvq_sdk/cpu.hpp"

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
#endif
  return out;
}

const char* simd_level() {
  return "portable";
}

}  // namespace kvq::sdk
