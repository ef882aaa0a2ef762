// Element codecs and per-token-head row quantizers, written once for the host
// and the device (spec/triton_sim.md §1-§3, spec/cuda.md "Numerics").
//
// Every function here must give the same bits as the CPU plugin
// (plugin_sdk/src/dtype.cpp, plugin_triton_sim/src/per_token_head.cpp) on
// every input: the GPU cache writer calls them per element, and the CPU test
// (plugin_cuda/tests/codecs_test.cpp) runs them on the host against the CPU
// plugin's functions. Hence:
//  - conversions are bit manipulation (no cuda_fp8.h / cuda_bf16.h intrinsic,
//    whose saturation and NaN rules differ from the spec's);
//  - arithmetic goes through mul_rn / div_rn / add_rn, which are IEEE fp32
//    operations with round-to-nearest-even on both sides (__fmul_rn etc. on
//    the device can never be contracted into an FMA);
//  - rounding to an integer is rintf (ties to even; the host runs in the
//    default rounding mode, as the CPU plugin's std::nearbyint assumes).
// This header includes no CUDA header, so host-only C++ can include it.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define KVQ_HD __host__ __device__ __forceinline__
#else
#define KVQ_HD inline
#endif

namespace kvq::cuda::codec {

// ---- fp32 bits and IEEE arithmetic ------------------------------------------

KVQ_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
KVQ_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}
KVQ_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
KVQ_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
KVQ_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
KVQ_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
// Round to an integral value, ties to even.
KVQ_HD float rint_even(float x) {
  return rintf(x);
}
KVQ_HD bool is_finite(float x) {
  return (float_bits(x) & 0x7F800000u) != 0x7F800000u;
}
KVQ_HD bool is_nan(float x) {
  return (float_bits(x) & 0x7FFFFFFFu) > 0x7F800000u;
}
// min / max for non-NaN inputs (callers refuse NaN before quantizing).
KVQ_HD float fmin_(float a, float b) {
  return b < a ? b : a;
}
KVQ_HD float fmax_(float a, float b) {
  return a < b ? b : a;
}
KVQ_HD float clampf(float x, float lo, float hi) {
  return fmin_(fmax_(x, lo), hi);
}

// ---- bf16 / fp16 ---------------------------------------------------------------

KVQ_HD float bf16_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}
// RNE; NaN stays a quiet NaN with its top bits (sdk::float_to_bf16).
KVQ_HD uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

KVQ_HD float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    // subnormal or zero: mant * 2^-24, exact in fp32
    const float f = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -f : f;
  }
  if (exp == 31) return bits_float(sign | 0x7F800000u | (mant << 13));
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}
// RNE; >= 65520 in magnitude -> infinity; NaN -> sign | 0x7E00 (sdk::float_to_f16).
KVQ_HD uint16_t float_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t v0 = u & 0x7FFFFFFFu;
  if (v0 > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);
  const float a = bits_float(v0);
  if (a >= 65520.0f) return static_cast<uint16_t>(sign | 0x7C00u);
  if (a < 6.103515625e-05f) {  // subnormal: quantum 2^-24 (a * 2^24 is exact)
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(rint_even(a * 16777216.0f)));
  }
  uint32_t v = v0 + 0xFFFu + ((v0 >> 13) & 1u);
  const uint32_t exp = (v >> 23) - 112u;
  return static_cast<uint16_t>(sign | static_cast<uint16_t>((exp << 10) | ((v >> 13) & 0x3FFu)));
}

// ---- fp8 -------------------------------------------------------------------------
// e4m3fn: bias 7, 3 mantissa bits, max 448, no infinity, NaN = 0x7F / 0xFF.
// e5m2: bias 15, 2 mantissa bits, max 57344, IEEE specials.
// Encoding (sdk::fp8_encode): NaN -> 0x7F; |x| clamped to max (so infinity
// saturates); values below the smallest normal use that binade's quantum;
// one RNE rounding. For |x| in the normal range, adding half an fp8 ulp minus
// one (plus the kept lsb, for ties to even) to the fp32 bits and truncating
// is that rounding; a carry into the exponent gives the next binade's code.

KVQ_HD float e4m3_to_float(uint8_t c) {
  const uint32_t e = (c >> 3) & 15u, m = c & 7u, sign = static_cast<uint32_t>(c & 0x80u) << 24;
  if (e == 15u && m == 7u) return bits_float(0x7FC00000u | sign);
  if (e == 0) {
    const float f = static_cast<float>(m) * 0.001953125f;  // m * 2^-9
    return sign ? -f : f;
  }
  return bits_float(sign | ((e + 120u) << 23) | (m << 20));
}
KVQ_HD float e5m2_to_float(uint8_t c) {
  const uint32_t e = (c >> 2) & 31u, m = c & 3u, sign = static_cast<uint32_t>(c & 0x80u) << 24;
  if (e == 31u) return bits_float(sign | 0x7F800000u | (m << 21) | (m ? 0x400000u : 0u));
  if (e == 0) {
    const float f = static_cast<float>(m) * 1.52587890625e-05f;  // m * 2^-16
    return sign ? -f : f;
  }
  return bits_float(sign | ((e + 112u) << 23) | (m << 21));
}

KVQ_HD uint8_t float_to_e4m3(float x) {
  const uint32_t u = float_bits(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7F;
  const auto sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const float a = fmin_(bits_float(u & 0x7FFFFFFFu), 448.0f);
  uint32_t code;
  if (a < 0.015625f) {  // below 2^-6: quantum 2^-9 (a * 512 is exact)
    code = static_cast<uint32_t>(rint_even(a * 512.0f));
  } else {
    uint32_t v = float_bits(a);
    v += 0x7FFFFu + ((v >> 20) & 1u);
    code = (v >> 20) - (120u << 3);
  }
  return static_cast<uint8_t>(sign | code);
}
KVQ_HD uint8_t float_to_e5m2(float x) {
  const uint32_t u = float_bits(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7F;
  const auto sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const float a = fmin_(bits_float(u & 0x7FFFFFFFu), 57344.0f);
  uint32_t code;
  if (a < 6.103515625e-05f) {  // below 2^-14: quantum 2^-16
    code = static_cast<uint32_t>(rint_even(a * 65536.0f));
  } else {
    uint32_t v = float_bits(a);
    v += 0xFFFFFu + ((v >> 21) & 1u);
    code = (v >> 21) - (112u << 2);
  }
  return static_cast<uint8_t>(sign | code);
}

// ---- model-dtype elements (kvq dtype enum values) ----------------------------------

constexpr int32_t kDtypeF32 = 1, kDtypeF16 = 2, kDtypeBF16 = 3, kDtypeE4M3 = 6, kDtypeE5M2 = 7;

// Element i of a row of `dtype` (F32 / F16 / BF16 / E4M3 / E5M2) as float (exact).
KVQ_HD float load_element(int32_t dtype, const void* row, int64_t i) {
  switch (dtype) {
    case kDtypeF32: return static_cast<const float*>(row)[i];
    case kDtypeF16: return f16_to_float(static_cast<const uint16_t*>(row)[i]);
    case kDtypeBF16: return bf16_to_float(static_cast<const uint16_t*>(row)[i]);
    case kDtypeE4M3: return e4m3_to_float(static_cast<const uint8_t*>(row)[i]);
    case kDtypeE5M2: return e5m2_to_float(static_cast<const uint8_t*>(row)[i]);
    default: return 0.0f;
  }
}

// ---- per-token-head rows (spec §3) -------------------------------------------------
// A row quantizer is split into its reduction (absmax, or min / max), the
// row parameters computed from it, and the per-element code, so the device
// writer can run the reduction across a warp and the rest per lane while the
// host runs the same functions serially.

constexpr float kInvInt8Max = 1.0f / 127.0f;  // fp32 constants, rounded once (spec §3)
constexpr float kInvFp8Max = 1.0f / 448.0f;

// scale = max(absmax * fp32(1/QMAX), 1e-6): a multiply, as vLLM's kernel compiles it.
KVQ_HD float int8_scale(float absmax) {
  return fmax_(mul_rn(absmax, kInvInt8Max), 1e-6f);
}
KVQ_HD float fp8_scale(float absmax) {
  return fmax_(mul_rn(absmax, kInvFp8Max), 1e-6f);
}
// Reciprocal first, then multiply per element: two roundings, as vLLM.
KVQ_HD float reciprocal(float scale) {
  return div_rn(1.0f, scale);
}
KVQ_HD uint8_t int8_code(float x, float inv) {
  const float q = rint_even(clampf(mul_rn(x, inv), -128.0f, 127.0f));
  return static_cast<uint8_t>(static_cast<int8_t>(static_cast<int>(q)));
}
KVQ_HD uint8_t fp8_code(float x, float inv) {
  return float_to_e4m3(clampf(mul_rn(x, inv), -448.0f, 448.0f));
}

// INT4 asymmetric: scale = max((hi - lo) / 15, 1e-6), zp = clamp(rne(-lo / scale), 0, 15),
// q = clamp(rne(x / scale + zp), 0, 15) (divisions, as the CPU plugin).
struct Int4Params {
  float scale, zp;
};
// `lo` must be the row's minimum as the CPU plugin's serial std::min finds
// it: the first element holding the minimum value. That matters for a
// minimum of zero only: -0.0 and +0.0 compare equal but give zp = +0 or -0.
KVQ_HD Int4Params int4_params(float lo, float hi) {
  Int4Params p;
  p.scale = fmax_(div_rn(sub_rn(hi, lo), 15.0f), 1e-6f);
  p.zp = clampf(rint_even(div_rn(-lo, p.scale)), 0.0f, 15.0f);
  return p;
}
KVQ_HD uint32_t int4_code(float x, const Int4Params& p) {
  return static_cast<uint32_t>(clampf(rint_even(add_rn(div_rn(x, p.scale), p.zp)), 0.0f, 15.0f));
}
KVQ_HD int64_t int4_row_bytes(int64_t head_size) {
  return (head_size + 1) / 2 + 8;
}

// Little-endian fp32 at any byte offset (int4 scales sit at (D+1)/2).
KVQ_HD void store_f32_bytes(unsigned char* p, float v) {
  const uint32_t u = float_bits(v);
  p[0] = static_cast<unsigned char>(u);
  p[1] = static_cast<unsigned char>(u >> 8);
  p[2] = static_cast<unsigned char>(u >> 16);
  p[3] = static_cast<unsigned char>(u >> 24);
}
KVQ_HD float load_f32_bytes(const unsigned char* p) {
  return bits_float(static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                    (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24));
}

// Serial row quantizers (host reference and tests; the device writer runs
// the same per-element functions across a warp). x: n finite floats.
KVQ_HD float absmax_of(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = fmax_(m, fabsf(x[i]));
  return m;
}
KVQ_HD void quantize_row_int8(const float* x, int64_t n, unsigned char* row) {
  const float scale = int8_scale(absmax_of(x, n));
  const float inv = reciprocal(scale);
  for (int64_t i = 0; i < n; ++i) row[i] = int8_code(x[i], inv);
  store_f32_bytes(row + n, scale);
}
KVQ_HD void quantize_row_fp8(const float* x, int64_t n, unsigned char* row) {
  const float scale = fp8_scale(absmax_of(x, n));
  const float inv = reciprocal(scale);
  for (int64_t i = 0; i < n; ++i) row[i] = fp8_code(x[i], inv);
  store_f32_bytes(row + n, scale);
}
KVQ_HD void quantize_row_int4(const float* x, int64_t n, unsigned char* row) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = fmin_(lo, x[i]);  // keeps the first of equal values, as std::min
    hi = fmax_(hi, x[i]);
  }
  const Int4Params p = int4_params(lo, hi);
  const int64_t bytes = (n + 1) / 2;
  for (int64_t b = 0; b < bytes; ++b) {
    const uint32_t q0 = int4_code(x[2 * b], p);
    const uint32_t q1 = 2 * b + 1 < n ? int4_code(x[2 * b + 1], p) : 0u;
    row[b] = static_cast<unsigned char>(q0 | (q1 << 4));
  }
  store_f32_bytes(row + bytes, p.scale);
  store_f32_bytes(row + bytes + 4, p.zp);
}

}  // namespace kvq::cuda::codec
