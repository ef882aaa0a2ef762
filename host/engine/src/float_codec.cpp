#include "kvq_engine/float_codec.hpp"

#include <fmt/format.h>
#include <kvq_abi.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "kvq_files/errors.hpp"

namespace kvq::host {

uint16_t float_to_bf16_bits(float value) noexcept {
  const auto bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x0040);  // keep it quiet NaN
  // Round to nearest, ties to even: add 0x7FFF plus the lowest kept bit.
  const uint32_t rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

float bf16_bits_to_float(uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

uint16_t float_to_fp16_bits(float value) noexcept {
  const auto bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude >= 0x7F800000u) {  // Inf or NaN
    return sign | (magnitude > 0x7F800000u ? 0x7E00 : 0x7C00);
  }
  if (magnitude >= 0x477FF000u) {  // >= 65520 rounds past the largest half (65504)
    return sign | 0x7C00;
  }
  if (magnitude < 0x38800000u) {  // below 2^-14: a half subnormal (or zero)
    // a * 2^24 is exact in float and < 1024; nearbyint rounds ties to even.
    const float scaled = std::bit_cast<float>(magnitude) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to
  // nearest even; a mantissa carry correctly bumps the exponent.
  const uint32_t lowest_kept = (magnitude >> 13) & 1u;
  const uint32_t rounded = magnitude - (112u << 23) + 0xFFFu + lowest_kept;
  return sign | static_cast<uint16_t>(rounded >> 13);
}

float fp16_bits_to_float(uint16_t bits) noexcept {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  const uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float value = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
    return sign ? -value : value;
  }
  if (exponent == 0x1F) {
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

void encode_floats(int32_t dtype, std::span<const float> values, void* destination) {
  switch (dtype) {
    case KVQ_DTYPE_F32: std::memcpy(destination, values.data(), values.size_bytes()); return;
    case KVQ_DTYPE_BF16: {
      auto* out = static_cast<uint16_t*>(destination);
      for (size_t i = 0; i < values.size(); ++i) out[i] = float_to_bf16_bits(values[i]);
      return;
    }
    case KVQ_DTYPE_F16: {
      auto* out = static_cast<uint16_t*>(destination);
      for (size_t i = 0; i < values.size(); ++i) out[i] = float_to_fp16_bits(values[i]);
      return;
    }
    default: throw Error(fmt::format("encode_floats: dtype {} is not a model dtype", dtype));
  }
}

void decode_to_doubles(int32_t dtype, const void* source, std::span<double> out) {
  switch (dtype) {
    case KVQ_DTYPE_F32: {
      const auto* in = static_cast<const float*>(source);
      for (size_t i = 0; i < out.size(); ++i) out[i] = in[i];
      return;
    }
    case KVQ_DTYPE_BF16: {
      const auto* in = static_cast<const uint16_t*>(source);
      for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_bits_to_float(in[i]);
      return;
    }
    case KVQ_DTYPE_F16: {
      const auto* in = static_cast<const uint16_t*>(source);
      for (size_t i = 0; i < out.size(); ++i) out[i] = fp16_bits_to_float(in[i]);
      return;
    }
    default: throw Error(fmt::format("decode_to_doubles: dtype {} is not a model dtype", dtype));
  }
}

}  // namespace kvq::host
