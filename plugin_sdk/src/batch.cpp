#include "kvq_sdk/batch.hpp"

#include "kvq_sdk/abi_struct.hpp"
#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/plugin.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace kvq::sdk {

CacheView::CacheView(const kvq_tensor* t, const kvq_cache_geometry& g, bool need_data)
    : geometry_(g) {
  if (t == nullptr) fail(KVQ_ERR_INVALID_ARGUMENT, "kv_cache is NULL");
  const TensorView v(t, "kv_cache", need_data);
  v.expect(KVQ_DTYPE_U8, {-1, g.bytes_per_block});
  if (!v.contiguous()) fail(KVQ_ERR_INVALID_ARGUMENT, "kv_cache must be contiguous");
  if (need_data && reinterpret_cast<uintptr_t>(v.data()) % static_cast<uintptr_t>(g.alignment) != 0)
    fail(KVQ_ERR_INVALID_ARGUMENT, "kv_cache is not aligned to {} bytes", g.alignment);
  base_ = static_cast<unsigned char*>(v.data());
  num_blocks_ = v.dim(0);
  planes_ = g.layout == KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD ? 1 : 2;
}

WriteBatch validate_write(const LayerConfig& c, const kvq_cache_geometry& g,
                          const kvq_cache_write_args* in) {
  const kvq_cache_write_args args = read_struct(in, KVQ_CACHE_WRITE_ARGS_SIZE, "cache_write args");
  WriteBatch b;
  const bool keys_only = g.layout == KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD;
  if (args.key == nullptr || (args.value == nullptr && !keys_only) || args.slot_mapping == nullptr)
    fail(KVQ_ERR_INVALID_ARGUMENT, "cache_write: key, value and slot_mapping are required");
  b.key = TensorView(args.key, "key");
  const TensorView slots(args.slot_mapping, "slot_mapping");
  b.key.expect(c.model_dtype, {-1, c.num_kv_heads, c.head_size});
  const int64_t t = b.key.dim(0);
  if (!keys_only) {
    b.value = TensorView(args.value, "value");
    b.value.expect(c.model_dtype, {t, c.num_kv_heads, c.head_size_v});
  }
  slots.expect(KVQ_DTYPE_I64, {t});
  b.cache = CacheView(args.kv_cache, g, true);
  if (args.num_tokens < 0 || args.num_tokens > t)
    fail(KVQ_ERR_INVALID_ARGUMENT, "num_tokens {} is outside 0..{}", args.num_tokens, t);
  const int64_t n = args.num_tokens == 0 ? t : args.num_tokens;
  b.slots.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = slots.i64(i);
    if (s >= b.cache.capacity_slots())
      fail(KVQ_ERR_OUT_OF_RANGE,
           "slot_mapping[{}] = {} is outside the cache ({} blocks x {} slots); nothing written", i,
           s, b.cache.num_blocks(), g.block_size);
    b.slots[static_cast<size_t>(i)] = s;
  }
  return b;
}

ForwardBatch validate_forward(const LayerConfig& c, const kvq_cache_geometry& g,
                              const kvq_forward_args* in, bool need_data, const ForwardSpec& spec) {
  const std::vector<int32_t>& query_dtypes = spec.query_dtypes;
  const kvq_forward_args args = read_struct(in, KVQ_FORWARD_ARGS_SIZE, "forward args");
  ForwardBatch b;
  if (args.attention_state < KVQ_ATTN_PREFILL_NO_CACHE ||
      args.attention_state > KVQ_ATTN_SPEC_DECODING)
    fail(KVQ_ERR_INVALID_ARGUMENT, "attention_state {} is not a KVQ_ATTN_* value",
         args.attention_state);
  b.state = args.attention_state;
  if (args.query == nullptr || args.output == nullptr || args.kv_cache == nullptr ||
      args.query_start_loc == nullptr || args.seq_lens == nullptr || args.block_table == nullptr)
    fail(
        KVQ_ERR_INVALID_ARGUMENT,
        "forward: query, output, kv_cache, query_start_loc, seq_lens and block_table are required");
  b.query = TensorView(args.query, "query", need_data);
  if (std::find(query_dtypes.begin(), query_dtypes.end(), b.query.dtype()) == query_dtypes.end())
    fail(KVQ_ERR_INVALID_ARGUMENT, "query: dtype {} is not accepted by this layer (model dtype {})",
         dtype_name(b.query.dtype()), dtype_name(c.model_dtype));
  b.query.expect(b.query.dtype(), {-1, c.num_heads, c.head_size});
  b.num_tokens = b.query.dim(0);
  b.output = TensorView(args.output, "output", need_data);
  std::vector<int64_t> out_shape = {b.num_tokens};
  out_shape.insert(out_shape.end(), spec.output_tail.begin(), spec.output_tail.end());
  b.output.expect(spec.output_dtype, out_shape);
  b.head_weights = optional_view(args.head_weights, "head_weights", need_data);
  if (b.head_weights.present()) {
    if (!spec.head_weights)
      fail(KVQ_ERR_INVALID_ARGUMENT, "head_weights: this layer's implementation takes none");
    if (!is_model_dtype(b.head_weights.dtype()))
      fail(KVQ_ERR_INVALID_ARGUMENT, "head_weights: dtype {} is not F32, F16 or BF16",
           dtype_name(b.head_weights.dtype()));
    b.head_weights.expect(b.head_weights.dtype(), {b.num_tokens, c.num_heads});
  }
  b.key = optional_view(args.key, "key", need_data);
  b.value = optional_view(args.value, "value", need_data);
  if (b.key.present() != b.value.present())
    fail(KVQ_ERR_INVALID_ARGUMENT, "forward: key and value must be given together");
  if (b.key.present()) {
    b.key.expect(c.model_dtype, {b.num_tokens, c.num_kv_heads, c.head_size});
    b.value.expect(c.model_dtype, {b.num_tokens, c.num_kv_heads, c.head_size_v});
  }
  b.alibi_slopes = optional_view(args.alibi_slopes, "alibi_slopes", true);
  if (b.alibi_slopes.present()) b.alibi_slopes.expect(KVQ_DTYPE_F32, {c.num_heads});
  b.sinks = optional_view(args.sinks, "sinks", true);
  if (b.sinks.present()) b.sinks.expect(KVQ_DTYPE_F32, {c.num_heads});
  b.cache = CacheView(args.kv_cache, g, need_data);

  const TensorView qsl(args.query_start_loc, "query_start_loc");
  const TensorView lens(args.seq_lens, "seq_lens");
  const TensorView table(args.block_table, "block_table");
  qsl.expect(KVQ_DTYPE_I32, {-1});
  const int64_t s_count = qsl.dim(0) - 1;
  if (s_count < 0) fail(KVQ_ERR_INVALID_ARGUMENT, "query_start_loc is empty");
  lens.expect(KVQ_DTYPE_I32, {s_count});
  table.expect(KVQ_DTYPE_I32, {s_count, -1});
  b.max_blocks = table.dim(1);
  if (qsl.i64(0) != 0)
    fail(KVQ_ERR_INVALID_ARGUMENT, "query_start_loc[0] = {}, must be 0", qsl.i64(0));
  b.seqs.resize(static_cast<size_t>(s_count));
  b.block_table.resize(static_cast<size_t>(s_count * b.max_blocks));
  for (int64_t s = 0; s < s_count; ++s) {
    const int64_t start = qsl.i64(s), end = qsl.i64(s + 1);
    if (end < start)
      fail(KVQ_ERR_INVALID_ARGUMENT, "query_start_loc decreases at {}: {} -> {}", s, start, end);
    const int64_t seq_len = lens.i64(s), qlen = end - start;
    if (seq_len < qlen)
      fail(KVQ_ERR_INVALID_ARGUMENT, "seq_lens[{}] = {} is smaller than its query length {}", s,
           seq_len, qlen);
    const int64_t needed = (seq_len + g.block_size - 1) / g.block_size;
    if (needed > b.max_blocks)
      fail(KVQ_ERR_OUT_OF_RANGE, "seq_lens[{}] = {} needs {} blocks; block_table holds {}", s,
           seq_len, needed, b.max_blocks);
    for (int64_t k = 0; k < b.max_blocks; ++k) {
      int32_t blk;
      std::memcpy(&blk, table.at({s, k}), 4);
      if (k < needed && (blk < 0 || blk >= b.cache.num_blocks()))
        fail(KVQ_ERR_OUT_OF_RANGE, "block_table[{}][{}] = {} is outside the cache's {} blocks", s,
             k, blk, b.cache.num_blocks());
      b.block_table[static_cast<size_t>(s * b.max_blocks + k)] = static_cast<int32_t>(blk);
    }
    b.seqs[static_cast<size_t>(s)] = {start, qlen, seq_len, seq_len - qlen};
    b.max_query_len = std::max(b.max_query_len, qlen);
    b.max_seq_len = std::max(b.max_seq_len, seq_len);
  }
  if (qsl.i64(s_count) != b.num_tokens)
    fail(KVQ_ERR_INVALID_ARGUMENT, "query_start_loc[{}] = {} but query has {} tokens", s_count,
         qsl.i64(s_count), b.num_tokens);
  return b;
}

}  // namespace kvq::sdk
