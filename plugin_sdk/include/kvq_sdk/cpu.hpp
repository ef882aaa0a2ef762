// What this CPU offers, for the capability query and the optional probe.
#pragma once

#include <string>

namespace kvq::sdk {

std::string cpu_features();  // space-separated, e.g. "avx2 fma avx512f avx512_bf16"
// The kernel level the plugin uses. Today's kernels are portable C++ that the
// compiler vectorises for the baseline ISA, so this is "portable".
const char* simd_level();

}  // namespace kvq::sdk
