#include "kvq_engine/scheduler.hpp"

#include <fmt/format.h>
#include <kvq_abi.h>

#include <algorithm>

#include "kvq_files/errors.hpp"

namespace kvq::host {
namespace {

// splitmix64's finalizer: a cheap, well-mixed 64-bit hash step.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

bool in_plan(const StepPlan& plan, int64_t request_id) {
  return std::any_of(plan.chunks.begin(), plan.chunks.end(),
                     [&](const auto& c) { return c.request_id == request_id; });
}

}  // namespace

int64_t ScheduledChunk::slot(int64_t position, int64_t block_size) const {
  return static_cast<int64_t>(block_table[static_cast<size_t>(position / block_size)]) *
             block_size +
         position % block_size;
}

Scheduler::Scheduler(const SchedulerConfig& config, BlockAllocator& blocks)
    : config_(config), blocks_(&blocks) {
  if (config_.block_size < 1 || config_.max_num_seqs < 1 || config_.max_num_batched_tokens < 1) {
    throw Error("Scheduler: block_size, max_num_seqs and max_num_batched_tokens must be >= 1");
  }
}

int64_t Scheduler::blocks_needed(const SequenceSpec& spec) const {
  const int64_t tokens = std::max<int64_t>(1, spec.prompt_len + spec.output_len - 1);
  return (tokens + config_.block_size - 1) / config_.block_size;
}

std::string Scheduler::add(const SequenceSpec& spec) {
  if (spec.prompt_len < 1 || spec.output_len < 1) {
    return fmt::format("request {}: prompt and output lengths must be >= 1", spec.request_id);
  }
  const int64_t needed = blocks_needed(spec);
  if (needed > blocks_->num_blocks()) {
    return fmt::format(
        "request {} needs {} KV blocks ({} prompt + {} output tokens, block size {}) but the "
        "whole cache has only {}",
        spec.request_id, needed, spec.prompt_len, spec.output_len, config_.block_size,
        blocks_->num_blocks());
  }
  // Without chunking, a request resumed after preemption recomputes its
  // prompt and generated tokens in one step, so all of them must fit.
  const int64_t longest_step = spec.prompt_len + spec.output_len - 1;
  if (!config_.chunked_prefill && longest_step > config_.max_num_batched_tokens) {
    return fmt::format(
        "request {}: {} prompt + {} output tokens exceed max_num_batched_tokens ({}) and "
        "chunked prefill is off",
        spec.request_id, spec.prompt_len, spec.output_len, config_.max_num_batched_tokens);
  }
  waiting_.push_back(Sequence{spec, 0, 0, {}, {}});
  return {};
}

uint64_t Scheduler::block_hash(const Sequence& sequence, int64_t block_index) const {
  uint64_t h = block_index == 0 ? 0x6B7671707265666Cull  // "kvqprefl"
                                : sequence.block_hashes[static_cast<size_t>(block_index - 1)];
  const int64_t begin = block_index * config_.block_size;
  for (int64_t p = begin; p < begin + config_.block_size; ++p) {
    h = mix(h ^ mix(sequence.spec.content.at(p)) ^ static_cast<uint64_t>(p));
  }
  return h;
}

void Scheduler::match_prefix(Sequence& sequence) {
  // The last known token is always computed: its step samples the next one.
  const int64_t max_hits = (sequence.num_known() - 1) / config_.block_size;
  for (int64_t i = 0; i < max_hits; ++i) {
    const uint64_t h = block_hash(sequence, i);
    const auto block = blocks_->lookup(h);
    if (!block) break;
    blocks_->retain(*block);
    sequence.blocks.push_back(*block);
    sequence.block_hashes.push_back(h);
  }
  sequence.num_computed = static_cast<int64_t>(sequence.blocks.size()) * config_.block_size;
}

void Scheduler::register_full_blocks(Sequence& sequence) {
  if (!config_.prefix_caching) return;
  const int64_t full = sequence.num_computed / config_.block_size;
  for (auto i = static_cast<int64_t>(sequence.block_hashes.size()); i < full; ++i) {
    const uint64_t h = block_hash(sequence, i);
    sequence.block_hashes.push_back(h);
    blocks_->register_hash(sequence.blocks[static_cast<size_t>(i)], h);
  }
}

void Scheduler::release(Sequence& sequence) {
  blocks_->release(sequence.blocks);
  sequence.blocks.clear();
  sequence.block_hashes.clear();
}

void Scheduler::preempt(std::list<Sequence>::iterator victim) {
  release(*victim);
  victim->num_computed = 0;  // recompute: prompt and generated tokens again
  ++stats_.preemptions;
  waiting_.push_front(std::move(*victim));
  running_.erase(victim);
}

bool Scheduler::grow_blocks(Sequence& sequence, int64_t tokens, const StepPlan& plan) {
  while (static_cast<int64_t>(sequence.blocks.size()) * config_.block_size < tokens) {
    if (const auto block = blocks_->allocate()) {
      sequence.blocks.push_back(*block);
      continue;
    }
    // Out of blocks: preempt the newest sequence not already in this step.
    auto victim = running_.end();
    for (auto it = running_.begin(); it != running_.end(); ++it) {
      if (&*it != &sequence && !in_plan(plan, it->spec.request_id)) victim = it;
    }
    if (victim == running_.end()) {
      for (auto it = running_.begin(); it != running_.end(); ++it) {
        if (&*it == &sequence) victim = it;
      }
      preempt(victim);
      return false;
    }
    preempt(victim);
  }
  return true;
}

ScheduledChunk Scheduler::chunk_of(const Sequence& sequence, int64_t num_tokens,
                                   bool is_decode) const {
  ScheduledChunk chunk;
  chunk.request_id = sequence.spec.request_id;
  chunk.start = sequence.num_computed;
  chunk.num_tokens = num_tokens;
  chunk.is_decode = is_decode;
  chunk.block_table = sequence.blocks;
  return chunk;
}

// vllm-ascend's rule: every request new → PrefillNoCache; one token each →
// DecodeOnly; otherwise ChunkedPrefill, or PrefillCacheHit without chunking.
int32_t Scheduler::attention_state_of(const StepPlan& plan) const {
  const bool all_new = std::all_of(plan.chunks.begin(), plan.chunks.end(),
                                   [](const auto& c) { return c.start == 0; });
  if (all_new) return KVQ_ATTN_PREFILL_NO_CACHE;
  const bool all_single = std::all_of(plan.chunks.begin(), plan.chunks.end(),
                                      [](const auto& c) { return c.num_tokens == 1; });
  if (all_single) return KVQ_ATTN_DECODE_ONLY;
  return config_.chunked_prefill ? KVQ_ATTN_CHUNKED_PREFILL : KVQ_ATTN_PREFILL_CACHE_HIT;
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  int64_t budget = config_.max_num_batched_tokens;
  const int64_t preemptions_before = stats_.preemptions;

  // Ids in admission order: preemption removes entries while we walk.
  std::vector<int64_t> order;
  for (const auto& s : running_) order.push_back(s.spec.request_id);

  // 1. Decodes first (one generated token fed back), then 2. prefill chunks.
  for (const bool decodes : {true, false}) {
    for (const int64_t id : order) {
      if (budget == 0) break;
      Sequence* sequence = find_running(id);
      if (sequence == nullptr || in_plan(plan, id)) continue;  // preempted, or scheduled
      const int64_t remaining = sequence->num_known() - sequence->num_computed;
      const bool is_decode = remaining == 1 && sequence->num_computed >= sequence->spec.prompt_len;
      if (is_decode != decodes || remaining <= 0) continue;
      if (!config_.chunked_prefill && remaining > budget) continue;
      const int64_t tokens = std::min(remaining, budget);
      if (!grow_blocks(*sequence, sequence->num_computed + tokens, plan)) continue;
      plan.chunks.push_back(chunk_of(*sequence, tokens, decodes));
      budget -= tokens;
    }
  }

  // 3. Admit waiting requests in order while sequences, budget and blocks
  //    allow (not in a step that had to preempt); the first that does not
  //    fit blocks those behind it.
  while (!waiting_.empty() && budget > 0 && stats_.preemptions == preemptions_before &&
         static_cast<int64_t>(running_.size()) < config_.max_num_seqs) {
    Sequence& next = waiting_.front();
    if (config_.prefix_caching) match_prefix(next);
    const int64_t remaining = next.num_known() - next.num_computed;
    const int64_t tokens = std::min(remaining, budget);
    const int64_t blocks_after =
        (next.num_computed + tokens + config_.block_size - 1) / config_.block_size;
    const int64_t new_blocks = blocks_after - static_cast<int64_t>(next.blocks.size());
    if ((!config_.chunked_prefill && remaining > budget) || new_blocks > blocks_->num_free()) {
      // Give the prefix hits back; the lookup is redone next time.
      release(next);
      next.num_computed = 0;
      break;
    }
    if (config_.prefix_caching) {  // counted once per admission
      stats_.prefix_query_tokens += next.num_known();
      stats_.prefix_hit_tokens += next.num_computed;
    }
    running_.push_back(std::move(next));
    waiting_.pop_front();
    Sequence& admitted = running_.back();
    if (!grow_blocks(admitted, admitted.num_computed + tokens, plan)) {
      throw Error("Scheduler: admission ran out of blocks it had counted (a bug)");
    }
    plan.chunks.push_back(chunk_of(admitted, tokens, false));
    budget -= tokens;
  }

  for (const auto& chunk : plan.chunks) plan.num_tokens += chunk.num_tokens;
  if (!plan.empty()) plan.attention_state = attention_state_of(plan);
  return plan;
}

Scheduler::Sequence* Scheduler::find_running(int64_t request_id) {
  for (auto& s : running_) {
    if (s.spec.request_id == request_id) return &s;
  }
  return nullptr;
}

std::vector<SequenceUpdate> Scheduler::commit(const StepPlan& plan) {
  std::vector<SequenceUpdate> updates;
  for (const auto& chunk : plan.chunks) {
    Sequence* sequence = find_running(chunk.request_id);
    if (sequence == nullptr || sequence->num_computed != chunk.start) {
      throw Error("Scheduler::commit: the plan does not match the running sequences (a bug)");
    }
    sequence->num_computed += chunk.num_tokens;
    SequenceUpdate update{chunk.request_id, false, false};
    // A token is sampled when every known token is in the cache: after the
    // (re)computed prompt and after every decode.
    if (sequence->num_computed == sequence->num_known()) {
      sequence->num_generated += 1;
      update.produced_token = true;
    }
    register_full_blocks(*sequence);
    if (sequence->finished()) {
      update.finished = true;
      release(*sequence);
    }
    updates.push_back(update);
  }
  running_.remove_if([](const Sequence& s) { return s.finished(); });
  return updates;
}

void Scheduler::abort(const StepPlan& plan) {
  for (const auto& chunk : plan.chunks) {
    if (Sequence* sequence = find_running(chunk.request_id)) {
      release(*sequence);
      sequence->num_generated = sequence->spec.output_len;  // marks it for removal
    }
  }
  running_.remove_if([](const Sequence& s) { return s.finished(); });
}

}  // namespace kvq::host
