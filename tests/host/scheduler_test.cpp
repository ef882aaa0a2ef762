// Continuous batching: decodes first, token budget, block reservation,
// slot mapping and the attention state of each step.
#include "kvq_engine/scheduler.hpp"

#include <gtest/gtest.h>
#include <kvq_abi.h>

#include <map>

#include "kvq_engine/block_allocator.hpp"
#include "kvq_files/errors.hpp"

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
  // A released block goes to the back of the free queue.
  EXPECT_EQ(blocks.allocate(), 2);
  EXPECT_EQ(blocks.allocate(), 3);
  EXPECT_EQ(blocks.allocate(), 0);
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
  // Both start at 0 (vllm-ascend: seq_lens == scheduled tokens).
  EXPECT_EQ(first.attention_state, KVQ_ATTN_PREFILL_NO_CACHE);
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
  // Without prefix caching nothing is looked up, even when admission waits.
  EXPECT_EQ(scheduler.stats().prefix_query_tokens, 0);
  EXPECT_EQ(scheduler.stats().prefix_hit_tokens, 0);
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

TEST(BlockAllocatorTest, ReferenceCountsAndThePrefixCache) {
  BlockAllocator blocks(3);
  const int32_t a = *blocks.allocate();
  const int32_t b = *blocks.allocate();
  blocks.register_hash(a, 111);
  blocks.register_hash(b, 111);  // the hash keeps its first block
  EXPECT_EQ(blocks.lookup(111), a);
  EXPECT_EQ(blocks.num_cached(), 1);
  blocks.retain(a);  // a second sequence shares it
  EXPECT_EQ(blocks.ref_count(a), 2);
  const std::vector<int32_t> both = {a, b};
  blocks.release(both);
  EXPECT_EQ(blocks.ref_count(a), 1);
  EXPECT_EQ(blocks.num_free(), 2);  // b and the never-used block 2
  const std::vector<int32_t> just_a = {a};
  blocks.release(just_a);
  EXPECT_EQ(blocks.num_used(), 0);
  EXPECT_EQ(blocks.lookup(111), a);  // free, but still a hit
  blocks.retain(a);                  // revived from the free queue
  EXPECT_EQ(blocks.num_free(), 2);
  blocks.release(just_a);
  // The free queue hands out the least recently freed first: 2, b, then a,
  // whose reuse evicts its prefix.
  EXPECT_EQ(blocks.allocate(), 2);
  EXPECT_EQ(blocks.allocate(), b);
  EXPECT_EQ(blocks.lookup(111), a);
  EXPECT_EQ(blocks.allocate(), a);
  EXPECT_EQ(blocks.lookup(111), std::nullopt);
  EXPECT_EQ(blocks.num_cached(), 0);
  EXPECT_THROW(blocks.retain(7), Error);
  EXPECT_THROW(blocks.register_hash(-1, 5), Error);
}

// Requests 0 and 1 share a 40-token prefix (2.5 blocks of 16).
SequenceSpec with_prefix(int64_t id, int64_t prompt_len, int64_t output_len) {
  return SequenceSpec{id, prompt_len, output_len,
                      TokenContent{static_cast<uint64_t>(id), kSharedPrefixContent, 40}};
}

TEST(SchedulerTest, PrefixCacheHitsSkipTheSharedFullBlocks) {
  for (const bool chunked : {false, true}) {
    BlockAllocator blocks(32);
    Scheduler scheduler(SchedulerConfig{16, 8, 512, chunked, true}, blocks);
    ASSERT_EQ(scheduler.add(with_prefix(0, 60, 3)), "");
    const StepPlan first = scheduler.schedule();
    ASSERT_EQ(first.chunks.size(), 1u);
    scheduler.commit(first);  // 60 tokens: blocks 0..2 full and registered
    ASSERT_EQ(scheduler.add(with_prefix(1, 70, 3)), "");
    const StepPlan second = scheduler.schedule();
    ASSERT_EQ(second.chunks.size(), 2u);  // decode of 0, then request 1
    const ScheduledChunk& hit = second.chunks[1];
    // Blocks 0 and 1 (tokens 0..31) are all prefix; block 2 mixes the
    // prefix with request 0's own tokens, so it is not shared.
    EXPECT_EQ(hit.start, 32);
    EXPECT_EQ(hit.num_tokens, 70 - 32);
    EXPECT_EQ(hit.block_table[0], first.chunks[0].block_table[0]);
    EXPECT_EQ(hit.block_table[1], first.chunks[0].block_table[1]);
    EXPECT_NE(hit.block_table[2], first.chunks[0].block_table[2]);
    EXPECT_EQ(blocks.ref_count(hit.block_table[0]), 2);
    EXPECT_EQ(second.attention_state,
              chunked ? KVQ_ATTN_CHUNKED_PREFILL : KVQ_ATTN_PREFILL_CACHE_HIT);
    EXPECT_EQ(scheduler.stats().prefix_hit_tokens, 32);
    EXPECT_EQ(scheduler.stats().prefix_query_tokens, 60 + 70);
    scheduler.commit(second);
    drain(scheduler);
    EXPECT_EQ(blocks.num_used(), 0);
  }
}

TEST(SchedulerTest, AFullPromptHitStillComputesItsLastToken) {
  BlockAllocator blocks(16);
  Scheduler scheduler(SchedulerConfig{16, 8, 512, true, true}, blocks);
  const auto same_text = [](int64_t id) {
    return SequenceSpec{id, 32, 2, TokenContent{0, kSharedPrefixContent, 32}};
  };
  ASSERT_EQ(scheduler.add(same_text(0)), "");
  drain(scheduler);
  ASSERT_EQ(scheduler.add(same_text(1)), "");
  const StepPlan plan = scheduler.schedule();
  ASSERT_EQ(plan.chunks.size(), 1u);
  // Block 0 hits; block 1 would cover the last token, which must run.
  EXPECT_EQ(plan.chunks[0].start, 16);
  EXPECT_EQ(plan.chunks[0].num_tokens, 16);
  scheduler.commit(plan);
  drain(scheduler);
  EXPECT_EQ(blocks.num_used(), 0);
}

TEST(SchedulerTest, PreemptionByRecomputeLosesNothing) {
  // 6 blocks of 4 tokens; two requests of 8 + 10 tokens need 5 blocks each,
  // so once both decode, the newer one is preempted and recomputed later.
  BlockAllocator blocks(6);
  Scheduler scheduler(SchedulerConfig{4, 8, 64, true}, blocks);
  ASSERT_EQ(scheduler.add({0, 8, 10}), "");
  ASSERT_EQ(scheduler.add({1, 8, 10}), "");
  std::map<int64_t, int64_t> tokens;
  std::map<int64_t, int64_t> computed;  // the K/V each request has in the cache
  bool saw_recompute = false;
  while (!scheduler.idle()) {
    const StepPlan plan = scheduler.schedule();
    ASSERT_FALSE(plan.empty());
    for (const auto& c : plan.chunks) {
      if (c.start == 0 && computed[c.request_id] > 0) {
        saw_recompute = true;
        // Recompute covers the prompt and every token generated so far.
        EXPECT_EQ(c.num_tokens, 8 + tokens[c.request_id]);
      } else {
        EXPECT_EQ(c.start, computed[c.request_id]);
      }
      computed[c.request_id] = c.seq_len();
    }
    for (const auto& u : scheduler.commit(plan)) tokens[u.request_id] += u.produced_token;
  }
  EXPECT_TRUE(saw_recompute);
  EXPECT_GE(scheduler.stats().preemptions, 1);
  EXPECT_EQ(tokens[0], 10);
  EXPECT_EQ(tokens[1], 10);
  EXPECT_EQ(blocks.num_used(), 0);
  EXPECT_LE(blocks.peak_used(), 6);
}

}  // namespace
}  // namespace kvq::host
