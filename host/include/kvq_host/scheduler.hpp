// Continuous batching with a token budget (vLLM's scheduler, reduced to what
// the foundation engine needs): each step schedules the running decodes
// first, then prefill chunks, up to max_num_batched_tokens tokens and
// max_num_seqs sequences, allocates blocks on demand and picks the step's
// attention state (spec/ascend.md §6).
//
// Admission reserves a request's whole lifetime of blocks (prompt + output),
// so an admitted request never runs out of blocks and nothing needs to be
// preempted; requests that do not fit wait in arrival order. Preemption by
// recompute and prefix caching come with the full engine.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "kvq_host/block_allocator.hpp"

namespace kvq::host {

struct SchedulerConfig {
  int64_t block_size = 16;
  int64_t max_num_seqs = 256;
  int64_t max_num_batched_tokens = 2048;
  bool chunked_prefill = true;
};

struct SequenceSpec {
  int64_t request_id = 0;
  int64_t prompt_len = 0;
  int64_t output_len = 0;  // tokens to generate, >= 1
};

// One sequence's share of a step: query tokens at positions
// [start, start + num_tokens) of the sequence.
struct ScheduledChunk {
  int64_t request_id = 0;
  int64_t start = 0;       // context already in the cache
  int64_t num_tokens = 0;  // query tokens this step
  int64_t prompt_len = 0;
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

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockAllocator& blocks);

  // Queues a request. Returns an error message (and queues nothing) when it
  // can never be scheduled: it needs more blocks than the cache has, or its
  // prompt exceeds the token budget with chunked prefill off.
  std::string add(const SequenceSpec& spec);

  StepPlan schedule();
  // The step ran: advance its sequences and free finished ones.
  std::vector<SequenceUpdate> commit(const StepPlan& plan);
  // The step failed: drop its sequences and free their blocks.
  void abort(const StepPlan& plan);

  bool idle() const { return waiting_.empty() && running_.empty(); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }

  // Blocks a sequence needs over its whole life (its last generated token is
  // never fed back, so it needs no slot).
  int64_t blocks_needed(const SequenceSpec& spec) const;

 private:
  struct Sequence {
    SequenceSpec spec;
    int64_t num_computed = 0;   // tokens whose K/V are in the cache
    int64_t num_generated = 0;  // sampled tokens
    int64_t reserved_blocks = 0;
    std::vector<int32_t> blocks;
  };
  Sequence* find_running(int64_t request_id);
  void grow_blocks(Sequence& sequence, int64_t tokens);
  void release(Sequence& sequence);
  ScheduledChunk chunk_of(const Sequence& sequence, int64_t num_tokens) const;
  int32_t attention_state_of(const StepPlan& plan) const;
  int64_t unallocated_reservations() const;

  SchedulerConfig config_;
  BlockAllocator* blocks_;
  std::deque<Sequence> waiting_;
  std::vector<Sequence> running_;  // in admission order
};

}  // namespace kvq::host
