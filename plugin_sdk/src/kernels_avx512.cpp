// AVX-512 (F, BW, VL, DQ) + FMA + F16C kernels, compiled with those -m flags
// and run only when the CPU has them (cpu.cpp). VNNI (vpdpwssd) computes
// Q·K on int8 rows with the query split into two int16 parts (about 2^-31
// of the row max, below fp32 rounding); the BF16 dot products are not used
// (they would round the fp32 query).
// GCC 12 flags its own _mm512_undefined_* idiom (a self-initialised
// variable inside the intrinsics) as maybe-uninitialized once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "attention_kernels.hpp"
#include "kvq_sdk/dtype.hpp"

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace kvq::sdk::kernels {
namespace avx512 {
namespace {

struct V {
  static constexpr int W = 16;
  // 4 rows x 4 chunks of accumulators + 4 V chunks + p broadcasts fit in
  // the 32 zmm registers.
  static constexpr int kPvChunks = 4;
  static constexpr bool kVectorDecode = true;
  // Integer Q·K on int8 rows (AVX512-VNNI vpdpwssd), qk_block_i16.
  static constexpr bool kIntQk = true;
  using Vec = __m512;
  using IVec = __m512i;
  static IVec izero() { return _mm512_setzero_si512(); }
  static IVec load_i16(const int16_t* p) { return _mm512_loadu_si512(p); }
  static IVec widen_i8(const unsigned char* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static IVec dot_i16(IVec acc, IVec a, IVec b) { return _mm512_dpwssd_epi32(acc, a, b); }
  static Vec to_float(IVec x) { return _mm512_cvtepi32_ps(x); }
  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec set1(float x) { return _mm512_set1_ps(x); }
  static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Vec x) { _mm512_storeu_ps(p, x); }
  static Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  // vmaxps returns its second operand when either is NaN.
  static Vec max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
  static float hmax(Vec x) { return _mm512_reduce_max_ps(x); }
  static float hsum(Vec x) { return _mm512_reduce_add_ps(x); }
  static __m256 fold(Vec x) {
    return _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
  }
  // Eight horizontal sums at once: fold each to 256 bits, then a hadd transpose.
  static void hsum8(const Vec* x, float* out) {
    const __m256 h01 = _mm256_hadd_ps(fold(x[0]), fold(x[1]));
    const __m256 h23 = _mm256_hadd_ps(fold(x[2]), fold(x[3]));
    const __m256 h45 = _mm256_hadd_ps(fold(x[4]), fold(x[5]));
    const __m256 h67 = _mm256_hadd_ps(fold(x[6]), fold(x[7]));
    const __m256 a = _mm256_hadd_ps(h01, h23), b = _mm256_hadd_ps(h45, h67);
    _mm256_storeu_ps(
        out, _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)));
  }
  // expf to ~1 ulp (Cephes' range reduction and polynomial); inputs below
  // -87.33 (incl. -inf) give 0, where std::exp gives at most 1.2e-38.
  static Vec exp(Vec x) {
    const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654475f), _CMP_LT_OQ);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    p = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    return _mm512_mask_mov_ps(p, under, _mm512_setzero_ps());
  }
  static Vec from_bf16(const unsigned char* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static Vec from_f16(const unsigned char* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static Vec from_i8(const unsigned char* p) {
    return _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  // e4m3 -> fp16 bits: the sign-extended code shifted left by 7 puts the
  // exponent and mantissa in bits 13..7 (value / 2^8) and the sign in bits
  // 15 and 14; clearing bit 14 leaves the fp16 number. Codes 0x7F / 0xFF
  // (|code| == 0x7F) are NaN.
  static Vec from_e4m3(const unsigned char* p) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7),
                                       _mm256_set1_epi16(static_cast<int16_t>(0xBF80)));
    const __mmask16 nan =
        _mm_cmpeq_epi8_mask(_mm_or_si128(b, _mm_set1_epi8(-128)), _mm_set1_epi8(-1));
    return _mm512_mask_mov_ps(_mm512_cvtph_ps(h), nan,
                              _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
  }
  static Vec from_e5m2(const unsigned char* p) {
    const __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm512_cvtph_ps(_mm256_slli_epi16(w, 8));
  }
  // Round to nearest even on the bits; NaN lanes stay NaN.
  static Vec round_bf16(Vec x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r =
        _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))),
                         _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
    return _mm512_mask_mov_ps(_mm512_castsi512_ps(r), _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
  }
  // vcvtneps2bf16 rounds to nearest even but flushes subnormals: only for
  // values known not to be (round_bf16_normal).
  static constexpr bool kCvtBf16 = true;
  static Vec round_bf16_normal(Vec x) {
    const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static Vec round_f16(Vec x) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
};

#include "attention_kernel_impl.inc"

}  // namespace
}  // namespace avx512

const KernelSet& avx512_kernels() {
  static constexpr KernelSet k{"avx512", avx512::tile, true};
  return k;
}

}  // namespace kvq::sdk::kernels
