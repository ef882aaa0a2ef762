#include "kvq_host/kv_cache_buffer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "kvq_host/errors.hpp"

namespace kvq::host {

void KvCacheBuffer::Free::operator()(std::byte* p) const noexcept {
  std::free(p);
}

KvCacheBuffer::KvCacheBuffer(int64_t num_blocks, const kvq_cache_geometry& geometry) {
  if (num_blocks < 1 || geometry.bytes_per_block < 1) {
    throw Error(fmt::format("KV cache: {} blocks of {} bytes is not a cache", num_blocks,
                            geometry.bytes_per_block));
  }
  // aligned_alloc needs a power of two that is a multiple of sizeof(void*);
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
  const int64_t rounded = (size_bytes_ + alignment - 1) / alignment * alignment;
  memory_.reset(static_cast<std::byte*>(
      std::aligned_alloc(static_cast<size_t>(alignment), static_cast<size_t>(rounded))));
  if (!memory_) {
    throw Error(fmt::format("KV cache: cannot allocate {:.3f} GiB",
                            static_cast<double>(rounded) / (1024.0 * 1024 * 1024)));
  }
  tensor_.struct_size = KVQ_TENSOR_SIZE;
  tensor_.data = memory_.get();
  tensor_.device_type = KVQ_DEVICE_CPU;
  tensor_.device_id = 0;
  tensor_.dtype = KVQ_DTYPE_U8;
  tensor_.ndim = 2;
  tensor_.shape[0] = num_blocks;
  tensor_.shape[1] = geometry.bytes_per_block;
  tensor_.strides[0] = geometry.bytes_per_block;
  tensor_.strides[1] = 1;
}

int64_t blocks_for_memory(double memory_bytes, int64_t bytes_per_block_all_layers) {
  if (bytes_per_block_all_layers < 1 || !(memory_bytes > 0)) return 0;
  const double blocks = std::floor(memory_bytes / static_cast<double>(bytes_per_block_all_layers));
  return static_cast<int64_t>(
      std::min(blocks, static_cast<double>(std::numeric_limits<int32_t>::max())));
}

}  // namespace kvq::host
