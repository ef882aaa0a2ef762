// Serving metrics from request timelines, as vLLM's benchmark defines them.
#include "kvq_engine/request_timeline.hpp"

#include <gtest/gtest.h>

namespace kvq::host {
namespace {

TEST(RequestTimelineTest, TtftTpotItlAndThroughput) {
  const std::vector<RequestSpec> requests = {
      {0, 100, 3, 0, 0.0}, {1, 50, 2, 0, 0.0}, {2, 10, 2, 0, 0.0}};
  std::vector<RequestTimeline> timelines(3);
  timelines[0] = {0.0, {0.5, 0.6, 0.8}, true, false, ""};
  timelines[1] = {0.1, {0.3, 0.4}, true, false, ""};
  timelines[2] = {0.1, {}, true, true, "forward failed"};
  BenchmarkReport report;
  summarize_requests(requests, timelines, 2.0, report);
  EXPECT_EQ(report.completed, 2);
  EXPECT_EQ(report.failed, 1);
  EXPECT_EQ(report.total_input_tokens, 150);
  EXPECT_EQ(report.total_output_tokens, 5);
  EXPECT_DOUBLE_EQ(report.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(report.output_throughput, 2.5);
  EXPECT_DOUBLE_EQ(report.total_token_throughput, 77.5);
  EXPECT_NEAR(report.ttft.mean_ms, (500.0 + 200.0) / 2, 1e-9);
  EXPECT_NEAR(report.tpot.mean_ms, (150.0 + 100.0) / 2, 1e-9);  // (0.8-0.5)/2 and 0.1/1
  ASSERT_EQ(report.itl.samples_ms.size(), 3u);
  EXPECT_NEAR(report.itl.samples_ms[1], 200.0, 1e-9);
  EXPECT_EQ(report.errors.at("forward failed"), 1);
  EXPECT_FALSE(report.requests[2].success);
}

}  // namespace
}  // namespace kvq::host
