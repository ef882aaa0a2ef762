// The quantized KV modes as the suite knows them from the specs, and their
// write path and its inverse for one (K|V, head) row: an IEEE reference
// written from triton_sim.md §3 and ascend.md §5, not from plugin code. Used
// by quantized_numeric_cases.cpp to judge every stored byte.
#pragma once

#include <kvq_abi.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kvq_ref/reference.hpp"

namespace kvq::conform {

// ---------------------------------------------------------------- modes

enum class Codec { kInt8PerTokenHead, kFp8PerTokenHead, kInt4PerTokenHead, kFp8PerTensor, kC8 };

struct QuantMode {
  const char* name;  // kv_cache_dtype string; "C8" for the scheme
  Codec codec;
  int32_t element_dtype;  // what the cache stores
  double e2e_nmse;        // vLLM's end-to-end limit (triton_sim.md §6)
};

inline bool per_token_head(Codec c) {
  return c == Codec::kInt8PerTokenHead || c == Codec::kFp8PerTokenHead ||
         c == Codec::kInt4PerTokenHead;
}

// ------------------------------------------------------------ fp8 codec

// kvq::ref::encode_fp8, made fast enough for a million elements: the nearest
// code by binary search over the finite values, and the reference itself for
// every tie and every value at or beyond the largest finite one (the only
// places where the rounding rule, rather than distance, decides).
class Fp8Codec {
 public:
  explicit Fp8Codec(int32_t dtype) : dtype_(dtype) {
    for (int c = 0; c < 256; ++c) {
      decoded_[static_cast<size_t>(c)] = kvq::ref::decode_fp8(dtype, static_cast<uint8_t>(c));
      const double v = decoded_[static_cast<size_t>(c)];
      if (c < 0x80 && std::isfinite(v)) positive_.push_back({v, static_cast<uint8_t>(c)});
    }
    std::sort(positive_.begin(), positive_.end());
    max_ = positive_.back().first;
  }

  // `tie` is set when x lies halfway between two codes (or beyond max).
  uint8_t encode(double x, bool* tie = nullptr) const {
    const double a = std::fabs(x);
    if (!(a < max_)) {
      if (tie) *tie = true;
      return kvq::ref::encode_fp8(dtype_, x);
    }
    const auto hi =
        std::lower_bound(positive_.begin(), positive_.end(), std::make_pair(a, uint8_t{0}));
    uint8_t code = hi->second;
    if (hi->first != a) {
      const auto lo = hi - 1;
      const double below = a - lo->first, above = hi->first - a;
      if (below == above) {
        if (tie) *tie = true;
        return kvq::ref::encode_fp8(dtype_, x);
      }
      code = below < above ? lo->second : hi->second;
    }
    return static_cast<uint8_t>(std::signbit(x) ? code | 0x80 : code);
  }
  double decode(uint8_t code) const { return decoded_[code]; }
  double max() const { return max_; }
  // Midpoints between adjacent non-negative finite values, smallest first.
  std::vector<double> midpoints() const {
    std::vector<double> m;
    for (size_t i = 1; i < positive_.size(); ++i)
      m.push_back((positive_[i - 1].first + positive_[i].first) / 2);
    return m;
  }

 private:
  int32_t dtype_;
  std::array<double, 256> decoded_{};
  std::vector<std::pair<double, uint8_t>> positive_;
  double max_ = 0;
};

inline double bf16(double x) {
  return kvq::ref::round_to(KVQ_DTYPE_BF16, x);
}

// ------------------------------------------------------------ row codec

struct CodecStats {
  int64_t ties = 0;     // elements rounded from exactly halfway
  int64_t clamped = 0;  // elements clamped / saturated to the code range
};

// The spec's write path and its inverse for one (K|V, head) row of a layer.
class RowCodec {
 public:
  RowCodec(const QuantMode& mode, int64_t head_size)
      : mode_(mode),
        d_(head_size),
        fp8_(mode.codec == Codec::kFp8PerTensor ? mode.element_dtype : KVQ_DTYPE_F8_E4M3FN) {}

  // fp8 per-tensor scales and the C8 per-channel scales/offsets as loaded (fp32).
  double tensor_scale[2] = {1.0, 1.0};
  std::vector<float> channel_scale[2], channel_offset[2];

  const QuantMode& mode() const { return mode_; }
  const Fp8Codec& fp8() const { return fp8_; }

  // Bytes of a row's codes (int4: the packed nibbles).
  int64_t code_bytes() const { return mode_.codec == Codec::kInt4PerTokenHead ? (d_ + 1) / 2 : d_; }
  // Bytes of a row the spec defines (the rest of row_bytes is padding).
  int64_t content_bytes() const {
    switch (mode_.codec) {
      case Codec::kInt8PerTokenHead:
      case Codec::kFp8PerTokenHead: return d_ + 4;
      case Codec::kInt4PerTokenHead: return (d_ + 1) / 2 + 8;
      default: return d_;
    }
  }

  std::string byte_name(int64_t byte) const {
    const int64_t codes = code_bytes();
    if (byte < codes)
      return mode_.codec == Codec::kInt4PerTokenHead
                 ? "nibbles of elements " + std::to_string(2 * byte) + "," +
                       std::to_string(2 * byte + 1)
                 : "element " + std::to_string(byte);
    return byte < codes + 4 ? "scale" : "zero point";
  }

  void encode(int kv, int64_t head, const double* x, unsigned char* out, CodecStats& st) const {
    switch (mode_.codec) {
      case Codec::kInt8PerTokenHead:
      case Codec::kFp8PerTokenHead: return encode_symmetric(x, out, st);
      case Codec::kInt4PerTokenHead: return encode_int4(x, out, st);
      case Codec::kFp8PerTensor: {
        // q = fp8(x / scale), RNE, saturating (triton_sim.md §3).
        const float s = static_cast<float>(tensor_scale[kv]);
        for (int64_t i = 0; i < d_; ++i) {
          const float y = static_cast<float>(x[i]) / s;
          bool tie = false;
          out[i] = fp8_.encode(y, &tie);
          st.ties += tie && std::fabs(y) < fp8_.max();
          st.clamped += std::fabs(y) > fp8_.max();
        }
        return;
      }
      case Codec::kC8: {
        // ascend.md §5, every operation rounded to bf16.
        for (int64_t i = 0; i < d_; ++i) {
          const size_t c = static_cast<size_t>(head * d_ + i);
          const double inv = bf16(1.0f / channel_scale[kv][c]);
          const double off = bf16(channel_offset[kv][c]);
          double t = bf16(bf16(x[i]) * inv);
          t = bf16(t + off);
          st.ties += t - std::floor(t) == 0.5;
          const double q = std::clamp(std::nearbyint(t), -128.0, 127.0);
          st.clamped += q != std::nearbyint(t);
          out[i] = static_cast<unsigned char>(static_cast<int8_t>(q));
        }
        return;
      }
    }
  }

  void decode(int kv, int64_t head, const unsigned char* row, double* out) const {
    switch (mode_.codec) {
      case Codec::kInt8PerTokenHead:
      case Codec::kFp8PerTokenHead: {
        const double scale = load_f32(row + d_);
        for (int64_t i = 0; i < d_; ++i) {
          const double q = mode_.codec == Codec::kInt8PerTokenHead
                               ? static_cast<double>(static_cast<int8_t>(row[i]))
                               : fp8_.decode(row[i]);
          out[i] = q * scale;
        }
        return;
      }
      case Codec::kInt4PerTokenHead: {
        const int64_t n = (d_ + 1) / 2;
        const double scale = load_f32(row + n), zp = load_f32(row + n + 4);
        for (int64_t i = 0; i < d_; ++i) {
          const int q = (row[i / 2] >> (4 * (i % 2))) & 0xF;
          out[i] = (q - zp) * scale;
        }
        return;
      }
      case Codec::kFp8PerTensor:
        // Dequantized, then rounded to the (bf16) query dtype as vLLM does.
        for (int64_t i = 0; i < d_; ++i) out[i] = bf16(fp8_.decode(row[i]) * tensor_scale[kv]);
        return;
      case Codec::kC8:
        for (int64_t i = 0; i < d_; ++i) {
          const size_t c = static_cast<size_t>(head * d_ + i);
          const double off = bf16(channel_offset[kv][c]), scale = bf16(channel_scale[kv][c]);
          out[i] = bf16(bf16(static_cast<int8_t>(row[i]) - off) * scale);
        }
        return;
    }
  }

 private:
  static double load_f32(const unsigned char* p) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  static void store_f32(unsigned char* p, float f) { std::memcpy(p, &f, 4); }

  // triton_sim.md §3, float32 throughout: scale = max(absmax * fp32(1/QMAX), 1e-6),
  // inv = 1/scale, y = x*inv; int8 RNE clamped, fp8 e4m3 of clamp(y, ±448).
  void encode_symmetric(const double* x, unsigned char* out, CodecStats& st) const {
    const bool int8 = mode_.codec == Codec::kInt8PerTokenHead;
    const float inv_qmax = int8 ? 1.0f / 127.0f : 1.0f / 448.0f;  // a multiply, as vLLM
    float absmax = 0.0f;
    for (int64_t i = 0; i < d_; ++i) absmax = std::max(absmax, std::fabs(static_cast<float>(x[i])));
    const float scale = std::max(absmax * inv_qmax, 1e-6f);
    const float inv = 1.0f / scale;
    for (int64_t i = 0; i < d_; ++i) {
      const float y = static_cast<float>(x[i]) * inv;
      if (int8) {
        const float r = std::nearbyint(y);
        const float q = std::clamp(r, -128.0f, 127.0f);
        st.ties += y - std::floor(y) == 0.5f;
        st.clamped += q != r;
        out[i] = static_cast<unsigned char>(static_cast<int8_t>(q));
      } else {
        const float c = std::clamp(y, -448.0f, 448.0f);
        bool tie = false;
        out[i] = fp8_.encode(c, &tie);
        st.ties += tie && std::fabs(c) < 448.0f;
        st.clamped += c != y;
      }
    }
    store_f32(out + d_, scale);
  }

  // triton_sim.md §3 (last paragraph), float32: scale = max((max-min)/15,
  // 1e-6), zp = clamp(rne(-min/scale), 0, 15), q = clamp(rne(x/scale + zp),
  // 0, 15); nibbles (even index low), then fp32 scale, then fp32 zero point.
  void encode_int4(const double* x, unsigned char* out, CodecStats& st) const {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (int64_t i = 0; i < d_; ++i) {
      lo = std::min(lo, static_cast<float>(x[i]));
      hi = std::max(hi, static_cast<float>(x[i]));
    }
    const float scale = std::max((hi - lo) / 15.0f, 1e-6f);
    const float zr = -lo / scale;
    const float zp = std::clamp(std::nearbyint(zr), 0.0f, 15.0f);
    st.ties += zr - std::floor(zr) == 0.5f;
    st.clamped += zp != std::nearbyint(zr);
    const int64_t n = (d_ + 1) / 2;
    std::memset(out, 0, static_cast<size_t>(n));
    for (int64_t i = 0; i < d_; ++i) {
      const float y = static_cast<float>(x[i]) / scale + zp;
      const float r = std::nearbyint(y);
      const float q = std::clamp(r, 0.0f, 15.0f);
      st.ties += y - std::floor(y) == 0.5f;
      st.clamped += q != r;
      out[i / 2] = static_cast<unsigned char>(out[i / 2] | (static_cast<int>(q) << (4 * (i % 2))));
    }
    store_f32(out + n, scale);
    store_f32(out + n + 4, zp);
  }

  QuantMode mode_;
  int64_t d_;
  Fp8Codec fp8_;
};

}  // namespace kvq::conform
