// The report keeps vLLM's serving-benchmark layout and writes valid JSON.
#include "kvq_engine/report.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

namespace kvq::host {
namespace {

using ::testing::HasSubstr;

BenchmarkReport sample_report() {
  BenchmarkReport r;
  r.completed = 8;
  r.failed = 1;
  r.duration_s = 2.0;
  r.total_input_tokens = 2048;
  r.total_output_tokens = 256;
  r.request_throughput = 4.0;
  r.ttft = summarize_seconds({0.1, 0.2});
  r.kv_bytes_per_token = 1024;
  r.accuracy.sampled_steps = 2;
  r.accuracy.dot = 1.0;
  r.accuracy.actual_squares = 1.0;
  r.accuracy.expected_squares = 1.0;
  r.errors["plugin 'x': forward (layer 0): OUT_OF_RANGE: slot 99"] = 1;
  return r;
}

TEST(ReportTest, TextFollowsVllmLayout) {
  std::ostringstream out;
  print_report(sample_report(), out);
  const std::string text = out.str();
  EXPECT_THAT(text, HasSubstr("============ Serving Benchmark Result ============\n"));
  EXPECT_THAT(text, HasSubstr("Successful requests:                     8"));
  EXPECT_THAT(text, HasSubstr("Benchmark duration (s):                  2.00"));
  EXPECT_THAT(text, HasSubstr("---------------Time to First Token----------------\n"));
  EXPECT_THAT(text, HasSubstr("Mean TTFT (ms):                          150.00"));
  EXPECT_THAT(text, HasSubstr("-----Time per Output Token (excl. 1st token)------\n"));
  EXPECT_THAT(text, HasSubstr("---------------Inter-token Latency----------------\n"));
  EXPECT_THAT(text, HasSubstr("KV memory per token (bytes):"));
  EXPECT_THAT(text, HasSubstr("Cosine similarity:                       1.000000"));
  EXPECT_THAT(text, HasSubstr("OUT_OF_RANGE: slot 99"));
}

TEST(ReportTest, JsonHasTheMetrics) {
  const auto json = nlohmann::json::parse(report_json_text(sample_report()));
  EXPECT_EQ(json["completed"], 8);
  EXPECT_EQ(json["failed"], 1);
  EXPECT_DOUBLE_EQ(json["ttft"]["mean_ms"].get<double>(), 150.0);
  EXPECT_DOUBLE_EQ(json["accuracy"]["cosine"].get<double>(), 1.0);
  EXPECT_EQ(json["kv_cache"]["bytes_per_token"], 1024);
}

}  // namespace
}  // namespace kvq::host
