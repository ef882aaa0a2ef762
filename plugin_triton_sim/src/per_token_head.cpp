#include "per_token_head.hpp"

#include "kvq_sdk/dtype.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// The int8 / fp8 row quantizers run once per (token, head) row of every cache
// write, so they use SSE2 (the plugin's baseline ISA) four lanes at a time.
// The results are bit-identical to the scalar definitions below them: the
// products are the same fp32 multiplications; rounding uses the RNE
// conversion of the default MXCSR mode; clamping to integer bounds before or
// after rounding to an integer gives the same value.

namespace kvq::triton {
namespace {

constexpr float kInvInt8Max = 1.0f / 127.0f;  // fp32 constants, rounded once
constexpr float kInvFp8Max = 1.0f / 448.0f;

float absmax(const float* x, int64_t n) {
  float m = 0.0f;
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  __m128 mv = _mm_setzero_ps();
  // maxps returns its second operand when the first is NaN: NaNs are skipped
  // exactly as std::max(m, NaN) skips them.
  for (; i + 4 <= n; i += 4) mv = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(x + i), abs_mask), mv);
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, mv);
  for (float l : lanes) m = std::max(m, l);
#endif
  for (; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

}  // namespace

void quantize_row_int8(const float* x, int64_t n, unsigned char* row) {
  // A multiply by the fp32 constant 1/127, as vLLM's kernel compiles absmax / 127
  // (spec §3): an IEEE division differs by one ulp in ~4% of rows.
  const float scale = std::max(absmax(x, n) * kInvInt8Max, 1e-6f);
  const float inv = 1.0f / scale;  // reciprocal, then multiply: two roundings, as vLLM
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 iv = _mm_set1_ps(inv), lo = _mm_set1_ps(-128.0f), hi = _mm_set1_ps(127.0f);
  for (; i + 16 <= n; i += 16) {
    __m128i q[4];
    for (int k = 0; k < 4; ++k) {
      const __m128 v = _mm_mul_ps(_mm_loadu_ps(x + i + 4 * k), iv);
      q[k] = _mm_cvtps_epi32(_mm_min_ps(_mm_max_ps(v, lo), hi));  // RNE
    }
    const __m128i b = _mm_packs_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(row + i), b);
  }
#endif
  for (; i < n; ++i) {
    const float q = std::clamp(std::nearbyint(x[i] * inv), -128.0f, 127.0f);  // ties to even
    row[i] = static_cast<unsigned char>(static_cast<int8_t>(q));
  }
  std::memcpy(row + n, &scale, 4);
}

void quantize_row_fp8(const float* x, int64_t n, unsigned char* row) {
  const float scale = std::max(absmax(x, n) * kInvFp8Max, 1e-6f);  // as int8: a multiply
  const float inv = 1.0f / scale;
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 iv = _mm_set1_ps(inv), lo = _mm_set1_ps(-448.0f), hi = _mm_set1_ps(448.0f);
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  const __m128i sign_bit = _mm_set1_epi32(0x80), one = _mm_set1_epi32(1);
  const __m128i half = _mm_set1_epi32(0x7FFFF), bias = _mm_set1_epi32(120 << 3);
  for (; i + 16 <= n; i += 16) {
    __m128i c[4];
    for (int k = 0; k < 4; ++k) {
      // e4m3 as sdk::float_to_e4m3 (finite inputs): normal values round the
      // fp32 mantissa to 3 bits, ties to even; below 2^-6 the quantum is 2^-9.
      const __m128 v = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_loadu_ps(x + i + 4 * k), iv), lo), hi);
      const __m128 a = _mm_and_ps(v, abs_mask);
      const __m128i sign = _mm_and_si128(_mm_srli_epi32(_mm_castps_si128(v), 24), sign_bit);
      const __m128i sub = _mm_castps_si128(_mm_cmplt_ps(a, _mm_set1_ps(0.015625f)));
      const __m128i qs = _mm_cvtps_epi32(_mm_mul_ps(a, _mm_set1_ps(512.0f)));
      __m128i ua = _mm_castps_si128(a);
      ua = _mm_add_epi32(ua, _mm_add_epi32(half, _mm_and_si128(_mm_srli_epi32(ua, 20), one)));
      const __m128i qn = _mm_sub_epi32(_mm_srli_epi32(ua, 20), bias);
      c[k] = _mm_or_si128(_mm_or_si128(_mm_and_si128(sub, qs), _mm_andnot_si128(sub, qn)), sign);
    }
    const __m128i b = _mm_packus_epi16(_mm_packs_epi32(c[0], c[1]), _mm_packs_epi32(c[2], c[3]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(row + i), b);
  }
#endif
  for (; i < n; ++i) row[i] = sdk::float_to_e4m3(std::clamp(x[i] * inv, -448.0f, 448.0f));
  std::memcpy(row + n, &scale, 4);
}

int64_t int4_row_bytes(int64_t head_size) {
  return row_codec(KvMode::kInt4PerTokenHead)->row_bytes(head_size);
}

void quantize_row_int4(const float* x, int64_t n, unsigned char* row) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  const float scale = std::max((hi - lo) / 15.0f, 1e-6f);
  const float zp = std::clamp(std::nearbyint(-lo / scale), 0.0f, 15.0f);
  const int64_t bytes = (n + 1) / 2;
  std::memset(row, 0, static_cast<size_t>(bytes));
  for (int64_t i = 0; i < n; ++i) {
    const auto q =
        static_cast<unsigned>(std::clamp(std::nearbyint(x[i] / scale + zp), 0.0f, 15.0f));
    row[i / 2] = static_cast<unsigned char>(row[i / 2] | (i % 2 == 0 ? q : q << 4));
  }
  std::memcpy(row + bytes, &scale, 4);
  std::memcpy(row + bytes + 4, &zp, 4);
}

void RowCodec::set_unit_scale(unsigned char* row, int64_t n) const {
  const float one = 1.0f;
  std::memcpy(row + code_bytes(n), &one, 4);
}

const RowCodec* row_codec(KvMode mode) {
  static constexpr auto one_byte = [](int64_t n) { return n; };
  static constexpr auto two_per_byte = [](int64_t n) { return (n + 1) / 2; };
  static constexpr RowCodec kInt8{KVQ_DTYPE_I8, one_byte, 4, quantize_row_int8,
                                  sdk::RowEncoding::kI8};
  static constexpr RowCodec kFp8{KVQ_DTYPE_F8_E4M3FN, one_byte, 4, quantize_row_fp8,
                                 sdk::RowEncoding::kE4M3};
  static constexpr RowCodec kInt4{KVQ_DTYPE_U8, two_per_byte, 8, quantize_row_int4,
                                  sdk::RowEncoding::kU4};
  switch (mode) {
    case KvMode::kInt8PerTokenHead: return &kInt8;
    case KvMode::kFp8PerTokenHead: return &kFp8;
    case KvMode::kInt4PerTokenHead: return &kInt4;
    case KvMode::kFp8PerTensor:
    case KvMode::kNone: break;
  }
  return nullptr;
}

}  // namespace kvq::triton
