#include "scene.hpp"

#include <cstring>
#include <random>

namespace kvq::bad_input {

test::Plugin& triton() {
  static test::Plugin plugin(test::triton_plugin_path(), 1);
  return plugin;
}

Scene::Scene(const std::string& mode)
    : plugin(triton()),
      layer(nullptr, plugin.api().layer_destroy),
      key(KVQ_DTYPE_BF16, {0}),
      value(KVQ_DTYPE_BF16, {0}),
      slots(KVQ_DTYPE_I64, {0}),
      query(KVQ_DTYPE_BF16, {0}),
      output(KVQ_DTYPE_BF16, {0}) {
  spec.backend = "triton";
  spec.mode = mode;
  spec.num_heads = kHeads;
  spec.num_kv_heads = kKvHeads;
  spec.head_size = kHeadSize;
  spec.block_size = kBlockSize;
  layer = test::make_layer(plugin, spec);
  layer_arg = layer.get();
  std::mt19937_64 rng(7);
  pb = test::paged_batch(seqs, kBlockSize, 2, rng);
  cache = std::make_unique<test::Cache>(plugin, layer.get(), pb.num_blocks, true);

  // The cache holds every token already (first values), so the row's write
  // (second values) would visibly change it.
  const std::vector<int64_t> shape = {tokens(), kKvHeads, kHeadSize};
  const auto [k0, v0] = test::random_kv(KVQ_DTYPE_BF16, shape, 1.0, 11);
  std::vector<int64_t> all_slots;
  for (int64_t i = 0; i < tokens(); ++i) all_slots.push_back(slot(i));
  test::check(test::write_kv(plugin, layer.get(), k0, v0, all_slots, *cache), "first write");

  std::tie(key, value) = test::random_kv(KVQ_DTYPE_BF16, shape, 1.0, 21);
  slots = test::OwnedTensor(KVQ_DTYPE_I64, {tokens()});
  for (int64_t i = 0; i < tokens(); ++i) slots.set(i, static_cast<double>(slot(i)));
  query = test::random_tensor(KVQ_DTYPE_BF16, {tokens(), kHeads, kHeadSize}, 1.0, 31);
  output = test::filled_tensor(KVQ_DTYPE_BF16, {tokens(), kHeads, kHeadSize}, NAN);

  write_args.key(*key.get())
      .value(*value.get())
      .slot_mapping(*slots.get())
      .kv_cache(*cache->tensor());
  forward_args = pb.forward_args(KVQ_ATTN_CHUNKED_PREFILL, query, cache->tensor(), output);
  using F = client::ForwardArgs;
  key_t = write_args.key();
  value_t = write_args.value();
  slots_t = write_args.slot_mapping();
  cache_t = write_args.kv_cache();
  query_t = forward_args.tensor(F::kQuery);
  output_t = forward_args.tensor(F::kOutput);
  qsl_t = forward_args.tensor(F::kQueryStartLoc);
  lens_t = forward_args.tensor(F::kSeqLens);
  table_t = forward_args.tensor(F::kBlockTable);
  write = write_args.c_struct();
  forward = forward_args.c_struct();
}

int64_t Scene::slot(int64_t i) const {
  const int64_t first = seqs[0].seq_len;
  return i < first ? pb.slots[0][static_cast<size_t>(i)]
                   : pb.slots[1][static_cast<size_t>(i - first)];
}

kvq_tensor Scene::shifted(const test::OwnedTensor& t, int64_t bytes) {
  const auto size = static_cast<size_t>(t.bytes());
  // 64-byte aligned base (new[] of unsigned char gives at least 16), then shift.
  auto& room = spare_.emplace_back(std::make_unique<unsigned char[]>(size + 128));
  auto base = reinterpret_cast<uintptr_t>(room.get());
  base = (base + 63) / 64 * 64;
  unsigned char* at = reinterpret_cast<unsigned char*>(base) + bytes;
  std::memcpy(at, t.get()->data, size);
  kvq_tensor out = *t.get();
  out.data = at;
  return out;
}

SceneState state_of(const Scene& s) {
  SceneState st;
  st.cache = s.cache->snapshot();
  st.guard = s.cache->guard_bytes();
  const auto* out = static_cast<const unsigned char*>(s.output.get()->data);
  st.output.assign(out, out + s.output.bytes());
  const kvq_layer_info info = test::layer_info(s.plugin, s.layer.get());
  st.impl = info.impl_name;
  st.mode = info.kv_cache_dtype;
  st.scheme = info.scheme;
  return st;
}

}  // namespace kvq::bad_input
