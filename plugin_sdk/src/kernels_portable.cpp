// Portable kernels: plain C++ over 8-float arrays, which the compiler
// vectorises for the baseline ISA; exp is std::exp.
#include "attention_kernels.hpp"
#include "kvq_sdk/dtype.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace kvq::sdk::kernels {
namespace portable {
namespace {

struct V {
  static constexpr int W = 8;
  static constexpr int kPvChunks = 2;
  static constexpr bool kIntQk = false;    // no integer Q·K (qk_block_i16)
  static constexpr bool kCvtBf16 = false;  // no bf16 conversion instruction
  static constexpr bool kVectorDecode = false;
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
  static Vec exp(Vec x) {
    for (float& e : x.v) e = std::exp(e);
    return x;
  }
};

#include "attention_kernel_impl.inc"

}  // namespace
}  // namespace portable

const KernelSet& portable_kernels() {
  static constexpr KernelSet k{"portable", portable::tile, false};
  return k;
}

}  // namespace kvq::sdk::kernels
