// Requests that can never be served (issue #17, class 4): each fails alone
// with a message naming its sizes, the others are served, the run reports
// and ends (no "engine stalled"), and the block allocator ends empty. Every
// variant: a cache smaller than any request, one prompt longer than the
// cache, no chunking with a prompt over the token budget, and those requests
// arriving last, at a rate (the engine must not wait for arrivals that have
// all been refused).
#include "bad_input.hpp"
#include "kvq_engine/engine.hpp"
#include "kvq_engine/workload.hpp"
#include "kvq_files/deployment.hpp"
#include "test_support.hpp"

namespace kvq::bad_input {
namespace {

using host::testing::ScratchDir;

struct ServingRow {
  std::string name;
  std::string kv_cache;   // the kv_cache mapping
  std::string scheduler;  // the scheduler mapping
  std::string workload;   // the workload mapping
  int64_t expect_failed;  // -1: some, but not all
  std::vector<std::string> message;
};

std::vector<ServingRow> rows() {
  const std::string chunked =
      "{max_num_seqs: 4, max_num_batched_tokens: 64, chunked_prefill: true}";
  const std::string unchunked =
      "{max_num_seqs: 4, max_num_batched_tokens: 48, chunked_prefill: false}";
  return {
      {"CacheSmallerThanAnyRequest",
       "{dtype: bfloat16, block_size: 16, num_blocks: 2}",
       chunked,
       "{num_prompts: 5, input_len: 64, output_len: 4, seed: 1}",
       5,
       {"needs 5 KV blocks (64 prompt + 4 output tokens, block size 16) but the whole cache has "
        "only 2"}},
      {"CacheSmallerThanAnyRequestArrivingAtARate",
       "{dtype: bfloat16, block_size: 16, num_blocks: 2}",
       chunked,
       "{num_prompts: 4, input_len: 64, output_len: 4, seed: 1, request_rate: 200}",
       4,
       {"but the whole cache has only 2"}},
      {"SomePromptsLongerThanTheCache",
       "{dtype: bfloat16, block_size: 16, num_blocks: 6}",
       chunked,
       "{num_prompts: 30, input_len: 60, output_len: 4, random_range_ratio: 0.9, seed: 3}",
       -1,
       {"KV blocks", "but the whole cache has only 6"}},
      {"NoChunkingPromptOverTheTokenBudget",
       "{dtype: bfloat16, block_size: 16, num_blocks: 64}",
       unchunked,
       "{num_prompts: 3, input_len: 64, output_len: 4, seed: 1}",
       3,
       {"64 prompt + 4 output tokens exceed max_num_batched_tokens (48) and chunked prefill is "
        "off"}},
      {"NoChunkingSomeOverTheBudgetArrivingLast",
       "{dtype: bfloat16, block_size: 16, num_blocks: 64}",
       unchunked,
       "{num_prompts: 24, input_len: 40, output_len: 4, random_range_ratio: 0.5, seed: 9, "
       "request_rate: 500}",
       -1,
       {"exceed max_num_batched_tokens (48) and chunked prefill is off"}},
  };
}

void PrintTo(const ServingRow& row, std::ostream* os) {
  *os << row.name;
}

class ServingRowTest : public ::testing::TestWithParam<ServingRow> {};

TEST_P(ServingRowTest, FailsAloneOthersAreServedAndTheRunEnds) {
  const ServingRow& row = GetParam();
  const ScratchDir dir;
  const auto file = dir.write(
      "d.yaml", "plugin: {path: '" + std::string(KVQ_TEST_TRITON_SIM_PLUGIN) +
                    "'}\nbackend: triton\nmodel: {num_layers: 1, num_heads: 4, num_kv_heads: 2, "
                    "head_size: 64, dtype: bf16}\nkv_cache: " +
                    row.kv_cache + "\nscheduler: " + row.scheduler + "\nworkload: " + row.workload +
                    "\nthreads: 1\n");
  const host::Deployment d = host::load_deployment_file(file, host::DeploymentParseOptions{});
  host::RunOptions options;
  options.progress = false;
  const host::BenchmarkReport r = host::run_benchmark(d, options);
  const auto total = static_cast<int64_t>(host::make_workload(d.workload).size());
  if (row.expect_failed >= 0) {
    EXPECT_EQ(r.failed, row.expect_failed);
  } else {
    EXPECT_GT(r.failed, 0);
    EXPECT_LT(r.failed, total);
  }
  EXPECT_EQ(r.completed + r.failed, total);
  EXPECT_EQ(r.blocks_in_use_at_end, 0);
  ASSERT_FALSE(r.errors.empty());
  for (const auto& [message, count] : r.errors) expect_message(message, row.message);
}

INSTANTIATE_TEST_SUITE_P(Serving, ServingRowTest, ::testing::ValuesIn(rows()), RowName());

}  // namespace
}  // namespace kvq::bad_input
