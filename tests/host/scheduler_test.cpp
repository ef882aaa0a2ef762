// Continuous batching: decodes first, token budget, block reservation,
// slot mapping and the attention state of each step.
#include "kvq_host/scheduler.hpp"

#include <gtest/gtest.h>
#include <kvq_abi.h>

#include "kvq_host/block_allocator.hpp"
#include "kvq_host/errors.hpp"

namespace kvq::host {
namespace {

TEST(BlockAllocatorTest, HandsOutLowIdsFirstAndTracksThePeak) {
  BlockAllocator blocks(4);
  EXPECT_EQ(blocks.allocate(), 0);
  EXPECT_EQ(blocks.allocate(), 1);
  EXPECT_EQ(blocks.num_used(), 2);
  const std::vector<int32_t> first = {0};
  blocks.release(first);
  EXPECT_EQ(blocks.num_free(), 3);
  EXPECT_EQ(blocks.peak_used(), 2);
  EXPECT_THROW(blocks.release(first), Error);  // double free is caught
  EXPECT_EQ(blocks.allocate(), 0);
  EXPECT_EQ(blocks.allocate(), 2);
  EXPECT_EQ(blocks.allocate(), 3);
  EXPECT_EQ(blocks.allocate(), std::nullopt);
}

// Runs the scheduler to completion; returns the attention state of every step.
std::vector<int32_t> drain(Scheduler& scheduler, int64_t* steps_with_both = nullptr) {
  std::vector<int32_t> states;
  while (!scheduler.idle()) {
    const StepPlan plan = scheduler.schedule();
    EXPECT_FALSE(plan.empty());
    if (plan.empty()) break;
    bool seen_prefill = false;
    bool decode_after_prefill = false;
    for (const auto& chunk : plan.chunks) {
      if (!chunk.is_decode) seen_prefill = true;
      if (chunk.is_decode && seen_prefill) decode_after_prefill = true;
    }
    EXPECT_FALSE(decode_after_prefill) << "decodes must come first";
    if (steps_with_both && seen_prefill && plan.chunks.front().is_decode) ++*steps_with_both;
    states.push_back(plan.attention_state);
    scheduler.commit(plan);
  }
  return states;
}

TEST(SchedulerTest, AllPromptsThenDecodes) {
  BlockAllocator blocks(64);
  Scheduler scheduler(SchedulerConfig{16, 8, 2048, true}, blocks);
  for (int64_t id = 0; id < 4; ++id) EXPECT_EQ(scheduler.add({id, 100, 5}), "");
  const StepPlan first = scheduler.schedule();
  ASSERT_EQ(first.chunks.size(), 4u);
  EXPECT_EQ(first.num_tokens, 400);
  EXPECT_EQ(first.attention_state, KVQ_ATTN_PREFILL_NO_CACHE);
  const auto updates = scheduler.commit(first);
  for (const auto& u : updates) EXPECT_TRUE(u.produced_token);  // the first token
  const auto states = drain(scheduler);
  ASSERT_EQ(states.size(), 4u);  // 4 more tokens each
  for (const int32_t s : states) EXPECT_EQ(s, KVQ_ATTN_DECODE_ONLY);
  EXPECT_EQ(blocks.num_used(), 0);
  EXPECT_EQ(blocks.peak_used(), 4 * 7);  // ceil(104 / 16) blocks each
}

TEST(SchedulerTest, ChunkedPrefillMixesDecodesFirst) {
  BlockAllocator blocks(64);
  Scheduler scheduler(SchedulerConfig{16, 8, 64, true}, blocks);
  EXPECT_EQ(scheduler.add({0, 40, 8}), "");
  EXPECT_EQ(scheduler.add({1, 100, 3}), "");
  const StepPlan first = scheduler.schedule();  // 40 of request 0, 24 of request 1
  ASSERT_EQ(first.chunks.size(), 2u);
  EXPECT_EQ(first.chunks[1].num_tokens, 24);
  EXPECT_EQ(first.attention_state, KVQ_ATTN_CHUNKED_PREFILL);
  scheduler.commit(first);
  const StepPlan second = scheduler.schedule();  // decode of 0, then 63 of request 1
  ASSERT_EQ(second.chunks.size(), 2u);
  EXPECT_TRUE(second.chunks[0].is_decode);
  EXPECT_EQ(second.chunks[0].request_id, 0);
  EXPECT_EQ(second.chunks[1].start, 24);
  EXPECT_EQ(second.chunks[1].num_tokens, 63);
  EXPECT_EQ(second.attention_state, KVQ_ATTN_CHUNKED_PREFILL);
  scheduler.commit(second);
  int64_t mixed = 0;
  drain(scheduler, &mixed);
  EXPECT_GE(mixed, 1);
  EXPECT_EQ(blocks.num_used(), 0);
}

TEST(SchedulerTest, SlotsFollowTheBlockTable) {
  BlockAllocator blocks(8);
  Scheduler scheduler(SchedulerConfig{4, 8, 64, true}, blocks);
  ASSERT_EQ(scheduler.add({0, 6, 2}), "");
  ASSERT_EQ(scheduler.add({1, 3, 2}), "");
  const StepPlan plan = scheduler.schedule();
  ASSERT_EQ(plan.chunks.size(), 2u);
  const auto& a = plan.chunks[0];
  ASSERT_EQ(a.block_table.size(), 2u);  // 6 tokens in blocks of 4
  EXPECT_EQ(a.slot(0, 4), a.block_table[0] * 4);
  EXPECT_EQ(a.slot(5, 4), a.block_table[1] * 4 + 1);
  const auto& b = plan.chunks[1];
  EXPECT_NE(b.block_table[0], a.block_table[0]);
  EXPECT_NE(b.block_table[0], a.block_table[1]);
}

TEST(SchedulerTest, RequestsThatDoNotFitWait) {
  BlockAllocator blocks(10);
  Scheduler scheduler(SchedulerConfig{16, 8, 4096, true}, blocks);
  // Each needs ceil((100 + 60 - 1) / 16) = 10 blocks: one at a time.
  ASSERT_EQ(scheduler.add({0, 100, 60}), "");
  ASSERT_EQ(scheduler.add({1, 100, 60}), "");
  const StepPlan first = scheduler.schedule();
  ASSERT_EQ(first.chunks.size(), 1u);
  EXPECT_EQ(scheduler.num_waiting(), 1);
  scheduler.commit(first);
  drain(scheduler);
  EXPECT_LE(blocks.peak_used(), 10);
  EXPECT_TRUE(scheduler.idle());
}

TEST(SchedulerTest, RequestsThatCanNeverFitAreRefused) {
  BlockAllocator blocks(2);
  Scheduler scheduler(SchedulerConfig{16, 8, 64, false}, blocks);
  EXPECT_NE(scheduler.add({0, 100, 10}).find("needs 7 KV blocks"), std::string::npos);
  BlockAllocator more(64);
  Scheduler no_chunking(SchedulerConfig{16, 8, 64, false}, more);
  EXPECT_NE(no_chunking.add({0, 100, 10}).find("chunked prefill is off"), std::string::npos);
}

TEST(SchedulerTest, MaxNumSeqsLimitsTheBatch) {
  BlockAllocator blocks(64);
  Scheduler scheduler(SchedulerConfig{16, 2, 4096, true}, blocks);
  for (int64_t id = 0; id < 5; ++id) ASSERT_EQ(scheduler.add({id, 10, 2}), "");
  const StepPlan plan = scheduler.schedule();
  EXPECT_EQ(plan.chunks.size(), 2u);
  EXPECT_EQ(scheduler.num_waiting(), 3);
}

TEST(SchedulerTest, WithoutChunkingMixedStepsArePrefillCacheHit) {
  BlockAllocator blocks(64);
  Scheduler scheduler(SchedulerConfig{16, 2, 64, false}, blocks);
  ASSERT_EQ(scheduler.add({0, 10, 4}), "");
  scheduler.commit(scheduler.schedule());
  ASSERT_EQ(scheduler.add({1, 10, 4}), "");
  const StepPlan mixed = scheduler.schedule();
  ASSERT_EQ(mixed.chunks.size(), 2u);
  EXPECT_EQ(mixed.attention_state, KVQ_ATTN_PREFILL_CACHE_HIT);
}

TEST(SchedulerTest, AbortFreesTheStepsBlocks) {
  BlockAllocator blocks(16);
  Scheduler scheduler(SchedulerConfig{16, 8, 64, true}, blocks);
  ASSERT_EQ(scheduler.add({0, 30, 4}), "");
  const StepPlan plan = scheduler.schedule();
  EXPECT_GT(blocks.num_used(), 0);
  scheduler.abort(plan);
  EXPECT_EQ(blocks.num_used(), 0);
  EXPECT_TRUE(scheduler.idle());
}

}  // namespace
}  // namespace kvq::host
