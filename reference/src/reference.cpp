#include "kvq_ref/reference.hpp"

#include <kvq_abi.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace kvq::ref {
namespace {

// Decodes a fp8 code from its definition (sign, exponent, mantissa fields).
double fp8_value(int32_t dtype, uint8_t code) {
  const bool e4m3 = dtype == KVQ_DTYPE_F8_E4M3FN;
  const int mant_bits = e4m3 ? 3 : 2;
  const int exp_bits = e4m3 ? 4 : 5;
  const int bias = e4m3 ? 7 : 15;
  const int sign = code >> 7;
  const int exp = (code >> mant_bits) & ((1 << exp_bits) - 1);
  const int mant = code & ((1 << mant_bits) - 1);
  const double s = sign ? -1.0 : 1.0;
  if (e4m3) {
    if (exp == 15 && mant == 7) return std::numeric_limits<double>::quiet_NaN();
  } else if (exp == 31) {
    return mant == 0 ? s * std::numeric_limits<double>::infinity()
                     : std::numeric_limits<double>::quiet_NaN();
  }
  if (exp == 0) return s * std::ldexp(mant, 1 - bias - mant_bits);
  return s * std::ldexp((1 << mant_bits) + mant, exp - bias - mant_bits);
}

// Generic round-to-nearest-even onto a binary format with `mant_bits`
// fraction bits and minimum normal exponent `emin`, no overflow handling.
double round_binary(double x, int mant_bits, int emin) {
  if (x == 0.0 || !std::isfinite(x)) return x;
  int e = std::ilogb(x);
  if (e < emin) e = emin;
  const double quantum = std::ldexp(1.0, e - mant_bits);
  return std::nearbyint(x / quantum) * quantum;  // default rounding mode: ties to even
}

double round_bf16(double x) {
  const double r = round_binary(x, 7, -126);
  if (std::fabs(r) > 3.3895313892515355e38)
    return std::copysign(std::numeric_limits<double>::infinity(), x);
  return r;
}
double round_f16(double x) {
  const double r = round_binary(x, 10, -14);
  if (std::fabs(r) > 65504.0) return std::copysign(std::numeric_limits<double>::infinity(), x);
  return r;
}

uint16_t bits_of_bf16(double rounded) {
  const float f = static_cast<float>(rounded);  // exact: rounded is a bf16 value
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7FC0;
  return static_cast<uint16_t>(u >> 16);
}
double from_bf16_bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t bits_of_f16(double rounded) {
  if (std::isnan(rounded)) return 0x7E00;
  uint16_t sign = std::signbit(rounded) ? 0x8000 : 0;
  double a = std::fabs(rounded);
  if (std::isinf(a)) return sign | 0x7C00;
  if (a == 0.0) return sign;
  int e = std::ilogb(a);
  if (e < -14) return sign | static_cast<uint16_t>(std::lround(a / std::ldexp(1.0, -24)));
  const uint16_t mant = static_cast<uint16_t>(std::lround((a / std::ldexp(1.0, e) - 1.0) * 1024.0));
  return sign | static_cast<uint16_t>((e + 15) << 10) | mant;
}
double from_f16_bits(uint16_t b) {
  const int sign = b >> 15, exp = (b >> 10) & 31, mant = b & 1023;
  const double s = sign ? -1.0 : 1.0;
  if (exp == 31) return mant ? std::numeric_limits<double>::quiet_NaN() : s * INFINITY;
  if (exp == 0) return s * std::ldexp(mant, -24);
  return s * std::ldexp(1024 + mant, exp - 25);
}

}  // namespace

int64_t dtype_size(int32_t dtype) {
  switch (dtype) {
    case KVQ_DTYPE_F32:
    case KVQ_DTYPE_I32: return 4;
    case KVQ_DTYPE_F16:
    case KVQ_DTYPE_BF16: return 2;
    case KVQ_DTYPE_I8:
    case KVQ_DTYPE_U8:
    case KVQ_DTYPE_F8_E4M3FN:
    case KVQ_DTYPE_F8_E5M2: return 1;
    case KVQ_DTYPE_I64:
    case KVQ_DTYPE_F64: return 8;
    default: return 0;
  }
}

double decode_fp8(int32_t dtype, uint8_t code) {
  return fp8_value(dtype, code);
}

uint8_t encode_fp8(int32_t dtype, double value) {
  if (std::isnan(value)) return 0x7F;
  // The finite non-negative codes in increasing value order (0x00..0x7E for
  // e4m3fn, 0x00..0x7B for e5m2): positive codes sort like their values.
  const int last = dtype == KVQ_DTYPE_F8_E4M3FN ? 0x7E : 0x7B;
  const double max = fp8_value(dtype, static_cast<uint8_t>(last));
  const double a = std::min(std::fabs(value), max);
  int lo = 0, hi = last;  // find neighbours v(lo) <= a <= v(hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (fp8_value(dtype, static_cast<uint8_t>(mid)) <= a ? lo : hi) = mid;
  }
  const double dl = a - fp8_value(dtype, static_cast<uint8_t>(lo));
  const double dh = fp8_value(dtype, static_cast<uint8_t>(hi)) - a;
  // Nearest; on a tie the code with the even mantissa (its last bit clear).
  const int code = dl < dh ? lo : dh < dl ? hi : ((lo & 1) == 0 ? lo : hi);
  return static_cast<uint8_t>(code | (std::signbit(value) ? 0x80 : 0x00));
}

double round_to(int32_t dtype, double value) {
  switch (dtype) {
    case KVQ_DTYPE_F64: return value;
    case KVQ_DTYPE_F32: return static_cast<float>(value);
    case KVQ_DTYPE_BF16: return round_bf16(value);
    case KVQ_DTYPE_F16: return round_f16(value);
    case KVQ_DTYPE_F8_E4M3FN:
    case KVQ_DTYPE_F8_E5M2: return fp8_value(dtype, encode_fp8(dtype, value));
    default: throw std::invalid_argument("round_to: not a float dtype: " + std::to_string(dtype));
  }
}

double load(int32_t dtype, const void* data, int64_t i) {
  const auto* b = static_cast<const unsigned char*>(data);
  switch (dtype) {
    case KVQ_DTYPE_F32: {
      float f;
      std::memcpy(&f, b + 4 * i, 4);
      return f;
    }
    case KVQ_DTYPE_F64: {
      double d;
      std::memcpy(&d, b + 8 * i, 8);
      return d;
    }
    case KVQ_DTYPE_BF16: {
      uint16_t u;
      std::memcpy(&u, b + 2 * i, 2);
      return from_bf16_bits(u);
    }
    case KVQ_DTYPE_F16: {
      uint16_t u;
      std::memcpy(&u, b + 2 * i, 2);
      return from_f16_bits(u);
    }
    case KVQ_DTYPE_I8: return static_cast<int8_t>(b[i]);
    case KVQ_DTYPE_U8: return b[i];
    case KVQ_DTYPE_F8_E4M3FN:
    case KVQ_DTYPE_F8_E5M2: return fp8_value(dtype, b[i]);
    case KVQ_DTYPE_I32: {
      int32_t v;
      std::memcpy(&v, b + 4 * i, 4);
      return v;
    }
    case KVQ_DTYPE_I64: {
      int64_t v;
      std::memcpy(&v, b + 8 * i, 8);
      return static_cast<double>(v);
    }
    default: throw std::invalid_argument("load: unknown dtype " + std::to_string(dtype));
  }
}

void store(int32_t dtype, void* data, int64_t i, double value) {
  auto* b = static_cast<unsigned char*>(data);
  switch (dtype) {
    case KVQ_DTYPE_F32: {
      const float f = static_cast<float>(value);
      std::memcpy(b + 4 * i, &f, 4);
      return;
    }
    case KVQ_DTYPE_F64: std::memcpy(b + 8 * i, &value, 8); return;
    case KVQ_DTYPE_BF16: {
      const uint16_t u = bits_of_bf16(round_bf16(value));
      std::memcpy(b + 2 * i, &u, 2);
      return;
    }
    case KVQ_DTYPE_F16: {
      const uint16_t u = bits_of_f16(round_f16(value));
      std::memcpy(b + 2 * i, &u, 2);
      return;
    }
    case KVQ_DTYPE_F8_E4M3FN:
    case KVQ_DTYPE_F8_E5M2: b[i] = encode_fp8(dtype, value); return;
    case KVQ_DTYPE_I8:
      b[i] = static_cast<unsigned char>(
          static_cast<int8_t>(std::clamp(std::nearbyint(value), -128.0, 127.0)));
      return;
    case KVQ_DTYPE_U8:
      b[i] = static_cast<unsigned char>(std::clamp(std::nearbyint(value), 0.0, 255.0));
      return;
    case KVQ_DTYPE_I32: {
      const int32_t v = static_cast<int32_t>(value);
      std::memcpy(b + 4 * i, &v, 4);
      return;
    }
    case KVQ_DTYPE_I64: {
      const int64_t v = static_cast<int64_t>(value);
      std::memcpy(b + 8 * i, &v, 8);
      return;
    }
    default: throw std::invalid_argument("store: unknown dtype " + std::to_string(dtype));
  }
}

std::vector<double> attention(const AttentionProblem& p, const std::vector<double>& query,
                              const std::vector<std::vector<double>>& keys,
                              const std::vector<std::vector<double>>& values) {
  const int64_t hq = p.num_heads, hkv = p.num_kv_heads, d = p.head_size;
  const int64_t dv = p.head_size_v ? p.head_size_v : d;
  if (hq <= 0 || hkv <= 0 || hq % hkv != 0 || d <= 0)
    throw std::invalid_argument("reference attention: bad head counts");
  const size_t s_count = p.seq_lens.size();
  if (p.query_start_loc.size() != s_count + 1 || keys.size() != s_count || values.size() != s_count)
    throw std::invalid_argument("reference attention: batch arrays disagree");
  const int64_t t_count = p.query_start_loc.back();
  if (static_cast<int64_t>(query.size()) != t_count * hq * d)
    throw std::invalid_argument("reference attention: query size");
  const double scale =
      p.softmax_scale != 0.0 ? p.softmax_scale : 1.0 / std::sqrt(static_cast<double>(d));
  const int64_t group = hq / hkv;
  std::vector<double> out(static_cast<size_t>(t_count * hq * dv), 0.0);
  for (size_t s = 0; s < s_count; ++s) {
    const int64_t q0 = p.query_start_loc[s], qlen = p.query_start_loc[s + 1] - q0;
    const int64_t seq_len = p.seq_lens[s], ctx = seq_len - qlen;
    if (qlen < 0 || ctx < 0)
      throw std::invalid_argument("reference attention: query longer than sequence");
    if (static_cast<int64_t>(keys[s].size()) != seq_len * hkv * d ||
        static_cast<int64_t>(values[s].size()) != seq_len * hkv * dv)
      throw std::invalid_argument("reference attention: key/value size");
    for (int64_t i = 0; i < qlen; ++i) {
      const int64_t pos = ctx + i;
      for (int64_t h = 0; h < hq; ++h) {
        const int64_t kh = h / group;
        const double* q = &query[static_cast<size_t>(((q0 + i) * hq + h) * d)];
        std::vector<double> score;
        std::vector<int64_t> idx;
        for (int64_t j = 0; j <= pos && j < seq_len; ++j) {
          if (p.sliding_window > 0 && pos - j >= p.sliding_window) continue;
          const double* k = &keys[s][static_cast<size_t>((j * hkv + kh) * d)];
          double dot = 0.0;
          for (int64_t c = 0; c < d; ++c) dot += q[c] * k[c];
          double sc = dot * scale;
          if (p.softcap > 0.0) sc = p.softcap * std::tanh(sc / p.softcap);
          if (!p.alibi_slopes.empty())
            sc += p.alibi_slopes[static_cast<size_t>(h)] * static_cast<double>(j - ctx);
          score.push_back(sc);
          idx.push_back(j);
        }
        // Probabilities relative to the keys' maximum (the base the fp8-query
        // rounding uses); the sink, if any, only adds to the denominator.
        double m = -INFINITY;
        for (double v : score) m = std::max(m, v);
        double denom = p.sinks.empty() ? 0.0 : std::exp(p.sinks[static_cast<size_t>(h)] - m);
        for (double& v : score) {
          v = std::exp(v - m);
          denom += v;
          if (p.round_p_e4m3) v = round_to(KVQ_DTYPE_F8_E4M3FN, v);
        }
        double* o = &out[static_cast<size_t>(((q0 + i) * hq + h) * dv)];
        for (size_t n = 0; n < score.size(); ++n) {
          const double* v = &values[s][static_cast<size_t>((idx[n] * hkv + kh) * dv)];
          const double w = score[n] / denom;
          for (int64_t c = 0; c < dv; ++c) o[c] += w * v[c];
        }
      }
    }
  }
  return out;
}

Comparison compare(const std::vector<double>& actual, const std::vector<double>& expected,
                   double atol, double rtol) {
  if (actual.size() != expected.size()) throw std::invalid_argument("compare: sizes differ");
  Comparison c;
  double num = 0.0, den = 0.0, dot = 0.0, na = 0.0, worst = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], b = expected[i];
    if (!std::isfinite(a)) {
      ++c.non_finite;
      continue;
    }
    const double err = std::fabs(a - b);
    num += err * err;
    den += b * b;
    dot += a * b;
    na += a * a;
    c.max_abs_error = std::max(c.max_abs_error, err);
    const double excess = err - (atol + rtol * std::fabs(b));
    if (excess > 0) {
      ++c.violations;
      if (excess > worst) {
        worst = excess;
        c.worst_index = static_cast<int64_t>(i);
      }
    }
  }
  c.nmse = den > 0 ? num / den : num;
  c.cosine = (na > 0 && den > 0) ? dot / std::sqrt(na * den) : (na == den ? 1.0 : 0.0);
  return c;
}

}  // namespace kvq::ref
