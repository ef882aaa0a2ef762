#include "kvq_engine/block_allocator.hpp"

#include <fmt/format.h>

#include <limits>

#include "kvq_files/errors.hpp"

namespace kvq::host {

BlockAllocator::BlockAllocator(int64_t num_blocks) {
  if (num_blocks < 0 || num_blocks > std::numeric_limits<int32_t>::max()) {
    throw Error(fmt::format("BlockAllocator: {} blocks is out of range", num_blocks));
  }
  const auto n = static_cast<size_t>(num_blocks);
  ref_count_.assign(n, 0);
  hash_of_block_.assign(n, std::nullopt);
  queue_pos_.resize(n);
  for (size_t b = 0; b < n; ++b) {
    queue_pos_[b] = free_queue_.insert(free_queue_.end(), static_cast<int32_t>(b));
  }
}

void BlockAllocator::check_id(int32_t block, const char* what) const {
  if (block < 0 || block >= num_blocks()) {
    throw Error(fmt::format("BlockAllocator: {} block {}, which does not exist", what, block));
  }
}

int32_t BlockAllocator::ref_count(int32_t block) const {
  check_id(block, "asked about");
  return ref_count_[static_cast<size_t>(block)];
}

std::optional<int32_t> BlockAllocator::allocate() {
  if (free_queue_.empty()) return std::nullopt;
  const int32_t block = free_queue_.front();
  free_queue_.pop_front();
  const auto b = static_cast<size_t>(block);
  // Reusing the block evicts the prefix it cached.
  if (hash_of_block_[b]) {
    block_of_hash_.erase(*hash_of_block_[b]);
    hash_of_block_[b].reset();
  }
  ref_count_[b] = 1;
  peak_used_ = std::max(peak_used_, num_used());
  return block;
}

void BlockAllocator::retain(int32_t block) {
  check_id(block, "retaining");
  const auto b = static_cast<size_t>(block);
  if (ref_count_[b] == 0) {
    free_queue_.erase(queue_pos_[b]);
    peak_used_ = std::max(peak_used_, num_used());
  }
  ++ref_count_[b];
}

void BlockAllocator::release(std::span<const int32_t> blocks) {
  for (const int32_t block : blocks) {
    check_id(block, "releasing");
    const auto b = static_cast<size_t>(block);
    if (ref_count_[b] == 0) {
      throw Error(fmt::format("BlockAllocator: releasing block {} that is not in use", block));
    }
    if (--ref_count_[b] == 0) queue_pos_[b] = free_queue_.insert(free_queue_.end(), block);
  }
}

std::optional<int32_t> BlockAllocator::lookup(uint64_t hash) const {
  const auto it = block_of_hash_.find(hash);
  if (it == block_of_hash_.end()) return std::nullopt;
  return it->second;
}

void BlockAllocator::register_hash(int32_t block, uint64_t hash) {
  check_id(block, "registering");
  const auto b = static_cast<size_t>(block);
  if (ref_count_[b] == 0) {
    throw Error(
        fmt::format("BlockAllocator: registering free block {} in the prefix cache", block));
  }
  if (hash_of_block_[b] || block_of_hash_.contains(hash)) return;
  hash_of_block_[b] = hash;
  block_of_hash_.emplace(hash, block);
}

}  // namespace kvq::host
