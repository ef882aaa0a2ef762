// Host-owned KV cache memory (ABI: the host allocates, the plugin reads and
// writes): one aligned buffer per layer, viewed as U8 [num_blocks, bytes_per_block].
#pragma once

#include <kvq_abi.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace kvq::host {

class KvCacheBuffer {
 public:
  // Throws Error when the geometry is unusable or memory cannot be had.
  KvCacheBuffer(int64_t num_blocks, const kvq_cache_geometry& geometry);

  const kvq_tensor& tensor() const { return tensor_; }
  int64_t size_bytes() const { return size_bytes_; }
  std::byte* data() const { return memory_.get(); }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept;
  };
  std::unique_ptr<std::byte, Free> memory_;
  int64_t size_bytes_ = 0;
  kvq_tensor tensor_{};
};

// Blocks that fit in `memory_bytes` when every layer's block costs the sum of
// `bytes_per_block_all_layers` (the same block id is used in every layer).
int64_t blocks_for_memory(double memory_bytes, int64_t bytes_per_block_all_layers);

}  // namespace kvq::host
