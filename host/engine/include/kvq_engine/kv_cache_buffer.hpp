// Host-owned KV cache memory (ABI: the host allocates, the plugin reads and
// writes): one buffer per layer in the plugin's memory space (host memory for
// a CPU plugin, device_alloc for a device plugin), viewed as U8
// [num_blocks, bytes_per_block].
#pragma once

#include <kvq_abi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kvq_engine/plugin.hpp"

namespace kvq::host {

class KvCacheBuffer {
 public:
  // Throws Error when the geometry is unusable or memory cannot be had
  // (PluginError when the plugin's device_alloc refuses).
  KvCacheBuffer(const Plugin& plugin, int64_t num_blocks, const kvq_cache_geometry& geometry);

  const kvq_tensor& tensor() const { return tensor_; }
  int64_t size_bytes() const { return size_bytes_; }
  // The memory, for copies through the plugin's hooks (Buffer::upload/download).
  Buffer& buffer() { return memory_; }
  // The cache's bytes, read through the plugin's hooks for a device plugin
  // (tests look at stored rows).
  std::vector<std::byte> read() const;

 private:
  Buffer memory_;
  int64_t size_bytes_ = 0;
  kvq_tensor tensor_{};
};

// Blocks that fit in `memory_bytes` when every layer's block costs the sum of
// `bytes_per_block_all_layers` (the same block id is used in every layer).
int64_t blocks_for_memory(double memory_bytes, int64_t bytes_per_block_all_layers);

}  // namespace kvq::host
