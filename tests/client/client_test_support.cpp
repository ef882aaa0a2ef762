#include "client_test_support.hpp"

#include <cstring>
#include <span>

namespace kvq::client::testing {
namespace {

constexpr int64_t kHeads = 4, kKvHeads = 2, kHeadSize = 64, kBlockSize = 16;

// Deterministic bf16 values in [-1, 1) (a linear congruential generator:
// the same bytes on every machine).
std::vector<uint16_t> bf16_values(size_t n, uint32_t seed) {
  std::vector<uint16_t> out(n);
  uint32_t x = seed;
  for (auto& v : out) {
    x = x * 1664525u + 1013904223u;
    const float f = static_cast<float>(x >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    v = static_cast<uint16_t>(bits >> 16);
  }
  return out;
}

template <typename T>
Buffer upload(const Plugin& plugin, const std::vector<T>& values) {
  Buffer b(plugin, values.size() * sizeof(T));
  b.upload(std::as_bytes(std::span(values)));
  return b;
}

}  // namespace

std::vector<std::byte> run_small_batch(const Plugin& plugin, const std::string& mode) {
  LayerConfig config;
  config.backend = "triton";
  config.layer_name = "model.layers.0.self_attn.attn";
  config.kv_cache_dtype = mode;
  config.num_heads = kHeads;
  config.num_kv_heads = kKvHeads;
  config.head_size = kHeadSize;
  config.block_size = kBlockSize;
  Layer layer = plugin.create_layer(config);
  const kvq_cache_geometry g = layer.cache_geometry();
  const int64_t num_blocks = 4;
  Buffer cache(plugin, static_cast<uint64_t>(num_blocks * g.bytes_per_block));
  const kvq_tensor cache_tensor = cache.tensor(KVQ_DTYPE_U8, {num_blocks, g.bytes_per_block});
  layer.cache_init(cache_tensor);

  // Sequence 0: 20 keys in blocks 2 and 0, decoding its last; sequence 1: a
  // 3-token prefill in block 3.
  const int64_t keys = 23;
  std::vector<int64_t> slots;
  for (int64_t p = 0; p < 20; ++p) slots.push_back((p < 16 ? 2 : 0) * kBlockSize + p % 16);
  for (int64_t p = 0; p < 3; ++p) slots.push_back(3 * kBlockSize + p);
  const Buffer key = upload(plugin, bf16_values(keys * kKvHeads * kHeadSize, 1));
  const Buffer value = upload(plugin, bf16_values(keys * kKvHeads * kHeadSize, 2));
  const Buffer slot_mapping = upload(plugin, slots);
  layer.cache_write(CacheWriteArgs()
                        .key(key.tensor(KVQ_DTYPE_BF16, {keys, kKvHeads, kHeadSize}))
                        .value(value.tensor(KVQ_DTYPE_BF16, {keys, kKvHeads, kHeadSize}))
                        .slot_mapping(slot_mapping.tensor(KVQ_DTYPE_I64, {keys}))
                        .kv_cache(cache_tensor));

  const int64_t tokens = 4;
  const Buffer query = upload(plugin, bf16_values(tokens * kHeads * kHeadSize, 3));
  const Buffer table = upload(plugin, std::vector<int32_t>{2, 0, 3, 0});
  const std::vector<int32_t> starts = {0, 1, 4}, lens = {20, 3};
  Buffer output(plugin, tokens * kHeads * kHeadSize * 2);
  output.fill(0xFF);  // NaN bf16 bits: every element must be written
  layer.forward(ForwardArgs()
                    .attention_state(KVQ_ATTN_CHUNKED_PREFILL)
                    .query(query.tensor(KVQ_DTYPE_BF16, {tokens, kHeads, kHeadSize}))
                    .kv_cache(cache_tensor)
                    .query_start_loc(host_vector(starts))
                    .seq_lens(host_vector(lens))
                    .block_table(table.tensor(KVQ_DTYPE_I32, {2, 2}))
                    .output(output.tensor(KVQ_DTYPE_BF16, {tokens, kHeads, kHeadSize})));
  std::vector<std::byte> out(output.size());
  output.download(out);
  return out;
}

}  // namespace kvq::client::testing
