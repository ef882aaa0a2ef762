// The paged KV cache's block pool, shared by all layers (block b of every
// layer's buffer belongs to the same sequence), with reference counts and a
// prefix cache as in vLLM's block manager:
//   - a block in use has a reference count >= 1 (several sequences share a
//     cached prefix block);
//   - a full block whose K/V are computed can be registered under the hash of
//     its tokens (and of every token before it); a later sequence with the
//     same prefix retains it instead of recomputing it;
//   - a released block (count 0) joins the back of the free queue but keeps
//     its hash, so it can still be hit until allocate() reuses it; allocate()
//     takes the front (least recently freed) block and drops its hash.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace kvq::host {

class BlockAllocator {
 public:
  explicit BlockAllocator(int64_t num_blocks);

  // A free block with reference count 1, or nullopt when none is left. Low
  // ids are handed out first, so runs are reproducible.
  std::optional<int32_t> allocate();
  // One more reference to a block found by lookup() (a prefix-cache hit);
  // takes it off the free queue if nobody held it.
  void retain(int32_t block);
  // Drops one reference from each block, in order; a block whose count
  // reaches 0 becomes free (hash kept). Throws Error for an id that is out of
  // range or already free (a scheduler bug, caught early).
  void release(std::span<const int32_t> blocks);

  // The block registered under `hash`, if it still holds that content.
  std::optional<int32_t> lookup(uint64_t hash) const;
  // Registers a block in use (its K/V written) under `hash`. A hash already
  // held by another block keeps its first block (two sequences computed the
  // same prefix at once); a block is registered at most once.
  void register_hash(int32_t block, uint64_t hash);

  int64_t num_blocks() const { return static_cast<int64_t>(ref_count_.size()); }
  int64_t num_free() const { return static_cast<int64_t>(free_queue_.size()); }
  int64_t num_used() const { return num_blocks() - num_free(); }
  int64_t peak_used() const { return peak_used_; }
  int64_t num_cached() const { return static_cast<int64_t>(block_of_hash_.size()); }
  int32_t ref_count(int32_t block) const;

 private:
  void check_id(int32_t block, const char* what) const;

  std::vector<int32_t> ref_count_;
  std::list<int32_t> free_queue_;                        // front = next to hand out
  std::vector<std::list<int32_t>::iterator> queue_pos_;  // valid while ref_count_ == 0
  std::vector<std::optional<uint64_t>> hash_of_block_;
  std::unordered_map<uint64_t, int32_t> block_of_hash_;
  int64_t peak_used_ = 0;
};

}  // namespace kvq::host
