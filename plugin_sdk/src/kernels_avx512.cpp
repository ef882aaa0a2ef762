// AVX-512 (F, BW, VL, DQ, VBMI) + FMA + F16C kernels, compiled with those -m
// flags and run only when the CPU has them (cpu.cpp). VNNI (vpdpwssd) computes
// Q·K on int8 rows with the query split into two int16 parts (about 2^-31
// of the row max, below fp32 rounding); the BF16 dot products are not used
// (they would round the fp32 query).
// GCC 12 flags its own _mm512_undefined_* idiom (a self-initialised
// variable inside the intrinsics) as maybe-uninitialized once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

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
namespace avx512 {
namespace {

// e4m3 magnitude code c (0..127) as the bf16 bits of value / 256, and the
// byte tables V::e4m3_quad looks them up in.
constexpr uint16_t e4m3_bf16(int c) {
  const int e = c >> 3, m = c & 7;
  if (c == 0x7F) return 0x7FC0;
  if (e > 0) return static_cast<uint16_t>(((e + 112) << 7) | (m << 4));  // 2^(e-15) (1 + m/8)
  if (m == 0) return 0;
  if (m == 1) return 110 << 7;                                           // 2^-17
  if (m < 4) return static_cast<uint16_t>((111 << 7) | ((m - 2) << 6));  // 2^-16 m/2
  return static_cast<uint16_t>((112 << 7) | ((m - 4) << 5));             // 2^-15 m/4
}
struct E4m3Tables {
  alignas(64) uint8_t hi[128];
  alignas(64) uint8_t lo[128];
  alignas(64) uint8_t idx[4][64];  // lane i of vector v: bytes 2, 3 = lo, hi of code 16v + i
};
constexpr E4m3Tables e4m3_tables() {
  E4m3Tables t{};
  for (int c = 0; c < 128; ++c) {
    t.hi[c] = static_cast<uint8_t>(e4m3_bf16(c) >> 8);
    t.lo[c] = static_cast<uint8_t>(e4m3_bf16(c) & 0xFF);
  }
  for (int v = 0; v < 4; ++v)
    for (int i = 0; i < 16; ++i) {
      t.idx[v][4 * i + 2] = static_cast<uint8_t>(16 * v + i);
      t.idx[v][4 * i + 3] = static_cast<uint8_t>(64 + 16 * v + i);
    }
  return t;
}
constexpr E4m3Tables kE4m3 = e4m3_tables();

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
  // Butterfly reductions (decode_kernel_impl.inc): the operands of one step,
  // within each 128-bit lane [a0, a2, b0, b2] and [a1, a3, b1, b3]; across
  // 128-bit lanes [a.0, a.2, b.0, b.2] and [a.1, a.3, b.1, b.3].
  static Vec pair_lo_4(Vec a, Vec b) { return _mm512_shuffle_ps(a, b, 0x88); }
  static Vec pair_hi_4(Vec a, Vec b) { return _mm512_shuffle_ps(a, b, 0xDD); }
  static Vec pair_lo_128(Vec a, Vec b) { return _mm512_shuffle_f32x4(a, b, 0x88); }
  static Vec pair_hi_128(Vec a, Vec b) { return _mm512_shuffle_f32x4(a, b, 0xDD); }
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
  // 16 unsigned 4-bit codes from 8 bytes, the even element in the low nibble.
  static Vec from_u4(const unsigned char* p) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    const __m512i w = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
    const __m512i odd = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(w, odd), _mm512_set1_epi32(15)));
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

  // Group decoders of the decode codecs (decode_codecs.inc).
  // bf16: 32 values at p, the even-indexed ones in out[0], the odd in out[1].
  static constexpr bool kBf16Pairs = true;
  static void bf16_pair(const unsigned char* p, Vec* out) {
    const __m512i x = _mm512_loadu_si512(p);
    out[0] = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    out[1] =
        _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  // e4m3 (VBMI): the bf16 bits of value / 256 of each magnitude code, as two
  // byte tables of 128 entries (one vpermi2b each for the high and the low
  // bytes), the sign or'ed in, then each 32-bit lane assembled by a byte
  // permute with zeroed low bytes: 7 instructions per 64 codes. Code 0x7F
  // maps to a NaN.
  static constexpr bool kVbmi = true;
  static void e4m3_quad(const unsigned char* p, Vec* out) {
    const __m512i b = _mm512_loadu_si512(p);
    __m512i hi =
        _mm512_permutex2var_epi8(_mm512_load_si512(kE4m3.hi), b, _mm512_load_si512(kE4m3.hi + 64));
    const __m512i lo =
        _mm512_permutex2var_epi8(_mm512_load_si512(kE4m3.lo), b, _mm512_load_si512(kE4m3.lo + 64));
    hi = _mm512_ternarylogic_epi32(hi, b, _mm512_set1_epi8(-128), 0xF8);  // hi | (b & 0x80)
    for (int v = 0; v < 4; ++v)
      out[v] = _mm512_castsi512_ps(_mm512_maskz_permutex2var_epi8(
          0xCCCCCCCCCCCCCCCCull, lo, _mm512_load_si512(kE4m3.idx[v]), hi));
  }
  // int4: a row's 16 values (code - zero) * scale, computed as the scalar
  // decoder does, looked up by the codes (vpermps reads 4 index bits).
  static constexpr bool kU4Table = true;
  static Vec u4_table(float zero, float scale) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(zero)), _mm512_set1_ps(scale));
  }
  // 64 codes (32 bytes at p) in 4 vectors: the bytes in both halves, each
  // 32-bit lane shifted to one of its 8 codes; lane m of vector t holds
  // element u4_quad_channel(16 t + m).
  static constexpr int64_t u4_quad_channel(int64_t i) {
    const int64_t t = i / 16, m = i % 16;
    return m < 8 ? 8 * m + t : 8 * (m - 8) + t + 4;
  }
  static void u4_quad(const unsigned char* p, Vec table, Vec* out) {
    const __m512i x =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    for (int t = 0; t < 4; ++t) {
      const int lo = 4 * t, hi = 4 * t + 16;
      const __m512i sh =
          _mm512_set_epi32(hi, hi, hi, hi, hi, hi, hi, hi, lo, lo, lo, lo, lo, lo, lo, lo);
      out[t] = _mm512_permutexvar_ps(_mm512_srlv_epi32(x, sh), table);
    }
  }
  // C8 symmetric: 32 int8 at p times sc[0, 32), each product rounded to bf16
  // (never subnormal, channels_symmetric) by one two-vector conversion,
  // split like bf16_pair: out[0] lane k = channel k < 8 ? 2k : 16 + 2(k - 8),
  // out[1] the next channel.
  static constexpr bool kCvt2Bf16 = true;
  static void c8_pair(const unsigned char* p, const float* sc, Vec* out) {
    const __m512 a = _mm512_mul_ps(from_i8(p), _mm512_loadu_ps(sc));
    const __m512 b = _mm512_mul_ps(from_i8(p + 16), _mm512_loadu_ps(sc + 16));
    const __m512i h = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a));  // words: a, then b
    out[0] = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    out[1] =
        _mm512_castsi512_ps(_mm512_and_si512(h, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
};

// In this order: the tile kernel, the decode kernel using its helpers, the
// decode codecs using both.
#include "attention_kernel_impl.inc"

#include "decode_kernel_impl.inc"

#include "decode_codecs.inc"

}  // namespace
}  // namespace avx512

const KernelSet& avx512_kernels() {
  static constexpr KernelSet k{"avx512", avx512::tile, true, avx512::decode};
  return k;
}

}  // namespace kvq::sdk::kernels
