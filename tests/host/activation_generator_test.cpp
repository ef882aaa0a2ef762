// The activation generator is deterministic, order-independent, and has the
// statistics it promises (K outlier channels, none in V, shared prefixes).
#include "kvq_engine/activation_generator.hpp"

#include <gtest/gtest.h>
#include <kvq_abi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kvq_engine/plugin.hpp"
#include "kvq_engine/step_batch.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

constexpr ActivationShape kShape{2, 8, 2, 64, 64};

// The bytes a StepBatch hands the plugin for one prefill step.
std::vector<std::byte> step_bytes(uint64_t seed) {
  const ActivationGenerator generator(seed, kShape);
  const ModelShape shape{2, 8, 2, 64, 64, KVQ_DTYPE_BF16};
  const Plugin plugin = open_plugin(testing::triton_plugin());  // host memory
  StepBatch batch(shape, plugin);
  const std::vector<RequestSpec> requests = {{0, 20, 4, 0, 0.0}, {1, 12, 4, 0, 0.0}};
  StepPlan plan;
  plan.chunks = {ScheduledChunk{0, 0, 20, false, {0, 1}}, ScheduledChunk{1, 0, 12, false, {2}}};
  plan.num_tokens = 32;
  plan.attention_state = KVQ_ATTN_PREFILL_NO_CACHE;
  batch.prepare(plan, requests, 16);
  batch.generate(generator, 1);
  const std::byte* begin = batch.query().host();
  return std::vector<std::byte>(begin, begin + batch.query().num_elements() * 2);
}

TEST(ActivationGeneratorTest, SameSeedSameBytesOtherSeedOtherBytes) {
  const auto a = step_bytes(42);
  const auto b = step_bytes(42);
  const auto c = step_bytes(43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(ActivationGeneratorTest, ValuesDependOnlyOnTheirKey) {
  const ActivationGenerator generator(5, kShape);
  std::vector<float> first(64), again(64), other(64);
  generator.fill(Projection::kKey, 3, 17, 1, 0, first);
  generator.fill(Projection::kValue, 9, 2, 0, 1, other);  // unrelated call in between
  generator.fill(Projection::kKey, 3, 17, 1, 0, again);
  EXPECT_EQ(first, again);
  generator.fill(Projection::kKey, 4, 17, 1, 0, other);  // another request
  EXPECT_NE(first, other);
  generator.fill(Projection::kKey, 3, 18, 1, 0, other);  // another position
  EXPECT_NE(first, other);
}

TEST(ActivationGeneratorTest, WholeTokenEqualsHeadByHead) {
  const ActivationGenerator generator(9, kShape);
  for (const Projection projection : {Projection::kQuery, Projection::kKey, Projection::kValue}) {
    const int64_t heads = generator.heads(projection);
    std::vector<float> token(static_cast<size_t>(heads * 64)), head(64);
    generator.fill_token(projection, 2, 33, 1, token);
    for (int64_t h = 0; h < heads; ++h) {
      generator.fill(projection, 2, 33, 1, h, head);
      EXPECT_TRUE(std::equal(head.begin(), head.end(), token.begin() + h * 64)) << h;
    }
  }
}

TEST(ActivationGeneratorTest, BaseValuesAreStandardNormal) {
  const ActivationGenerator generator(1, kShape);
  std::vector<float> v(64);
  double sum = 0, squares = 0;
  int64_t n = 0, beyond_three_sigma = 0;
  for (int p = 1; p < 2000; ++p) {
    generator.fill(Projection::kValue, 7, p, 0, 0, v);
    for (int c = 0; c < 64; ++c) {
      sum += v[c];
      squares += static_cast<double>(v[c]) * v[c];
      if (std::fabs(v[c]) > 4.5) ++beyond_three_sigma;  // > 3 sigma of the widest channel scale
      ++n;
    }
  }
  EXPECT_NEAR(sum / n, 0.0, 0.05);
  EXPECT_GT(beyond_three_sigma, 0);  // tails exist (heavy-tailed tokens and normal tails)
}

TEST(ActivationGeneratorTest, KeysHaveOutlierChannelsValuesDoNot) {
  const ActivationGenerator generator(0, kShape);
  constexpr int kTokens = 256;
  std::vector<double> key_abs(64, 0.0), value_abs(64, 0.0);
  std::vector<float> row(64);
  for (int p = 1; p < kTokens; ++p) {
    generator.fill(Projection::kKey, 0, p, 0, 0, row);
    for (int c = 0; c < 64; ++c) key_abs[c] += std::fabs(row[c]) / kTokens;
    generator.fill(Projection::kValue, 0, p, 0, 0, row);
    for (int c = 0; c < 64; ++c) value_abs[c] += std::fabs(row[c]) / kTokens;
  }
  int outliers = 0;
  for (int c = 0; c < 64; ++c) {
    if (key_abs[c] > 8.0) ++outliers;
    EXPECT_LT(value_abs[c], 3.0) << "V channel " << c;
  }
  EXPECT_EQ(outliers, ActivationGenerator::kOutlierChannels);
}

TEST(ActivationGeneratorTest, SharedPrefixTokensAreIdenticalAcrossRequests) {
  const RequestSpec a{0, 64, 8, 32, 0.0};
  const RequestSpec b{1, 64, 8, 32, 0.0};
  EXPECT_EQ(a.content_at(31), b.content_at(31));
  EXPECT_NE(a.content_at(32), b.content_at(32));
}

TEST(ActivationGeneratorTest, AttentionSinkMakesPositionZeroStandOut) {
  const ActivationGenerator generator(0, kShape);
  std::vector<float> q(64), k(64);
  generator.fill(Projection::kQuery, 0, 100, 0, 0, q);
  double sink_score = 0, other = 0;
  generator.fill(Projection::kKey, 0, 0, 0, 0, k);
  for (int c = 0; c < 64; ++c) sink_score += q[c] * k[c];
  for (int p = 1; p <= 64; ++p) {
    generator.fill(Projection::kKey, 0, p, 0, 0, k);
    double s = 0;
    for (int c = 0; c < 64; ++c) s += q[c] * k[c];
    other += s / 64;
  }
  EXPECT_GT((sink_score - other) / 8.0, 2.0);  // logits are scaled by 1/sqrt(64)
}

}  // namespace
}  // namespace kvq::host
