#include "kvq_host/block_allocator.hpp"

#include <fmt/format.h>

#include <limits>

#include "kvq_host/errors.hpp"

namespace kvq::host {

BlockAllocator::BlockAllocator(int64_t num_blocks) {
  if (num_blocks < 0 || num_blocks > std::numeric_limits<int32_t>::max()) {
    throw Error(fmt::format("BlockAllocator: {} blocks is out of range", num_blocks));
  }
  in_use_.assign(static_cast<size_t>(num_blocks), false);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

std::optional<int32_t> BlockAllocator::allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t block = free_.back();
  free_.pop_back();
  in_use_[static_cast<size_t>(block)] = true;
  peak_used_ = std::max(peak_used_, num_used());
  return block;
}

void BlockAllocator::release(std::span<const int32_t> blocks) {
  for (const int32_t block : blocks) {
    if (block < 0 || block >= num_blocks() || !in_use_[static_cast<size_t>(block)]) {
      throw Error(fmt::format("BlockAllocator: releasing block {} that is not in use", block));
    }
    in_use_[static_cast<size_t>(block)] = false;
    free_.push_back(block);
  }
}

}  // namespace kvq::host
