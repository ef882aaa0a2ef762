// The host's fast float -> bf16/fp16 conversions agree bit for bit with the
// float64 reference codec (round to nearest even, overflow to infinity).
#include "kvq_engine/float_codec.hpp"

#include <gtest/gtest.h>
#include <kvq_abi.h>

#include <bit>
#include <cmath>
#include <kvq_ref/reference.hpp>
#include <limits>
#include <random>
#include <vector>

namespace kvq::host {
namespace {

std::vector<float> interesting_floats() {
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               -1.0f,
                               65504.0f,
                               65519.0f,
                               65520.0f,
                               70000.0f,
                               6.103515625e-05f,
                               5.9604644775390625e-08f,
                               2.9802322387695312e-08f,
                               3.0e-08f,
                               1.0e-10f,
                               3.4e38f,
                               -3.4e38f,
                               1.00390625f,
                               1.01171875f};
  // Every bf16/fp16 halfway case is a float with specific low bits: sample
  // the float bit space densely, including subnormal halves.
  std::mt19937 random(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(bits(random));
    if (std::isfinite(f)) values.push_back(f);
  }
  for (uint32_t b = 0x33000000u; b < 0x47800000u; b += 0x1357u)
    values.push_back(std::bit_cast<float>(b));
  return values;
}

TEST(FloatCodecTest, Bf16MatchesTheReference) {
  for (const float f : interesting_floats()) {
    const double expected = kvq::ref::round_to(KVQ_DTYPE_BF16, f);
    const float actual = bf16_bits_to_float(float_to_bf16_bits(f));
    if (std::isinf(expected)) {
      ASSERT_TRUE(std::isinf(actual)) << f;
    } else {
      ASSERT_EQ(static_cast<double>(actual), expected) << "value " << f;
    }
  }
}

TEST(FloatCodecTest, Fp16MatchesTheReference) {
  for (const float f : interesting_floats()) {
    const double expected = kvq::ref::round_to(KVQ_DTYPE_F16, f);
    const float actual = fp16_bits_to_float(float_to_fp16_bits(f));
    if (std::isinf(expected)) {
      ASSERT_TRUE(std::isinf(actual)) << f;
      ASSERT_EQ(std::signbit(actual), std::signbit(f));
    } else {
      ASSERT_EQ(static_cast<double>(actual), expected) << "value " << f;
    }
  }
}

TEST(FloatCodecTest, NanStaysNan) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(nan))));
  EXPECT_TRUE(std::isnan(fp16_bits_to_float(float_to_fp16_bits(nan))));
}

TEST(FloatCodecTest, EncodeDecodeRoundTripsEveryModelDtype) {
  const std::vector<float> values = {0.5f, -2.25f, 3.0f, 1024.0f};
  for (int32_t dtype : {KVQ_DTYPE_F32, KVQ_DTYPE_F16, KVQ_DTYPE_BF16}) {
    std::vector<uint64_t> storage(values.size());
    encode_floats(dtype, values, storage.data());
    std::vector<double> back(values.size());
    decode_to_doubles(dtype, storage.data(), back);
    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(back[i], values[i]) << dtype;
  }
}

}  // namespace
}  // namespace kvq::host
