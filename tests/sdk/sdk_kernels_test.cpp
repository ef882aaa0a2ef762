// SDK kernel helpers behind the integer Q·K and the symmetric C8 path
// (plugin_sdk/src/attention_kernels.hpp, private to the SDK).
#include "../../plugin_sdk/src/attention_kernels.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace {

using kvq::sdk::ChannelVectors;
using kvq::sdk::kernels::channels_symmetric;
using kvq::sdk::kernels::quantize_query_i16;

// q = scale * (hi + lo / 2^15) to about 2^-31 of the row max, with hi and lo
// in the ranges whose int32 dot products cannot overflow.
TEST(QuantizeQueryI16, ReconstructsWithinTwoToMinus30OfRowMax) {
  constexpr int64_t rows = 6, d = 128;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(rows * d);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c)
      q[r * d + c] = normal(rng) * std::ldexp(1.0f, static_cast<int>(r * 9) - 20);
  for (int64_t c = 0; c < d; ++c) q[5 * d + c] = 0.0f;  // an all-zero row
  std::vector<int16_t> out(2 * rows * d);
  std::vector<float> scale(rows);
  ASSERT_TRUE(quantize_query_i16(q.data(), rows, d, out.data(), scale.data()));
  for (int64_t r = 0; r < rows; ++r) {
    double mx = 0.0;
    for (int64_t c = 0; c < d; ++c) mx = std::max(mx, std::fabs(double{q[r * d + c]}));
    for (int64_t c = 0; c < d; ++c) {
      const int16_t hi = out[2 * r * d + c], lo = out[(2 * r + 1) * d + c];
      EXPECT_LE(std::abs(hi), 32767);
      EXPECT_LE(std::abs(lo), 16384);
      const double back = double{scale[r]} * (hi + lo / 32768.0);
      EXPECT_LE(std::fabs(back - q[r * d + c]), std::ldexp(mx, -30)) << r << " " << c;
    }
  }
}

TEST(QuantizeQueryI16, RejectsNonFiniteAndTinyRows) {
  std::vector<float> q(32, 1.0f);
  std::vector<int16_t> out(64);
  float scale = 0.0f;
  q[3] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(quantize_query_i16(q.data(), 1, 32, out.data(), &scale));
  q[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(quantize_query_i16(q.data(), 1, 32, out.data(), &scale));
  std::vector<float> tiny(32, 1e-35f);
  EXPECT_FALSE(quantize_query_i16(tiny.data(), 1, 32, out.data(), &scale));
}

// The C8 fast path needs zero offsets and scales whose products with int8
// values cannot be subnormal.
TEST(ChannelsSymmetric, ZeroOffsetsAndNormalScalesOnly) {
  std::vector<float> zero(8, 0.0f), sc(8, 0.01f);
  ChannelVectors c{zero.data(), sc.data(), zero.data(), sc.data()};
  EXPECT_TRUE(channels_symmetric(c, 8, 8));
  std::vector<float> off = zero;
  off[2] = 0.5f;
  EXPECT_FALSE(
      channels_symmetric(ChannelVectors{zero.data(), sc.data(), off.data(), sc.data()}, 8, 8));
  std::vector<float> bad = sc;
  bad[1] = 0x1p-60f;
  EXPECT_FALSE(
      channels_symmetric(ChannelVectors{zero.data(), bad.data(), zero.data(), sc.data()}, 8, 8));
  bad[1] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(
      channels_symmetric(ChannelVectors{zero.data(), sc.data(), zero.data(), bad.data()}, 8, 8));
  bad[1] = 0.0f;  // a zero scale gives zeros, never subnormals
  EXPECT_TRUE(
      channels_symmetric(ChannelVectors{zero.data(), bad.data(), zero.data(), sc.data()}, 8, 8));
  EXPECT_FALSE(channels_symmetric(ChannelVectors{}, 8, 8));
}

}  // namespace
