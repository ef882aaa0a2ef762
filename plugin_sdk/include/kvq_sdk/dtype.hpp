// Element types and conversions: bf16, fp16, fp8 e4m3fn and e5m2, all
// fp32 -> narrow conversions round to nearest even; fp8 saturates to ±max
// (never NaN from a finite input), as vLLM's kernels do.
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <cstring>
#include <string_view>

namespace kvq::sdk {

// kvq_abi_names.h's table (shared with hosts): 0 / "?" for an unknown dtype.
int64_t dtype_size(int32_t dtype);
const char* dtype_name(int32_t dtype);  // "F32", "BF16", "F8_E4M3", ...
bool is_model_dtype(int32_t dtype);     // F32, F16, BF16

inline float bf16_to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}
// Rounds a float to the nearest bf16 value (what bf16 arithmetic stores).
inline float round_bf16(float f) {
  return bf16_to_float(float_to_bf16(f));
}

float f16_to_float(uint16_t bits);
uint16_t float_to_f16(float f);

float e4m3_to_float(uint8_t code);
float e5m2_to_float(uint8_t code);
uint8_t float_to_e4m3(float f);  // RNE, saturating to ±448; NaN -> 0x7F
uint8_t float_to_e5m2(float f);  // RNE, saturating to ±57344; NaN -> 0x7F

// One element of `dtype` at `p` as float (model dtypes and fp8/int8).
float load_float(int32_t dtype, const void* p);
// n elements of `dtype`, `step` bytes apart from `p`, as floats; contiguous
// bf16 / f32 (the cache-write inputs) take a loop the compiler vectorizes.
void load_floats(int32_t dtype, const void* p, int64_t step, int64_t n, float* out);
// True when no element of x[0, n) is NaN or infinite (branch-free, vectorized).
bool all_finite(const float* x, int64_t n);
// Stores `v` as one element of `dtype` at `p` (model dtypes and fp8).
void store_float(int32_t dtype, void* p, float v);

}  // namespace kvq::sdk
