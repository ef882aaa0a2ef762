// AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; run only when
// the CPU has them, see cpu.cpp).
#include "attention_kernels.hpp"
#include "kvq_sdk/dtype.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace kvq::sdk::kernels {
namespace avx2 {
namespace {

struct V {
  static constexpr int W = 8;
  // 4 rows x 2 chunks of accumulators + 2 V chunks + a p broadcast fit in
  // the 16 ymm registers.
  static constexpr int kPvChunks = 2;
  static constexpr bool kIntQk = false;    // no integer Q·K (qk_block_i16)
  static constexpr bool kCvtBf16 = false;  // no bf16 conversion instruction
  static constexpr bool kVectorDecode = true;
  using Vec = __m256;
  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec set1(float x) { return _mm256_set1_ps(x); }
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Vec x) { _mm256_storeu_ps(p, x); }
  static Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  // vmaxps returns its second operand when either is NaN.
  static Vec max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
  static float hmax(Vec x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static float hsum(Vec x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Eight horizontal sums at once (a transpose by hadd).
  static void hsum8(const Vec* x, float* out) {
    const __m256 h01 = _mm256_hadd_ps(x[0], x[1]), h23 = _mm256_hadd_ps(x[2], x[3]);
    const __m256 h45 = _mm256_hadd_ps(x[4], x[5]), h67 = _mm256_hadd_ps(x[6], x[7]);
    const __m256 a = _mm256_hadd_ps(h01, h23), b = _mm256_hadd_ps(h45, h67);
    _mm256_storeu_ps(
        out, _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)));
  }
  // Butterfly reductions (decode_kernel_impl.inc): the operands of one step,
  // within each 128-bit lane [a0, a2, b0, b2] and [a1, a3, b1, b3]; across
  // 128-bit lanes [a.lo, b.lo] and [a.hi, b.hi].
  static Vec pair_lo_4(Vec a, Vec b) { return _mm256_shuffle_ps(a, b, 0x88); }
  static Vec pair_hi_4(Vec a, Vec b) { return _mm256_shuffle_ps(a, b, 0xDD); }
  static Vec pair_lo_128(Vec a, Vec b) { return _mm256_permute2f128_ps(a, b, 0x20); }
  static Vec pair_hi_128(Vec a, Vec b) { return _mm256_permute2f128_ps(a, b, 0x31); }
  // expf to ~1 ulp (Cephes' range reduction and polynomial); inputs below
  // -87.33 (incl. -inf) give 0, where std::exp gives at most 1.2e-38.
  static Vec exp(Vec x) {
    const __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654475f), _CMP_LT_OQ);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, p);
  }
  static Vec from_bf16(const unsigned char* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static Vec from_f16(const unsigned char* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static Vec from_i8(const unsigned char* p) {
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  // e4m3 -> fp16 bits: the sign-extended code shifted left by 7 puts the
  // exponent and mantissa in bits 13..7 (value / 2^8) and the sign in bits
  // 15 and 14; clearing bit 14 leaves the fp16 number. Codes 0x7F / 0xFF
  // (|code| == 0x7F) are NaN.
  static Vec from_e4m3(const unsigned char* p) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    const __m128i s = _mm_cvtepi8_epi16(b);
    const __m128i h =
        _mm_and_si128(_mm_slli_epi16(s, 7), _mm_set1_epi16(static_cast<int16_t>(0xBF80)));
    const __m256i nan = _mm256_cvtepi16_epi32(
        _mm_cmpeq_epi16(_mm_or_si128(s, _mm_set1_epi16(-128)), _mm_set1_epi16(-1)));
    return _mm256_blendv_ps(_mm256_cvtph_ps(h),
                            _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN()),
                            _mm256_castsi256_ps(nan));
  }
  static Vec from_e5m2(const unsigned char* p) {
    const __m128i w = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm256_cvtph_ps(_mm_slli_epi16(w, 8));
  }
  // 8 unsigned 4-bit codes from 4 bytes, the even element in the low nibble.
  static Vec from_u4(const unsigned char* p) {
    int32_t four;
    std::memcpy(&four, p, 4);
    const __m128i b = _mm_cvtsi32_si128(four);
    const __m256i w = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
    const __m256i sh = _mm256_srlv_epi32(w, _mm256_set_epi32(4, 0, 4, 0, 4, 0, 4, 0));
    return _mm256_cvtepi32_ps(_mm256_and_si256(sh, _mm256_set1_epi32(15)));
  }
  // Round to nearest even on the bits; NaN lanes stay NaN.
  static Vec round_bf16(Vec x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r =
        _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))),
                         _mm256_set1_epi32(static_cast<int>(0xFFFF0000u)));
    return _mm256_blendv_ps(_mm256_castsi256_ps(r), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  }
  static Vec round_f16(Vec x) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }

  // Group decoders of the decode codecs (decode_codecs.inc).
  // bf16: 16 values at p, the even-indexed ones in out[0], the odd in out[1].
  static constexpr bool kBf16Pairs = true;
  static void bf16_pair(const unsigned char* p, Vec* out) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    out[0] = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
    out[1] =
        _mm256_castsi256_ps(_mm256_and_si256(x, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  static constexpr bool kVbmi = false;     // no e4m3 byte tables
  static constexpr bool kU4Table = false;  // no int4 lookup (vpermps reads 3 index bits)
  static constexpr bool kCvt2Bf16 = false;
};

// In this order: the tile kernel, the decode kernel using its helpers, the
// decode codecs using both.
#include "attention_kernel_impl.inc"

#include "decode_kernel_impl.inc"

#include "decode_codecs.inc"

}  // namespace
}  // namespace avx2

const KernelSet& avx2_kernels() {
  static constexpr KernelSet k{"avx2", avx2::tile, false, avx2::decode};
  return k;
}

}  // namespace kvq::sdk::kernels
