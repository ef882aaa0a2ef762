#include "kvq_sdk/dtype.hpp"

#include "kvq_sdk/error.hpp"

#include <kvq_abi_names.h>

#include <array>
#include <cmath>

namespace kvq::sdk {
namespace {

struct Fp8Format {
  int mant_bits;
  int bias;
  float max_finite;
};
constexpr Fp8Format kE4M3{3, 7, 448.0f};
constexpr Fp8Format kE5M2{2, 15, 57344.0f};

// Decodes an fp8 code (field arithmetic); e4m3fn has no infinity and a single
// NaN mantissa pattern, e5m2 follows IEEE.
float fp8_decode(uint8_t code, const Fp8Format& f, bool ieee_specials) {
  const int exp_bits = 7 - f.mant_bits;
  const int exp = (code >> f.mant_bits) & ((1 << exp_bits) - 1);
  const int mant = code & ((1 << f.mant_bits) - 1);
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  const int exp_max = (1 << exp_bits) - 1;
  if (ieee_specials && exp == exp_max) return mant ? NAN : sign * INFINITY;
  if (!ieee_specials && exp == exp_max && mant == (1 << f.mant_bits) - 1) return NAN;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), 1 - f.bias - f.mant_bits);
  return sign *
         std::ldexp(static_cast<float>((1 << f.mant_bits) + mant), exp - f.bias - f.mant_bits);
}

// fp32 -> fp8, round to nearest even, saturating. Scaling by powers of two
// is exact in fp32, so nearbyint (ties to even) does the single rounding.
uint8_t fp8_encode(float x, const Fp8Format& f) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fmin(std::fabs(x), f.max_finite);
  if (a == 0.0f) return sign;
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  e -= 1;             // a = 1.xxx * 2^e
  const int emin = 1 - f.bias;
  if (e < emin) e = emin;  // subnormal range shares the minimum exponent's quantum
  const float q = std::nearbyint(std::ldexp(a, f.mant_bits - e));
  // q in [0, 2^(m+1)]; code = (biased exponent << m) + q - 2^m for normals,
  // which also yields the right code for subnormals (biased exponent 0) and
  // for a carry into the next exponent.
  const int biased = (e - emin);  // 0 for the lowest binade
  const int code = (biased << f.mant_bits) + static_cast<int>(q);
  return static_cast<uint8_t>(sign | code);
}

std::array<float, 256> make_table(bool e4m3) {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c)
    t[static_cast<size_t>(c)] = e4m3 ? fp8_decode(static_cast<uint8_t>(c), kE4M3, false)
                                     : fp8_decode(static_cast<uint8_t>(c), kE5M2, true);
  return t;
}
const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> t = make_table(true);  // immutable after first use
  return t;
}
const std::array<float, 256>& e5m2_table() {
  static const std::array<float, 256> t = make_table(false);
  return t;
}

}  // namespace

int64_t dtype_size(int32_t dtype) {
  return kvq_dtype_size(dtype);
}

const char* dtype_name(int32_t dtype) {
  return kvq_dtype_name(dtype);
}

bool is_model_dtype(int32_t dtype) {
  return dtype == KVQ_DTYPE_F32 || dtype == KVQ_DTYPE_F16 || dtype == KVQ_DTYPE_BF16;
}

float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -f : f;
  }
  uint32_t u;
  if (exp == 31)
    u = sign | 0x7F800000u | (mant << 13);
  else
    u = sign | ((exp + 112) << 23) | (mant << 13);
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t float_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7E00;
  if (a >= 65520.0f) return sign | 0x7C00;  // rounds to infinity
  if (a < 6.103515625e-05f) {               // subnormal: quantum 2^-24
    return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
  }
  // normal: keep 10 mantissa bits with round to nearest even on the fp32 bits
  uint32_t v = u & 0x7FFFFFFFu;
  v += 0xFFFu + ((v >> 13) & 1u);
  const uint32_t exp = (v >> 23) - 112;
  return sign | static_cast<uint16_t>((exp << 10) | ((v >> 13) & 0x3FFu));
}

float e4m3_to_float(uint8_t code) {
  return e4m3_table()[code];
}
float e5m2_to_float(uint8_t code) {
  return e5m2_table()[code];
}
uint8_t float_to_e4m3(float f) {
  return fp8_encode(f, kE4M3);
}
uint8_t float_to_e5m2(float f) {
  return fp8_encode(f, kE5M2);
}

float load_float(int32_t dtype, const void* p) {
  switch (dtype) {
    case KVQ_DTYPE_F32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case KVQ_DTYPE_BF16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return bf16_to_float(b);
    }
    case KVQ_DTYPE_F16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return f16_to_float(b);
    }
    case KVQ_DTYPE_F8_E4M3FN: return e4m3_to_float(*static_cast<const uint8_t*>(p));
    case KVQ_DTYPE_F8_E5M2: return e5m2_to_float(*static_cast<const uint8_t*>(p));
    case KVQ_DTYPE_I8: return static_cast<float>(*static_cast<const int8_t*>(p));
    case KVQ_DTYPE_U8: return static_cast<float>(*static_cast<const uint8_t*>(p));
    case KVQ_DTYPE_I32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return static_cast<float>(v);
    }
    case KVQ_DTYPE_I64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<float>(v);
    }
    case KVQ_DTYPE_F64: {
      double v;
      std::memcpy(&v, p, 8);
      return static_cast<float>(v);
    }
    default: fail(KVQ_ERR_INVALID_ARGUMENT, "cannot read dtype {} as float", dtype);
  }
}

void load_floats(int32_t dtype, const void* p, int64_t step, int64_t n, float* out) {
  const auto* b = static_cast<const unsigned char*>(p);
  if (dtype == KVQ_DTYPE_BF16 && step == 2) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, b + 2 * i, 2);
      out[i] = bf16_to_float(h);
    }
  } else if (dtype == KVQ_DTYPE_F32 && step == 4) {
    std::memcpy(out, b, static_cast<size_t>(n) * 4);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = load_float(dtype, b + i * step);
  }
}

bool all_finite(const float* x, int64_t n) {
  uint32_t bad = 0;  // no early exit, so the loop vectorizes
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    bad |= static_cast<uint32_t>((u & 0x7F800000u) == 0x7F800000u);
  }
  return bad == 0;
}

void store_float(int32_t dtype, void* p, float v) {
  switch (dtype) {
    case KVQ_DTYPE_F32: std::memcpy(p, &v, 4); return;
    case KVQ_DTYPE_BF16: {
      const uint16_t b = float_to_bf16(v);
      std::memcpy(p, &b, 2);
      return;
    }
    case KVQ_DTYPE_F16: {
      const uint16_t b = float_to_f16(v);
      std::memcpy(p, &b, 2);
      return;
    }
    case KVQ_DTYPE_F8_E4M3FN: *static_cast<uint8_t*>(p) = float_to_e4m3(v); return;
    case KVQ_DTYPE_F8_E5M2: *static_cast<uint8_t*>(p) = float_to_e5m2(v); return;
    case KVQ_DTYPE_F64: {
      const double d = v;
      std::memcpy(p, &d, 8);
      return;
    }
    default: fail(KVQ_ERR_INVALID_ARGUMENT, "cannot store float as dtype {}", dtype);
  }
}

}  // namespace kvq::sdk
