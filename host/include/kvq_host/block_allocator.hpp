// The paged KV cache's block pool: a free list of block ids shared by all
// layers (block b of every layer's buffer belongs to the same sequence).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace kvq::host {

class BlockAllocator {
 public:
  explicit BlockAllocator(int64_t num_blocks);

  // A free block, or nullopt when none is left. Low ids are handed out
  // first, so runs are reproducible.
  std::optional<int32_t> allocate();
  // Returns blocks to the pool. Throws Error for an id that is out of range
  // or already free (a scheduler bug, caught early).
  void release(std::span<const int32_t> blocks);

  int64_t num_blocks() const { return static_cast<int64_t>(in_use_.size()); }
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_used() const { return num_blocks() - num_free(); }
  int64_t peak_used() const { return peak_used_; }

 private:
  std::vector<int32_t> free_;  // a stack: the next block to hand out is at the back
  std::vector<bool> in_use_;
  int64_t peak_used_ = 0;
};

}  // namespace kvq::host
