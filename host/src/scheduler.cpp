#include "kvq_host/scheduler.hpp"

#include <fmt/format.h>
#include <kvq_abi.h>

#include <algorithm>

#include "kvq_host/errors.hpp"

namespace kvq::host {

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
        "cache has only {}",
        spec.request_id, needed, spec.prompt_len, spec.output_len, config_.block_size,
        blocks_->num_blocks());
  }
  if (!config_.chunked_prefill && spec.prompt_len > config_.max_num_batched_tokens) {
    return fmt::format(
        "request {}: its prompt of {} tokens exceeds max_num_batched_tokens ({}) and chunked "
        "prefill is off",
        spec.request_id, spec.prompt_len, config_.max_num_batched_tokens);
  }
  waiting_.push_back(Sequence{spec, 0, 0, needed, {}});
  return {};
}

int64_t Scheduler::unallocated_reservations() const {
  int64_t total = 0;
  for (const auto& s : running_) total += s.reserved_blocks - static_cast<int64_t>(s.blocks.size());
  return total;
}

void Scheduler::grow_blocks(Sequence& sequence, int64_t tokens) {
  while (static_cast<int64_t>(sequence.blocks.size()) * config_.block_size < tokens) {
    const auto block = blocks_->allocate();
    // Admission reserved every block this sequence can need.
    if (!block) throw Error("Scheduler: out of blocks despite the reservation (a bug)");
    sequence.blocks.push_back(*block);
  }
}

ScheduledChunk Scheduler::chunk_of(const Sequence& sequence, int64_t num_tokens) const {
  ScheduledChunk chunk;
  chunk.request_id = sequence.spec.request_id;
  chunk.start = sequence.num_computed;
  chunk.num_tokens = num_tokens;
  chunk.prompt_len = sequence.spec.prompt_len;
  chunk.is_decode = sequence.num_computed >= sequence.spec.prompt_len;
  chunk.block_table = sequence.blocks;
  return chunk;
}

int32_t Scheduler::attention_state_of(const StepPlan& plan) const {
  const bool all_new_full_prompts =
      std::all_of(plan.chunks.begin(), plan.chunks.end(),
                  [](const auto& c) { return c.start == 0 && c.num_tokens == c.prompt_len; });
  if (all_new_full_prompts) return KVQ_ATTN_PREFILL_NO_CACHE;
  const bool all_decodes = std::all_of(plan.chunks.begin(), plan.chunks.end(),
                                       [](const auto& c) { return c.is_decode; });
  if (all_decodes) return KVQ_ATTN_DECODE_ONLY;
  return config_.chunked_prefill ? KVQ_ATTN_CHUNKED_PREFILL : KVQ_ATTN_PREFILL_CACHE_HIT;
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  int64_t budget = config_.max_num_batched_tokens;

  // 1. Decodes first: one token each.
  for (auto& sequence : running_) {
    if (budget == 0) break;
    if (sequence.num_computed < sequence.spec.prompt_len) continue;
    grow_blocks(sequence, sequence.num_computed + 1);
    plan.chunks.push_back(chunk_of(sequence, 1));
    budget -= 1;
  }
  // 2. Running prefills continue with the next chunk.
  for (auto& sequence : running_) {
    if (budget == 0) break;
    const int64_t remaining = sequence.spec.prompt_len - sequence.num_computed;
    if (remaining <= 0) continue;
    const int64_t tokens = std::min(remaining, budget);
    grow_blocks(sequence, sequence.num_computed + tokens);
    plan.chunks.push_back(chunk_of(sequence, tokens));
    budget -= tokens;
  }
  // 3. Admit waiting requests in arrival order while sequences, budget and
  //    blocks allow; the first that does not fit blocks those behind it.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int64_t>(running_.size()) < config_.max_num_seqs) {
    Sequence& next = waiting_.front();
    if (blocks_->num_free() - unallocated_reservations() < next.reserved_blocks) break;
    if (!config_.chunked_prefill && next.spec.prompt_len > budget) break;
    const int64_t tokens = std::min(next.spec.prompt_len, budget);
    running_.push_back(std::move(next));
    waiting_.pop_front();
    Sequence& admitted = running_.back();
    grow_blocks(admitted, tokens);
    plan.chunks.push_back(chunk_of(admitted, tokens));
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

void Scheduler::release(Sequence& sequence) {
  blocks_->release(sequence.blocks);
  sequence.blocks.clear();
}

std::vector<SequenceUpdate> Scheduler::commit(const StepPlan& plan) {
  std::vector<SequenceUpdate> updates;
  for (const auto& chunk : plan.chunks) {
    Sequence* sequence = find_running(chunk.request_id);
    if (sequence == nullptr) throw Error("Scheduler::commit: unknown request (a bug)");
    sequence->num_computed += chunk.num_tokens;
    SequenceUpdate update{chunk.request_id, false, false};
    // A token is sampled when the whole prompt is in (the first token) and
    // after every decode.
    if (sequence->num_computed >= sequence->spec.prompt_len) {
      sequence->num_generated += 1;
      update.produced_token = true;
    }
    if (sequence->num_generated >= sequence->spec.output_len) {
      update.finished = true;
      release(*sequence);
    }
    updates.push_back(update);
  }
  std::erase_if(running_, [](const Sequence& s) { return s.num_generated >= s.spec.output_len; });
  return updates;
}

void Scheduler::abort(const StepPlan& plan) {
  for (const auto& chunk : plan.chunks) {
    if (Sequence* sequence = find_running(chunk.request_id)) {
      release(*sequence);
      sequence->num_generated = sequence->spec.output_len;  // marks it for removal
    }
  }
  std::erase_if(running_, [](const Sequence& s) { return s.num_generated >= s.spec.output_len; });
}

}  // namespace kvq::host
