// Portable kernels: plain C++ over 8-float arrays, which the compiler
// vectorises for the baseline ISA; exp is std::exp.
#include "attention_kernels.hpp"
#include "kvq_sdk/dtype.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace kvq::sdk::kernels {
namespace portable {
namespace {

struct V {
  static constexpr int W = 8;
  static constexpr int kPvChunks = 2;
  static constexpr bool kIntQk = false;    // no integer Q·K (qk_block_i16)
  static constexpr bool kCvtBf16 = false;  // no bf16 conversion instruction
  static constexpr bool kVectorDecode = false;
  // None of the decode codecs' group decoders (decode_codecs.inc).
  static constexpr bool kBf16Pairs = false, kVbmi = false, kU4Table = false, kCvt2Bf16 = false;
  struct Vec {
    float v[W];
  };
  static Vec zero() { return set1(0.0f); }
  static Vec set1(float x) {
    Vec r;
    for (float& e : r.v) e = x;
    return r;
  }
  static Vec load(const float* p) {
    Vec r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static void store(float* p, const Vec& x) { std::memcpy(p, x.v, sizeof x.v); }
  static Vec add(Vec a, const Vec& b) {
    for (int i = 0; i < W; ++i) a.v[i] += b.v[i];
    return a;
  }
  static Vec sub(Vec a, const Vec& b) {
    for (int i = 0; i < W; ++i) a.v[i] -= b.v[i];
    return a;
  }
  static Vec mul(Vec a, const Vec& b) {
    for (int i = 0; i < W; ++i) a.v[i] *= b.v[i];
    return a;
  }
  static Vec fmadd(const Vec& a, const Vec& b, Vec c) {
    for (int i = 0; i < W; ++i) c.v[i] += a.v[i] * b.v[i];
    return c;
  }
  // max(a, b) per lane; a NaN lane of a yields b (as the SIMD max does).
  static Vec max(const Vec& a, Vec b) {
    for (int i = 0; i < W; ++i) b.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return b;
  }
  static float hmax(const Vec& x) {
    float m = x.v[0];
    for (int i = 1; i < W; ++i) m = x.v[i] > m ? x.v[i] : m;
    return m;
  }
  static float hsum(const Vec& x) {
    float s = 0.0f;
    for (float e : x.v) s += e;
    return s;
  }
  static void hsum8(const Vec* x, float* out) {
    for (int i = 0; i < 8; ++i) out[i] = hsum(x[i]);
  }
  // Butterfly reductions (decode_kernel_impl.inc), the lane pattern of the
  // SIMD levels: within groups of 4 lanes [a0, a2, b0, b2] and [a1, a3, b1,
  // b3]; across the two halves [a.lo, b.lo] and [a.hi, b.hi].
  static Vec pair_4(const Vec& a, const Vec& b, int odd) {
    Vec r;
    for (int g = 0; g < W; g += 4) {
      r.v[g] = a.v[g + odd];
      r.v[g + 1] = a.v[g + 2 + odd];
      r.v[g + 2] = b.v[g + odd];
      r.v[g + 3] = b.v[g + 2 + odd];
    }
    return r;
  }
  static Vec pair_lo_4(const Vec& a, const Vec& b) { return pair_4(a, b, 0); }
  static Vec pair_hi_4(const Vec& a, const Vec& b) { return pair_4(a, b, 1); }
  static Vec pair_128(const Vec& a, const Vec& b, int hi) {
    Vec r;
    for (int i = 0; i < 4; ++i) {
      r.v[i] = a.v[i + 4 * hi];
      r.v[i + 4] = b.v[i + 4 * hi];
    }
    return r;
  }
  static Vec pair_lo_128(const Vec& a, const Vec& b) { return pair_128(a, b, 0); }
  static Vec pair_hi_128(const Vec& a, const Vec& b) { return pair_128(a, b, 1); }
  static Vec exp(Vec x) {
    for (float& e : x.v) e = std::exp(e);
    return x;
  }
};

// In this order: the tile kernel, the decode kernel using its helpers, the
// decode codecs using both.
#include "attention_kernel_impl.inc"

#include "decode_kernel_impl.inc"

#include "decode_codecs.inc"

}  // namespace
}  // namespace portable

const KernelSet& portable_kernels() {
  static constexpr KernelSet k{"portable", portable::tile, false, portable::decode};
  return k;
}

}  // namespace kvq::sdk::kernels
