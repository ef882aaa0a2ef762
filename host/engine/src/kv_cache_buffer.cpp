#include "kvq_engine/kv_cache_buffer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kvq_files/errors.hpp"

namespace kvq::host {

KvCacheBuffer::KvCacheBuffer(const Plugin& plugin, int64_t num_blocks,
                             const kvq_cache_geometry& geometry) {
  if (num_blocks < 1 || geometry.bytes_per_block < 1) {
    throw Error(fmt::format("KV cache: {} blocks of {} bytes is not a cache", num_blocks,
                            geometry.bytes_per_block));
  }
  // 64 bytes (a cache line) is the floor whatever the plugin asks.
  const int64_t alignment = std::max<int64_t>(64, geometry.alignment);
  if ((alignment & (alignment - 1)) != 0) {
    throw Error(fmt::format("KV cache: the plugin asks for alignment {}, not a power of two",
                            geometry.alignment));
  }
  if (num_blocks > std::numeric_limits<int64_t>::max() / geometry.bytes_per_block) {
    throw Error("KV cache: size overflows");
  }
  size_bytes_ = num_blocks * geometry.bytes_per_block;
  try {
    memory_ = Buffer(plugin, static_cast<uint64_t>(size_bytes_), static_cast<uint64_t>(alignment));
  } catch (const PluginError&) {
    throw;
  } catch (const Error& e) {
    throw Error(fmt::format("KV cache: cannot allocate {:.3f} GiB: {}",
                            static_cast<double>(size_bytes_) / (1024.0 * 1024 * 1024), e.what()));
  }
  tensor_ = memory_.tensor(KVQ_DTYPE_U8, {num_blocks, geometry.bytes_per_block});
}

std::vector<std::byte> KvCacheBuffer::read() const {
  std::vector<std::byte> bytes(static_cast<size_t>(size_bytes_));
  memory_.download(bytes);
  return bytes;
}

int64_t blocks_for_memory(double memory_bytes, int64_t bytes_per_block_all_layers) {
  if (bytes_per_block_all_layers < 1 || !(memory_bytes > 0)) return 0;
  const double blocks = std::floor(memory_bytes / static_cast<double>(bytes_per_block_all_layers));
  return static_cast<int64_t>(
      std::min(blocks, static_cast<double>(std::numeric_limits<int32_t>::max())));
}

}  // namespace kvq::host
