#include "kvq_engine/latency_stats.hpp"

#include <gtest/gtest.h>

namespace kvq::host {
namespace {

TEST(LatencyStatsTest, PercentilesInterpolateLikeNumpy) {
  const std::vector<double> sorted = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile(sorted, 50), 2.5);
  EXPECT_DOUBLE_EQ(percentile(sorted, 99), 3.97);
  EXPECT_DOUBLE_EQ(percentile(sorted, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(sorted, 100), 4);
  EXPECT_DOUBLE_EQ(percentile({7}, 90), 7);
}

TEST(LatencyStatsTest, SummaryIsInMilliseconds) {
  const LatencySummary s = summarize_seconds({0.004, 0.001, 0.003, 0.002});
  EXPECT_DOUBLE_EQ(s.mean_ms, 2.5);
  EXPECT_DOUBLE_EQ(s.median_ms, 2.5);
  EXPECT_NEAR(s.p99_ms, 3.97, 1e-12);
  EXPECT_EQ(s.samples_ms.size(), 4u);
  const LatencySummary empty = summarize_seconds({});
  EXPECT_EQ(empty.mean_ms, 0.0);
}

}  // namespace
}  // namespace kvq::host
