// Validation of cache-write and forward arguments against a layer's geometry,
// shared by every backend: after validate_* returns, every index the kernels
// will touch is in range, so a bad input is refused before anything is written.
#pragma once

#include "kvq_sdk/tensor.hpp"

#include <kvq_abi.h>

#include <cstdint>
#include <vector>

namespace kvq::sdk {

struct LayerConfig;

// The host's cache buffer: U8 [num_blocks, bytes_per_block], in the
// plugin's memory space.
class CacheView {
 public:
  CacheView() = default;
  CacheView(const kvq_tensor* t, const kvq_cache_geometry& g, bool need_data,
            const MemorySpace& space = {});
  bool host_accessible() const { return host_accessible_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t capacity_slots() const { return num_blocks_ * geometry_.block_size; }
  const kvq_cache_geometry& geometry() const { return geometry_; }
  unsigned char* base() const { return base_; }
  // Row (block, kv: 0 = K / 1 = V, slot within block, kv head).
  // Row (block, kv: 0 = K / 1 = V, slot within block, kv head); keys-only
  // layouts have no V plane (kv is always 0).
  unsigned char* row(int64_t block, int kv, int64_t slot, int64_t head) const {
    return base_ +
           ((block * planes_ + kv) * geometry_.block_size + slot) * geometry_.num_kv_heads *
               geometry_.row_bytes +
           head * geometry_.row_bytes;
  }
  bool keys_only() const { return planes_ == 1; }

 private:
  unsigned char* base_ = nullptr;
  bool host_accessible_ = true;
  int64_t num_blocks_ = 0;
  int64_t planes_ = 2;
  kvq_cache_geometry geometry_{};
};

struct WriteBatch {
  TensorView key;           // [T, H_kv, D]
  TensorView value;         // [T, H_kv, Dv]
  TensorView slot_mapping;  // [T] I64
  int64_t num_tokens = 0;   // rows to write
  // The first num_tokens slots, checked against the cache, when the slot
  // mapping is host-accessible; empty when it is device memory (the
  // implementation validates it on the device before writing).
  std::vector<int64_t> slots;
  CacheView cache;
  kvq_stream* stream = nullptr;  // 1.1: nullptr = complete before returning
};
WriteBatch validate_write(const LayerConfig& config, const kvq_cache_geometry& geometry,
                          const kvq_cache_write_args* args, const MemorySpace& space = {});

struct SequenceSlice {
  int64_t query_start;  // first query row
  int64_t query_len;
  int64_t seq_len;      // keys visible to the last query
  int64_t context_len;  // seq_len - query_len
};

struct ForwardBatch {
  int32_t state = 0;
  TensorView query, key, value, output, alibi_slopes, sinks, head_weights;
  TensorView query_start_loc_view, seq_lens_view, block_table_view;  // as given
  CacheView cache;
  std::vector<SequenceSlice> seqs;  // always on the host (downloaded if need be)
  // [S, max_blocks] row-major copy, checked against the cache, when the
  // block table is host-accessible; empty when it is device memory (the
  // implementation validates the entries it reads on the device).
  std::vector<int32_t> block_table;
  kvq_stream* stream = nullptr;  // 1.1: nullptr = complete before returning
  int64_t max_blocks = 0;
  int64_t num_tokens = 0;
  int64_t max_query_len = 0;
  int64_t max_seq_len = 0;
  int32_t block(int64_t seq, int64_t logical) const {
    return block_table[static_cast<size_t>(seq * max_blocks + logical)];
  }
};
// What an implementation's forward accepts and writes.
struct ForwardSpec {
  std::vector<int32_t> query_dtypes;
  int32_t output_dtype = 0;
  std::vector<int64_t> output_tail;  // output shape after the token dimension
  bool head_weights = false;         // accepts args.head_weights [T, num_heads]
};

// need_data false: only shapes/dtypes of query/key/value/output/cache are read
// (supports()); the batch description (query_start_loc, seq_lens,
// block_table) is always read.
ForwardBatch validate_forward(const LayerConfig& config, const kvq_cache_geometry& geometry,
                              const kvq_forward_args* args, bool need_data, const ForwardSpec& spec,
                              const MemorySpace& space = {});

}  // namespace kvq::sdk
