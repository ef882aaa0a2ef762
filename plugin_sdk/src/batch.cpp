#include "kvq_sdk/batch.hpp"

#include "kvq_sdk/abi_struct.hpp"
#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/plugin.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace kvq::sdk {

CacheView::CacheView(const kvq_tensor* t, const kvq_cache_geometry& g, bool need_data,
                     const MemorySpace& space)
    : geometry_(g) {
  if (t == nullptr) fail(KVQ_ERR_INVALID_ARGUMENT, "kv_cache is NULL");
  const TensorView v(t, "kv_cache", need_data, space);
  v.expect(KVQ_DTYPE_U8, {-1, g.bytes_per_block});
  if (!v.contiguous()) fail(KVQ_ERR_INVALID_ARGUMENT, "kv_cache must be contiguous");
  if (need_data && reinterpret_cast<uintptr_t>(v.data()) % static_cast<uintptr_t>(g.alignment) != 0)
    fail(KVQ_ERR_INVALID_ARGUMENT, "kv_cache is not aligned to {} bytes", g.alignment);
  base_ = static_cast<unsigned char*>(v.data());
  host_accessible_ = v.host_accessible();
  num_blocks_ = v.dim(0);
  planes_ = g.layout == KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD ? 1 : 2;
}

// A stream is a device plugin's; a CPU plugin has none to accept.
kvq_stream* checked_stream(kvq_stream* stream, const MemorySpace& space) {
  if (stream != nullptr && space.device == nullptr)
    fail(KVQ_ERR_INVALID_ARGUMENT, "stream: this plugin computes on the CPU and has no streams");
  return stream;
}

WriteBatch validate_write(const LayerConfig& c, const kvq_cache_geometry& g,
                          const kvq_cache_write_args* in, const MemorySpace& space) {
  const kvq_cache_write_args args =
      read_struct(in, KVQ_CACHE_WRITE_ARGS_SIZE_1_0, "cache_write args");
  WriteBatch b;
  b.stream = checked_stream(args.stream, space);
  const bool keys_only = g.layout == KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD;
  if (args.key == nullptr || (args.value == nullptr && !keys_only) || args.slot_mapping == nullptr)
    fail(KVQ_ERR_INVALID_ARGUMENT, "cache_write: key, value and slot_mapping are required");
  b.key = TensorView(args.key, "key", true, space);
  const TensorView slots(args.slot_mapping, "slot_mapping", true, space);
  b.slot_mapping = slots;
  b.key.expect(c.model_dtype, {-1, c.num_kv_heads, c.head_size});
  const int64_t t = b.key.dim(0);
  if (!keys_only) {
    b.value = TensorView(args.value, "value", true, space);
    b.value.expect(c.model_dtype, {t, c.num_kv_heads, c.head_size_v});
  }
  slots.expect(KVQ_DTYPE_I64, {t});
  b.cache = CacheView(args.kv_cache, g, true, space);
  if (args.num_tokens < 0 || args.num_tokens > t)
    fail(KVQ_ERR_INVALID_ARGUMENT, "num_tokens {} is outside 0..{}", args.num_tokens, t);
  const int64_t n = args.num_tokens == 0 ? t : args.num_tokens;
  b.num_tokens = n;
  if (!slots.host_accessible()) return b;  // validated on the device
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
                              const kvq_forward_args* in, bool need_data, const ForwardSpec& spec,
                              const MemorySpace& space) {
  const std::vector<int32_t>& query_dtypes = spec.query_dtypes;
  const kvq_forward_args args = read_struct(in, KVQ_FORWARD_ARGS_SIZE_1_0, "forward args");
  ForwardBatch b;
  b.stream = checked_stream(args.stream, space);
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
  b.query = TensorView(args.query, "query", need_data, space);
  if (std::find(query_dtypes.begin(), query_dtypes.end(), b.query.dtype()) == query_dtypes.end())
    fail(KVQ_ERR_INVALID_ARGUMENT, "query: dtype {} is not accepted by this layer (model dtype {})",
         dtype_name(b.query.dtype()), dtype_name(c.model_dtype));
  b.query.expect(b.query.dtype(), {-1, c.num_heads, c.head_size});
  b.num_tokens = b.query.dim(0);
  b.output = TensorView(args.output, "output", need_data, space);
  std::vector<int64_t> out_shape = {b.num_tokens};
  out_shape.insert(out_shape.end(), spec.output_tail.begin(), spec.output_tail.end());
  b.output.expect(spec.output_dtype, out_shape);
  b.head_weights = optional_view(args.head_weights, "head_weights", need_data, space);
  if (b.head_weights.present()) {
    if (!spec.head_weights)
      fail(KVQ_ERR_INVALID_ARGUMENT, "head_weights: this layer's implementation takes none");
    if (!is_model_dtype(b.head_weights.dtype()))
      fail(KVQ_ERR_INVALID_ARGUMENT, "head_weights: dtype {} is not F32, F16 or BF16",
           dtype_name(b.head_weights.dtype()));
    b.head_weights.expect(b.head_weights.dtype(), {b.num_tokens, c.num_heads});
  }
  b.key = optional_view(args.key, "key", need_data, space);
  b.value = optional_view(args.value, "value", need_data, space);
  if (b.key.present() != b.value.present())
    fail(KVQ_ERR_INVALID_ARGUMENT, "forward: key and value must be given together");
  if (b.key.present()) {
    b.key.expect(c.model_dtype, {b.num_tokens, c.num_kv_heads, c.head_size});
    b.value.expect(c.model_dtype, {b.num_tokens, c.num_kv_heads, c.head_size_v});
  }
  b.alibi_slopes =
      optional_view(args.alibi_slopes, "alibi_slopes", true, space, Placement::kHostOrDevice);
  if (b.alibi_slopes.present()) b.alibi_slopes.expect(KVQ_DTYPE_F32, {c.num_heads});
  b.sinks = optional_view(args.sinks, "sinks", true, space, Placement::kHostOrDevice);
  if (b.sinks.present()) b.sinks.expect(KVQ_DTYPE_F32, {c.num_heads});
  b.cache = CacheView(args.kv_cache, g, need_data, space);

  const TensorView qsl(args.query_start_loc, "query_start_loc", true, space,
                       Placement::kHostOrDevice);
  const TensorView lens(args.seq_lens, "seq_lens", true, space, Placement::kHostOrDevice);
  const TensorView table(args.block_table, "block_table", true, space);
  b.query_start_loc_view = qsl;
  b.seq_lens_view = lens;
  b.block_table_view = table;
  qsl.expect(KVQ_DTYPE_I32, {-1});
  const int64_t s_count = qsl.dim(0) - 1;
  if (s_count < 0) fail(KVQ_ERR_INVALID_ARGUMENT, "query_start_loc is empty");
  lens.expect(KVQ_DTYPE_I32, {s_count});
  table.expect(KVQ_DTYPE_I32, {s_count, -1});
  b.max_blocks = table.dim(1);
  // The batch description is planned on the host: device copies are
  // downloaded (a host engine passes host memory and spares that).
  const std::vector<int64_t> starts = read_integers(qsl, s_count + 1, space, b.stream);
  const std::vector<int64_t> lengths = read_integers(lens, s_count, space, b.stream);
  if (starts[0] != 0)
    fail(KVQ_ERR_INVALID_ARGUMENT, "query_start_loc[0] = {}, must be 0", starts[0]);
  b.seqs.resize(static_cast<size_t>(s_count));
  const bool table_on_host = table.host_accessible();
  if (table_on_host) b.block_table.resize(static_cast<size_t>(s_count * b.max_blocks));
  for (int64_t s = 0; s < s_count; ++s) {
    const int64_t start = starts[static_cast<size_t>(s)], end = starts[static_cast<size_t>(s) + 1];
    if (end < start)
      fail(KVQ_ERR_INVALID_ARGUMENT, "query_start_loc decreases at {}: {} -> {}", s, start, end);
    const int64_t seq_len = lengths[static_cast<size_t>(s)], qlen = end - start;
    if (seq_len < qlen)
      fail(KVQ_ERR_INVALID_ARGUMENT, "seq_lens[{}] = {} is smaller than its query length {}", s,
           seq_len, qlen);
    const int64_t needed = (seq_len + g.block_size - 1) / g.block_size;
    if (needed > b.max_blocks)
      fail(KVQ_ERR_OUT_OF_RANGE, "seq_lens[{}] = {} needs {} blocks; block_table holds {}", s,
           seq_len, needed, b.max_blocks);
    for (int64_t k = 0; table_on_host && k < b.max_blocks; ++k) {
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
  if (starts[static_cast<size_t>(s_count)] != b.num_tokens)
    fail(KVQ_ERR_INVALID_ARGUMENT, "query_start_loc[{}] = {} but query has {} tokens", s_count,
         starts[static_cast<size_t>(s_count)], b.num_tokens);
  return b;
}

}  // namespace kvq::sdk
