// What this CPU offers, for the capability query and the optional probe, and
// the SIMD level of the attention kernels.
#pragma once

#include <string>

namespace kvq::sdk {

std::string cpu_features();  // space-separated, e.g. "avx2 fma avx512f avx512_bf16"
// The CPU's model name (/proc/cpuinfo "model name"), or "CPU" when unknown:
// a CPU plugin's device name (kvq_plugin_info.device_name).
std::string cpu_model_name();

// Attention kernel levels, widest last.
enum class SimdLevel { kPortable, kAvx2, kAvx512 };
const char* simd_level_name(SimdLevel level);  // "portable", "avx2", "avx512"
bool simd_level_supported(SimdLevel level);    // built in and runnable on this CPU
// The level the kernels use, chosen once per process at first use: the widest
// supported one, or the one KVQ_SIMD (avx512 | avx2 | portable) forces when
// this CPU supports it (an unknown or unsupported value is ignored).
SimdLevel simd_choice();
const char* simd_level();  // simd_level_name(simd_choice())

}  // namespace kvq::sdk
