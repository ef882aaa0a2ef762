// Continuous batching with a token budget, as vLLM's scheduler: each step
// schedules the running decodes first, then running prefill chunks, then
// admits waiting requests, up to max_num_batched_tokens tokens and
// max_num_seqs sequences, and picks the step's attention state
// (spec/ascend.md §6).
//
// Blocks are allocated as tokens need them. When none is left, the newest
// running sequence not yet in this step is preempted by recompute: its
// blocks are released and it waits at the front of the queue; when it runs
// again it recomputes its prompt and the tokens it has generated (their
// activations are deterministic, so nothing changes but the time).
//
// With prefix caching, every full computed block is registered under a hash
// of its tokens' contents and positions chained with the blocks before it;
// an admitted sequence retains the blocks of its longest cached prefix and
// starts computing after them (at least one token is always computed, so a
// token can be sampled).
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <string>
#include <vector>

#include "kvq_engine/block_allocator.hpp"
#include "kvq_engine/token_content.hpp"

namespace kvq::host {

struct SchedulerConfig {
  int64_t block_size = 16;
  int64_t max_num_seqs = 256;
  int64_t max_num_batched_tokens = 2048;
  bool chunked_prefill = true;
  bool prefix_caching = false;
};

struct SequenceSpec {
  int64_t request_id = 0;
  int64_t prompt_len = 0;
  int64_t output_len = 0;  // tokens to generate, >= 1
  TokenContent content{};  // hashed by the prefix cache
};

// One sequence's share of a step: query tokens at positions
// [start, start + num_tokens) of the sequence.
struct ScheduledChunk {
  int64_t request_id = 0;
  int64_t start = 0;                 // context already in the cache
  int64_t num_tokens = 0;            // query tokens this step
  bool is_decode = false;            // one generated token fed back
  std::vector<int32_t> block_table;  // the sequence's blocks after this step's allocation

  int64_t seq_len() const { return start + num_tokens; }
  // Slot of absolute position `position` in the paged cache.
  int64_t slot(int64_t position, int64_t block_size) const;
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;  // decodes first, then prefill chunks
  int32_t attention_state = 0;         // KVQ_ATTN_*
  int64_t num_tokens = 0;

  bool empty() const { return chunks.empty(); }
};

// What a finished step did to a request.
struct SequenceUpdate {
  int64_t request_id = 0;
  bool produced_token = false;  // a token was sampled at the end of this step
  bool finished = false;
};

struct SchedulerStats {
  int64_t preemptions = 0;
  int64_t prefix_query_tokens = 0;  // prompt tokens looked up at admission
  int64_t prefix_hit_tokens = 0;    // of those, found in the cache

  double prefix_hit_rate() const {
    return prefix_query_tokens == 0
               ? 0.0
               : static_cast<double>(prefix_hit_tokens) / static_cast<double>(prefix_query_tokens);
  }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockAllocator& blocks);

  // Queues a request. Returns an error message (and queues nothing) when it
  // can never be scheduled: it needs more blocks than the cache has, or its
  // prompt exceeds the token budget with chunked prefill off.
  std::string add(const SequenceSpec& spec);

  StepPlan schedule();
  // The step ran: advance its sequences, register their full blocks in the
  // prefix cache and free finished ones.
  std::vector<SequenceUpdate> commit(const StepPlan& plan);
  // The step failed: drop its sequences and free their blocks.
  void abort(const StepPlan& plan);

  bool idle() const { return waiting_.empty() && running_.empty(); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  const SchedulerStats& stats() const { return stats_; }

  // Blocks a sequence needs over its whole life (its last generated token is
  // never fed back, so it needs no slot).
  int64_t blocks_needed(const SequenceSpec& spec) const;

 private:
  struct Sequence {
    SequenceSpec spec;
    int64_t num_computed = 0;   // tokens whose K/V are in the cache
    int64_t num_generated = 0;  // sampled tokens
    std::vector<int32_t> blocks;
    std::vector<uint64_t> block_hashes;  // of its full computed blocks, in order

    // Tokens known so far: the prompt and every sampled token but the last
    // is fed back; the last sampled one is fed by the next step.
    int64_t num_known() const { return spec.prompt_len + num_generated; }
    bool finished() const { return num_generated >= spec.output_len; }
  };

  Sequence* find_running(int64_t request_id);
  // Grows the sequence's block list to cover `tokens` tokens, preempting
  // other running sequences (never one in `plan`) if needed. False when the
  // sequence itself had to be preempted.
  bool grow_blocks(Sequence& sequence, int64_t tokens, const StepPlan& plan);
  void preempt(std::list<Sequence>::iterator victim);
  void release(Sequence& sequence);
  void match_prefix(Sequence& sequence);
  uint64_t block_hash(const Sequence& sequence, int64_t block_index) const;
  void register_full_blocks(Sequence& sequence);
  ScheduledChunk chunk_of(const Sequence& sequence, int64_t num_tokens, bool is_decode) const;
  int32_t attention_state_of(const StepPlan& plan) const;

  SchedulerConfig config_;
  BlockAllocator* blocks_;
  std::deque<Sequence> waiting_;
  std::list<Sequence> running_;  // in admission order (stable references)
  SchedulerStats stats_;
};

}  // namespace kvq::host
