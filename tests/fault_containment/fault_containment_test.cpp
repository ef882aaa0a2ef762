// A plugin that fails one forward call in the middle of a run (the fault
// fixture wraps the real triton_sim plugin): the engine fails exactly the
// requests of that step, each with the plugin's message, and serves every
// other request to the end with accurate attention.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "kvq_engine/engine.hpp"
#include "kvq_files/deployment.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::HasSubstr;

constexpr int kPrompts = 6;

BenchmarkReport run_with_fault_at(const std::string& forward_call) {
  const testing::ScratchDir dir;
  const auto yaml = dir.write(
      "fault.yaml",
      std::string("plugin: {path: '") + KVQ_FAULT_PLUGIN +
          "'}\nbackend: triton\n"
          "model: {num_layers: 2, num_heads: 4, num_kv_heads: 2, head_size: 64, dtype: bf16}\n"
          "kv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 64}\n"
          "scheduler: {max_num_seqs: 2, max_num_batched_tokens: 64}\n"
          "workload: {num_prompts: " +
          std::to_string(kPrompts) +
          ", input_len: 40, output_len: 6, seed: 5}\n"
          "threads: 1\n");
  ::setenv("KVQ_FIXTURE_FAIL_FORWARD", forward_call.c_str(), 1);
  RunOptions options;
  options.accuracy_every = 1;  // every step sampled
  const BenchmarkReport report =
      run_benchmark(load_deployment_file(yaml, DeploymentParseOptions{}), options);
  ::unsetenv("KVQ_FIXTURE_FAIL_FORWARD");
  return report;
}

TEST(FaultContainmentTest, AFailingForwardMidRunFailsOnlyThatStepsRequests) {
  // Two layers per step: call 9 is layer 0 of step 5, after the first
  // requests' prefills, while two requests share every step.
  const BenchmarkReport report = run_with_fault_at("9");
  EXPECT_GE(report.failed, 1);
  EXPECT_LE(report.failed, 2);  // at most max_num_seqs requests were in the step
  EXPECT_EQ(report.completed + report.failed, kPrompts);
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_THAT(report.errors.begin()->first,
              HasSubstr("INTERNAL: fixture_fault: injected failure of this forward call"));
  EXPECT_EQ(report.errors.begin()->second, report.failed);
  int64_t failed = 0;
  for (const RequestOutcome& r : report.requests) {
    if (r.success) {
      EXPECT_EQ(r.output_len, 6) << "request " << r.id;  // served to the end
      EXPECT_TRUE(r.error.empty());
    } else {
      ++failed;
      EXPECT_THAT(r.error, HasSubstr("injected failure")) << "request " << r.id;
    }
  }
  EXPECT_EQ(failed, report.failed);
  // The survivors' attention is still right (every step sampled).
  EXPECT_GT(report.accuracy.sampled_steps, 0);
  EXPECT_EQ(report.accuracy.non_finite, 0);
  EXPECT_GT(report.accuracy.cosine(), 0.999);
}

TEST(FaultContainmentTest, WithoutAFaultEveryRequestCompletes) {
  const BenchmarkReport report = run_with_fault_at("0");
  EXPECT_EQ(report.completed, kPrompts);
  EXPECT_EQ(report.failed, 0);
  EXPECT_TRUE(report.errors.empty());
}

}  // namespace
}  // namespace kvq::host
